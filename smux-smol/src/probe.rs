//! `is_smux`: does the peer of a fresh connection speak smux?

use std::future::{poll_fn, Future};
use std::io;
use std::net::ToSocketAddrs;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_io::Timer;
use futures_io::{AsyncRead, AsyncWrite};
use smux_proto::frame::HEADER_LEN;
use smux_proto::{Probe, Verdict};

/// A challenge seed: the wall clock, a process-wide counter and the process ID, so
/// two probes never share a challenge (no random-number crate needed).
fn seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    nanos ^ n.rotate_left(40) ^ u64::from(std::process::id()).rotate_left(20)
}

/// A probe whose expected answer differs from its challenge, so an echo server can
/// never pass for a smux peer.
fn new_probe() -> Probe {
    let mut s = seed();
    loop {
        let p = Probe::from_seed(s);
        if p.expected() != p.challenge() {
            return p;
        }
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    }
}

/// Tells whether the peer of a fresh connection speaks smux.
///
/// Sends a VRM challenge and reads the 7-byte answer within `timeout`:
/// `Ok(true)` if it carries the right verify code, `Ok(false)` for any other answer,
/// for no answer in time, or if the connection ends first; `Err` for an I/O error.
/// Never panics.
///
/// It reads exactly 7 bytes and nothing more, so the connection can then be handed to
/// [`Session::new`](crate::Session::new). A smux session answers the probe by itself;
/// a dialling session sends nothing before it opens a stream (or its first
/// keepalive is due), so a server can probe every accepted connection and then run a
/// session on it.
pub async fn is_smux<T>(transport: &mut T, timeout: Duration) -> io::Result<bool>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let probe = new_probe();
    let challenge = probe.challenge();
    let mut timer = Timer::after(timeout);
    let mut sent = 0;
    let mut flushed = false;
    let mut answer = [0u8; HEADER_LEN];
    let mut got = 0;
    poll_fn(|cx| {
        loop {
            let step = if sent < challenge.len() {
                Pin::new(&mut *transport).poll_write(cx, &challenge[sent..])
            } else if !flushed {
                Pin::new(&mut *transport).poll_flush(cx).map_ok(|()| 1)
            } else if got < HEADER_LEN {
                Pin::new(&mut *transport).poll_read(cx, &mut answer[got..])
            } else {
                return Poll::Ready(Ok(probe.judge(&answer) == Verdict::Smux));
            };
            match step {
                Poll::Ready(Ok(n)) => {
                    if sent < challenge.len() {
                        if n == 0 {
                            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                        }
                        sent += n;
                    } else if !flushed {
                        flushed = true;
                    } else if n == 0 {
                        // The connection ended before a full answer.
                        return Poll::Ready(Ok(false));
                    } else {
                        got += n;
                    }
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => break,
            }
        }
        match Pin::new(&mut timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(Ok(false)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Connects to `addr` over TCP and runs [`is_smux`] on the new connection, all
/// within `timeout`. `Err` if the connection cannot be made (a closed port, for
/// example) or fails.
pub async fn is_smux_at<A: ToSocketAddrs>(addr: A, timeout: Duration) -> io::Result<bool> {
    let start = Instant::now();
    let mut tcp = crate::net::connect_tcp(addr, Some(timeout)).await?;
    let left = timeout.saturating_sub(start.elapsed());
    is_smux(&mut tcp, left).await
}
