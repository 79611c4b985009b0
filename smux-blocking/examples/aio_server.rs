//! Event-driven use ("aio"): one thread serves every stream of a session with a
//! readiness poller and non-blocking streams (an echo service).
//!
//! Per session the process runs three threads: the session's reader and writer, and
//! this example's event loop, whether the session carries ten streams or 10,000.
//!
//! `cargo run --release -p smux-blocking --example aio_server -- [addr]` (default
//! `127.0.0.1:7000`), then `cargo run --release -p smux-blocking --example aio_client`.

use std::io::{self, ErrorKind, Read, Write};
use std::thread;

use smux_blocking::{Config, Events, Interest, Listener, Poller, Session, Stream};

/// The token of accept events; stream tokens are slot numbers.
const ACCEPT: usize = usize::MAX;

/// One echoed stream: bytes read but not yet written back wait in `pending`.
struct Conn {
    stream: Stream,
    pending: Vec<u8>,
    sent: usize,
    eof: bool,
    /// The interest it is registered with.
    interest: Interest,
}

impl Conn {
    /// Moves as many bytes as possible without waiting. Returns true when the stream
    /// is finished (echoed to end-of-file, or failed).
    fn advance(&mut self, buf: &mut [u8]) -> bool {
        loop {
            // Write back what is pending first.
            while self.sent < self.pending.len() {
                match (&self.stream).write(&self.pending[self.sent..]) {
                    Ok(n) => self.sent += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                    Err(_) => return true,
                }
            }
            self.pending.clear();
            self.sent = 0;
            if self.eof {
                return true;
            }
            match (&self.stream).read(buf) {
                Ok(0) => self.eof = true,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(_) => return true,
            }
        }
    }

    /// Reading while nothing is pending, writing while something is.
    fn wanted(&self) -> Interest {
        if self.pending.is_empty() {
            Interest::READABLE
        } else {
            Interest::WRITABLE
        }
    }
}

/// The event loop of one session.
fn serve(session: Session) {
    let poller = Poller::new(&session);
    poller.watch_accept(ACCEPT);
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let (mut served, mut live, mut peak) = (0u64, 0usize, 0usize);
    loop {
        if poller.wait(&mut events, None).is_err() {
            break;
        }
        for ev in &events {
            if ev.is_accept() {
                loop {
                    match session.try_accept() {
                        Ok(Some(stream)) => {
                            let _ = stream.set_nonblocking(true);
                            let token = free.pop().unwrap_or_else(|| {
                                conns.push(None);
                                conns.len() - 1
                            });
                            if poller.register(&stream, token, Interest::READABLE).is_ok() {
                                conns[token] = Some(Conn {
                                    stream,
                                    pending: Vec::new(),
                                    sent: 0,
                                    eof: false,
                                    interest: Interest::READABLE,
                                });
                                live += 1;
                                peak = peak.max(live);
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {
                            eprintln!("session ended ({served} streams served, {peak} at once)");
                            return;
                        }
                    }
                }
                continue;
            }
            let token = ev.token();
            let Some(conn) = conns[token].as_mut() else {
                continue;
            };
            if conn.advance(&mut buf) {
                conns[token] = None; // dropping the stream closes it
                free.push(token);
                live -= 1;
                served += 1;
                continue;
            }
            let want = conn.wanted();
            if want != conn.interest {
                conn.interest = want;
                let _ = poller.reregister(&conn.stream, token, want);
            }
        }
    }
    eprintln!("session ended ({served} streams served, {peak} at once)");
}

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7000".into());
    // A client may open thousands of streams at once: let them all wait for accept.
    let config = Config::default().with_accept_backlog(65_536);
    let listener = Listener::bind(&addr, config)?;
    eprintln!("aio echo server on {}", listener.local_addr()?);
    for session in listener.incoming() {
        match session {
            Ok(s) => {
                thread::spawn(move || serve(s));
            }
            Err(e) => eprintln!("accept failed: {e}"),
        }
    }
    Ok(())
}
