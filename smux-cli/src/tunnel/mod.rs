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
//! `client::settle`). With extensions off on either end (`--no-extensions`) the base
//! protocol applies: end-of-file on one side closes the stream in both directions.
//!
//! An abort goes through too: when copying fails on one end (a connection reset, the
//! target unreachable), the stream is reset and the other end resets its TCP
//! connection, rather than closing it as if the data were complete.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use smux_tokio::Config;
use tokio::net::TcpListener;

use crate::args::{bytes, duration, duration_or_zero, listen_addr, peer_addr};
use shutdown::Shutdown;

mod client;
mod server;
mod shutdown;
mod splice;

const TUNNEL_HELP: &str = "\
The tunnel has two ends. The server runs where the target is reachable: it accepts
tunnel clients on --listen and connects every stream they open to --to. The client
runs where the connections come from: it accepts ordinary TCP connections on its own
--listen and carries each one as a stream of a single smux connection to --server.
Programs connect to the client's address as if it were the target.

Example pair: make a web server on host B (port 80) reachable as 127.0.0.1:8080 on
host A, through one connection to B's port 7000:
  on B:  smux tunnel server --listen 0.0.0.0:7000 --to 127.0.0.1:80
  on A:  smux tunnel client --listen 127.0.0.1:8080 --server B:7000
  then:  curl http://127.0.0.1:8080/   (on A)

Both ends print one line per session event (connected, lost and reconnecting with
the reason, drained). SIGINT or SIGTERM stops accepting and lets connections in
flight finish (see --grace); a second signal exits at once (status 130).";

/// Arguments of `smux tunnel`.
#[derive(clap::Args, Debug)]
#[command(after_help = TUNNEL_HELP, arg_required_else_help = true)]
pub struct Args {
    #[command(subcommand)]
    end: End,
}

#[derive(Subcommand, Debug)]
enum End {
    /// The far end: accept tunnel clients, connect each stream to --to
    #[command(after_help = "Example: smux tunnel server --listen 0.0.0.0:7000 --to 127.0.0.1:80")]
    Server {
        /// Address to accept tunnel clients on (port 0: any free port)
        #[arg(long, value_name = "ADDR", value_parser = listen_addr)]
        listen: String,
        /// Address to connect each stream to
        #[arg(long, value_name = "ADDR", value_parser = peer_addr)]
        to: String,
        #[command(flatten)]
        common: Common,
    },
    /// The near end: accept local TCP connections, carry each to --server
    #[command(after_help = "Example: smux tunnel client --listen 127.0.0.1:8080 --server B:7000")]
    Client {
        /// Address to accept local TCP connections on (port 0: any free port)
        #[arg(long, value_name = "ADDR", value_parser = listen_addr)]
        listen: String,
        /// Address of the tunnel server
        #[arg(long, value_name = "ADDR", value_parser = peer_addr)]
        server: String,
        /// Longest wait between reconnects (the wait doubles from 100ms)
        #[arg(long, value_name = "D", default_value = "30s", value_parser = duration)]
        max_backoff: Duration,
        #[command(flatten)]
        common: Common,
    },
}

/// Options of both ends.
#[derive(clap::Args, Debug)]
struct Common {
    /// Per-stream window, e.g. 512K or 4M (the base protocol's is 512K)
    #[arg(long, value_name = "BYTES", value_parser = bytes)]
    window: Option<u32>,
    /// Keepalive interval
    #[arg(long, value_name = "D", default_value = "10s", value_parser = duration)]
    keepalive: Duration,
    /// End the session after this long without input from the peer
    #[arg(long, value_name = "D", default_value = "100s", value_parser = duration)]
    keepalive_timeout: Duration,
    /// Bound on each TCP connect
    #[arg(long, value_name = "D", default_value = "10s", value_parser = duration)]
    connect_timeout: Duration,
    /// On SIGINT or SIGTERM: let connections in flight finish for this long, then
    /// reset those left and exit (0: reset them at once)
    #[arg(long, value_name = "D", default_value = "10s", value_parser = duration_or_zero)]
    grace: Duration,
    /// Speak the base smux protocol only (no half-close, no growing windows); both
    /// ends fall back to it if either end has this
    #[arg(long)]
    no_extensions: bool,
}

