//! The server end of the tunnel: accepts sessions from tunnel clients and connects
//! each stream to the target.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use smux_tokio::{EndReason, Session};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::shutdown::{self, Shutdown};
use super::splice;
use super::Options;

/// Go-away code a server sends on its sessions when it is stopping.
const GOAWAY_SHUTDOWN: u32 = 0x5443_0003;

/// Accepts tunnel clients on `listener` (already bound) until dropped, and serves
/// each session's streams.
pub async fn run(
    listener: smux_tokio::Listener,
    target: String,
    o: Options,
    sh: Shutdown,
) -> io::Result<()> {
    info!("listening on {} (target {target})", listener.local_addr()?);
    loop {
        let (session, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Usually one connection's problem (a reset, no descriptors left).
                warn!(error = %e, "accept failed");
                sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        info!("session from {peer} started");
        sh.sessions.spawn(serve_session(
            session,
            peer,
            target.clone(),
            o.connect_timeout,
            sh.clone(),
        ));
    }
}

/// Accepts the streams of one session and connects each to the target. On the first
/// signal, sends go-away: open streams go on, new ones are refused.
async fn serve_session(
    session: Session,
    peer: SocketAddr,
    target: String,
    connect_timeout: Duration,
    sh: Shutdown,
) {
    let mut streams = 0u64;
    let mut going_away = false;
    loop {
        tokio::select! {
            accepted = session.accept() => {
                let Ok(stream) = accepted else { break };
                streams += 1;
                let (session, target, cut) = (session.clone(), target.clone(), sh.cut.clone());
                sh.conns.spawn(async move {
                    serve_stream(&session, stream, &target, connect_timeout, &cut).await;
                });
            }
            () = sh.stop.cancelled(), if !going_away => {
                going_away = true;
                session.go_away(GOAWAY_SHUTDOWN);
            }
            () = sh.finish.cancelled() => {
                shutdown::flush(&session).await;
                break;
            }
        }
    }
    match session.closed().await {
        EndReason::Drained => info!("session from {peer} drained ({streams} streams)"),
        reason @ EndReason::Protocol(_) => {
            warn!("session from {peer} ended: {reason} ({streams} streams)")
        }
        reason => info!("session from {peer} ended: {reason} ({streams} streams)"),
    }
}

/// Connects one accepted stream to the target and copies between them.
async fn serve_stream(
    session: &Session,
    stream: smux_tokio::Stream,
    target: &str,
    connect_timeout: Duration,
    cut: &CancellationToken,
) {
    let id = stream.id();
    let connect = timeout(connect_timeout, TcpStream::connect(target));
    let tcp = tokio::select! {
        r = connect => r,
        () = cut.cancelled() => {
            splice::cut_short(session, stream, splice::RESET_SHUTDOWN);
            return;
        }
    };
    let tcp = match tcp {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            warn!(stream = %id, %target, error = %e, "cannot connect to target");
            stream.reset(splice::RESET_UNREACHABLE);
            return;
        }
        Err(_) => {
            warn!(stream = %id, %target, "connecting to target timed out");
            stream.reset(splice::RESET_UNREACHABLE);
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    debug!(stream = %id, %target, "stream connected to target");
    splice::splice(session, tcp, stream, "stream", cut).await;
}
