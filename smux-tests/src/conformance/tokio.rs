//! smux-tokio behind the conformance shape: every call blocks on a shared two-worker
//! Tokio runtime, which also runs the sessions' drivers.

use std::any::TypeId;
use std::future::{poll_fn, Future};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use ::tokio::runtime::Runtime;
use smux_proto::{Config, EndReason, PartialWrite, Role, Stats, StreamId};
use smux_tokio::{ReadHalf, WriteHalf};

use super::{gap, given_up, lock, Interrupter};

/// smux-tokio.
#[derive(Debug)]
pub struct Tokio;

const NAME: &str = "smux-tokio";

fn rt() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        ::tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

fn block_on<F: Future>(f: F) -> F::Output {
    rt().block_on(f)
}

/// A smux-tokio session.
#[derive(Clone, Debug)]
pub struct Session(smux_tokio::Session);

/// A smux-tokio listener.
#[derive(Debug)]
pub struct Listener(smux_tokio::Listener);

/// A smux-tokio stream, split so that two threads can use it.
#[derive(Debug)]
pub struct Stream {
    id: StreamId,
    rd: Mutex<Option<ReadHalf>>,
    wr: Mutex<Option<WriteHalf>>,
}

/// A half of the stream this shim no longer holds.
fn consumed() -> io::Error {
    gap(NAME, "the stream's half is gone")
}

impl Stream {
    fn new(s: smux_tokio::Stream) -> Stream {
        let id = s.id();
        let (r, w) = s.into_split();
        Stream {
            id,
            rd: Mutex::new(Some(r)),
            wr: Mutex::new(Some(w)),
        }
    }

    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut g = lock(&self.rd);
        let Some(r) = g.as_mut() else {
            return Poll::Ready(Err(consumed()));
        };
        let mut rb = ReadBuf::new(buf);
        ready!(Pin::new(r).poll_read(cx, &mut rb))?;
        Poll::Ready(Ok(rb.filled().len()))
    }

    fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match lock(&self.wr).as_mut() {
            Some(w) => Pin::new(w).poll_write(cx, data),
            None => Poll::Ready(Err(consumed())),
        }
    }
}

fn bounded<T>(limit: Duration, f: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    block_on(async move {
        ::tokio::time::timeout(limit, f)
            .await
            .unwrap_or_else(|_| Err(given_up()))
    })
}

impl super::Stream for Stream {
    fn id(&self) -> StreamId {
        self.id
    }

    fn is_extended(&self) -> bool {
        if let Some(w) = lock(&self.wr).as_ref() {
            return w.is_extended();
        }
        lock(&self.rd).as_ref().is_some_and(ReadHalf::is_extended)
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        block_on(poll_fn(|cx| self.poll_read(cx, buf)))
    }

    fn write(&self, data: &[u8]) -> io::Result<usize> {
        block_on(poll_fn(|cx| self.poll_write(cx, data)))
    }

    fn read_for(&self, buf: &mut [u8], limit: Duration) -> io::Result<usize> {
        bounded(limit, poll_fn(|cx| self.poll_read(cx, buf)))
    }

    fn write_for(&self, data: &[u8], limit: Duration) -> io::Result<usize> {
        bounded(limit, poll_fn(|cx| self.poll_write(cx, data)))
    }

    fn shutdown(&self) -> io::Result<()> {
        block_on(poll_fn(|cx| match lock(&self.wr).as_mut() {
            Some(w) => Pin::new(w).poll_shutdown(cx),
            None => Poll::Ready(Err(consumed())),
        }))
    }

    fn reset(&self, code: u32) -> io::Result<()> {
        if let Some(w) = lock(&self.wr).as_ref() {
            w.reset(code);
        } else if let Some(r) = lock(&self.rd).as_ref() {
            r.reset(code);
        }
        Ok(())
    }

    fn read_before(&self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        let mut g = lock(&self.rd);
        let r = g.as_mut().ok_or_else(consumed)?;
        let deadline = ::tokio::time::Instant::from_std(deadline);
        block_on(r.read_before(buf, deadline))
    }

