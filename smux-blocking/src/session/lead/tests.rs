//! Who reads the socket while a stream call waits.

use super::super::*;
use crate::transport::Transport;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

/// A read half that counts the reads that returned bytes: on the session's reader
/// thread, and on any other thread.
struct Counted {
    io: Box<dyn Read + Send>,
    counts: Arc<[AtomicUsize; 2]>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.io.read(buf)?;
        let on_reader = thread::current().name() == Some("smux-reader");
        if n > 0 {
            self.counts[usize::from(on_reader)].fetch_add(1, SeqCst);
        }
        Ok(n)
    }
}

/// Request and answer on one stream, while another call (an accept) waits on the
/// answering end: the answering thread reads its requests from the socket itself.
/// The reader thread used to keep the read side for the waiting accept, and then read
/// every request and hand it over, a thread wake-up more per request.
#[test]
fn a_lone_stream_reader_reads_its_input_while_another_call_waits() {
    // Which thread ends up reading depends on timing: a few sessions, so that the
    // old hand-off would show in at least one.
    for _ in 0..3 {
        requests_and_answers();
    }
}

fn requests_and_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let dialed = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    dialed.set_nodelay(true).unwrap();
    accepted.set_nodelay(true).unwrap();
    let client = Session::new(dialed, Config::default(), Role::Dialer).unwrap();
    let mut parts = accepted.into_parts().unwrap();
    let counts = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let io = std::mem::replace(&mut parts.reader, Box::new(io::empty()));
    parts.reader = Box::new(Counted {
        io,
        counts: counts.clone(),
    });
    let server = Session::new(parts, Config::default(), Role::Acceptor).unwrap();

    let mut asker = client.open().unwrap();
    asker.write_all(&[1; 64]).unwrap();
    let mut answerer = server.accept_timeout(Duration::from_secs(5)).unwrap();
    let waiting = server.clone();
    let accept = thread::spawn(move || waiting.accept_timeout(Duration::from_secs(20)));
    let echo = thread::spawn(move || {
        let mut buf = [0; 64];
        while answerer.read_exact(&mut buf).is_ok() && answerer.write_all(&buf).is_ok() {}
    });
    let mut buf = [0; 64];
    let round = |asker: &mut Stream, buf: &mut [u8; 64]| {
        asker.read_exact(buf).unwrap();
        asker.write_all(buf).unwrap();
    };
    // Until the accept waits.
    for _ in 0..200 {
        round(&mut asker, &mut buf);
    }
    let before = [counts[0].load(SeqCst), counts[1].load(SeqCst)];
    for _ in 0..1000 {
        round(&mut asker, &mut buf);
    }
    let own = counts[0].load(SeqCst) - before[0];
    let relayed = counts[1].load(SeqCst) - before[1];
    client.close();
    server.close();
    echo.join().unwrap();
    assert!(accept.join().unwrap().is_err());
    assert!(
        relayed * 4 < own,
        "the reader thread made {relayed} of {} reads",
        own + relayed
    );
}
