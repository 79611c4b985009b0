//! Honest write deadlines: a write that hits its deadline reports exactly what was
//! accepted; resending exactly the rest delivers every byte once and in order.

mod common;

use std::io::{self, ErrorKind, Read};
use std::thread;
use std::time::{Duration, Instant};

use common::{bounded, pair, Fnv, Rng};
use smux_blocking::PartialWrite;

const TOTAL: usize = 4 * 1024 * 1024;

both_modes!(random_short_write_deadlines_lose_and_duplicate_nothing);
fn random_short_write_deadlines_lose_and_duplicate_nothing(ext: bool) {
    bounded(Duration::from_secs(120), move || {
        let (c, s) = pair(ext);
        let mut data = vec![0u8; TOTAL];
        Rng(42).fill(&mut data);
        let mut want = Fnv::default();
        want.update(&data);

        let reader = thread::spawn(move || {
            let mut st = s.accept().expect("accept");
            // A slow reader, so the window fills and deadlines hit.
            let mut buf = vec![0u8; 4096];
            let mut got = Fnv::default();
            let mut n_total = 0usize;
            let mut reads = 0u64;
            loop {
                let n = st.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                got.update(&buf[..n]);
                n_total += n;
                reads += 1;
                if reads % 4 == 0 {
                    thread::sleep(Duration::from_micros(200));
                }
            }
            (n_total, got, s)
        });

        let mut st = c.open().expect("open");
        let mut rng = Rng(7);
        let (mut pos, mut timeouts, mut partial, mut writes) = (0usize, 0u64, 0u64, 0u64);
        while pos < TOTAL {
            let len = (rng.range(1, 1 << 20) as usize).min(TOTAL - pos);
            let deadline = Duration::from_micros(rng.range(200, 4000));
            let chunk = &data[pos..pos + len];
            writes += 1;
            let r = match rng.next_u64() % 2 {
                0 => {
                    // std `Write` with a write timeout: returns once something was
                    // accepted.
                    st.set_write_timeout(Some(deadline)).unwrap();
                    std::io::Write::write(&mut &st, chunk)
                }
                // All or a count: the error carries what was accepted.
                _ => match st.write_all_before(chunk, Instant::now() + deadline) {
                    Ok(()) => Ok(len),
                    Err(p) if p.is_timeout() && p.written() > 0 => Ok(p.written()),
                    Err(p) => Err(p.into_error()),
                },
            };
            match r {
                Ok(n) => {
                    assert!(n > 0 && n <= len);
                    if n < len {
                        partial += 1;
                    }
                    pos += n; // resend exactly the rest
                }
                Err(e) if e.kind() == ErrorKind::TimedOut => timeouts += 1,
                Err(e) => panic!("write failed: {e}"),
            }
        }
        drop(st);
        let (n_total, got, s) = reader.join().expect("reader");
        println!(
            "{writes} writes with random deadlines: {partial} partial, {timeouts} timed out \
             with nothing accepted"
        );
        assert_eq!(n_total, TOTAL, "byte count");
        assert_eq!(got, want, "every byte once and in order");
        assert!(c.end_reason().is_none() && s.end_reason().is_none());
    });
}

both_modes!(partial_write_keeps_its_count_as_an_io_error);
/// `?` in a function returning `io::Result` turns a `PartialWrite` into an
/// `io::Error`: the count must survive, as the inner error (as in the async adapters).
fn partial_write_keeps_its_count_as_an_io_error(ext: bool) {
    bounded(Duration::from_secs(30), move || {
        let (c, s) = pair(ext);
        let mut st = c.open().expect("open");
        // Nobody reads: the window fills and the deadline passes part-way.
        let data = vec![7u8; 4 * c.config().window() as usize];
        let p = st
            .write_all_before(&data, Instant::now() + Duration::from_millis(300))
            .expect_err("the window cannot take it all");
        let written = p.written();
        assert!(p.is_timeout() && written > 0 && written < data.len(), "{p}");
        let e = io::Error::from(p);
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        let inner = e.get_ref().and_then(|i| i.downcast_ref::<PartialWrite>());
        assert_eq!(inner.map(PartialWrite::written), Some(written), "{e:?}");
        assert!(e.to_string().contains(&written.to_string()), "{e}");
        drop(s);
    });
}
