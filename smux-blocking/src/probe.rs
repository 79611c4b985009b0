//! Peer detection: does the other end of a fresh connection speak smux?

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use smux_proto::{Probe, Verdict};

use crate::transport::ReadTimeout;

/// A fresh challenge, seeded from std's per-process random hash keys (the challenge
/// only has to differ between probes, not resist guessing). A challenge whose expected
/// answer equals itself is skipped, so an echo server can never pass.
fn challenge() -> Probe {
    loop {
        let probe = Probe::from_seed(RandomState::new().hash_one(0u8));
        if probe.challenge() != probe.expected() {
            return probe;
        }
    }
}

/// Tells whether the peer of a fresh connection speaks smux: sends a VRM challenge and
/// waits up to `timeout` for the verify code.
///
/// `Ok(true)`: the peer answered with the right verify code. `Ok(false)`: it answered
/// something else, closed the connection, or did not answer in time. `Err`: writing or
/// reading the transport failed. Reads exactly the 7 bytes of the answer and nothing
/// more, so the connection can then be handed to a [`Session`](crate::Session) (the
/// peer must not open streams before it answered). The transport's read timeout is
/// restored before returning. The transport must be in blocking mode (a
/// non-blocking socket would report "no answer" at once). Never panics.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// use std::net::TcpListener;
/// use std::time::Duration;
/// use smux_blocking::{is_smux, Config, Role, Session};
///
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let (mut tcp, _) = listener.accept()?;
/// if is_smux(&mut tcp, Duration::from_secs(2))? {
///     let session = Session::new(tcp, Config::default(), Role::Acceptor)?;
///     // ...
/// #   drop(session);
/// }
/// # Ok(())
/// # }
/// ```
pub fn is_smux<T: Read + Write + ReadTimeout>(
    transport: &mut T,
    timeout: Duration,
) -> io::Result<bool> {
    let previous = transport.read_timeout()?;
    let verdict = probe(transport, timeout);
    let restored = transport.set_read_timeout(previous);
    verdict.and_then(|v| restored.map(|()| v))
}

fn probe<T: Read + Write + ReadTimeout>(transport: &mut T, timeout: Duration) -> io::Result<bool> {
    let p = challenge();
    let deadline = Instant::now() + timeout;
    transport.write_all(&p.challenge())?;
    transport.flush()?;
    let mut answer = [0u8; 7];
    let mut have = 0;
    while have < answer.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        transport.set_read_timeout(Some(left))?;
        match transport.read(&mut answer[have..]) {
            Ok(0) => return Ok(false),
            Ok(n) => have += n,
            Err(e) => match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => return Ok(false),
                _ => return Err(e),
            },
        }
    }
    Ok(p.judge(&answer) == Verdict::Smux)
}

/// Connects to `addr` (within `timeout`) and probes it with [`is_smux`] (within the
/// same `timeout` again). A refused or failed connection is an error.
pub fn is_smux_at<A: ToSocketAddrs>(addr: A, timeout: Duration) -> io::Result<bool> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(mut tcp) => return is_smux(&mut tcp, timeout),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing")
    }))
}
