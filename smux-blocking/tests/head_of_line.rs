//! Head-of-line freedom: a stream that is never read, while its peer keeps writing,
//! does not stall the other streams of the session.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{bounded, pair};
use smux_blocking::Session;

const BULK_STREAMS: usize = 4;
const BULK_BYTES: usize = 2 * 1024 * 1024;

/// Opens `BULK_STREAMS` streams; the server sends `BULK_BYTES` on each; returns the
/// client's receive throughput in MiB/s.
fn bulk_round(c: &Session, s: &Session) -> f64 {
    let start = Instant::now();
    let mut readers = Vec::new();
    for _ in 0..BULK_STREAMS {
        let mut st = c.open().expect("open");
        st.write_all(b"go").expect("request");
        readers.push(thread::spawn(move || {
            let mut got = 0usize;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = st.read(&mut buf).expect("bulk read");
                if n == 0 {
                    break;
                }
                assert!(buf[..n].iter().all(|b| *b == 0xB5));
                got += n;
            }
            got
        }));
    }
    let mut writers = Vec::new();
    for _ in 0..BULK_STREAMS {
        let mut st = s.accept().expect("accept bulk");
        writers.push(thread::spawn(move || {
            let mut req = [0u8; 2];
            st.read_exact(&mut req).expect("request");
            let chunk = vec![0xB5u8; 64 * 1024];
            for _ in 0..BULK_BYTES / chunk.len() {
                st.write_all(&chunk).expect("bulk write");
            }
        }));
    }
    for w in writers {
        w.join().expect("writer");
    }
    for r in readers {
        assert_eq!(r.join().expect("reader"), BULK_BYTES);
    }
    let secs = start.elapsed().as_secs_f64();
    (BULK_STREAMS * BULK_BYTES) as f64 / (1 << 20) as f64 / secs
}

both_modes!(an_unread_stream_does_not_block_the_others);
fn an_unread_stream_does_not_block_the_others(ext: bool) {
    bounded(Duration::from_secs(120), move || {
        let (c, s) = pair(ext);
        let without = bulk_round(&c, &s);

        // The stalled stream: the server writes into it without end; the client never
        // reads it.
        let stalled = c.open().expect("open stalled");
        (&stalled).write_all(b"s").expect("announce");
        let peer = s.accept().expect("accept stalled");
        let written = Arc::new(AtomicU64::new(0));
        let w = written.clone();
        let stall_writer = thread::spawn(move || {
            let chunk = vec![0x55u8; 16 * 1024];
            loop {
                match (&peer).write(&chunk) {
                    Ok(n) => {
                        w.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) => return e.kind(),
                }
            }
        });
        // Wait until the stalled stream's window is full.
        while written.load(Ordering::Relaxed) < 512 * 1024 {
            thread::sleep(Duration::from_millis(1));
        }

        let with = bulk_round(&c, &s);
        let stuck_at = written.load(Ordering::Relaxed);
        println!(
            "HOL: {BULK_STREAMS} streams x {} MiB: {without:.1} MiB/s without a stalled \
             stream, {with:.1} MiB/s with one (stalled writer stopped at {stuck_at} bytes = \
             one window)",
            BULK_BYTES >> 20
        );
        assert_eq!(
            stuck_at,
            512 * 1024,
            "the stalled writer exceeded its window"
        );
        assert!(c.end_reason().is_none() && s.end_reason().is_none());

        // Closing the stalled stream frees its writer with an error.
        drop(stalled);
        assert_eq!(
            stall_writer.join().expect("stall writer"),
            ErrorKind::BrokenPipe
        );
    });
}
