//! An echo server: every stream of every session gets its bytes back.
//!
//! Simple blocking style: a thread per session accepts, a thread per stream echoes.
//! (The library itself runs two threads per session whatever the number of streams;
//! see `aio_server.rs` for one thread serving every stream.)
//!
//! `cargo run --release -p smux-blocking --example blocking_echo_server -- [addr]`
//! (default `127.0.0.1:7000`), then `many_streams_client`.

use std::io;
use std::thread;

use smux_blocking::{Config, Listener};

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7000".into());
    let listener = Listener::bind(&addr, Config::default())?;
    eprintln!("echo server on {}", listener.local_addr()?);
    for session in listener.incoming() {
        let session = match session {
            Ok(s) => s,
            Err(e) => {
                eprintln!("accept failed: {e}");
                continue;
            }
        };
        thread::spawn(move || {
            while let Ok(stream) = session.accept() {
                thread::spawn(move || {
                    // Read and write the same stream through two shared references.
                    // A client may shut its write side (`Shutdown::Write`) and read
                    // the rest of its echo: the copy ends at that end-of-file, and
                    // dropping the stream then sends our FIN.
                    let _ = io::copy(&mut &stream, &mut &stream);
                });
            }
            eprintln!("session ended: {:?}", session.end_reason());
        });
    }
    Ok(())
}
