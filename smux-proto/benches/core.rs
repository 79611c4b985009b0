//! Micro-benchmarks of the core alone (no sockets): frame encode/decode, and two
//! sessions connected in memory moving data. The last figure is the core's ceiling;
//! memcpy bandwidth on the same machine is printed beside it for scale.
//!
//! `cargo bench -p smux-proto` (a plain harness: no external benchmark crate).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use smux_proto::frame::Decoder;
use smux_proto::{Cmd, Config, Header, Role, Session, StreamId, Transmit};

/// Runs `f` repeatedly for about `secs` seconds, five times, and returns the median of
/// units per second, where `f` returns the units it processed.
fn measure(secs: f64, mut f: impl FnMut() -> u64) -> f64 {
    let mut rates = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let mut units = 0u64;
        while start.elapsed() < Duration::from_secs_f64(secs) {
            units += f();
        }
        rates.push(units as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    rates[2]
}

fn main() {
    // `cargo test --benches` passes --bench-less flags; run quickly in that case.
    let quick = !std::env::args().any(|a| a == "--bench");
    let secs = if quick { 0.01 } else { 0.4 };

    let src = vec![1u8; 64 * 1024];
    let mut dst = vec![0u8; 64 * 1024];
    let memcpy = measure(secs, || {
        for _ in 0..64 {
            dst.copy_from_slice(black_box(&src));
        }
        black_box(&dst);
        64 * src.len() as u64
    });
    println!("memcpy 64 KiB:                 {:>8.0} MB/s", memcpy / 1e6);

    let mut wire = BytesMut::new();
    let hdr = Header::new(Cmd::Cfm, 7, 1234);
    let encode = measure(secs, || {
        wire.clear();
        for _ in 0..1024 {
            black_box(hdr).encode(&mut wire);
        }
        1024
    });
    println!(
        "encode header:                 {:>8.1} M frames/s",
        encode / 1e6
    );

    let mut frames = BytesMut::new();
    for i in 0..1024u16 {
        Header::new(Cmd::Psh, i, 64).encode(&mut frames);
        frames.extend_from_slice(&[0u8; 64]);
    }
    let decode = measure(secs, || {
        let mut buf = frames.clone();
        let mut dec = Decoder::new(65536);
        let mut n = 0;
        while let Ok(Some(f)) = dec.decode(&mut buf) {
            black_box(f);
            n += 1;
        }
        n
    });
    println!(
        "decode 64-byte PSH frames:     {:>8.1} M frames/s",
        decode / 1e6
    );

    for streams in [1usize, 64] {
        let rate = pair_throughput(streams, secs);
        println!(
            "two sessions in memory, {streams:>2} stream(s): {:>8.0} MB/s ({:.2} x memcpy)",
            rate / 1e6,
            rate / memcpy
        );
    }
}

/// Bytes per second moved from one session to the other through an in-memory link,
/// with the receiver reading everything (one copy in, one copy across, one copy out).
fn pair_throughput(streams: usize, secs: f64) -> f64 {
    let now = Instant::now();
    let mut a = Session::new(Config::default(), Role::Dialer, now).unwrap();
    let mut b = Session::new(Config::default(), Role::Acceptor, now).unwrap();
    let ids: Vec<StreamId> = (0..streams).map(|_| a.open().unwrap()).collect();
    let chunk = vec![7u8; 64 * 1024];
    let mut readbuf = vec![0u8; 64 * 1024];
    let (mut tx, mut wire, mut back) = (Transmit::new(), BytesMut::new(), BytesMut::new());
    let mut step = move || {
        for id in &ids {
            let _ = a.write(*id, &chunk);
        }
        a.poll_transmit(now, &mut tx, 256 * 1024);
        tx.drain_into(&mut wire);
        b.handle_input(now, &mut wire);
        while b.accept().is_some() {}
        let mut moved = 0u64;
        for id in &ids {
            while let Ok(n) = b.read(*id, &mut readbuf) {
                if n == 0 {
                    break;
                }
                moved += n as u64;
            }
        }
        b.poll_transmit(now, &mut tx, usize::MAX);
        tx.drain_into(&mut back);
        a.handle_input(now, &mut back);
        while a.poll_event().is_some() {}
        while b.poll_event().is_some() {}
        moved
    };
    measure(secs, &mut step)
}
