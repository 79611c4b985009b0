//! Streams opened and closed one after another: what each stream's life costs in
//! writes to the transport, and that closing FINs nobody waits for ride along.

use super::extensions::negotiated;
use super::{read_all, Pair};
use crate::session::DEFER_LIMIT;
use crate::{Cmd, Config, Header, Session, StreamId, Transmit};

/// One round of an I/O side: what `poll_transmit` hands over, as frame headers (empty:
/// no write).
fn transmit(p: &mut Pair, from_b: bool) -> Vec<Header> {
    let now = p.now;
    let s = if from_b { &mut p.b } else { &mut p.a };
    let mut tx = Transmit::new();
    s.poll_transmit(now, &mut tx, usize::MAX);
    let mut wire = Vec::new();
    tx.drain_into(&mut wire);
    let headers = frames(&wire);
    if from_b { &mut p.ba } else { &mut p.ab }.extend_from_slice(&wire);
    headers
}

fn frames(mut wire: &[u8]) -> Vec<Header> {
    let mut out = Vec::new();
    while !wire.is_empty() {
        let h = Header::parse_in(wire[..7].try_into().unwrap(), true).unwrap();
        let len = if h.cmd == Cmd::Psh {
            h.length as usize
        } else {
            0
        };
        wire = &wire[7 + len..];
        out.push(h);
    }
    out
}

fn read_exact(s: &mut Session, id: StreamId, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    assert_eq!(s.read(id, &mut buf), Ok(n));
    buf
}

/// The loop of `smux bench`'s churn-1 on two sessions, each I/O side writing once
/// after it handled input (as a driver does) and once after the application's calls:
/// the writes each end makes per stream, after a warm-up of 3 streams.
fn churn(p: &mut Pair, streams: usize) -> (usize, usize) {
    let (mut writes_a, mut writes_b) = (0, 0);
    let count = |n: &mut usize, k: usize, h: Vec<Header>| {
        if k >= 3 && !h.is_empty() {
            *n += 1;
        }
    };
    let mut prev: Option<StreamId> = None;
    for k in 0..streams {
        // The opener: open, write 1 KiB (its previous stream's close rides along).
        let id = p.a.open().unwrap();
        assert_eq!(p.a.write(id, &[k as u8; 1024]), Ok(1024));
        let h = transmit(p, false);
        count(&mut writes_a, k, h);
        // The acceptor's I/O side takes it in, then its application runs: the
        // previous stream reads end-of-file, half-closes and is released; the new
        // one is accepted and echoed.
        p.deliver(true, usize::MAX);
        let h = transmit(p, true);
        count(&mut writes_b, k, h);
        if let Some(old) = prev.take() {
            assert_eq!(read_all(&mut p.b, old), (Vec::new(), true));
            p.b.shutdown(old).unwrap();
            p.b.close(old).unwrap();
        }
        let got = p.b.accept().expect("the new stream");
        let echo = read_exact(&mut p.b, got, 1024);
        assert_eq!(p.b.write(got, &echo), Ok(1024));
        let h = transmit(p, true);
        count(&mut writes_b, k, h);
        // The opener's I/O side takes the echo in; its application reads it, then
        // half-closes and releases the stream.
        p.deliver(false, usize::MAX);
        let h = transmit(p, false);
        count(&mut writes_a, k, h);
        assert_eq!(read_exact(&mut p.a, id, 1024), vec![k as u8; 1024]);
        p.a.shutdown(id).unwrap();
        p.a.close(id).unwrap();
        prev = Some(got);
        // Records do not pile up while the handshakes complete.
        assert!(p.a.stats().streams <= 3 && p.b.stats().streams <= 3);
        p.now += std::time::Duration::from_micros(20);
    }
    if let Some(old) = prev {
        p.settle();
        assert_eq!(read_all(&mut p.b, old), (Vec::new(), true));
        p.b.close(old).unwrap();
    }
    (writes_a, writes_b)
}