/// What the ends need at run time.
#[derive(Debug, Clone)]
struct Options {
    config: Config,
    connect_timeout: Duration,
    max_backoff: Duration,
}

impl Common {
    /// The session configuration, or a usage error naming the flags at fault.
    fn options(&self, max_backoff: Duration) -> Result<Options, String> {
        let mut config = Config::default()
            .with_keepalive_interval(self.keepalive)
            .with_keepalive_timeout(self.keepalive_timeout)
            .with_extensions(!self.no_extensions);
        if let Some(w) = self.window {
            config = config.with_window(w).with_cfm_threshold((w / 2).max(1));
        }
        if self.keepalive_timeout <= self.keepalive {
            return Err(format!(
                "--keepalive-timeout ({:?}) must be longer than --keepalive ({:?})",
                self.keepalive_timeout, self.keepalive
            ));
        }
        config
            .validate()
            .map_err(|e| format!("invalid session settings: {e}"))?;
        Ok(Options {
            config,
            connect_timeout: self.connect_timeout,
            max_backoff,
        })
    }
}

/// Entry point of `smux tunnel`.
pub fn main(args: Args) -> ExitCode {
    let (side, listen, peer, common, max_backoff) = match args.end {
        End::Server {
            listen, to, common, ..
        } => ("server", listen, to, common, Duration::ZERO),
        End::Client {
            listen,
            server,
            max_backoff,
            common,
        } => ("client", listen, server, common, max_backoff),
    };
    let opts = match common.options(max_backoff) {
        Ok(o) => o,
        Err(e) => return crate::usage_error(&["tunnel", side], e),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let grace = common.grace;
    let code = rt.block_on(async {
        // Before binding: a signal right after "listening on" must find it in place.
        let signals = match shutdown::Signals::new() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot listen for signals: {e}");
                return ExitCode::FAILURE;
            }
        };
        // Bind first: an end that cannot listen has connected nowhere.
        let tcp = match TcpListener::bind(&listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {listen} (--listen): {e}");
                return ExitCode::FAILURE;
            }
        };
        let sh = Shutdown::default();
        if side == "server" {
            let listener = match smux_tokio::Listener::from_tcp(tcp, opts.config.clone()) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let work = server::run(listener, peer, opts, sh.clone());
            shutdown::run(work, &sh, signals, grace).await
        } else {
            let work = client::run(tcp, peer, opts, sh.clone());
            shutdown::run(work, &sh, signals, grace).await
        }
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct T {
        #[command(flatten)]
        args: Args,
    }

    fn parse(v: &[&str]) -> Result<Args, clap::Error> {
        T::try_parse_from(std::iter::once("tunnel").chain(v.iter().copied())).map(|t| t.args)
    }

    #[test]
    fn required_options_and_settings() {
        assert!(parse(&["server", "--listen", "127.0.0.1:0"]).is_err());
        assert!(parse(&["server", "--to", "127.0.0.1:1"]).is_err());
        assert!(parse(&["client", "--listen", "127.0.0.1:0", "--to", "127.0.0.1:1"]).is_err());
        let a = parse(&[
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            "127.0.0.1:1",
            "--window",
            "1M",
        ])
        .unwrap();
        let End::Client { common, .. } = a.end else {
            panic!("{a:?}")
        };
        let o = common.options(Duration::from_secs(1)).unwrap();
        assert_eq!(o.config.window(), 1 << 20);
        assert!(o.config.extensions());
        let a = parse(&[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--to",
            "localhost:80",
            "--no-extensions",
            "--keepalive",
            "5s",
            "--keepalive-timeout",
            "5s",
        ])
        .unwrap();
        let End::Server { common, .. } = a.end else {
            panic!("{a:?}")
        };
        assert!(common.no_extensions);
        let e = common.options(Duration::ZERO).unwrap_err();
        assert!(e.contains("--keepalive-timeout"), "{e}");
    }
}
