//! smux-smol behind the conformance shape: every call is `smol::block_on`; the
//! sessions' drivers run on smol's global executor.

use std::any::TypeId;
use std::future::{poll_fn, Future};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ::smol::io::{AsyncRead, AsyncWrite};
use smux_proto::{Config, EndReason, PartialWrite, Role, Stats, StreamId};
use smux_smol::{ReadHalf, TcpTransport, WriteHalf};

use super::{gap, given_up, lock, Interrupter};

/// smux-smol.
#[derive(Debug)]
pub struct Smol;

const NAME: &str = "smux-smol";

/// A smux-smol session.
#[derive(Clone, Debug)]
pub struct Session(smux_smol::Session);

/// A smux-smol listener.
#[derive(Debug)]
pub struct Listener(smux_smol::Listener);

/// A smux-smol stream, split so that two threads can use it.
#[derive(Debug)]
pub struct Stream {
    id: StreamId,
    rd: Mutex<Option<ReadHalf>>,
    wr: Mutex<Option<WriteHalf>>,
}

fn gone() -> io::Error {
    gap(NAME, "the stream's half is gone")
}

impl Stream {
    fn new(s: smux_smol::Stream) -> Stream {
        let id = s.id();
        let (r, w) = s.into_split();
        Stream {
            id,
            rd: Mutex::new(Some(r)),
            wr: Mutex::new(Some(w)),
        }
    }

    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match lock(&self.rd).as_mut() {
            Some(r) => Pin::new(r).poll_read(cx, buf),
            None => Poll::Ready(Err(gone())),
        }
    }

    fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match lock(&self.wr).as_mut() {
            Some(w) => Pin::new(w).poll_write(cx, data),
            None => Poll::Ready(Err(gone())),
        }
    }
}

fn bounded<T>(limit: Duration, f: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    ::smol::block_on(::smol::future::or(f, async move {
        ::smol::Timer::after(limit).await;
        Err(given_up())
    }))
}

impl super::Stream for Stream {
    fn id(&self) -> StreamId {
        self.id
    }

    fn is_extended(&self) -> bool {
        lock(&self.wr).as_ref().is_some_and(WriteHalf::is_extended)
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        ::smol::block_on(poll_fn(|cx| self.poll_read(cx, buf)))
    }

    fn write(&self, data: &[u8]) -> io::Result<usize> {
        ::smol::block_on(poll_fn(|cx| self.poll_write(cx, data)))
    }

    fn read_for(&self, buf: &mut [u8], limit: Duration) -> io::Result<usize> {
        bounded(limit, poll_fn(|cx| self.poll_read(cx, buf)))
    }

    fn write_for(&self, data: &[u8], limit: Duration) -> io::Result<usize> {
        bounded(limit, poll_fn(|cx| self.poll_write(cx, data)))
    }

    fn shutdown(&self) -> io::Result<()> {
        ::smol::block_on(poll_fn(|cx| match lock(&self.wr).as_mut() {
            Some(w) => Pin::new(w).poll_close(cx),
            None => Poll::Ready(Err(gone())),
        }))
    }

    fn reset(&self, code: u32) -> io::Result<()> {
        lock(&self.wr).as_mut().ok_or_else(gone)?.reset(code);
        Ok(())
    }

    fn read_before(&self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        let mut g = lock(&self.rd);
        let r = g.as_mut().ok_or_else(gone)?;
        ::smol::block_on(r.read_before(buf, deadline))
    }

    fn write_all_before(&self, data: &[u8], deadline: Instant) -> Result<(), PartialWrite> {
        let mut g = lock(&self.wr);
        let w = g.as_mut().ok_or_else(|| PartialWrite::new(0, gone()))?;
        ::smol::block_on(w.write_all_before(data, deadline))
            .map_err(|p| PartialWrite::new(p.written(), p.into_error()))
    }

    fn write_all_before_io(&self, data: &[u8], deadline: Instant) -> io::Result<()> {
        let mut g = lock(&self.wr);
        let w = g.as_mut().ok_or_else(gone)?;
        ::smol::block_on(w.write_all_before(data, deadline)).map_err(io::Error::from)
    }
}

impl super::Session for Session {
    type Stream = Stream;

    fn open(&self) -> io::Result<Stream> {
        ::smol::block_on(self.0.open()).map(Stream::new)
    }

    fn accept(&self) -> io::Result<Stream> {
        ::smol::block_on(self.0.accept()).map(Stream::new)
    }

    fn ready(&self) -> io::Result<bool> {
        ::smol::block_on(self.0.ready())
    }

    fn closed(&self) -> EndReason {
        ::smol::block_on(self.0.closed())
    }

    fn close(&self) {
        self.0.close()
    }

    fn shutdown(&self) -> EndReason {
        ::smol::block_on(self.0.shutdown())
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
        let (session, _) = ::smol::block_on(self.0.accept())?;
        Ok(Session(session))
    }
}

impl super::Adapter for Smol {
    const NAME: &'static str = "smol";
    type Session = Session;
    type Stream = Stream;
    type Listener = Listener;

    fn bind(config: Config) -> io::Result<Listener> {
        smux_smol::Listener::bind("127.0.0.1:0", config).map(Listener)
    }

    fn connect(addr: SocketAddr, config: Config) -> io::Result<Session> {
        ::smol::block_on(smux_smol::connect(addr, config)).map(Session)
    }

    fn new_session(tcp: TcpStream, config: Config, role: Role) -> io::Result<Session> {
        smux_smol::Session::new(TcpTransport::new(tcp)?, config, role).map(Session)
    }

    fn new_session_interrupted(tcp: TcpStream, config: Config, role: Role) -> io::Result<Session> {
        let tcp = Interrupting {
            inner: TcpTransport::new(tcp)?,
            reads: Interrupter::default(),
            writes: Interrupter::default(),
        };
        smux_smol::Session::new(tcp, config, role).map(Session)
    }

    fn partial_written(e: &io::Error) -> Option<usize> {
        let p = e.get_ref()?.downcast_ref::<smux_smol::PartialWrite>()?;
        Some(p.written())
    }

    fn partial_write_is_the_cores() -> bool {
        TypeId::of::<smux_smol::PartialWrite>() == TypeId::of::<PartialWrite>()
    }
}

/// A futures-io transport whose every other read and write fails with `Interrupted`.
struct Interrupting {
    inner: TcpTransport,
    reads: Interrupter,
    writes: Interrupter,
}

impl AsyncRead for Interrupting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
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

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
