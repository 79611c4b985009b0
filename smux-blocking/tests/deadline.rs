//! A `PartialWrite` turned into an `io::Error` keeps its count (issue 10, item 9).
//! The conformance suite (smux-tests) checks this and the other deadline behaviour for
//! every adapter; this regression test stays with the fix it guards.

mod common;

use std::io::{self, ErrorKind};
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
