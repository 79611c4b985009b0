//! smux-blocking behind the conformance shape: its calls are blocking already; a call
//! "given up" is one made with the stream's read or write timeout.

use std::any::TypeId;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use smux_blocking::Parts;
use smux_proto::{Config, EndReason, PartialWrite, Role, Stats, StreamId};

use super::Interrupter;

/// smux-blocking.
#[derive(Debug)]
pub struct Blocking;

/// A smux-blocking session.
#[derive(Clone, Debug)]
pub struct Session(smux_blocking::Session);

/// A smux-blocking listener.
#[derive(Debug)]
pub struct Listener(smux_blocking::Listener);

/// A smux-blocking stream (its `&Stream` reads and writes from two threads).
#[derive(Debug)]
pub struct Stream(smux_blocking::Stream);

impl super::Stream for Stream {
    fn id(&self) -> StreamId {
        self.0.id()
    }

    fn is_extended(&self) -> bool {
        self.0.is_extended()
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.0).read(buf)
    }

    fn write(&self, data: &[u8]) -> io::Result<usize> {
        (&self.0).write(data)
    }

    fn read_for(&self, buf: &mut [u8], limit: Duration) -> io::Result<usize> {
        self.0.set_read_timeout(Some(limit))?;
        let r = (&self.0).read(buf);
        self.0.set_read_timeout(None)?;
        r
    }

    fn write_for(&self, data: &[u8], limit: Duration) -> io::Result<usize> {
        self.0.set_write_timeout(Some(limit))?;
        let r = (&self.0).write(data);
        self.0.set_write_timeout(None)?;
        r
    }

    fn shutdown(&self) -> io::Result<()> {
        self.0.shutdown(Shutdown::Write)
    }

    fn reset(&self, code: u32) -> io::Result<()> {
        self.0.reset(code);
        Ok(())
    }

    fn read_before(&self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        // Its deadline calls take `&mut`; a second handle to the same stream does.
        self.0.try_clone()?.read_before(buf, deadline)
    }

    fn write_all_before(&self, data: &[u8], deadline: Instant) -> Result<(), PartialWrite> {
        let mut s = self.0.try_clone().map_err(|e| PartialWrite::new(0, e))?;
        s.write_all_before(data, deadline)
            .map_err(|p| PartialWrite::new(p.written(), p.into_error()))
    }

    fn write_all_before_io(&self, data: &[u8], deadline: Instant) -> io::Result<()> {
        let mut s = self.0.try_clone()?;
        s.write_all_before(data, deadline).map_err(io::Error::from)
    }
}

impl super::Session for Session {
    type Stream = Stream;

    fn open(&self) -> io::Result<Stream> {
        self.0.open().map(Stream)
    }

    fn accept(&self) -> io::Result<Stream> {
        self.0.accept().map(Stream)
    }

    fn ready(&self) -> io::Result<bool> {
        self.0.ready()
    }

    fn closed(&self) -> EndReason {
        self.0.closed()
    }

    fn close(&self) {
        self.0.close()
    }

    fn shutdown(&self) -> EndReason {
        self.0.shutdown()
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
        self.0.accept().map(|(s, _)| Session(s))
    }
}

impl super::Adapter for Blocking {
    const NAME: &'static str = "blocking";
    type Session = Session;
    type Stream = Stream;
    type Listener = Listener;

    fn bind(config: Config) -> io::Result<Listener> {
        smux_blocking::Listener::bind("127.0.0.1:0", config).map(Listener)
    }

    fn connect(addr: SocketAddr, config: Config) -> io::Result<Session> {
        smux_blocking::connect(addr, config).map(Session)
    }

    fn new_session(tcp: TcpStream, config: Config, role: Role) -> io::Result<Session> {
        smux_blocking::Session::new(tcp, config, role).map(Session)
    }

    fn new_session_interrupted(tcp: TcpStream, config: Config, role: Role) -> io::Result<Session> {
        tcp.set_nonblocking(false)?;
        let (closer, half) = (tcp.try_clone()?, tcp.try_clone()?);
        let reader = Interrupting {
            inner: tcp.try_clone()?,
            every: Interrupter::default(),
        };
        let writer = Interrupting {
            inner: tcp,
            every: Interrupter::default(),
        };
        let parts = Parts::new(reader, writer)
            .with_closer(move || {
                let _ = closer.shutdown(Shutdown::Both);
            })
            .with_half_closer(move || {
                let _ = half.shutdown(Shutdown::Write);
            });
        smux_blocking::Session::new(parts, config, role).map(Session)
    }

    fn partial_written(e: &io::Error) -> Option<usize> {
        let p = e.get_ref()?.downcast_ref::<smux_blocking::PartialWrite>()?;
        Some(p.written())
    }

    fn partial_write_is_the_cores() -> bool {
        TypeId::of::<smux_blocking::PartialWrite>() == TypeId::of::<PartialWrite>()
    }
}

/// A socket half whose every other read or write fails with `Interrupted`.
struct Interrupting {
    inner: TcpStream,
    every: Interrupter,
}

impl Read for Interrupting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.every.interrupt() {
            return Err(Interrupter::error());
        }
        self.inner.read(buf)
    }
}

impl Write for Interrupting {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.every.interrupt() {
            return Err(Interrupter::error());
        }
        self.inner.write(data)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        if self.every.interrupt() {
            return Err(Interrupter::error());
        }
        self.inner.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
