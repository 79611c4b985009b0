//! `smux tunnel`: TCP connections carried as streams of one multiplexed connection.
//!
//! The client accepts local TCP connections and opens one stream for each over a
//! single smux session to the server (reconnecting with backoff when it drops); the
//! server connects each stream to the target. Bytes are copied both ways until both
//! directions are done.
//!
//! Half-close goes through: when one side's TCP connection reaches end-of-file, the
//! stream is shut down after what was read (a half-close, since both ends are ours
//! with extensions on), the other end shuts its TCP write side down, and the answer
//! still flows back until that side finishes too. So a client that sends a request,
//! shuts its write side and then reads the answer works. To make the first stream of
//! a session extended too, the client lets the negotiation settle before it (see
//! `settle`). With extensions off on either end (`--no-extensions`) the base protocol
//! applies: end-of-file on one side closes the stream in both directions.
//!
//! An abort goes through too: when copying fails on one end (a connection reset, the
//! target unreachable), the stream is reset and the other end resets its TCP
//! connection, rather than closing it as if the data were complete.

use std::io;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smux_tokio::{Config, Session};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OnceCell};
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::args::Args;
use shutdown::Shutdown;

mod shutdown;
mod splice;

/// Go-away code a server sends on its sessions when it is stopping.
const GOAWAY_SHUTDOWN: u32 = 0x5443_0003;

const USAGE: &str = "\
usage: smux tunnel server --listen ADDR --to TARGET [options]
       smux tunnel client --listen ADDR --server ADDR [options]

The client accepts TCP connections on --listen and carries each as one stream of a
single smux connection to the server, which connects it to --to.

options:
  --window BYTES            per-stream window, e.g. 512K or 4M (default 512K; both
                            ends must use the same)
  --keepalive D             keepalive interval, e.g. 10s (default 10s)
  --keepalive-timeout D     end the session after this long without input (default 100s)
  --connect-timeout D       bound on each TCP connect (default 10s)
  --max-backoff D           client: longest wait between reconnects (default 30s)
  --grace D                 on SIGINT/SIGTERM: stop accepting, let connections in
                            flight finish for this long, then reset those left and
                            exit (default 10s; a second signal exits at once, 130)
  --no-extensions           speak the base smux protocol only (no half-close, no
                            growing windows); both ends fall back to it if either
                            end has this
  --log LEVEL               error, warn, info, debug or trace (default info; RUST_LOG
                            overrides)
  -h, --help                this text
";

/// Options of both ends.
#[derive(Debug, Clone)]
struct Options {
    listen: String,
    to: Option<String>,
    server: Option<String>,
    config: Config,
    connect_timeout: Duration,
    max_backoff: Duration,
    grace: Duration,
    log: String,
}

fn parse_bytes(s: &str) -> Result<u32, String> {
    let (num, scale) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1024),
        Some((i, 'm' | 'M')) => (&s[..i], 1024 * 1024),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .map(|n| n * scale)
        .filter(|&n| n > 0 && n <= u32::MAX as u64)
        .map(|n| n as u32)
        .ok_or_else(|| format!("expected a size like 512K or 4M, got '{s}'"))
}

fn parse(mut args: Args, server_side: bool) -> Result<Option<Options>, String> {
    let mut o = Options {
        listen: String::new(),
        to: None,
        server: None,
        config: Config::default(),
        connect_timeout: Duration::from_secs(10),
        max_backoff: Duration::from_secs(30),
        grace: Duration::from_secs(10),
        log: "info".into(),
    };
    let mut listen = None;
    while let Some(arg) = args.next_flag()? {
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "--listen" => listen = Some(args.value(&arg)?),
            "--to" if server_side => o.to = Some(args.value(&arg)?),
            "--server" if !server_side => o.server = Some(args.value(&arg)?),
            "--window" => {
                let w = parse_bytes(&args.value(&arg)?)?;
                o.config.window = w;
                o.config.cfm_threshold = (w / 2).max(1);
            }
            "--keepalive" => o.config.keepalive_interval = args.duration(&arg)?,
            "--keepalive-timeout" => o.config.keepalive_timeout = args.duration(&arg)?,
            "--connect-timeout" => o.connect_timeout = args.duration(&arg)?,
            "--max-backoff" => o.max_backoff = args.duration(&arg)?,
            "--grace" => o.grace = args.duration(&arg)?,
            "--no-extensions" => o.config.extensions = false,
            "--log" => o.log = args.value(&arg)?,
            _ => return Err(format!("unexpected argument '{arg}'\n\n{USAGE}")),
        }
    }
    o.listen = listen.ok_or("--listen is required")?;
    if server_side && o.to.is_none() {
        return Err("--to is required".into());
    }
    if !server_side && o.server.is_none() {
        return Err("--server is required".into());
    }
    o.config.validate().map_err(|e| e.to_string())?;
    Ok(Some(o))
}

