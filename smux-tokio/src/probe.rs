//! Peer detection: does the other end of a fresh connection speak smux?

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io;
use std::time::Duration;

use smux_proto::frame::HEADER_LEN;
use smux_proto::{Probe, Verdict};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};

/// Sends a VRM challenge on `transport` and judges the answer.
///
/// Returns `Ok(true)` if the peer answered with the right verify code, `Ok(false)` if
/// it answered anything else, closed the connection first, or did not answer within
/// `timeout`, and `Err` for an I/O error. It reads exactly the 7 bytes of the answer
/// and nothing more, so the connection can then be handed to a
/// [`Session`](crate::Session) (servers of the reference implementation probe every
/// accepted connection this way). After `Ok(false)` the connection's state is unknown
/// (part of an answer may have been read): drop it. Never panics.
///
/// A smux peer answers only while its session runs: the other end must already have
/// its `Session` (of either role) on the connection.
pub async fn is_smux<T>(transport: &mut T, timeout: Duration) -> io::Result<bool>
where
    T: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let probe = Probe::from_seed(seed());
    let exchange = async {
        transport.write_all(&probe.challenge()).await?;
        transport.flush().await?;
        let mut answer = [0u8; HEADER_LEN];
        match transport.read_exact(&mut answer).await {
            Ok(_) => Ok(probe.judge(&answer) == Verdict::Smux),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e),
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_elapsed) => Ok(false),
    }
}

/// Connects to `addr` and runs [`is_smux`] on the new connection, all within
/// `timeout`. Connecting fails with the connection's error (a closed port, for
/// example) or [`io::ErrorKind::TimedOut`]; the connection is dropped afterwards.
pub async fn is_smux_at(addr: impl ToSocketAddrs, timeout: Duration) -> io::Result<bool> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tcp = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "smux probe: connect timed out",
            ))
        }
    };
    tcp.set_nodelay(true)?;
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    is_smux(&mut tcp, left).await
}

/// A seed for the challenge from the standard library's per-process random hash keys
/// (each `RandomState` differs), so two probes never share one. The challenge needs to
/// be unpredictable enough that a non-smux peer cannot echo the answer by accident,
/// not cryptographically secure.
fn seed() -> u64 {
    RandomState::new().hash_one(0u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ() {
        let a = seed();
        let b = seed();
        assert_ne!(a, b);
        assert_ne!(
            Probe::from_seed(a).challenge(),
            Probe::from_seed(b).challenge()
        );
    }
}
