//! Peer detection with `is_smux` over loopback TCP.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use common::{bounded, config};
use smux_blocking::{connect, is_smux, is_smux_at, Role, Session};
use smux_proto::{verify_code, Header};

const SHORT: Duration = Duration::from_millis(200);

both_modes!(true_against_our_session_then_the_connection_is_used);
fn true_against_our_session_then_the_connection_is_used(ext: bool) {
    bounded(Duration::from_secs(30), move || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let client = thread::spawn(move || {
            // A dialling session sends nothing before it has to, so the probe's answer
            // is the first thing the server reads.
            let c = connect(addr, config(ext)).unwrap();
            let mut st = c.accept().expect("accept the server's stream");
            let mut buf = [0u8; 5];
            st.read_exact(&mut buf).unwrap();
            st.write_all(&buf).unwrap();
            c
        });
        let (mut tcp, _) = l.accept().unwrap();
        assert!(is_smux(&mut tcp, Duration::from_secs(5)).expect("probe"));
        assert_eq!(tcp.read_timeout().unwrap(), None, "read timeout restored");
        let s = Session::new(tcp, config(ext), Role::Acceptor).unwrap();
        let mut st = s.open().unwrap();
        st.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        st.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        let c = client.join().unwrap();
        assert!(c.end_reason().is_none() && s.end_reason().is_none());
    });
}

#[test]
fn false_against_an_echo_server() {
    bounded(Duration::from_secs(30), move || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            let (mut tcp, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            while let Ok(n) = tcp.read(&mut buf) {
                if n == 0 || tcp.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        let mut tcp = TcpStream::connect(addr).unwrap();
        assert!(!is_smux(&mut tcp, Duration::from_secs(5)).expect("probe"));
    });
}

#[test]
fn false_against_a_silent_server_after_the_timeout() {
    bounded(Duration::from_secs(30), move || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = thread::spawn(move || {
            let (mut tcp, _) = l.accept().unwrap();
            let mut buf = Vec::new();
            let _ = tcp.read_to_end(&mut buf);
        });
        assert!(!is_smux_at(addr, SHORT).expect("probe"));
        t.join().unwrap();
    });
}

#[test]
fn err_against_a_closed_port() {
    bounded(Duration::from_secs(30), move || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(is_smux_at(addr, SHORT).is_err());
    });
}

#[test]
fn reads_exactly_the_answer_and_nothing_more() {
    bounded(Duration::from_secs(30), move || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            // A peer that answers correctly and sends more right behind, in one write.
            let (mut tcp, _) = l.accept().unwrap();
            let mut ch = [0u8; 7];
            tcp.read_exact(&mut ch).unwrap();
            let h = Header::parse(&ch).expect("a header");
            let (a, b) = verify_code(h.id, h.length);
            let mut out = Header::new(h.cmd, a, b).to_bytes().to_vec();
            out.extend_from_slice(b"and the rest");
            tcp.write_all(&out).unwrap();
            let mut sink = Vec::new();
            let _ = tcp.read_to_end(&mut sink);
        });
        let mut tcp = TcpStream::connect(addr).unwrap();
        assert!(is_smux(&mut tcp, Duration::from_secs(5)).expect("probe"));
        let mut rest = [0u8; 12];
        tcp.read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b"and the rest");
    });
}

#[test]
fn a_peer_that_closes_or_resets_never_panics() {
    bounded(Duration::from_secs(30), move || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            for _ in 0..2 {
                let (mut tcp, _) = l.accept().unwrap();
                // Three bytes, then close.
                let _ = tcp.write_all(&[4, 0, 0]);
            }
        });
        for _ in 0..2 {
            let mut tcp = TcpStream::connect(addr).unwrap();
            // Either "not smux" (end of file before 7 bytes) or an I/O error (reset).
            if let Ok(v) = is_smux(&mut tcp, Duration::from_secs(5)) {
                assert!(!v);
            }
        }
    });
}
