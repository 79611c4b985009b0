//! A `PartialWrite` turned into an `io::Error` keeps its count (issue 10, item 9).
//! The conformance suite (smux-tests) checks this and the other deadline behaviour for
//! every adapter; this regression test stays with the fix it guards.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use common::{bounded, pair};
use smux_blocking::PartialWrite;

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

both_modes!(a_read_that_reads_the_socket_itself_ends_at_its_deadline);
/// A blocked read that waits on the socket itself (it leads input, as a read right
/// after an exchange does) must still end at its deadline, and when another handle
/// closes the stream, long before the next keepalive (10 s) brings input.
fn a_read_that_reads_the_socket_itself_ends_at_its_deadline(ext: bool) {
    bounded(Duration::from_secs(5), move || {
        let (c, s) = pair(ext);
        let mut st = c.open().expect("open");
        st.write_all(b"x").expect("write");
        let mut peer = s.accept().expect("accept");
        let echo = |peer: &mut smux_blocking::Stream| {
            let mut b = [0; 1];
            peer.read_exact(&mut b).and_then(|()| peer.write_all(&b))
        };
        echo(&mut peer).expect("echo");
        st.read_exact(&mut [0; 1]).expect("answer");
        st.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let e = st.read(&mut [0; 8]).expect_err("nothing comes");
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        st.set_read_timeout(None).expect("no timeout");
        st.write_all(b"y").expect("write");
        echo(&mut peer).expect("echo");
        st.read_exact(&mut [0; 1]).expect("answer");
        let other = st.try_clone().expect("clone");
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            other.close();
        });
        let e = st.read(&mut [0; 8]).expect_err("closed here");
        assert_eq!(e.kind(), ErrorKind::NotConnected, "{e}");
        closer.join().expect("closer");
    });
}