/// Entry point of `smux tunnel`.
pub fn main(mut args: Args) -> ExitCode {
    let side = match args.next_flag() {
        Ok(Some(s)) if s == "server" || s == "client" => s,
        Ok(Some(s)) if s == "-h" || s == "--help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprint!("smux tunnel: expected 'server' or 'client'\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let server_side = side == "server";
    let opts = match parse(args, server_side) {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smux tunnel {side}: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&opts.log);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("smux tunnel: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async {
        // Before binding: a signal right after "listening on" must find it in place.
        let signals = match shutdown::Signals::new() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot listen for signals: {e}");
                return ExitCode::FAILURE;
            }
        };
        let sh = Shutdown::default();
        let grace = opts.grace;
        if server_side {
            shutdown::run(server(opts, sh.clone()), &sh, signals, grace).await
        } else {
            shutdown::run(client(opts, sh.clone()), &sh, signals, grace).await
        }
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    code
}

/// Logs to stderr through `tracing`, at `level` unless `RUST_LOG` says otherwise.
pub fn init_logging(level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Lets the extension negotiation settle before the session's first stream.
///
/// A dialer sends nothing on its own, and the server offers extensions only after the
/// first frame it received, so without this the first stream would be a base stream
/// (no half-close). Pings, then waits until a second ping was answered (the server's
/// offer, if it makes one, precedes that answer) or extensions are on. Only when the
/// first local connection arrives, not at connect time: a reference server may probe
/// a new connection and expect the probe's answer as the first frame.
async fn settle(session: &Session, limit: Duration) {
    if !session.config().extensions {
        return;
    }
    let started = Instant::now();
    let wait = async {
        session.ping();
        for _ in 0..2 {
            // `ping` is false while a ping is outstanding.
            while !session.extensions_enabled() && !session.ping() {
                if session.is_closed() {
                    return;
                }
                sleep(Duration::from_millis(1)).await;
            }
        }
    };
    let settled = timeout(limit, wait).await.is_ok();
    debug!(
        extensions = session.extensions_enabled(),
        settled,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "extension negotiation"
    );
}

async fn server(o: Options, sh: Shutdown) -> io::Result<()> {
    let target = o.to.clone().unwrap_or_default();
    let listener = smux_tokio::Listener::bind(&o.listen, o.config.clone()).await?;
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
        info!(%peer, "session started");
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
    peer: std::net::SocketAddr,
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
    let reason = session.closed().await;
    info!(%peer, streams, reason = %reason, "session ended");
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

async fn client(o: Options, sh: Shutdown) -> io::Result<()> {
    let server = o.server.clone().unwrap_or_default();
    let listener = TcpListener::bind(&o.listen).await?;
    info!("listening on {} (server {server})", listener.local_addr()?);
    let (tx, rx) = watch::channel(None::<Arc<Conn>>);
    sh.sessions.spawn(keep_connected(o.clone(), tx, sh.clone()));
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
    /// Set once the extension negotiation has settled (see `settle`).
    settled: OnceCell<()>,
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
            let open = async {
                // Once per session; concurrent first connections wait for the same one.
                conn.settled
                    .get_or_init(|| settle(&conn.session, wait))
                    .await;
                conn.session.open().await
            };
            match tokio::time::timeout_at(deadline, open).await {
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
/// first signal; then keeps the current session until its streams are done.
async fn keep_connected(o: Options, tx: watch::Sender<Option<Arc<Conn>>>, sh: Shutdown) {
    let server = o.server.clone().unwrap_or_default();
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
                info!(%server, "connected");
                let since = Instant::now();
                tx.send_replace(Some(Arc::new(Conn {
                    session: session.clone(),
                    settled: OnceCell::new(),
                })));
                let reason = tokio::select! {
                    reason = session.closed() => reason,
                    () = sh.finish.cancelled() => {
                        tx.send_replace(None);
                        shutdown::flush(&session).await;
                        return;
                    }
                };
                tx.send_replace(None);
                if sh.stop.is_cancelled() {
                    info!(%server, reason = %reason, "session ended");
                    break;
                }
                warn!(%server, reason = %reason, "connection lost");
                // A connection that lived a while earns a quick reconnect.
                if since.elapsed() > Duration::from_secs(10) {
                    backoff = FIRST;
                }
            }
            Ok(Err(e)) => warn!(%server, error = %e, "cannot connect; retrying in {backoff:?}"),
            Err(_) => warn!(%server, "connect timed out; retrying in {backoff:?}"),
        }
        tokio::select! {
            () = sleep(backoff) => {}
            () = sh.stop.cancelled() => break,
        }
        backoff = (backoff * 2).min(o.max_backoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("512K"), Ok(512 * 1024));
        assert_eq!(parse_bytes("4m"), Ok(4 << 20));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn required_options() {
        let args = |v: &[&str]| Args::new(v.iter().map(|s| s.to_string()));
        assert!(parse(args(&["--listen", "127.0.0.1:0"]), true).is_err());
        assert!(parse(args(&["--to", "127.0.0.1:1"]), true).is_err());
        let o = parse(
            args(&[
                "--listen",
                "127.0.0.1:0",
                "--server",
                "127.0.0.1:1",
                "--window",
                "1M",
            ]),
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(o.config.window, 1 << 20);
        assert!(o.config.extensions);
        let o = parse(
            args(&["--listen", "x", "--to", "y", "--no-extensions"]),
            true,
        )
        .unwrap()
        .unwrap();
        assert!(!o.config.extensions);
        assert!(parse(args(&["--listen", "x", "--to", "y"]), false).is_err());
    }
}
