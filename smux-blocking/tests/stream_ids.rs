//! Stream IDs: recycled past 65,536 streams, and a clear error when all are in use.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{bounded, config, pair_with};
use smux_blocking::Config;

fn server_config(ext: bool) -> Config {
    config(ext).with_accept_backlog(70_000)
}

both_modes!(seventy_thousand_streams_one_after_another);
fn seventy_thousand_streams_one_after_another(ext: bool) {
    bounded(Duration::from_secs(180), move || {
        const TOTAL: usize = 70_000;
        let (c, s) = pair_with(config(ext), server_config(ext));
        let server = thread::spawn(move || {
            // Accept each stream and close it at once.
            for _ in 0..TOTAL {
                drop(s.accept().expect("accept"));
            }
            s
        });
        let mut max_id = 0;
        for i in 0..TOTAL {
            let st = c.open().expect("open");
            max_id = max_id.max(st.id().number());
            drop(st);
            // Keep a bounded number of close handshakes in flight.
            if i % 1024 == 1023 {
                while c.stats().streams > 4096 {
                    thread::sleep(Duration::from_millis(1));
                }
            }
        }
        let s = server.join().expect("server");
        for _ in 0..5000 {
            if c.stats().streams == 0 && s.stats().streams == 0 {
                break;
            }
            thread::sleep(Duration::from_millis(2));
        }
        assert_eq!((c.stats().streams, s.stats().streams), (0, 0));
        println!("{TOTAL} streams opened and closed; highest ID used: {max_id}");
        // More streams than IDs went through the session: IDs were recycled.
        assert!(c.end_reason().is_none());
        let mut st = c.open().expect("open after recycling");
        st.write_all(b"still works").unwrap();
    });
}

both_modes!(all_ids_in_use_then_a_clear_error);
fn all_ids_in_use_then_a_clear_error(ext: bool) {
    bounded(Duration::from_secs(180), move || {
        let (c, s) = pair_with(config(ext), server_config(ext));
        let (tx, rx) = mpsc::channel::<u16>();
        let server = thread::spawn(move || {
            // Accept and hold every stream.
            let mut held = HashMap::new();
            for _ in 0..65_536 {
                let st = s.accept().expect("accept");
                held.insert(st.id().number(), st);
            }
            // Close the one the client closed, so its ID is freed on both ends.
            let id = rx.recv().expect("id to close");
            let mut st = held.remove(&id).expect("held");
            let mut rest = Vec::new();
            st.read_to_end(&mut rest).expect("end of file");
            drop(st);
            let again = s.accept().expect("accept again");
            assert_eq!(again.id().number(), id);
            held.insert(again.id().number(), again);
            let _ = rx.recv();
            held.len()
        });
        let mut open = Vec::with_capacity(65_536);
        for _ in 0..65_536 {
            open.push(c.open().expect("open"));
        }
        let err = c.open().expect_err("the 65,537th open must fail");
        assert!(err.to_string().contains("65536 stream IDs"), "error: {err}");
        println!("open #65537: {err}");
        // Closing one stream frees its ID once the peer answered the FIN.
        let st = open.pop().unwrap();
        let id = st.id();
        drop(st);
        tx.send(id.number()).unwrap();
        let again = loop {
            match c.open() {
                Ok(st) => break st,
                Err(_) => thread::sleep(Duration::from_millis(1)),
            }
        };
        // The same number, a new stream: the old handle's ID names nothing any more.
        assert_eq!(again.id().number(), id.number());
        assert_ne!(again.id(), id);
        tx.send(0).unwrap();
        assert_eq!(server.join().expect("server"), 65_536);
    });
}
