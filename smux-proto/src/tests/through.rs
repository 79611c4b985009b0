//! Read-through: a stream's reader reading its own payload (and the frame headers in
//! between) straight from the transport, and the read side lent to it meanwhile.

use std::cell::RefCell;
use std::io::{self, IoSliceMut};
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use super::conn::{counter, ready, Sim};
use crate::frame::HEADER_LEN;
use crate::{poll_read_through, read_through_into, Config, Connection, Slot, StreamId, LEND_GRACE};

/// A transport read by the reader itself: up to `max` bytes off the front of `pipe`
/// into `bufs` in order (only the first one unless `vectored`), or `WouldBlock` when
/// it is empty.
fn take(
    pipe: &mut Vec<u8>,
    bufs: &mut [IoSliceMut<'_>],
    max: usize,
    vectored: bool,
) -> io::Result<usize> {
    if pipe.is_empty() {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    let mut n = 0;
    for b in bufs.iter_mut().take(if vectored { usize::MAX } else { 1 }) {
        let k = b.len().min(max - n).min(pipe.len());
        b[..k].copy_from_slice(&pipe[..k]);
        pipe.drain(..k);
        n += k;
    }
    Ok(n)
}

/// One reader call on end 1's stream `id`, as an adapter makes it: read-through
/// ([`read_through_into`]) while possible, then a buffered read. Returns the bytes
/// read, `None` when it would wait, and counts the calls that read through in
/// `steps[0]` and the buffered reads in `steps[1]`.
fn read_call(
    sim: &mut Sim,
    id: StreamId,
    max: usize,
    vectored: bool,
    steps: &mut [usize; 2],
) -> Option<Vec<u8>> {
    let now = sim.now;
    let mut buf = vec![0u8; 50_000];
    let e = &mut sim.ends[1];
    let conn = RefCell::new(&mut e.conn);
    let pipe = RefCell::new(&mut sim.pipes[0].bytes);
    let with = |f: &mut dyn FnMut(&mut Connection)| f(&mut conn.borrow_mut());
    let read = |v: &mut [IoSliceMut<'_>]| take(&mut pipe.borrow_mut(), v, max, vectored);
    let n = read_through_into(id, &mut e.input, &mut buf, with, || now, read);
    if n > 0 {
        steps[0] += 1;
        return Some(buf[..n].to_vec());
    }
    let w = counter().1;
    match sim.conn(1).poll_read(id, &mut buf, &w) {
        Poll::Ready(Ok(n)) => {
            steps[1] += 1;
            Some(buf[..n].to_vec())
        }
        Poll::Ready(Err(e)) => panic!("read failed: {e}"),
        Poll::Pending => None,
    }
}

/// A sender writing several megabytes while the receiving reader reads through in
/// pieces of varying size and the I/O side reads in chunks that end mid-frame: every
/// byte arrives once and in order, windows keep moving, and both kinds of step and the
/// lend were used.
#[test]
fn reading_through_keeps_every_byte_in_order() {
    let cases = [
        (1000, 100_000, false),
        (30_000, 3_000, true),
        (9_000, 7, false),
        (500, 70_000, true),
    ];
    for (read_max, through_max, with_header) in cases {
        let mut sim = Sim::new(Config::default());
        sim.read_max = read_max;
        sim.conn(1).lend_reads();
        let w = counter().1;
        let id = sim.conn(0).open().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let (mut sent, mut got) = (0, Vec::new());
        let mut accepted = None;
        let (mut steps, mut lent) = ([0usize; 2], 0);
        for _ in 0..200_000 {
            if sent < data.len() {
                let end = data.len().min(sent + 40_000);
                if let Poll::Ready(r) = sim.conn(0).poll_write(id, &data[sent..end], &w) {
                    sent += r.unwrap();
                }
            }
            sim.step();
            if sim.ends[1].plan.timer.is_some() && !sim.ends[1].plan.read {
                lent += 1;
            }
            sim.ends[1].conn.session().assert_invariants();
            if accepted.is_none() {
                let slot = &mut Slot::default();
                if let Poll::Ready(s) = sim.conn(1).poll_accept(slot, &w) {
                    accepted = Some(s.unwrap());
                }
            }
            if let Some(s) = accepted {
                while let Some(bytes) = read_call(&mut sim, s, through_max, with_header, &mut steps)
                {
                    got.extend_from_slice(&bytes);
                }
            }
            if got.len() == data.len() {
                break;
            }
        }
        assert_eq!(got.len(), data.len(), "case {read_max} / {through_max}");
        assert!(got == data, "bytes differ ({read_max} / {through_max})");
        assert!(
            steps[0] > 10 && steps[1] > 0,
            "steps taken: {steps:?}, lent {lent}, case {read_max} / {through_max} / {with_header}"
        );
        assert!(lent > 0, "the read side was never lent");
        let stats = sim.conn(1).session().stats();
        assert!(stats.bytes_received >= data.len() as u64);
    }
}

/// End 1 with stream `id` accepted and its reader parked, and the I/O side holding the
/// first `first` bytes of a 60,000-byte PSH for it (the rest still in the transport).
fn parked_mid_frame(lends: bool, first: usize) -> (Sim, StreamId) {
    let mut sim = Sim::new(Config::default());
    if lends {
        sim.conn(1).lend_reads();
    }
    let w = counter().1;
    let id = sim.conn(0).open().unwrap();
    sim.run_for(Duration::from_millis(10));
    let s = ready(sim.conn(1).poll_accept(&mut Slot::default(), &w)).unwrap();
    assert!(sim.conn(1).poll_read(s, &mut [0u8; 10], &w).is_pending());
    let data = vec![7u8; 60_000];
    assert_eq!(
        ready(sim.conn(0).poll_write(id, &data, &w)).unwrap(),
        60_000
    );
    sim.read_max = first;
    sim.step();
    sim.read_max = 0;
    sim.step();
    (sim, s)
}

/// The I/O side leaves the rest of a payload to the reader it woke, and takes the read
/// side back once the reader made no progress for `LEND_GRACE`.
#[test]
fn a_lent_read_side_comes_back_after_the_grace() {
    let (mut sim, _) = parked_mid_frame(true, 20_000);
    let plan = sim.ends[1].plan;
    assert!(!plan.read, "reading paused while the reader reads");
    assert_eq!(plan.timer, Some(sim.now + LEND_GRACE));
    sim.now += LEND_GRACE;
    sim.read_max = usize::MAX;
    sim.step();
    assert!(
        sim.ends[1].plan.read,
        "the grace passed: the I/O side reads again"
    );
    assert!(sim.pipes[0].bytes.is_empty());
}

/// A lent reader that finds nothing to read (the rest has not arrived) parks and gives
/// the read side back at once, and is not lent it again until a read suggests more is
/// there; without `lend_reads` nothing is ever lent.
#[test]
fn a_reader_that_waits_gives_the_read_side_back() {
    let (mut sim, s) = parked_mid_frame(true, 20_000);
    let w = counter().1;
    let mut buf = vec![0u8; 100_000];
    let n = ready(sim.conn(1).poll_read(s, &mut buf, &w)).unwrap();
    assert_eq!(n, 20_000 - 7);
    assert!(!sim.ends[1].plan.read);
    let rest = std::mem::take(&mut sim.pipes[0].bytes);
    assert_eq!(read_call(&mut sim, s, usize::MAX, true, &mut [0; 2]), None);
    sim.pipes[0].bytes = rest;
    sim.read_max = usize::MAX;
    sim.step();
    assert!(sim.ends[1].plan.read, "parking ended the lend");
    sim.step();
    let n = ready(sim.conn(1).poll_read(s, &mut buf, &w)).unwrap();
    assert_eq!(n, 60_000 - 20_000 + 7, "the I/O side read the rest");

    let (sim, _) = parked_mid_frame(false, 20_000);
    assert!(sim.ends[1].plan.read, "no lend without lend_reads");
}

/// Driven apart (a reader thread waits while the read side is lent, until the lend's
/// grace at the latest), the input side is woken as soon as the lend ends.
#[test]
fn the_end_of_a_lend_wakes_the_input_side_driven_apart() {
    let (mut sim, s) = parked_mid_frame(true, 20_000);
    let (count, reader) = counter();
    let now = sim.now;
    let e = &mut sim.ends[1];
    let plan = e.conn.drive_input(now, &mut e.input, &reader);
    assert!(!plan.read, "the read side is lent");
    let woken = |c: &mut Connection| {
        let mut owed = Vec::new();
        c.take_wakers(&mut owed);
        owed.into_iter().for_each(std::task::Waker::wake);
        count.0.load(Ordering::SeqCst)
    };
    let before = woken(sim.conn(1));
    // The reader takes what is buffered, then waits: that ends the lend.
    let w = counter().1;
    let mut buf = vec![0u8; 100_000];
    ready(sim.conn(1).poll_read(s, &mut buf, &w)).unwrap();
    assert!(sim.conn(1).poll_read(s, &mut buf, &w).is_pending());
    assert!(woken(sim.conn(1)) > before, "the input side was woken");
}

/// A header the reader reads for another stream's frame is taken as the I/O side would
/// take it, and the read side goes back to the I/O side for that payload.
#[test]
fn a_header_for_another_stream_ends_the_lend() {
    let (mut sim, s) = parked_mid_frame(true, 20_000);
    let w = counter().1;
    // A second stream's frame queued behind the first.
    let other = sim.conn(0).open().unwrap();
    ready(sim.conn(0).poll_write(other, b"other", &w)).unwrap();
    sim.step();
    let mut steps = [0; 2];
    let mut got = 0;
    while let Some(b) = read_call(&mut sim, s, usize::MAX, true, &mut steps) {
        got += b.len();
        if got == 60_000 {
            break;
        }
    }
    assert_eq!(got, 60_000);
    assert_eq!(read_call(&mut sim, s, usize::MAX, true, &mut steps), None);
    sim.read_max = usize::MAX;
    sim.run_for(Duration::from_millis(10));
    let o = ready(sim.conn(1).poll_accept(&mut Slot::default(), &w)).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(ready(sim.conn(1).poll_read(o, &mut buf, &w)).unwrap(), 5);
    assert_eq!(&buf[..5], b"other");
}

/// Two streams in bulk, their frames alternating on the wire: after large frames the
/// I/O side reads a header alone while a reader waits, and a reader that reads the
/// next header along with its payload passes the read side straight to the reader of
/// that frame. Every byte of both streams arrives once and in order.
#[test]
fn the_read_side_passes_from_reader_to_reader() {
    let mut sim = Sim::new(Config::default());
    sim.conn(1).lend_reads();
    let w = counter().1;
    let ids = [sim.conn(0).open().unwrap(), sim.conn(0).open().unwrap()];
    let data: Vec<Vec<u8>> = (0..2u32)
        .map(|k| (0..1_500_000u32).map(|i| (i % (241 + k)) as u8).collect())
        .collect();
    let (mut sent, mut got) = ([0; 2], [Vec::new(), Vec::new()]);
    let mut accepted = Vec::new();
    let (mut header_only, mut passed) = (0, 0);
    for round in 0..100_000 {
        for k in 0..2 {
            if sent[k] < data[k].len() {
                let end = data[k].len().min(sent[k] + 30_000);
                if let Poll::Ready(r) = sim.conn(0).poll_write(ids[k], &data[k][sent[k]..end], &w) {
                    sent[k] += r.unwrap();
                }
            }
        }
        sim.step();
        header_only += usize::from(sim.ends[1].plan.read_limit == Some(HEADER_LEN));
        while accepted.len() < 2 {
            match sim.conn(1).poll_accept(&mut Slot::default(), &w) {
                Poll::Ready(s) => accepted.push(s.unwrap()),
                Poll::Pending => break,
            }
        }
        // Readers take turns, the first one first on even rounds.
        for j in 0..accepted.len() {
            let k = (j + round) % accepted.len();
            let before = sim.conn(1).lent();
            while let Some(b) = read_call(&mut sim, accepted[k], usize::MAX, true, &mut [0; 2]) {
                got[k].extend_from_slice(&b);
            }
            let after = sim.conn(1).lent();
            passed +=
                usize::from(before == Some(accepted[k]) && after.is_some_and(|a| a != accepted[k]));
        }
        if got[0].len() + got[1].len() == 3_000_000 {
            break;
        }
    }
    // Streams are accepted in the order they were opened.
    assert!(got[0] == data[0] && got[1] == data[1], "bytes differ");
    assert!(header_only > 0, "no header-only read");
    assert!(passed > 0, "the read side never passed between readers");
}

/// A reader that never reads through (its adapter cannot, or its buffer is too small)
/// and only parks: the read side it is lent comes back at once and is not lent to it
/// again before the I/O side has read, so every byte still arrives, without a round
/// of lending and parking per step.
#[test]
fn a_reader_that_never_reads_through_gets_everything() {
    let mut sim = Sim::new(Config::default());
    sim.conn(1).lend_reads();
    let (count, w) = counter();
    let id = sim.conn(0).open().unwrap();
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 249) as u8).collect();
    let (mut sent, mut got, mut accepted) = (0, Vec::new(), None);
    let mut rounds = 0;
    while got.len() < data.len() && rounds < 20_000 {
        rounds += 1;
        if sent < data.len() {
            let end = data.len().min(sent + 60_000);
            if let Poll::Ready(r) = sim.conn(0).poll_write(id, &data[sent..end], &w) {
                sent += r.unwrap();
            }
        }
        sim.step();
        if accepted.is_none() {
            if let Poll::Ready(s) = sim.conn(1).poll_accept(&mut Slot::default(), &w) {
                accepted = Some(s.unwrap());
            }
        }
        let mut buf = [0u8; 1000];
        while let Some(s) = accepted {
            match sim.conn(1).poll_read(s, &mut buf, &w) {
                Poll::Ready(n) => got.extend_from_slice(&buf[..n.unwrap()]),
                Poll::Pending => break,
            }
        }
    }
    assert!(
        got == data,
        "{} of {} bytes after {rounds} rounds",
        got.len(),
        data.len()
    );
    let wakes = count.0.load(std::sync::atomic::Ordering::SeqCst);
    assert!(wakes < 2 * rounds, "{wakes} wake-ups in {rounds} rounds");
}

/// An async reader's whole call ([`poll_read_through`]): data already buffered is
/// read, and a reader with nothing to read parks, each under one lock (once no read
/// suggests more is waiting); a payload next on the wire is read through, under two
/// (the step, and its result).
#[test]
fn a_read_call_that_finds_nothing_to_read_through_takes_the_lock_once() {
    let mut sim = Sim::new(Config::default());
    sim.conn(1).lend_reads();
    let w = counter().1;
    let id = sim.conn(0).open().unwrap();
    ready(sim.conn(0).poll_write(id, &[5u8; 1000], &w)).unwrap();
    sim.run_for(Duration::from_millis(10));
    let s = ready(sim.conn(1).poll_accept(&mut Slot::default(), &w)).unwrap();
    let (parked, reader) = counter();
    let call = |sim: &mut Sim, buf: &mut [u8]| {
        let now = sim.now;
        let e = &mut sim.ends[1];
        let conn = RefCell::new(&mut e.conn);
        let pipe = RefCell::new(&mut sim.pipes[0].bytes);
        let locks = std::cell::Cell::new(0);
        let with = |f: &mut dyn FnMut(&mut Connection)| {
            locks.set(locks.get() + 1);
            f(&mut conn.borrow_mut())
        };
        let read = |v: &mut [IoSliceMut<'_>]| take(&mut pipe.borrow_mut(), v, usize::MAX, true);
        let r = poll_read_through(s, &mut e.input, buf, &reader, with, || now, read);
        (r.map(Result::unwrap), locks.get())
    };
    let mut buf = vec![0u8; 50_000];
    assert_eq!(call(&mut sim, &mut buf), (Poll::Ready(1000), 1), "buffered");
    assert_eq!(buf[..1000], [5u8; 1000]);
    // The simulated read filled what it asked, which suggests more is waiting: the
    // reader tries for a header first, and that finding nothing says otherwise.
    assert_eq!(
        call(&mut sim, &mut buf),
        (Poll::Pending, 3),
        "nothing there"
    );
    assert_eq!(
        call(&mut sim, &mut buf),
        (Poll::Pending, 1),
        "still nothing"
    );
    // The parked reader is woken by data the I/O side reads.
    ready(sim.conn(0).poll_write(id, &[6u8; 300], &w)).unwrap();
    sim.run_for(Duration::from_millis(10));
    let mut owed = Vec::new();
    sim.conn(1).take_wakers(&mut owed);
    owed.into_iter().for_each(std::task::Waker::wake);
    assert_eq!(
        parked.0.load(Ordering::SeqCst),
        1,
        "the parked reader was woken"
    );
    assert_eq!(call(&mut sim, &mut buf), (Poll::Ready(300), 1));

    // A large payload whose header alone the I/O side took: read through.
    ready(sim.conn(0).poll_write(id, &[7u8; 40_000], &w)).unwrap();
    sim.read_max = HEADER_LEN;
    sim.step();
    sim.read_max = 0;
    sim.step();
    sim.read_max = usize::MAX;
    assert!(
        !sim.pipes[0].bytes.is_empty(),
        "the payload waits in the transport"
    );
    assert_eq!(
        call(&mut sim, &mut buf),
        (Poll::Ready(40_000), 2),
        "read through"
    );
    assert!(buf[..40_000].iter().all(|&b| b == 7));
}
