//! A client that opens many streams on one session and checks the echo of each.
//!
//! A few worker threads each keep their share of the streams open at once and move
//! data on them in turns (write a chunk, read its echo), so many streams are live
//! together without a thread each.
//!
//! `cargo run --release -p smux-blocking --example blocking_many_streams_client -- \
//!     [addr] [streams] [bytes per stream]` (defaults `127.0.0.1:7000 1000 65536`),
//! against `echo_server` or `aio_server`.

use std::io::{self, Read, Write};
use std::thread;
use std::time::Instant;

use smux_blocking::{connect, Config, Stream};

const WORKERS: usize = 4;
const CHUNK: usize = 16 * 1024;

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7000".into());
    let streams: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let bytes: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(64 * 1024);

    let session = connect(&addr, Config::default())?;
    let start = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let session = session.clone();
            let mine = streams / WORKERS + usize::from(w < streams % WORKERS);
            thread::spawn(move || -> io::Result<()> {
                let mut open: Vec<Stream> = Vec::with_capacity(mine);
                for _ in 0..mine {
                    open.push(session.open()?);
                }
                let mut chunk = vec![0u8; CHUNK];
                let mut back = vec![0u8; CHUNK];
                let mut done = 0;
                while done < bytes {
                    let n = CHUNK.min(bytes - done);
                    for (i, st) in open.iter_mut().enumerate() {
                        chunk[..n].fill((i + done) as u8);
                        st.write_all(&chunk[..n])?;
                    }
                    for (i, st) in open.iter_mut().enumerate() {
                        st.read_exact(&mut back[..n])?;
                        if back[..n].iter().any(|b| *b != (i + done) as u8) {
                            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad echo"));
                        }
                    }
                    done += n;
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker panicked")?;
    }
    let secs = start.elapsed().as_secs_f64();
    let total = 2.0 * (streams * bytes) as f64 / (1 << 20) as f64;
    println!(
        "{streams} streams echoed {bytes} bytes each: {total:.1} MiB both ways in {secs:.2} s \
         ({:.1} MiB/s)",
        total / secs
    );
    session.shutdown();
    Ok(())
}
