//! Opens 10,000 streams on one session and drives them all from one thread with a
//! readiness poller: each stream sends a message and checks its echo.
//!
//! `cargo run --release -p smux-blocking --example aio_client -- \
//!     [addr] [streams] [bytes per stream]` (defaults `127.0.0.1:7000 10000 1024`),
//! against `aio_server` (or `echo_server`, which starts a thread per stream).

use std::io::{self, ErrorKind, Read, Write};
use std::time::Instant;

use smux_blocking::{connect, Config, Events, Interest, Stream};

struct Call {
    stream: Stream,
    sent: usize,
    received: usize,
    seed: u8,
}

fn byte(seed: u8, i: usize) -> u8 {
    seed.wrapping_add((i % 251) as u8)
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7000".into());
    let streams: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let bytes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1024);

    let session = connect(&addr, Config::default())?;
    let poller = session.poller();
    let start = Instant::now();
    let mut calls = Vec::with_capacity(streams);
    for token in 0..streams {
        let stream = session.open()?;
        stream.set_nonblocking(true)?;
        poller.register(&stream, token, Interest::READABLE | Interest::WRITABLE)?;
        calls.push(Some(Call {
            stream,
            sent: 0,
            received: 0,
            seed: token as u8,
        }));
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let (mut left, mut failed) = (streams, 0usize);
    while left > 0 {
        poller.wait(&mut events, None)?;
        for ev in &events {
            let token = ev.token();
            let Some(call) = calls[token].as_mut() else {
                continue;
            };
            let mut finished = false;
            if ev.is_writable() && call.sent < bytes {
                let n = (bytes - call.sent).min(buf.len());
                for (i, b) in buf[..n].iter_mut().enumerate() {
                    *b = byte(call.seed, call.sent + i);
                }
                match (&call.stream).write(&buf[..n]) {
                    Ok(k) => call.sent += k,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => finished = true,
                }
                if call.sent == bytes {
                    poller.reregister(&call.stream, token, Interest::READABLE)?;
                }
            }
            if ev.is_readable() && !finished {
                loop {
                    match (&call.stream).read(&mut buf) {
                        Ok(0) => {
                            finished = true;
                            break;
                        }
                        Ok(n) => {
                            let ok = buf[..n]
                                .iter()
                                .enumerate()
                                .all(|(i, b)| *b == byte(call.seed, call.received + i));
                            if !ok {
                                return Err(io::Error::new(ErrorKind::InvalidData, "bad echo"));
                            }
                            call.received += n;
                            if call.received == bytes {
                                finished = true;
                                break;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => {
                            finished = true;
                            break;
                        }
                    }
                }
            }
            if finished {
                if call.received != bytes {
                    failed += 1;
                }
                calls[token] = None;
                left -= 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} of {streams} streams echoed {bytes} bytes each from one thread in {secs:.2} s \
         ({:.0} streams/s)",
        streams - failed,
        streams as f64 / secs
    );
    // Deliver the FINs of the last streams before ending the session.
    drop(calls);
    session.shutdown();
    if failed > 0 {
        return Err(io::Error::other(format!("{failed} streams failed")));
    }
    Ok(())
}
