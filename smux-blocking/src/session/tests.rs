//! Starting a session when one of its threads cannot start.

use super::*;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

/// A transport half that records when it is dropped; reading blocks until the
/// sender of `block` goes away (not while a test waits), like an idle socket.
struct Half {
    dropped: Arc<AtomicBool>,
    block: Option<mpsc::Receiver<()>>,
}

impl Drop for Half {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

impl Read for Half {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        if let Some(rx) = &self.block {
            let _ = rx.recv();
        }
        Ok(0)
    }
}

impl Write for Half {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn wait_for(flag: &AtomicBool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !flag.load(Ordering::SeqCst) {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
    true
}

fn failing_start(name: &'static str, transport: impl Transport) -> io::Error {
    FAIL_SPAWN.with(|f| f.set(Some(name)));
    let r = Session::new(transport, Config::default(), Role::Dialer);
    FAIL_SPAWN.with(|f| f.set(None));
    let e = r.expect_err("the session cannot start");
    assert!(e.to_string().contains(name), "{e}");
    e
}

/// Whichever thread fails to start, no thread is left holding a transport half
/// (a reader would block in `read` for good): both halves are dropped, even with
/// no closer to unblock them.
#[test]
fn a_failed_thread_start_leaves_no_thread_behind() {
    for name in ["reader", "writer"] {
        let (r, w) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (_tx, rx) = mpsc::channel();
        let reader = Half {
            dropped: r.clone(),
            block: Some(rx),
        };
        let writer = Half {
            dropped: w.clone(),
            block: None,
        };
        failing_start(name, Parts::new(reader, writer));
        assert!(wait_for(&r), "{name} failed: the read half is still held");
        assert!(wait_for(&w), "{name} failed: the write half is still held");
    }
}

/// Over loopback TCP: the peer sees the connection closed at once.
#[test]
fn a_failed_thread_start_closes_the_socket() {
    for name in ["reader", "writer"] {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut peer, _) = l.accept().unwrap();
        failing_start(name, ours);
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        match peer.read(&mut [0u8; 16]) {
            Ok(0) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("{name} failed: the socket stayed open ({other:?})"),
        }
    }
}
