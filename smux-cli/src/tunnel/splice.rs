//! Copying between a TCP connection and a stream, and ending both together when one
//! side fails or the tunnel end is stopping.

use std::time::Instant;

use smux_tokio::{Session, Stream};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Error code of the stream reset that carries an aborted TCP connection (a reset, a
/// failed read or write) through the tunnel.
pub const RESET_ABORTED: u32 = 0x5443_0001;
/// Error code of the stream reset by the server when it cannot reach the target.
pub const RESET_UNREACHABLE: u32 = 0x5443_0002;
/// Error code of the stream reset by a stopping tunnel end whose grace period ran
/// out (or that got a second signal) before the connection finished.
pub const RESET_SHUTDOWN: u32 = 0x5443_0003;

/// Copies both ways between a TCP connection and a stream until both are done, or
/// until `cut` is cancelled.
///
/// End-of-file on either side shuts the other side's write direction down (Tokio's
/// `copy_bidirectional`); on an extended stream that is a half-close, so the other
/// direction goes on. If either side fails, both are aborted: the stream is reset
/// and the TCP connection closed with a reset, so neither end mistakes the abort for
/// a complete transfer. A cut ends both the same way (see [`cut_short`]).
pub async fn splice(
    session: &Session,
    mut tcp: TcpStream,
    mut stream: Stream,
    what: &str,
    cut: &CancellationToken,
) {
    let id = stream.id();
    let started = Instant::now();
    let copied = tokio::select! {
        r = tokio::io::copy_bidirectional_with_sizes(&mut tcp, &mut stream, 64 << 10, 64 << 10) => r,
        () = cut.cancelled() => {
            debug!(stream = %id, "{what} cut short: the tunnel is stopping");
            cut_short(session, stream, RESET_SHUTDOWN);
            abort(tcp);
            return;
        }
    };
    match copied {
        Ok((up, down)) => debug!(
            stream = %id,
            sent = up,
            received = down,
            secs = started.elapsed().as_secs_f64(),
            extended = stream.is_extended(),
            "{what} done"
        ),
        Err(e) => {
            debug!(
                stream = %id,
                error = %e,
                code = ?smux_tokio::reset_code(&e),
                "{what} ended with an error, aborting both sides"
            );
            stream.reset(RESET_ABORTED);
            abort(tcp);
        }
    }
}

/// Ends a stream that did not finish so that the peer sees an error, never an
/// end-of-file: a reset with `code` on an extended stream. A base stream has no
/// reset (closing it sends FIN, which the peer takes for a complete transfer), so the
/// whole session is closed instead and the peer's streams fail.
pub fn cut_short(session: &Session, stream: Stream, code: u32) {
    if stream.is_extended() {
        stream.reset(code);
    } else {
        // Before the stream is dropped: dropping it first would send its FIN.
        session.close();
        drop(stream);
    }
}

/// Closes a TCP connection with a reset (RST) instead of a FIN.
pub fn abort(tcp: TcpStream) {
    if let Err(e) = tcp.set_zero_linger() {
        debug!(error = %e, "could not set SO_LINGER to reset the connection");
    }
}