    fn write_all_before(&self, data: &[u8], deadline: Instant) -> Result<(), PartialWrite> {
        let mut g = lock(&self.wr);
        let w = g.as_mut().ok_or_else(|| PartialWrite::new(0, consumed()))?;
        let deadline = ::tokio::time::Instant::from_std(deadline);
        block_on(w.write_all_before(data, deadline))
            .map_err(|p| PartialWrite::new(p.written(), p.into_error()))
    }

    fn write_all_before_io(&self, data: &[u8], deadline: Instant) -> io::Result<()> {
        let mut g = lock(&self.wr);
        let w = g.as_mut().ok_or_else(consumed)?;
        let deadline = ::tokio::time::Instant::from_std(deadline);
        block_on(w.write_all_before(data, deadline)).map_err(io::Error::from)
    }
}

impl super::Session for Session {
    type Stream = Stream;

    fn open(&self) -> io::Result<Stream> {
        block_on(self.0.open()).map(Stream::new)
    }

    fn accept(&self) -> io::Result<Stream> {
        block_on(self.0.accept()).map(Stream::new)
    }

    fn ready(&self) -> io::Result<bool> {
        block_on(self.0.ready())
    }

    fn closed(&self) -> EndReason {
        block_on(self.0.closed())
    }

    fn close(&self) {
        self.0.close()
    }

    fn shutdown(&self) -> EndReason {
        block_on(self.0.shutdown())
    }

    fn go_away(&self, code: u32) {
        self.0.go_away(code)
    }

    fn end_reason(&self) -> Option<EndReason> {
        self.0.end_reason()
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    fn is_going_away(&self) -> bool {
        self.0.is_going_away()
    }

    fn extensions_enabled(&self) -> bool {
        self.0.extensions_enabled()
    }

    fn stats(&self) -> Stats {
        self.0.stats()
    }

    fn ping(&self) -> bool {
        self.0.ping()
    }
}

impl super::Listener for Listener {
    type Session = Session;

    fn local_addr(&self) -> SocketAddr {
        self.0.local_addr().expect("listener address")
    }

    fn accept(&self) -> io::Result<Session> {
        block_on(self.0.accept()).map(|(s, _)| Session(s))
    }
}

impl super::Adapter for Tokio {
    const NAME: &'static str = "tokio";
    type Session = Session;
    type Stream = Stream;
    type Listener = Listener;

    fn bind(config: Config) -> io::Result<Listener> {
        block_on(smux_tokio::Listener::bind("127.0.0.1:0", config)).map(Listener)
    }

    fn connect(addr: SocketAddr, config: Config) -> io::Result<Session> {
        block_on(smux_tokio::connect(addr, config)).map(Session)
    }

    fn new_session(tcp: TcpStream, config: Config, role: Role) -> io::Result<Session> {
        tcp.set_nonblocking(true)?;
        let _rt = rt().enter();
        let tcp = ::tokio::net::TcpStream::from_std(tcp)?;
        smux_tokio::Session::new(tcp, config, role).map(Session)
    }

    fn new_session_interrupted(tcp: TcpStream, config: Config, role: Role) -> io::Result<Session> {
        tcp.set_nonblocking(true)?;
        let _rt = rt().enter();
        let tcp = Interrupting {
            inner: ::tokio::net::TcpStream::from_std(tcp)?,
            reads: Interrupter::default(),
            writes: Interrupter::default(),
        };
        smux_tokio::Session::new(tcp, config, role).map(Session)
    }

    fn partial_written(e: &io::Error) -> Option<usize> {
        let p = e.get_ref()?.downcast_ref::<smux_tokio::PartialWrite>()?;
        Some(p.written())
    }

    fn partial_write_is_the_cores() -> bool {
        TypeId::of::<smux_tokio::PartialWrite>() == TypeId::of::<PartialWrite>()
    }
}

/// A Tokio transport whose every other read and write fails with `Interrupted`.
struct Interrupting {
    inner: ::tokio::net::TcpStream,
    reads: Interrupter,
    writes: Interrupter,
}

impl AsyncRead for Interrupting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.reads.interrupt() {
            return Poll::Ready(Err(Interrupter::error()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Interrupting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.writes.interrupt() {
            return Poll::Ready(Err(Interrupter::error()));
        }
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.writes.interrupt() {
            return Poll::Ready(Err(Interrupter::error()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
