//! Stopping a tunnel end on SIGINT or SIGTERM.
//!
//! The first signal closes the listener (new local connections, or new sessions on
//! the server, are refused) and lets the connections in flight finish, for at most a
//! grace period; then the process exits 0. A second signal, or the end of the grace
//! period, cuts the connections still open: each gets a reset (a stream reset through
//! the tunnel, a TCP reset on the local side), never an end-of-file that would pass
//! truncated data off as complete. After a second signal the process exits 130.

use std::io;
use std::process::ExitCode;
use std::time::Duration;

use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// How long cut connections get to send their resets before sessions are flushed.
const CUT_WAIT: Duration = Duration::from_millis(500);
/// How long sessions get to write out what is queued (stream resets, FINs) on exit.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

/// Exit status after a second signal (128 + SIGINT, the shells' convention).
const EXIT_INTERRUPTED: u8 = 130;

/// The shared state of a stopping tunnel end: what to stop, and what to wait for.
#[derive(Clone, Default)]
pub struct Shutdown {
    /// Cancelled by the first signal: no new sessions or streams; the client stops
    /// reconnecting, the server sends go-away on its sessions.
    pub stop: CancellationToken,
    /// Cancelled when the connections still in flight are to be cut.
    pub cut: CancellationToken,
    /// Cancelled once the connections are done: sessions write out what is queued
    /// and end.
    pub finish: CancellationToken,
    /// One task per connection in flight (a local connection on the client, a
    /// stream and its target connection on the server).
    pub conns: TaskTracker,
    /// One task per session (on the client, the one that keeps it connected).
    pub sessions: TaskTracker,
}

/// SIGINT and SIGTERM (Ctrl-C alone where there are no Unix signals).
pub struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts listening; from now on these signals no longer kill the process.
    pub fn new() -> io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Waits for the next signal; returns its name.
    pub async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => "SIGINT",
                _ = self.term.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// Runs `work` (the accept loop of one end) until it fails or a signal arrives, then
/// stops as described in the module docs. Dropping `work` closes its listener.
pub async fn run(
    work: impl std::future::Future<Output = io::Result<()>>,
    sh: &Shutdown,
    mut signals: Signals,
    grace: Duration,
) -> ExitCode {
    let first = tokio::select! {
        r = work => {
            let e = r.err().unwrap_or_else(|| io::Error::other("the accept loop ended"));
            tracing::error!("{e}");
            sh.cut.cancel();
            sh.finish.cancel();
            return ExitCode::FAILURE;
        }
        name = signals.next() => name,
    };
    sh.stop.cancel();
    sh.conns.close();
    sh.sessions.close();
    info!(
        "{first}: listener closed; waiting up to {grace:?} for {} connection(s) in flight \
         (signal again to cut them and exit at once)",
        sh.conns.len()
    );
    let code = tokio::select! {
        () = sh.conns.wait() => {
            info!("all connections finished");
            0
        }
        () = tokio::time::sleep(grace) => {
            warn!("grace period over: resetting {} connection(s)", sh.conns.len());
            0
        }
        name = signals.next() => {
            warn!("{name} again: resetting {} connection(s) and exiting", sh.conns.len());
            EXIT_INTERRUPTED
        }
    };
    sh.cut.cancel();
    let _ = timeout(CUT_WAIT, sh.conns.wait()).await;
    sh.finish.cancel();
    let _ = timeout(FLUSH_WAIT + CUT_WAIT, sh.sessions.wait()).await;
    ExitCode::from(code)
}

/// Ends `session` on exit: writes out what is queued (bounded), then drops the rest.
pub async fn flush(session: &smux_tokio::Session) {
    if timeout(FLUSH_WAIT, session.shutdown()).await.is_err() {
        session.close();
    }
}
