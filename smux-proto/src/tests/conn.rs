//! The connection life cycle on simulated time: two `Connection`s joined by an
//! in-memory transport whose each direction can stall, fail or close.

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::{
    Config, Connection, EndReason, Event, Input, Output, Plan, Probe, Role, Slot, StreamId,
    MAX_SLICES, TX_BATCH, TX_LIMIT,
};

thread_local! {
    /// Whether the simulations of this thread drive the two directions apart.
    static SPLIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Whether they read first with the last plan while it stands, as the async
    /// adapters do when woken.
    static READ_FIRST: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Whether their connections pace wake-ups, as the Tokio adapter's do.
    static PACE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `test` with one `drive` per end, again reading first while the last plan
/// stands, again with wake-ups paced too (as on Tokio), then with the directions
/// driven apart.
fn both_drives(test: fn()) {
    let modes = [
        (false, false, false),
        (false, true, false),
        (false, true, true),
        (true, false, false),
    ];
    for (split, first, pace) in modes {
        SPLIT.with(|s| s.set(split));
        READ_FIRST.with(|s| s.set(first));
        PACE.with(|s| s.set(pace));
        test();
    }
}

/// Counts how often it was woken.
#[derive(Default)]
pub(super) struct Count(pub(super) AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

pub(super) fn counter() -> (Arc<Count>, Waker) {
    let c = Arc::new(Count::default());
    (c.clone(), Waker::from(c))
}

/// One direction of the transport: bytes written and not read yet, its capacity, and
/// whether the writer shut it or writing into it fails.
#[derive(Default)]
pub(super) struct Pipe {
    pub(super) bytes: Vec<u8>,
    cap: usize,
    shut: bool,
    broken: bool,
}

pub(super) struct End {
    pub(super) conn: Connection,
    pub(super) input: Input,
    output: Output,
    pub(super) plan: Plan,
    /// The I/O side does not read the transport (a peer whose reader is stuck).
    deaf: bool,
    done: bool,
}

pub(super) struct Sim {
    /// Drive each end's two directions apart (as a reader thread and a writer thread
    /// would), instead of with one `drive`.
    split: bool,
    /// Before a `drive`, read as the last plan said while it stands
    /// (`Connection::plan_stands`).
    read_first: bool,
    pub(super) now: Instant,
    pub(super) ends: [End; 2],
    /// pipes[i]: from end i to end 1 - i.
    pub(super) pipes: [Pipe; 2],
    driver: Waker,
    /// The most an I/O side's read takes from its pipe.
    pub(super) read_max: usize,
}

impl Sim {
    pub(super) fn new(config: Config) -> Sim {
        let now = Instant::now();
        let pace = PACE.with(|s| s.get());
        let conn = |role| {
            let mut c = Connection::new(config.clone(), role, now).unwrap();
            if pace {
                c.pace_wakes();
            }
            c
        };
        let end = |role| End {
            conn: conn(role),
            input: Input::new(),
            output: Output::new(true),
            plan: Plan::default(),
            deaf: false,
            done: false,
        };
        let pipe = || Pipe {
            cap: 256 * 1024,
            ..Pipe::default()
        };
        Sim {
            split: SPLIT.with(|s| s.get()),
            read_first: READ_FIRST.with(|s| s.get()),
            now,
            ends: [end(Role::Dialer), end(Role::Acceptor)],
            pipes: [pipe(), pipe()],
            driver: counter().1,
            read_max: usize::MAX,
        }
    }

    /// One round of both I/O sides: drive, then carry out the plan once.
    pub(super) fn step(&mut self) {
        for i in 0..2 {
            let e = &mut self.ends[i];
            if e.done {
                continue;
            }
            if self.read_first && !self.split && e.conn.plan_stands(self.now) {
                self.read(i);
            }
            let e = &mut self.ends[i];
            e.plan = if self.split {
                let r = e.conn.drive_input(self.now, &mut e.input, &self.driver);
                let mut w = e.conn.drive_output(self.now, &mut e.output, &self.driver);
                w.read = r.read;
                w.read_limit = r.read_limit;
                w.done |= r.done;
                w.timer = [w.timer, r.timer].into_iter().flatten().min();
                w
            } else {
                e.conn
                    .drive(self.now, &mut e.input, &mut e.output, &self.driver)
            };
            let mut woken = Vec::new();
            e.conn.take_wakers(&mut woken);
            woken.into_iter().for_each(Waker::wake);
            if e.plan.done {
                e.done = true;
                continue;
            }
            self.read(i);
            let e = &mut self.ends[i];
            let to = &mut self.pipes[i];
            if e.plan.write {
                if to.broken {
                    e.output.written(Err(io::ErrorKind::BrokenPipe.into()));
                } else {
                    let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                    let n = e.output.slices(&mut slices);
                    let mut k = 0;
                    for s in &slices[..n] {
                        let room = to.cap.saturating_sub(to.bytes.len());
                        let take = s.len().min(room);
                        to.bytes.extend_from_slice(&s[..take]);
                        k += take;
                        if take < s.len() {
                            break;
                        }
                    }
                    if k > 0 {
                        e.output.written(Ok(k));
                    }
                }
            }
            if e.plan.flush {
                e.output.flushed(Ok(()));
            }
            if e.plan.shutdown {
                to.shut = true;
                e.output.shut(Ok(()));
            }
        }
    }

    /// End `i` reads from its pipe as its last plan says.
    fn read(&mut self, i: usize) {
        let e = &mut self.ends[i];
        if e.plan.read && !e.deaf {
            let from = &mut self.pipes[1 - i];
            if !from.bytes.is_empty() && self.read_max > 0 {
                // A read of what the plan allows (a full read when more waits).
                let limit = e.plan.read_limit.unwrap_or(64 * 1024);
                let n = from.bytes.len().min(self.read_max).min(limit);
                e.input.header_room(n).copy_from_slice(&from.bytes[..n]);
                from.bytes.drain(..n);
                e.input.filled(Ok(n));
            } else if from.shut {
                e.input.read_done(Ok(0));
            }
        }
    }

    /// Steps until nothing changes, advancing time to the next timer when idle, for
    /// at most `limit` of simulated time.
    pub(super) fn run_for(&mut self, limit: Duration) {
        let end = self.now + limit;
        let mut idle = 0;
        while self.now < end && !(self.ends[0].done && self.ends[1].done) {
            let before = (
                self.pipes[0].bytes.len(),
                self.pipes[1].bytes.len(),
                self.stats(),
            );
            self.step();
            let after = (
                self.pipes[0].bytes.len(),
                self.pipes[1].bytes.len(),
                self.stats(),
            );
            if before == after {
                idle += 1;
            } else {
                idle = 0;
            }
            if idle > 3 {
                let next = self
                    .ends
                    .iter()
                    .filter(|e| !e.done)
                    .filter_map(|e| e.plan.timer)
                    .min()
                    .unwrap_or(end)
                    .min(end);
                self.now = next.max(self.now + Duration::from_millis(1));
                idle = 0;
            }
        }
    }

    fn stats(&self) -> (u64, u64, bool, bool) {
        let a = self.ends[0].conn.stats();
        let b = self.ends[1].conn.stats();
        (
            a.bytes_sent + a.bytes_received,
            b.bytes_sent + b.bytes_received,
            self.ends[0].conn.is_done(),
            self.ends[1].conn.is_done(),
        )
    }

    pub(super) fn conn(&mut self, i: usize) -> &mut Connection {
        &mut self.ends[i].conn
    }

    fn end_reason(&self, i: usize) -> Option<EndReason> {
        self.ends[i].conn.session().end_reason().cloned()
    }
}

pub(super) fn ready<T>(p: Poll<T>) -> T {
    match p {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("pending"),
    }
}

/// Opens a stream on end 0 and writes `data` into it (within the window).
fn stream_with(sim: &mut Sim, data: &[u8]) -> StreamId {
    let w = counter().1;
    let id = sim.conn(0).open().unwrap();
    let n = ready(sim.conn(0).poll_write(id, data, &w)).unwrap();
    assert_eq!(n, data.len());
    id
}

/// Reads everything end 1 received on its first accepted stream.
fn read_accepted(sim: &mut Sim) -> (Vec<u8>, bool) {
    let w = counter().1;
    let id = ready(sim.conn(1).poll_accept(&mut Slot::default(), &w)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sim.conn(1).poll_read(id, &mut buf, &w) {
            Poll::Ready(Ok(0)) => return (out, true),
            Poll::Ready(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Poll::Ready(Err(_)) | Poll::Pending => return (out, false),
        }
    }
}

#[test]
fn a_graceful_close_writes_everything_out_then_drains_until_the_peer_closes() {
    both_drives(a_graceful_close_writes_everything_out_then_drains_until_the_peer_closes_once);
}

fn a_graceful_close_writes_everything_out_then_drains_until_the_peer_closes_once() {
    let mut sim = Sim::new(Config::default());
    let data = vec![7u8; 400_000];
    let id = stream_with(&mut sim, &data);
    sim.conn(0).release(id);
    sim.conn(0).shutdown(None);
    let w = counter().1;
    assert!(sim.conn(0).open().is_err(), "no new work while closing");
    assert!(sim.conn(0).poll_write(id, b"x", &w).is_ready());
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.end_reason(0), Some(EndReason::Local));
    // The peer saw our end-of-file after the data; what it buffered outlives its
    // session. Our end drained until the peer closed too.
    assert_eq!(sim.end_reason(1), Some(EndReason::PeerClosed));
    assert!(sim.ends[0].conn.is_done() && sim.ends[1].conn.is_done());
    assert_eq!(read_accepted(&mut sim), (data, true));
}

#[test]
fn a_graceful_close_ends_at_its_linger_when_the_peer_reads_nothing() {
    both_drives(a_graceful_close_ends_at_its_linger_when_the_peer_reads_nothing_once);
}

fn a_graceful_close_ends_at_its_linger_when_the_peer_reads_nothing_once() {
    let mut sim = Sim::new(Config::default());
    sim.ends[1].deaf = true;
    sim.pipes[0].cap = 64 * 1024;
    let start = sim.now;
    let id = stream_with(&mut sim, &vec![1u8; 500_000]);
    sim.conn(0).shutdown(Some(start + Duration::from_secs(10)));
    let (closed, w) = counter();
    let mut slot = Slot::default();
    assert!(sim.conn(0).poll_closed(&mut slot, &w).is_pending());
    while !sim.ends[0].conn.is_done() && sim.now < start + Duration::from_secs(30) {
        sim.run_for(Duration::from_millis(100));
    }
    assert_eq!(sim.end_reason(0), Some(EndReason::Local));
    let ended_at = sim.now;
    assert!(ended_at >= start + Duration::from_secs(10));
    assert!(
        ended_at <= start + Duration::from_secs(13),
        "linger + finish grace"
    );
    assert!(sim.ends[0].conn.is_done());
    assert!(closed.0.load(Ordering::SeqCst) > 0, "closed() woken");
    assert!(ready(sim.conn(0).poll_closed(&mut slot, &w)) == EndReason::Local);
    let _ = id;
}

#[test]
fn a_hard_close_drops_what_is_queued() {
    both_drives(a_hard_close_drops_what_is_queued_once);
}

fn a_hard_close_drops_what_is_queued_once() {
    let mut sim = Sim::new(Config::default());
    sim.pipes[0].cap = 1000;
    let id = stream_with(&mut sim, &vec![1u8; 400_000]);
    sim.step();
    sim.conn(0).close();
    sim.pipes[0].cap = usize::MAX;
    sim.run_for(Duration::from_secs(5));
    let (got, _) = read_accepted(&mut sim);
    assert!(
        got.len() < 10_000,
        "{} bytes went out after a hard close",
        got.len()
    );
    assert!(sim.ends[0].conn.is_done());
    let _ = id;
}

#[test]
fn after_a_write_failure_reading_goes_on_for_the_grace_then_the_session_ends() {
    both_drives(after_a_write_failure_reading_goes_on_for_the_grace_then_the_session_ends_once);
}

fn after_a_write_failure_reading_goes_on_for_the_grace_then_the_session_ends_once() {
    let mut sim = Sim::new(Config::default());
    let start = sim.now;
    sim.pipes[0].broken = true;
    let id = stream_with(&mut sim, b"lost");
    // The peer still sends: that arrives during the grace.
    let peer_id = sim.conn(1).open().unwrap();
    let w = counter().1;
    assert_eq!(
        ready(sim.conn(1).poll_write(peer_id, b"late", &w)).unwrap(),
        4
    );
    sim.run_for(Duration::from_millis(500));
    assert_eq!(sim.end_reason(0), None, "reading goes on for the grace");
    let got = ready(sim.conn(0).poll_accept(&mut Slot::default(), &w)).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(ready(sim.conn(0).poll_read(got, &mut buf, &w)).unwrap(), 4);
    sim.run_for(Duration::from_secs(5));
    match sim.end_reason(0) {
        Some(EndReason::Transport(e)) => assert_eq!(e.kind(), io::ErrorKind::BrokenPipe),
        other => panic!("{other:?}"),
    }
    assert!(sim.now >= start + Duration::from_secs(2));
    let _ = id;
}

#[test]
fn parked_calls_learn_of_a_graceful_close_at_once_and_dropped_waits_leave_nothing() {
    both_drives(
        parked_calls_learn_of_a_graceful_close_at_once_and_dropped_waits_leave_nothing_once,
    );
}

fn parked_calls_learn_of_a_graceful_close_at_once_and_dropped_waits_leave_nothing_once() {
    let config = Config {
        window: 1000,
        cfm_threshold: 500,
        ..Config::default()
    };
    let mut sim = Sim::new(config);
    let id = sim.conn(0).open().unwrap();
    let (writer, w) = counter();
    // Fill the window (the assumed one: our own 1000 bytes).
    let _ = sim.conn(0).poll_write(id, &[0u8; 1000], &w);
    assert!(sim.conn(0).poll_write(id, b"more", &w).is_pending());
    let (acceptor, wa) = counter();
    let mut slot = Slot::default();
    assert!(sim.conn(0).poll_accept(&mut slot, &wa).is_pending());
    // A dropped accept forgets its waker.
    let mut dropped = Slot::default();
    assert!(sim
        .conn(0)
        .poll_accept(&mut dropped, &counter().1)
        .is_pending());
    sim.conn(0).forget(&mut dropped);
    sim.conn(0).shutdown(None);
    let mut woken = Vec::new();
    sim.conn(0).take_wakers(&mut woken);
    woken.into_iter().for_each(Waker::wake);
    assert_eq!(writer.0.load(Ordering::SeqCst), 1);
    assert_eq!(acceptor.0.load(Ordering::SeqCst), 1);
    let e = ready(sim.conn(0).poll_write(id, b"more", &w)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotConnected);
    assert!(ready(sim.conn(0).poll_accept(&mut slot, &wa)).is_err());
}

#[test]
fn accept_waits_through_a_go_away_and_fails_once_drained() {
    both_drives(accept_waits_through_a_go_away_and_fails_once_drained_once);
}

fn accept_waits_through_a_go_away_and_fails_once_drained_once() {
    let mut sim = Sim::new(Config::default());
    let id = stream_with(&mut sim, b"x");
    sim.run_for(Duration::from_millis(10));
    let w = counter().1;
    let got = ready(sim.conn(1).poll_accept(&mut Slot::default(), &w)).unwrap();
    sim.conn(1).go_away(0);
    let mut slot = Slot::default();
    assert!(sim.conn(1).poll_accept(&mut slot, &w).is_pending());
    sim.run_for(Duration::from_millis(10));
    assert!(sim.conn(1).poll_accept(&mut slot, &w).is_pending());
    sim.conn(0).release(id);
    sim.conn(1).release(got);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.end_reason(1), Some(EndReason::Drained));
    assert!(ready(sim.conn(1).poll_accept(&mut slot, &w)).is_err());
}

/// Writes that go straight from the caller's buffer to the transport (a caller holding
/// the write side), some taken whole, some only in part (the rest goes to the front of
/// the output), mixed with ordinary writes: every byte arrives once, in order, and the
/// window accounting holds on both ends.
#[test]
fn direct_writes_keep_every_byte_in_order() {
    let mut sim = Sim::new(Config::default());
    let w = counter().1;
    let id = sim.conn(0).open().unwrap();
    // The SYN is queued: the first direct write takes it along.
    assert!(sim.conn(0).session().stats().frames_sent == 0);
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut sent = 0;
    let mut direct = 0;
    let mut got = Vec::new();
    let mut accepted = None;
    for round in 0..10_000 {
        if sent < data.len() {
            let e = &mut sim.ends[0];
            match e.conn.begin_direct(id, data.len() - sent, &e.output) {
                Some(f) => {
                    let n = f.len();
                    let rest = &data[sent..];
                    let frame: Vec<u8> = f.slices(rest).iter().flat_map(|s| s.to_vec()).collect();
                    // The transport takes a varying part of the frame, or fails to.
                    let r = match round % 5 {
                        0 => Poll::Ready(Ok(7 + n)),
                        1 => Poll::Ready(Ok(3)),
                        2 => Poll::Ready(Ok(7 + n / 2)),
                        3 => Poll::Ready(Err(io::ErrorKind::Interrupted.into())),
                        _ => Poll::Pending,
                    };
                    let took = match &r {
                        Poll::Ready(Ok(k)) => *k,
                        _ => 0,
                    };
                    sim.pipes[0].bytes.extend_from_slice(&frame[..took]);
                    let wake = f.written(&mut e.output, rest, r);
                    assert_eq!(wake, took < frame.len());
                    sent += n;
                    direct += 1;
                }
                None => {
                    if let Poll::Ready(r) = e.conn.poll_write(id, &data[sent..], &w) {
                        sent += r.unwrap();
                    }
                }
            }
        }
        sim.step();
        sim.conn(0).session().assert_invariants();
        if accepted.is_none() {
            if let Poll::Ready(Ok(s)) = sim.conn(1).poll_accept(&mut Slot::default(), &w) {
                accepted = Some(s);
            }
        }
        if let Some(s) = accepted {
            let mut buf = vec![0u8; 100_000];
            while let Poll::Ready(Ok(n)) = sim.conn(1).poll_read(s, &mut buf, &w) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
        }
        if got.len() == data.len() {
            break;
        }
    }
    assert!(direct > 10, "the direct path was taken ({direct} times)");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes differ");
}

/// A transport without vectored writes would take only the header of a direct frame
/// (the first slice) and the payload would be copied into the output after all: over
/// one, every write takes the queued path.
#[test]
fn no_direct_write_over_a_transport_without_vectored_writes() {
    let mut sim = Sim::new(Config::default());
    let id = sim.conn(0).open().unwrap();
    sim.run_for(Duration::from_millis(100));
    let e = &mut sim.ends[0];
    assert!(e.conn.begin_direct(id, 1000, &Output::new(false)).is_none());
    // The same write over a vectored transport goes direct.
    assert_eq!(
        e.conn.begin_direct(id, 1000, &e.output).map(|f| f.len()),
        Some(1000)
    );
}

/// A direct write says it keeps the transport busy (the driver then waits for it
/// rather than read the socket under the kernel's lock) only when it is large and
/// leaves a quarter of the window: a writer short of window needs the peer's window
/// update read at once.
#[test]
fn only_a_large_direct_write_with_window_to_spare_takes_long() {
    let config = Config::default();
    let quarter = config.window() as usize / 4;
    let mut sim = Sim::new(config);
    let id = sim.conn(0).open().unwrap();
    sim.run_for(Duration::from_millis(100));
    let e = &mut sim.ends[0];
    let small = e.conn.begin_direct(id, 1000, &e.output).expect("direct");
    assert!(!small.takes_long());
    let mut seen = Vec::new();
    while let Some(f) = e.conn.begin_direct(id, 64 * 1024, &e.output) {
        let left = e.conn.session().writable_len(id);
        assert_eq!(f.takes_long(), f.len() >= 16 * 1024 && left >= quarter);
        seen.push(f.takes_long());
    }
    assert!(seen.contains(&true) && seen.contains(&false), "{seen:?}");
}

fn wake_owed(c: &mut Connection) {
    let mut woken = Vec::new();
    c.take_wakers(&mut woken);
    woken.into_iter().for_each(Waker::wake);
}

/// Driven apart (a reader thread and a writer thread, each waiting on its own waker),
/// each side wakes the other when it made work for it: input that calls for output
/// wakes the writer, and answers sent make room for input held back behind them.
#[test]
fn driven_apart_each_side_wakes_the_other_when_it_made_work_for_it() {
    let now = Instant::now();
    let config = Config::default()
        .with_extensions(false)
        .with_max_pending_answers(1);
    let mut c = Connection::new(config, Role::Acceptor, now).unwrap();
    let (mut input, mut output) = (Input::new(), Output::new(true));
    let ((writer, w), (reader, r)) = (counter(), counter());
    assert!(
        !c.drive_output(now, &mut output, &w).write,
        "nothing to send yet"
    );
    // Two challenges: the first owes an answer, which holds the second back.
    let buf = input.read_buf();
    buf.extend_from_slice(&Probe::from_seed(1).challenge());
    buf.extend_from_slice(&Probe::from_seed(2).challenge());
    input.read_done(Ok(14));
    assert!(!c.drive_input(now, &mut input, &r).read, "input held back");
    wake_owed(&mut c);
    assert_eq!(
        writer.0.load(Ordering::SeqCst),
        1,
        "the writer has an answer"
    );
    assert!(c.drive_output(now, &mut output, &w).write);
    wake_owed(&mut c);
    assert_eq!(reader.0.load(Ordering::SeqCst), 1, "the reader may go on");
    c.drive_input(now, &mut input, &r);
    wake_owed(&mut c);
    assert_eq!(writer.0.load(Ordering::SeqCst), 2, "the second answer");
}

/// Driven apart, the write side alone brings the connection to its end while the
/// reader sits in a read that never returns (a silent peer), then wakes the reader.
#[test]
fn driven_apart_the_write_side_finishes_while_the_reader_sits_in_a_read() {
    let now = Instant::now();
    let mut c = Connection::new(Config::default(), Role::Dialer, now).unwrap();
    let (mut input, mut output) = (Input::new(), Output::new(true));
    let ((reader, r), w) = (counter(), counter().1);
    assert!(c.drive_input(now, &mut input, &r).read);
    let t = write_until_done(&mut c, &mut output, &w, now);
    assert_eq!(c.session().end_reason(), Some(&EndReason::KeepaliveTimeout));
    wake_owed(&mut c);
    assert_eq!(
        reader.0.load(Ordering::SeqCst),
        1,
        "the reader learns of the end"
    );
    assert!(c.drive_input(t, &mut input, &r).done);
}

/// Driven apart, the side that finishes last wakes the other one where it waits: here
/// the reader saw the peer's end-of-file and waits while the writer writes out.
#[test]
fn driven_apart_the_side_that_finishes_wakes_the_other() {
    let now = Instant::now();
    let mut c = Connection::new(Config::default(), Role::Dialer, now).unwrap();
    let (mut input, mut output) = (Input::new(), Output::new(true));
    let ((reader, r), w) = (counter(), counter().1);
    c.drive_output(now, &mut output, &w);
    input.read_done(Ok(0));
    for _ in 0..2 {
        // The reader goes round once more for the wake-up the end owed it.
        let plan = c.drive_input(now, &mut input, &r);
        assert!(!plan.read && !plan.done, "{plan:?}");
        wake_owed(&mut c);
    }
    let before = reader.0.load(Ordering::SeqCst);
    write_until_done(&mut c, &mut output, &w, now);
    wake_owed(&mut c);
    assert!(
        reader.0.load(Ordering::SeqCst) > before,
        "the reader is woken"
    );
    assert!(c.drive_input(now, &mut input, &r).done);
}

/// Carries out the write side's plans (every write succeeds) until it says done;
/// returns the simulated time then.
fn write_until_done(c: &mut Connection, output: &mut Output, w: &Waker, start: Instant) -> Instant {
    let mut t = start;
    for _ in 0..1000 {
        let plan = c.drive_output(t, output, w);
        if plan.done {
            return t;
        } else if plan.write {
            let n = output.len();
            output.written(Ok(n));
        } else if plan.flush {
            output.flushed(Ok(()));
        } else if plan.shutdown {
            output.shut(Ok(()));
        } else {
            t = plan.timer.expect("a timer until the end");
        }
    }
    panic!("not done after {:?}", t - start);
}

/// What a readiness poller is told: data, then (our write side shut) nothing until the
/// peer's FIN, then end-of-file; a reset stream is closed; a full window owes a
/// `Writable` when asked.
#[test]
fn readiness_tells_whether_a_call_would_return_at_once() {
    let mut sim = Sim::new(Config::default());
    let id = stream_with(&mut sim, b"hi");
    sim.run_for(Duration::from_millis(10));
    let w = counter().1;
    let peer = ready(sim.conn(1).poll_accept(&mut Slot::default(), &w)).unwrap();
    let r = sim.conn(1).readiness(peer, true);
    assert!(r.readable && r.writable && !r.closed, "{r:?}");
    assert_eq!(
        ready(sim.conn(1).poll_read(peer, &mut [0u8; 8], &w)).unwrap(),
        2
    );
    ready(sim.conn(1).poll_shutdown(peer, &w)).unwrap();
    let r = sim.conn(1).readiness(peer, false);
    assert!(
        !r.readable && r.writable && !r.closed,
        "half-closed, no FIN yet: {r:?}"
    );
    sim.conn(0).release(id);
    sim.run_for(Duration::from_millis(10));
    let r = sim.conn(1).readiness(peer, false);
    assert!(
        r.readable && !r.closed,
        "the peer's FIN: end-of-file: {r:?}"
    );

    sim.conn(0).keep_events();
    let id = stream_with(&mut sim, &[0u8; 512 * 1024]);
    let r = sim.conn(0).readiness(id, true);
    assert!(!r.writable && !r.closed, "the window is full: {r:?}");
    sim.run_for(Duration::from_millis(10));
    let peer = ready(sim.conn(1).poll_accept(&mut Slot::default(), &w)).unwrap();
    while let Poll::Ready(Ok(n)) = sim.conn(1).poll_read(peer, &mut [0u8; 65536], &w) {
        assert!(n > 0);
    }
    sim.run_for(Duration::from_millis(10));
    let mut events = Vec::new();
    sim.conn(0).take_events(&mut events);
    assert!(events.contains(&Event::Writable(id)), "{events:?}");
    sim.conn(1).reset(peer, 7);
    sim.run_for(Duration::from_millis(10));
    let r = sim.conn(0).readiness(id, false);
    assert!(
        r.readable && r.writable && r.closed,
        "reset by the peer: {r:?}"
    );
}

#[test]
fn a_fin_deferred_by_an_application_call_has_the_io_side_plan_its_timer() {
    both_drives(a_fin_deferred_by_an_application_call_has_the_io_side_plan_its_timer_once);
}

fn a_fin_deferred_by_an_application_call_has_the_io_side_plan_its_timer_once() {
    let mut sim = Sim::new(Config::default());
    let (wakes, driver) = counter();
    sim.driver = driver;
    let id = stream_with(&mut sim, b"x");
    sim.run_for(Duration::from_millis(5));
    let w = counter().1;
    let got = ready(sim.conn(1).poll_accept(&mut Slot::default(), &w)).unwrap();
    // The acceptor half-closes, the opener reads the end-of-file and releases: its
    // FIN is its first and last.
    ready(sim.conn(1).poll_shutdown(got, &w)).unwrap();
    sim.run_for(Duration::from_millis(5));
    let mut buf = [0u8; 8];
    assert_eq!(ready(sim.conn(0).poll_read(id, &mut buf, &w)).unwrap(), 0);
    sim.conn(0).release(id);
    sim.run_for(Duration::from_millis(5));
    // The acceptor releases its stream: its last FIN waits for company, and its I/O
    // side, whose timer is the keepalive's, is woken to plan the earlier one.
    sim.step();
    assert!(sim.ends[1].plan.timer > Some(sim.now + Duration::from_secs(1)));
    let before = wakes.0.load(Ordering::SeqCst);
    sim.conn(1).release(got);
    assert!(!sim.conn(1).session().has_transmit());
    let mut woken = Vec::new();
    sim.conn(1).take_wakers(&mut woken);
    woken.into_iter().for_each(Waker::wake);
    assert_eq!(
        wakes.0.load(Ordering::SeqCst),
        before + 1,
        "the I/O side woken"
    );
    sim.step();
    let deadline = sim.ends[1].plan.timer.expect("a timer");
    assert!(deadline <= sim.now + Duration::from_millis(1));
    assert_eq!(sim.conn(1).stats().streams, 1, "the FIN still waits");
    // At that time the FIN leaves, and both ends free the ID.
    sim.run_for(Duration::from_millis(5));
    assert_eq!(sim.conn(0).stats().streams + sim.conn(1).stats().streams, 0);
}

/// A new stream's first write goes direct with the control frames queued ahead of it
/// (its SYN, and what earlier streams' closes queued) in one write; with data queued,
/// or more control frames than a direct frame carries, it takes the queued path.
#[test]
fn a_direct_write_takes_the_queued_control_frames_along() {
    let mut sim = Sim::new(Config::default().with_extensions(false));
    let old = stream_with(&mut sim, b"x");
    sim.run_for(Duration::from_millis(5));
    sim.conn(0).release(old);
    let id = sim.conn(0).open().unwrap();
    let e = &mut sim.ends[0];
    let data = [9u8; 100];
    let f = e
        .conn
        .begin_direct(id, data.len(), &e.output)
        .expect("direct");
    let slices = f.slices(&data);
    let head = slices[0].to_vec();
    let frame: Vec<u8> = slices.iter().flat_map(|s| s.to_vec()).collect();
    let cmds: Vec<u8> = head.chunks(7).map(|h| h[0]).collect();
    assert_eq!(cmds, [1, 0, 2], "FIN of the old stream, SYN, PSH");
    // The transport takes 10 bytes: the rest goes to the output, in order.
    sim.pipes[0].bytes.extend_from_slice(&frame[..10]);
    assert!(f.written(&mut e.output, &data, Poll::Ready(Ok(10))));
    sim.run_for(Duration::from_millis(5));
    let w = counter().1;
    let mut slot = Slot::default();
    let first = ready(sim.conn(1).poll_accept(&mut slot, &w)).unwrap();
    let got = ready(sim.conn(1).poll_accept(&mut slot, &w)).unwrap();
    let mut buf = [0u8; 200];
    assert_eq!(
        ready(sim.conn(1).poll_read(got, &mut buf, &w)).unwrap(),
        100
    );
    assert_eq!(buf[..100], data);
    assert_eq!(
        ready(sim.conn(1).poll_read(first, &mut buf, &w)).unwrap(),
        1
    );
    assert_eq!(
        ready(sim.conn(1).poll_read(first, &mut buf, &w)).unwrap(),
        0
    );

    // Data queued on another stream: no direct frame may pass it.
    let a = stream_with(&mut sim, b"queued");
    let b = sim.conn(0).open().unwrap();
    let e = &mut sim.ends[0];
    assert!(e.conn.begin_direct(b, 10, &e.output).is_none());
    sim.run_for(Duration::from_millis(5));
    // More control frames than a direct frame carries: queued path too.
    for _ in 0..9 {
        let s = sim.conn(0).open().unwrap();
        sim.conn(0).release(s);
    }
    let e = &mut sim.ends[0];
    assert!(e.conn.begin_direct(b, 10, &e.output).is_none());
    let _ = a;
}

/// An output the transport emptied is refilled with a large batch (`TX_BATCH`); one
/// it has not emptied only up to about `TX_LIMIT`, so the control frames queued behind
/// a slow transport wait behind less.
#[test]
fn an_emptied_output_takes_a_larger_batch_than_one_still_full() {
    let mut sim = Sim::new(Config::default());
    let w = counter().1;
    // Four streams with a window's worth each: 2 MiB queued, more than one batch.
    let ids: Vec<_> = (0..4).map(|_| sim.conn(0).open().unwrap()).collect();
    sim.run_for(Duration::from_millis(100));
    let data = vec![7u8; 512 * 1024];
    for &id in &ids {
        let mut at = 0;
        while let Poll::Ready(Ok(n)) = sim.conn(0).poll_write(id, &data[at..], &w) {
            at += n;
            if at == data.len() {
                break;
            }
        }
        assert_eq!(at, data.len(), "stream {id:?} took its window");
    }
    let now = sim.now;
    let e = &mut sim.ends[0];
    let mut output = Output::new(true);
    e.conn.drive_output(now, &mut output, &w);
    let frame = 64 * 1024 + 7;
    assert!(output.len() >= TX_BATCH, "emptied: {}", output.len());
    assert!(output.len() < TX_BATCH + frame, "emptied: {}", output.len());
    // The transport takes most of it but not all: refilled only up to TX_LIMIT.
    output.written(Ok(output.len() - 100 * 1024));
    e.conn.drive_output(now, &mut output, &w);
    assert!(output.len() >= TX_LIMIT, "still full: {}", output.len());
    assert!(
        output.len() < TX_LIMIT + frame,
        "still full: {}",
        output.len()
    );
}

/// The last plan stands (an adapter woken may read with it before driving again)
/// until something calls for the I/O side: an open or a write that queues output, a
/// reader that makes room for held-back input, the plan's timer, the session's end.
#[test]
fn a_plan_stands_until_the_io_side_is_called_for() {
    let mut sim = Sim::new(Config {
        max_buffered_in: 64 * 1024,
        ..Config::default()
    });
    let id = stream_with(&mut sim, b"hello");
    sim.run_for(Duration::from_millis(20));
    let stands = |sim: &mut Sim, i: usize| {
        let now = sim.now;
        sim.conn(i).plan_stands(now)
    };
    assert!(stands(&mut sim, 0) && stands(&mut sim, 1));

    sim.conn(0).open().unwrap();
    assert!(!stands(&mut sim, 0), "an open queues a SYN");
    sim.step();
    assert!(stands(&mut sim, 0));

    let w = counter().1;
    ready(sim.conn(0).poll_write(id, b"more", &w)).unwrap();
    assert!(!stands(&mut sim, 0), "a write queues a frame");
    sim.run_for(Duration::from_millis(1));
    assert!(stands(&mut sim, 0) && stands(&mut sim, 1));

    // End 1 holds input back once its unread bytes reach the bound; a read that
    // makes room calls for the I/O side.
    ready(sim.conn(0).poll_write(id, &[7; 100 * 1024], &w)).unwrap();
    sim.run_for(Duration::from_millis(5));
    assert!(!sim.conn(1).session().wants_input());
    assert!(stands(&mut sim, 1) && !sim.ends[1].plan.read);
    let (got, _) = read_accepted(&mut sim);
    assert_eq!(
        got, b"hellomore",
        "the next frame does not fit under the bound"
    );
    assert!(!stands(&mut sim, 1), "room for held-back input");
    sim.run_for(Duration::from_millis(5));

    let timer = sim.ends[0].plan.timer.expect("the keepalive is always due");
    assert!(sim.conn(0).plan_stands(timer - Duration::from_nanos(1)));
    assert!(!sim.conn(0).plan_stands(timer), "the plan's timer is due");

    sim.conn(0).close();
    assert!(!stands(&mut sim, 0), "the session ended");
}

/// Where readers read through, a plan after large frames never stands: the next one
/// may read a header alone and lend the read side to a reader that parked meanwhile.
/// After small frames it does (a request/response stream parks its reader at every
/// request).
#[test]
fn after_large_frames_no_plan_stands() {
    for (size, stands) in [(64 * 1024, false), (100, true)] {
        let mut sim = Sim::new(Config::default());
        sim.conn(1).lend_reads();
        stream_with(&mut sim, &vec![1; size]);
        sim.run_for(Duration::from_millis(5));
        let (got, _) = read_accepted(&mut sim);
        assert_eq!(got.len(), size);
        sim.run_for(Duration::from_millis(1));
        let now = sim.now;
        assert_eq!(sim.conn(1).plan_stands(now), stands, "{size}-byte frames");
        assert!(
            sim.conn(0).plan_stands(now),
            "the sender does not read through"
        );
    }
}

/// Writes `data` to each of `ids` on end 0, then steps until `arrived` (at most 10
/// steps).
fn write_both_until(sim: &mut Sim, ids: [StreamId; 2], data: &[u8], arrived: impl Fn() -> bool) {
    let w = counter().1;
    for id in ids {
        ready(sim.conn(0).poll_write(id, data, &w)).unwrap();
    }
    for _ in 0..10 {
        if arrived() {
            return;
        }
        sim.step();
    }
    assert!(arrived(), "the frames never arrived");
}

/// Paced, a round of the I/O side that owes two wake-ups hands out the first and
/// holds the second for the next call of any kind, and comes back by `PACE_LIMIT` to
/// hand it out itself if no call comes. Unpaced, both leave at once.
#[test]
fn a_paced_round_wakes_one_task_and_the_next_call_the_others() {
    for pace in [false, true] {
        let mut sim = Sim::new(Config::default());
        if pace {
            sim.conn(1).pace_wakes();
        }
        let (a, b) = (sim.conn(0).open().unwrap(), sim.conn(0).open().unwrap());
        sim.run_for(Duration::from_millis(5));
        let mut slot = Slot::default();
        let w = counter().1;
        let ids = [0, 1].map(|_| ready(sim.conn(1).poll_accept(&mut slot, &w)).unwrap());
        let counts = [counter(), counter()];
        for (id, (_, waker)) in ids.iter().zip(&counts) {
            assert!(sim.conn(1).poll_read(*id, &mut [0; 8], waker).is_pending());
        }
        let woken = || {
            counts
                .iter()
                .map(|(c, _)| c.0.load(Ordering::SeqCst))
                .sum::<usize>()
        };
        // Both frames reach end 1 in one read; its next round takes them.
        write_both_until(&mut sim, [a, b], b"x", || woken() > 0);
        if !pace {
            assert_eq!(woken(), 2);
            continue;
        }
        assert_eq!(woken(), 1, "the first wake-up leaves with the round");
        assert_eq!(sim.ends[1].conn.held_wakes(), 1);
        assert!(
            sim.ends[1].conn.owes_wakers(),
            "an adapter must not skip the held one"
        );
        let back = sim.ends[1].plan.timer.expect("a plan to come back");
        assert!(back <= sim.now + crate::PACE_LIMIT);
        // The next call, whatever it is, hands out the one held.
        let mut out = Vec::new();
        let _ = sim.conn(1).readiness(ids[0], false);
        sim.conn(1).take_wakers(&mut out);
        out.into_iter().for_each(Waker::wake);
        assert_eq!(woken(), 2);
        assert_eq!(sim.ends[1].conn.held_wakes(), 0);
        assert!(!sim.ends[1].conn.owes_wakers());

        // Held again, with no call after: the round at `back` hands it out.
        for (id, (_, waker)) in ids.iter().zip(&counts) {
            let mut buf = [0; 8];
            assert_eq!(
                ready(sim.conn(1).poll_read(*id, &mut buf, waker)).unwrap(),
                1
            );
            assert!(sim.conn(1).poll_read(*id, &mut buf, waker).is_pending());
        }
        write_both_until(&mut sim, [a, b], b"y", || woken() > 2);
        assert_eq!(woken(), 3);
        let back = sim.ends[1].plan.timer.expect("a plan to come back");
        sim.now = back;
        sim.step();
        assert_eq!(woken(), 4, "the I/O side came back for the one held");
    }
}

/// Input held back at `max_buffered_in` is reported once it has been for
/// `STALL_NOTICE`, once per stall; reading lets input flow again, and a new stall is
/// reported again.
#[test]
fn input_held_back_at_the_bound_is_reported_once_per_stall() {
    both_drives(input_held_back_at_the_bound_is_reported_once_per_stall_once);
}

fn input_held_back_at_the_bound_is_reported_once_per_stall_once() {
    let bound = 64 * 1024;
    let mut sim = Sim::new(Config {
        max_buffered_in: bound,
        ..Config::default()
    });
    let id = stream_with(&mut sim, &[7; 100 * 1024]);
    sim.run_for(Duration::from_millis(5));
    assert!(
        !sim.conn(1).session().wants_input(),
        "held back at the bound"
    );
    assert_eq!(sim.conn(1).take_stall(), None, "not before its notice time");
    let start = sim.now;
    sim.run_for(crate::STALL_NOTICE + Duration::from_millis(100));
    let stall = sim.conn(1).take_stall().expect("reported");
    assert!(stall.held_for >= crate::STALL_NOTICE);
    assert!(stall.held_for <= sim.now - start + Duration::from_millis(5));
    assert_eq!(stall.max_buffered_in, bound);
    assert!(stall.buffered_in > 0 && stall.buffered_in <= bound);
    assert!(stall.to_string().contains("max_buffered_in"));
    sim.run_for(crate::STALL_NOTICE * 2);
    assert_eq!(sim.conn(1).take_stall(), None, "once per stall");
    assert_eq!(sim.conn(0).take_stall(), None, "the sender's input flows");

    // Reading lets input flow; the rest arrives and is read.
    let w = counter().1;
    let acc = ready(sim.conn(1).poll_accept(&mut Slot::default(), &w)).unwrap();
    let mut got = 0;
    let mut buf = [0u8; 16 * 1024];
    for _ in 0..100 {
        while let Poll::Ready(Ok(n)) = sim.conn(1).poll_read(acc, &mut buf, &w) {
            got += n;
        }
        sim.run_for(Duration::from_millis(1));
    }
    assert_eq!(got, 100 * 1024);
    assert_eq!(sim.conn(1).take_stall(), None);

    // A new stall is a new notice.
    ready(sim.conn(0).poll_write(id, &[8; 100 * 1024], &w)).unwrap();
    sim.run_for(crate::STALL_NOTICE + Duration::from_millis(100));
    assert!(sim.conn(1).take_stall().is_some(), "reported again");
}
