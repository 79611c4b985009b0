//! Two sessions connected in memory, moving data on a number of streams with no
//! sockets: the core's own throughput ceiling.
//!
//! `cargo run --release -p smux-proto --example pair -- [streams] [MiB per stream]`

use std::time::Instant;

use bytes::BytesMut;
use smux_proto::{Config, Role, Session, StreamId, Transmit};

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("a number"));
    let streams = args.next().unwrap_or(1);
    let mib = args.next().unwrap_or(1024);
    let total_per_stream = mib << 20;

    let now = Instant::now();
    let mut a = Session::new(Config::default(), Role::Dialer, now).expect("config");
    let mut b = Session::new(Config::default(), Role::Acceptor, now).expect("config");
    let ids: Vec<StreamId> = (0..streams).map(|_| a.open().expect("open")).collect();
    let chunk = vec![0x5Au8; 64 * 1024];
    let mut readbuf = vec![0u8; 64 * 1024];
    let mut sent = vec![0usize; streams];
    let mut received = 0usize;
    let (mut tx, mut wire, mut back) = (Transmit::new(), BytesMut::new(), BytesMut::new());
    let mut accepted = Vec::new();

    let start = Instant::now();
    while received < streams * total_per_stream {
        for (i, id) in ids.iter().enumerate() {
            let want = (total_per_stream - sent[i]).min(chunk.len());
            if want > 0 {
                sent[i] += a.write(*id, &chunk[..want]).unwrap_or(0);
            }
        }
        a.poll_transmit(now, &mut tx, 256 * 1024);
        tx.drain_into(&mut wire);
        b.handle_input(now, &mut wire);
        while let Some(id) = b.accept() {
            accepted.push(id);
        }
        for id in &accepted {
            while let Ok(n) = b.read(*id, &mut readbuf) {
                if n == 0 {
                    break;
                }
                received += n;
            }
        }
        b.poll_transmit(now, &mut tx, usize::MAX);
        tx.drain_into(&mut back);
        a.handle_input(now, &mut back);
        while a.poll_event().is_some() {}
        while b.poll_event().is_some() {}
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{streams} stream(s), {} MiB moved through two in-memory sessions in {secs:.3} s: {:.0} MB/s",
        received >> 20,
        received as f64 / secs / 1e6
    );
}
