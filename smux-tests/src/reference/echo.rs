//! Our end of the simple scenarios: an echo server on any adapter, and an echoing
//! client stream that checks what comes back by length and checksum.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::adapter::{Adapter, Lst, Sess, Strm};
use crate::{lock, pattern, Checksum};

/// How long one read or write of an echo may wait.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// An echo server of one adapter on a loopback port: every stream of every session
/// is copied back until its end-of-file, then closed. Stops when dropped.
pub struct EchoServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    sessions: Arc<Mutex<Vec<Arc<dyn Sess>>>>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// Starts one on `adapter` with `config`.
    pub fn start(adapter: Adapter, config: smux_proto::Config) -> EchoServer {
        let listener = adapter.listen(config).expect("listen");
        let addr = listener.addr();
        let stop = Arc::new(AtomicBool::new(false));
        let sessions: Arc<Mutex<Vec<Arc<dyn Sess>>>> = Arc::default();
        let (s, all) = (stop.clone(), sessions.clone());
        let thread = std::thread::spawn(move || accept_loop(&*listener, &s, &all));
        EchoServer {
            addr,
            stop,
            sessions,
            thread: Some(thread),
        }
    }

    /// Where to connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The sessions accepted so far.
    pub fn sessions(&self) -> Vec<Arc<dyn Sess>> {
        lock(&self.sessions).clone()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for s in lock(&self.sessions).drain(..) {
            s.close();
        }
    }
}

fn accept_loop(listener: &dyn Lst, stop: &AtomicBool, sessions: &Mutex<Vec<Arc<dyn Sess>>>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(session) = listener.accept(Duration::from_millis(100)) else {
            continue;
        };
        let session: Arc<dyn Sess> = Arc::from(session);
        lock(sessions).push(session.clone());
        std::thread::spawn(move || loop {
            match session.accept(Duration::from_millis(200)) {
                Ok(stream) => {
                    std::thread::spawn(move || echo_stream(stream));
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                Err(_) => return, // the session ended
            }
        });
    }
}

/// Copies `stream` back to its peer until end-of-file or an error, then closes it.
pub fn echo_stream(mut stream: Strm) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.rd.read(&mut buf, Instant::now() + PATIENCE) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream
                    .write_all(&buf[..n], Instant::now() + PATIENCE)
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Sends `prefix` and then `len` bytes of pattern `seed` on `stream` (from a second
/// thread) while reading the echo of the pattern back; returns the echo's checksum.
/// The stream is closed afterwards. The peer must echo what follows `prefix` and
/// nothing else.
pub fn echo_check(stream: Strm, prefix: &[u8], seed: u64, len: u64) -> io::Result<Checksum> {
    let Strm { mut rd, mut wr, .. } = stream;
    let prefix = prefix.to_vec();
    let writer = std::thread::spawn(move || -> io::Result<()> {
        let deadline = Instant::now() + PATIENCE;
        wr.write_all(&prefix, deadline).map_err(|p| p.error)?;
        let mut buf = vec![0u8; 32 * 1024];
        let mut off = 0;
        while off < len {
            let n = (len - off).min(buf.len() as u64) as usize;
            pattern(seed, off, &mut buf[..n]);
            wr.write_all(&buf[..n], deadline).map_err(|p| p.error)?;
            off += n as u64;
        }
        Ok(())
    });
    let mut sum = Checksum::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + PATIENCE;
    let read = (|| -> io::Result<()> {
        while sum.len() < len {
            let want = (len - sum.len()).min(buf.len() as u64) as usize;
            match rd.read(&mut buf[..want], deadline)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => sum.update(&buf[..n]),
            }
        }
        Ok(())
    })();
    let written = writer.join().expect("writer thread");
    read?;
    written?;
    Ok(sum)
}
