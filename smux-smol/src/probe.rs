//! `is_smux`: does the peer of a fresh connection speak smux?

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io;
use std::net::ToSocketAddrs;
use std::time::Duration;

use async_io::Timer;
use futures_io::{AsyncRead, AsyncWrite};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smux_proto::frame::HEADER_LEN;
use smux_proto::{Probe, Verdict};

/// A probe with a fresh random challenge (std's per-process random hash keys) whose
/// expected answer differs from the challenge, so an echo server never passes.
fn new_probe() -> Probe {
    loop {
        let p = Probe::from_seed(RandomState::new().hash_one(0u8));
        if p.expected() != p.challenge() {
            return p;
        }
    }
}

/// Tells whether the peer of a fresh connection speaks smux.
///
/// Sends a VRM challenge and reads the 7-byte answer within `timeout`: `Ok(true)` if
/// it carries the right verify code, `Ok(false)` for any other answer, for no answer
/// in time, or if the connection ends first; `Err` for an I/O error. Never panics.
///
/// It reads exactly 7 bytes and nothing more, so the connection can then be handed to
/// [`Session::new`](crate::Session::new). A smux session answers the probe by itself;
/// a dialling session sends nothing before it opens a stream (or its first keepalive
/// is due), so a server can probe every accepted connection and then run a session
/// on it.
pub async fn is_smux<T>(transport: &mut T, timeout: Duration) -> io::Result<bool>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    smol::future::or(exchange(transport), async {
        Timer::after(timeout).await;
        Ok(false)
    })
    .await
}

async fn exchange<T: AsyncRead + AsyncWrite + Unpin>(transport: &mut T) -> io::Result<bool> {
    let probe = new_probe();
    transport.write_all(&probe.challenge()).await?;
    transport.flush().await?;
    let mut answer = [0u8; HEADER_LEN];
    match transport.read_exact(&mut answer).await {
        Ok(()) => Ok(probe.judge(&answer) == Verdict::Smux),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Connects to `addr` over TCP and runs [`is_smux`] on the new connection, all
/// within `timeout`. `Err` if the connection cannot be made (a closed port, for
/// example) or fails, or if connecting takes the whole `timeout` (`TimedOut`).
pub async fn is_smux_at<A: ToSocketAddrs>(addr: A, timeout: Duration) -> io::Result<bool> {
    let mut timer = Timer::after(timeout);
    let connect = crate::net::connect_tcp(addr);
    let timed_out = io::Error::new(io::ErrorKind::TimedOut, "smux probe: connect timed out");
    let mut tcp = smol::future::or(connect, async {
        (&mut timer).await;
        Err(timed_out)
    })
    .await?;
    smol::future::or(exchange(&mut tcp), async {
        (&mut timer).await;
        Ok(false)
    })
    .await
}
