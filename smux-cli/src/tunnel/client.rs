//! The client end of the tunnel: accepts local TCP connections and carries each as a
//! stream of one session to the server, reconnecting when the session is lost.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smux_tokio::{EndReason, Session};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::{sleep, timeout};
use tracing::{debug, info, warn};

use super::shutdown::{self, Shutdown};
use super::splice;
use super::Options;

/// Accepts local connections on `listener` (already bound: nothing connects to the
/// server before) until dropped, and carries each over the session to `server`.
pub async fn run(
    listener: TcpListener,
    server: String,
    o: Options,
    sh: Shutdown,
) -> io::Result<()> {
    info!("listening on {} (server {server})", listener.local_addr()?);
    let (tx, rx) = watch::channel(None::<Arc<Conn>>);
    sh.sessions
        .spawn(keep_connected(server, o.clone(), tx, sh.clone()));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "accept failed");
                sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let mut rx = rx.clone();
        let wait = o.connect_timeout;
        let cut = sh.cut.clone();
        sh.conns.spawn(async move {
            let opened = tokio::select! {
                opened = open_stream(&mut rx, wait) => opened,
                () = cut.cancelled() => None,
            };
            let Some((session, stream)) = opened else {
                warn!(%peer, "no connection to the server, resetting the local connection");
                splice::abort(tcp);
                return;
            };
            debug!(%peer, stream = %stream.id(), "local connection opened a stream");
            splice::splice(&session, tcp, stream, "connection", &cut).await;
        });
    }
}

/// The client's current session to the server.
struct Conn {
    session: Session,
}

/// Opens a stream on the current session, waiting up to `wait` for one to exist (the
/// client may be reconnecting); returns it with its session.
async fn open_stream(
    rx: &mut watch::Receiver<Option<Arc<Conn>>>,
    wait: Duration,
) -> Option<(Session, smux_tokio::Stream)> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let conn = rx.borrow_and_update().clone();
        if let Some(conn) = conn {
            // Streams opened before the ends agreed on the extensions take the
            // session's mode, so there is nothing to wait for.
            match tokio::time::timeout_at(deadline, conn.session.open()).await {
                Ok(Ok(stream)) => return Some((conn.session.clone(), stream)),
                Ok(Err(e)) => debug!(error = %e, "open failed, waiting for a new session"),
                Err(_) => return None,
            }
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => return None,
        }
    }
}

/// Keeps one session to the server, reconnecting with exponential backoff, until the
/// first signal; then keeps the current session until its streams are done. Prints
/// one line per session event: connected, lost (with the reason) and reconnecting,
/// going away, drained.
async fn keep_connected(
    server: String,
    o: Options,
    tx: watch::Sender<Option<Arc<Conn>>>,
    sh: Shutdown,
) {
    const FIRST: Duration = Duration::from_millis(100);
    let mut backoff = FIRST;
    while !sh.stop.is_cancelled() {
        let connect = timeout(
            o.connect_timeout,
            smux_tokio::connect(&server, o.config.clone()),
        );
        let connected = tokio::select! {
            r = connect => r,
            () = sh.stop.cancelled() => break,
        };
        match connected {
            Ok(Ok(session)) => {
                info!("connected to {server}");
                let since = Instant::now();
                tx.send_replace(Some(Arc::new(Conn {
                    session: session.clone(),
                })));
                let reason = tokio::select! {
                    reason = session.closed() => Some(reason),
                    () = going_away(&session) => None,
                    () = sh.finish.cancelled() => {
                        tx.send_replace(None);
                        shutdown::flush(&session).await;
                        return;
                    }
                };
                // New connections wait for the next session from now on.
                tx.send_replace(None);
                let Some(reason) = reason else {
                    // The server is stopping or restarting: the connections on this
                    // session finish on it, and a new one takes the new connections.
                    if sh.stop.is_cancelled() {
                        drain(session, server.clone(), sh.clone()).await;
                        break;
                    }
                    info!(
                        "server {server} is going away: its connections finish on the \
                         current session, new ones go to a new session"
                    );
                    sh.sessions
                        .spawn(drain(session, server.clone(), sh.clone()));
                    backoff = FIRST;
                    continue;
                };
                if sh.stop.is_cancelled() {
                    info!("session to {server} ended: {reason}");
                    break;
                }
                // A connection that lived a while earns a quick reconnect.
                if since.elapsed() > Duration::from_secs(10) {
                    backoff = FIRST;
                }
                if reason == EndReason::Drained {
                    info!("session to {server} drained; reconnecting in {backoff:?}");
                } else {
                    warn!("connection to {server} lost: {reason}; reconnecting in {backoff:?}");
                }
            }
            Ok(Err(e)) => warn!("cannot connect to {server}: {e}; retrying in {backoff:?}"),
            Err(_) => warn!("connecting to {server} timed out; retrying in {backoff:?}"),
        }
        tokio::select! {
            () = sleep(backoff) => {}
            () = sh.stop.cancelled() => break,
        }
        backoff = (backoff * 2).min(o.max_backoff);
    }
}

/// Resolves once the server has sent go-away on `session` (there is no event for it,
/// so this looks a few times a second).
async fn going_away(session: &Session) {
    while !session.is_going_away() {
        sleep(Duration::from_millis(200)).await;
    }
}

/// Keeps a session that is going away until its streams are done (it then ends
/// drained), or until the process exits.
async fn drain(session: Session, server: String, sh: Shutdown) {
    tokio::select! {
        reason = session.closed() => match reason {
            EndReason::Drained => info!("previous session to {server} drained"),
            reason => info!("previous session to {server} ended: {reason}"),
        },
        () = sh.finish.cancelled() => shutdown::flush(&session).await,
    }
}