#[test]
fn sequential_streams_take_one_write_each_way_per_stream() {
    let mut p = negotiated(Config::default());
    let n = 50;
    let (a, b) = churn(&mut p, n);
    // Without deferral each end made a second write per stream for a FIN alone (the
    // opener's last FIN, the acceptor's answer to the opener's stop).
    assert_eq!(
        (a, b),
        (n - 3, n - 3),
        "writes per stream (opener, acceptor)"
    );
    p.settle();
    assert_eq!(p.a.stats().streams + p.b.stats().streams, 0);
    p.a.assert_invariants();
    p.b.assert_invariants();
}

#[test]
fn a_fin_nobody_waits_for_leaves_alone_at_its_time_limit() {
    let mut p = negotiated(Config::default());
    let id = p.a.open().unwrap();
    p.a.write(id, b"ping").unwrap();
    p.settle();
    let got = p.b.accept().unwrap();
    // The opener releases the stream: its FIN and its stop leave at once (a reader
    // may wait for the FIN).
    p.a.close(id).unwrap();
    assert!(p.a.has_transmit());
    let h = transmit(&mut p, false);
    assert_eq!(
        h.iter().map(|h| (h.cmd, h.length)).collect::<Vec<_>>(),
        [(Cmd::Wnd, 0), (Cmd::Fin, 0)]
    );
    p.deliver(true, usize::MAX);
    // The acceptor's FIN answers a stop: nobody reads it, so it waits for company.
    let start = p.now;
    assert!(!p.b.has_transmit());
    assert_eq!(p.b.poll_timeout(), Some(start + DEFER_LIMIT));
    assert!(transmit(&mut p, true).is_empty());
    p.now = start + DEFER_LIMIT - std::time::Duration::from_micros(1);
    assert!(transmit(&mut p, true).is_empty());
    p.now = start + DEFER_LIMIT;
    let h = transmit(&mut p, true);
    assert_eq!(h.len(), 1);
    assert_eq!((h[0].cmd, h[0].id), (Cmd::Fin, id.number()));
    p.deliver(false, usize::MAX);
    assert_eq!(
        p.b.poll_timeout().map(|t| t > p.now + DEFER_LIMIT),
        Some(true)
    );
    // The opener's last FIN waits the same way, then both ends free the ID.
    assert!(transmit(&mut p, false).is_empty());
    p.now += DEFER_LIMIT;
    assert_eq!(transmit(&mut p, false).len(), 1);
    p.deliver(true, usize::MAX);
    let _ = read_all(&mut p.b, got);
    p.b.close(got).unwrap();
    p.settle();
    assert_eq!(p.a.stats().streams + p.b.stats().streams, 0);
}

#[test]
fn a_fin_that_waits_goes_with_the_next_frame_and_at_once_when_going_away() {
    let mut p = negotiated(Config::default());
    let one = p.a.open().unwrap();
    let two = p.a.open().unwrap();
    p.settle();
    let (b1, b2) = (p.b.accept().unwrap(), p.b.accept().unwrap());
    p.a.close(one).unwrap();
    p.a.close(two).unwrap();
    transmit(&mut p, false);
    p.deliver(true, usize::MAX);
    assert!(!p.b.has_transmit(), "both answers wait");
    // A frame that goes anyway takes them along, in order.
    let three = p.b.open().unwrap();
    let h = transmit(&mut p, true);
    let seen: Vec<_> = h.iter().map(|h| (h.cmd, h.id)).collect();
    assert_eq!(
        seen,
        [
            (Cmd::Fin, one.number()),
            (Cmd::Fin, two.number()),
            (Cmd::Syn, three.number())
        ]
    );
    // Going away: what waits leaves at once.
    p.deliver(false, usize::MAX);
    assert!(!p.a.has_transmit());
    p.a.go_away(0);
    let h = transmit(&mut p, false);
    assert!(h.iter().filter(|h| h.cmd == Cmd::Fin).count() == 2, "{h:?}");
    let _ = (b1, b2);
}
