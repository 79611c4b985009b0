//! The agreement on extensions (who speaks when, what each end learns from the order of
//! frames), the streams opened before it settles, and the bookkeeping of VRMs, turns,
//! IDs and windows around it.

use std::time::Duration;

use bytes::BytesMut;

use super::{base_frames, frames, off, read_all, Pair};
use crate::error::{EndReason, ReadError, WriteError};
use crate::frame::{Cmd, Header};
use crate::negotiate::{Agreement, ASK_ID, CAPS, HELLO_ID};
use crate::probe::verify_code;
use crate::{Config, Event, Role, Session, StreamId, StreamState, Transmit};

const MAX: usize = usize::MAX;

/// Everything the dialer has goes across, then everything the acceptor has comes back:
/// one round trip.
fn round_trip(p: &mut Pair) {
    p.transmit(false, MAX);
    p.deliver(true, MAX);
    p.transmit(true, MAX);
    p.deliver(false, MAX);
    p.drain_events();
}

/// What `s` would send now.
fn sent_by(s: &mut Session, now: std::time::Instant) -> Vec<Header> {
    let mut tx = Transmit::new();
    s.poll_transmit(now, &mut tx, MAX);
    let mut wire = Vec::new();
    tx.drain_into(&mut wire);
    base_or_ext_frames(&wire)
}

fn base_or_ext_frames(wire: &[u8]) -> Vec<Header> {
    let mut dec = crate::frame::Decoder::new(u32::MAX);
    dec.set_extended();
    let mut buf = BytesMut::from(wire);
    let mut out = Vec::new();
    while let Some(f) = dec.decode(&mut buf).unwrap() {
        out.push(f.header);
    }
    out
}

fn vrm(v1: u16, v2: u32) -> Header {
    Header::new(Cmd::Vrm, v1, v2)
}

#[test]
fn a_probe_gets_its_answer_first_and_hello_follows() {
    let mut p = Pair::new(Config::default());
    let mut probe = frames(&[(vrm(0x1234, 0x1122_3344), &[])]);
    p.b.handle_input(p.now, &mut probe);
    p.transmit(true, MAX);
    let sent = base_frames(&p.ba);
    let (a, b) = verify_code(0x1234, 0x1122_3344);
    assert_eq!(sent[0], vrm(a, b), "the answer comes first");
    assert_eq!(sent[1], vrm(HELLO_ID, CAPS));
    // The prober read exactly one header; the session gets the rest.
    p.ba = p.ba.split_off(7);
    p.settle();
    assert!(p.a.extensions_enabled() && p.b.extensions_enabled());
}

#[test]
fn the_dialer_never_speaks_first_and_the_acceptor_waits_for_a_frame() {
    let mut p = Pair::new(Config::default());
    p.advance(Duration::from_secs(5));
    p.settle();
    assert!(p.ab.is_empty() && p.ba.is_empty());
    assert_eq!(p.b.agreement(), Agreement::Pending);
    // The first PIN is the dialer's first frame; its ASK follows it.
    p.advance(Duration::from_secs(5));
    p.transmit(false, MAX);
    let sent = base_frames(&p.ab);
    assert_eq!(sent, vec![Header::new(Cmd::Pin, 0, 0), vrm(ASK_ID, CAPS)]);
    p.settle();
    assert!(p.a.extensions_enabled() && p.b.extensions_enabled());
}

#[test]
fn an_end_without_extensions_sees_only_base_frames_and_both_fall_back() {
    for (ca, cb) in [(Config::default(), off()), (off(), Config::default())] {
        let a_ext = ca.extensions;
        let mut p = Pair::with_roles(ca, cb, Role::Dialer, Role::Acceptor);
        let id = p.a.open().unwrap();
        p.a.write(id, &vec![7u8; 300_000]).unwrap();
        // Move the link by hand so every byte can be decoded with a base decoder.
        let mut seen = Vec::new();
        let mut got = None;
        for _ in 0..50 {
            p.transmit(false, MAX);
            p.transmit(true, MAX);
            seen.extend(base_frames(&p.ab).into_iter().map(|h| (0, h)));
            seen.extend(base_frames(&p.ba).into_iter().map(|h| (1, h)));
            p.deliver(true, MAX);
            p.deliver(false, MAX);
            p.drain_events();
            if let Some(s) = p.b.accept() {
                got = Some(s);
            }
            if let Some(s) = got {
                read_all(&mut p.b, s);
            }
        }
        let got = got.unwrap();
        assert_eq!(p.a.agreement(), Agreement::Base);
        assert_eq!(p.b.agreement(), Agreement::Base);
        assert!(!p.a.is_extended(id) && !p.b.is_extended(got));
        // Only an end with the extensions says so in its SYN; no FIN ever carries a flag.
        for (from, h) in &seen {
            let ext_end = if *from == 0 { a_ext } else { !a_ext };
            if h.cmd == Cmd::Syn {
                assert_eq!(h.length, u32::from(ext_end), "{h:?}");
            }
            assert!(h.cmd != Cmd::Fin || h.length == 0, "{h:?}");
        }
        // No half-close on a base stream: an error, and nothing sent.
        let before = p.b.stats();
        assert_eq!(p.b.shutdown(got), Err(WriteError::HalfCloseUnsupported));
        assert!(!p.b.has_transmit());
        assert_eq!(p.b.stats(), before);
        assert_eq!(p.b.stream_state(got), Some(StreamState::Open));
        p.b.close(got).unwrap();
        p.settle();
        assert_eq!(p.a.write(id, b"x"), Err(WriteError::PeerClosed));
        p.a.close(id).unwrap();
        p.settle();
        assert!(p.a.stream_ids().is_empty() && p.b.stream_ids().is_empty());
    }
}

/// The agreement settles within one round trip of the dialer's first frame, on both
/// ends, whichever way it goes; and at once on an end with the extensions off.
#[test]
fn the_agreement_settles_within_one_round_trip() {
    for (cb, want) in [
        (Config::default(), Agreement::Extended),
        (off(), Agreement::Base),
    ] {
        let mut p = Pair::with_roles(Config::default(), cb.clone(), Role::Dialer, Role::Acceptor);
        assert_eq!(p.a.agreement(), Agreement::Pending);
        let id = p.a.open().unwrap();
        round_trip(&mut p);
        assert_eq!(p.a.agreement(), want);
        assert_eq!(p.b.agreement(), want);
        assert_eq!(p.a.is_extended(id), want == Agreement::Extended);
        assert!(p.events_a.contains(&Event::Agreed(want)));
    }
    let p = Pair::with_roles(off(), off(), Role::Dialer, Role::Acceptor);
    assert_eq!(p.a.agreement(), Agreement::Base);
    // The acceptor speaks first (it opens a stream): HELLO goes ahead of its SYN.
    for (ca, want) in [
        (Config::default(), Agreement::Extended),
        (off(), Agreement::Base),
    ] {
        let mut p = Pair::with_roles(ca, Config::default(), Role::Dialer, Role::Acceptor);
        let id = p.b.open().unwrap();
        p.transmit(true, MAX);
        assert_eq!(base_frames(&p.ba)[0], vrm(HELLO_ID, CAPS));
        p.deliver(false, MAX);
        round_trip(&mut p);
        assert_eq!(p.a.agreement(), want);
        assert_eq!(p.b.agreement(), want);
        assert_eq!(p.b.is_extended(id), want == Agreement::Extended);
    }
}

/// The obvious client: open, write, shut down at once, read the answer to its end.
/// Against an end of ours the shutdown waits for the agreement (one round trip) and is
/// a half-close; against an end without extensions it fails and sends nothing.
#[test]
fn a_stream_shut_down_right_after_connecting_is_half_closed() {
    let mut p = Pair::new(Config::default());
    let ids: Vec<StreamId> = (0..20).map(|_| p.a.open().unwrap()).collect();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut written = vec![0usize; ids.len()];
    let mut shut = vec![false; ids.len()];
    let mut echoed: Vec<Vec<u8>> = vec![Vec::new(); ids.len()];
    let mut server: Vec<(StreamId, Vec<u8>, usize, bool)> = Vec::new();
    let mut eof = vec![false; ids.len()];
    let mut shutdown_blocked = 0;
    for _ in 0..2000 {
        for (i, &id) in ids.iter().enumerate() {
            if written[i] < data.len() {
                written[i] += p.a.write(id, &data[written[i]..]).unwrap_or(0);
            }
            if written[i] == data.len() && !shut[i] {
                match p.a.shutdown(id) {
                    Ok(()) => shut[i] = true,
                    Err(WriteError::Blocked) => shutdown_blocked += 1,
                    Err(e) => panic!("shutdown: {e}"),
                }
            }
        }
        p.settle();
        while let Some(s) = p.b.accept() {
            server.push((s, Vec::new(), 0, false));
        }
        // The echo server: reads to end-of-file, then writes it all back and closes.
        for (s, buf, sent, done) in server.iter_mut() {
            if !*done {
                let (got, end) = read_all(&mut p.b, *s);
                buf.extend(got);
                if end {
                    *done = true;
                }
            } else if *sent < buf.len() {
                *sent += p.b.write(*s, &buf[*sent..]).unwrap_or(0);
                if *sent == buf.len() {
                    p.b.close(*s).unwrap();
                }
            }
        }
        for (i, &id) in ids.iter().enumerate() {
            if !eof[i] {
                let (got, end) = read_all(&mut p.a, id);
                echoed[i].extend(got);
                eof[i] = end;
            }
        }
        if eof.iter().all(|e| *e) {
            break;
        }
    }
    assert!(shutdown_blocked > 0, "the early shutdowns waited");
    for (i, e) in echoed.iter().enumerate() {
        assert!(eof[i], "stream {i} never ended");
        assert_eq!(e.len(), data.len(), "stream {i} truncated");
        assert!(e == &data, "stream {i} corrupted");
    }
    for id in ids {
        p.a.close(id).unwrap();
    }
    p.settle();
    assert!(p.a.stream_ids().is_empty() && p.b.stream_ids().is_empty());

    // Against an end without the extensions: an error once known, and nothing sent.
    let mut p = Pair::with_roles(Config::default(), off(), Role::Dialer, Role::Acceptor);
    let id = p.a.open().unwrap();
    p.a.write(id, b"request").unwrap();
    assert_eq!(p.a.shutdown(id), Err(WriteError::Blocked));
    p.settle();
    assert!(
        p.events_a.contains(&Event::Writable(id)),
        "the waiting shutdown is woken"
    );
    let before = p.a.stats();
    assert_eq!(p.a.shutdown(id), Err(WriteError::HalfCloseUnsupported));
    assert_eq!(p.a.stats(), before);
    assert!(!p.a.has_transmit());
    let got = p.b.accept().unwrap();
    assert_eq!(read_all(&mut p.b, got), (b"request".to_vec(), false));
}

/// Released (or reset) before the agreement: the frames that differ between the modes
/// wait for it, and both ends end up agreeing and freeing the ID.
#[test]
fn a_stream_released_before_the_agreement_completes_in_either_mode() {
    for cb in [Config::default(), off()] {
        let ext = cb.extensions;
        // Reset: the peer sees the code (extended) or a plain end (base).
        let mut p = Pair::with_roles(Config::default(), cb.clone(), Role::Dialer, Role::Acceptor);
        let id = p.a.open().unwrap();
        p.a.write(id, &[1u8; 1000]).unwrap();
        p.a.reset(id, 77).unwrap();
        assert_eq!(p.a.write(id, b"x"), Err(WriteError::Closed));
        p.settle();
        let got = p.b.accept().unwrap();
        if ext {
            assert!(p.events_b.contains(&Event::Reset(got, 77)));
            let mut buf = [0u8; 4];
            assert_eq!(p.b.read(got, &mut buf), Err(ReadError::Reset(77)));
        } else {
            assert!(p.events_b.contains(&Event::Finished(got)));
        }
        p.b.close(got).unwrap();
        p.settle();
        assert!(p.a.stream_ids().is_empty() && p.b.stream_ids().is_empty());
        p.a.assert_invariants();

        // Close: the peer's writes stop (extended, after the WND(0) that follows) or
        // fail (base, after the FIN).
        let mut p = Pair::with_roles(Config::default(), cb, Role::Dialer, Role::Acceptor);
        let id = p.a.open().unwrap();
        p.a.close(id).unwrap();
        p.settle();
        let got = p.b.accept().unwrap();
        assert_eq!(p.b.write(got, b"x"), Err(WriteError::PeerClosed));
        p.b.close(got).unwrap();
        p.settle();
        assert!(p.a.stream_ids().is_empty() && p.b.stream_ids().is_empty());
    }
}

/// Both ends open the same ID before the agreement: one stream, the same mode on both
/// ends, and the ID is freed on both, so a later stream with it works.
#[test]
fn a_stream_both_ends_opened_at_once_has_one_mode() {
    let mut p = Pair::new(Config::default());
    p.b.set_next_id(5);
    p.a.set_next_id(5);
    let x = p.a.open().unwrap();
    let xb = p.b.open().unwrap();
    assert_eq!(x, xb);
    assert_eq!(p.a.shutdown(x), Err(WriteError::Blocked));
    p.settle();
    assert!(p.a.is_extended(x) && p.b.is_extended(x));
    p.a.shutdown(x).unwrap();
    p.b.write(x, b"after our FIN").unwrap();
    p.b.close(x).unwrap();
    p.settle();
    assert_eq!(read_all(&mut p.a, x), (b"after our FIN".to_vec(), true));
    p.a.close(x).unwrap();
    p.settle();
    assert!(p.a.stream_ids().is_empty() && p.b.stream_ids().is_empty());
    // The ID is free on both ends: the acceptor reuses it and its data arrives.
    p.b.set_next_id(5);
    let again = p.b.open().unwrap();
    assert_eq!(again.number(), x.number());
    assert_ne!(again, x, "a new handle: the old one names nothing");
    assert_eq!(p.a.write(x, b"stale"), Err(WriteError::UnknownStream));
    p.b.write(again, b"new").unwrap();
    p.settle();
    let got = p.a.accept().unwrap();
    assert_eq!(got.number(), x.number());
    assert_eq!(read_all(&mut p.a, got).0, b"new");
    // The old handle reaches nothing, not even after its number came back.
    let mut buf = [0u8; 4];
    assert_eq!(p.a.read(x, &mut buf), Err(ReadError::UnknownStream));
    assert_eq!(p.a.close(x), Err(WriteError::UnknownStream));
    assert_eq!(
        read_all(&mut p.a, got).0,
        b"",
        "nothing stale on the new stream"
    );
}

/// Issue: the answer to our ping arriving before the ping left was counted when the ping
/// left as one answer fewer owed (underflow: a panic, or a session that never reads
/// again). Only an answer to a ping that left counts.
#[test]
fn an_answer_that_arrives_before_our_ping_left_is_not_taken() {
    let now = std::time::Instant::now();
    let mut s = Session::new(Config::default(), Role::Acceptor, now).unwrap();
    assert!(s.ping(now));
    let (a, b) = s.ping_values().unwrap();
    let (va, vb) = verify_code(a, b);
    // A peer that knew our challenge answers it before it left: a request to us.
    s.handle_input(now, &mut frames(&[(vrm(va, vb), &[])]));
    assert_eq!(s.stats().rtt, None, "not an answer yet");
    assert_eq!(s.answers_owed(), 1, "answered as a request");
    s.assert_invariants();
    let sent = sent_by(&mut s, now);
    assert!(sent.contains(&vrm(a, b)), "our ping left");
    assert_eq!(s.answers_owed(), 0, "and the answer, counted once");
    s.assert_invariants();
    assert!(s.wants_input());
    // Now the answer counts.
    s.handle_input(now, &mut frames(&[(vrm(va, vb), &[])]));
    assert!(s.stats().rtt.is_some());
    assert_eq!(s.answers_owed(), 0);
}

/// Issue: an owed answer equal to our outstanding ping was taken for the ping as it
/// left, so the answers owed never went down and the session stopped reading.
#[test]
fn owed_answers_equal_to_our_ping_are_counted_as_answers() {
    let config = Config {
        max_pending_answers: 4,
        ..Config::default()
    };
    let mut s = Session::new(config, Role::Acceptor, std::time::Instant::now()).unwrap();
    let now = std::time::Instant::now();
    assert!(s.ping(now));
    let (a, b) = s.ping_values().unwrap();
    for _ in 0..20 {
        let mut req = frames(&[(vrm(a, b), &[]), (vrm(a, b), &[])]);
        s.handle_input(now, &mut req);
        assert!(req.is_empty());
        sent_by(&mut s, now);
        assert!(s.wants_input(), "stopped reading");
        s.assert_invariants();
    }
    assert_eq!(s.answers_owed(), 0);
}

/// A peer that floods VRM requests and never reads our answers stops our reading; the
/// session still ends on keepalive silence instead of hanging.
#[test]
fn a_session_that_stopped_reading_ends_on_keepalive_silence() {
    let config = Config {
        max_pending_answers: 2,
        ..Config::default()
    };
    let timeout = config.keepalive_timeout;
    let start = std::time::Instant::now();
    let mut s = Session::new(config, Role::Acceptor, start).unwrap();
    let mut flood = frames(&[(vrm(1, 1), &[][..]); 10]);
    s.handle_input(start, &mut flood);
    assert!(!s.wants_input());
    let mut now = start;
    while now < start + timeout * 2 && !s.is_ended() {
        now = s.poll_timeout().expect("a timer while not ended");
        s.handle_timeout(now);
    }
    assert_eq!(s.end_reason(), Some(&EndReason::KeepaliveTimeout));
    assert!(now <= start + timeout + Duration::from_secs(1));
}

/// Issue: a writer given its send-queue turn that never writes held queue room until
/// some unrelated wake-up (up to the next PIN). The turn's expiry is a timer now.
#[test]
fn an_unused_send_queue_turn_expires_on_its_own_timer() {
    let config = Config {
        max_buffered_out: 128 * 1024,
        ..Config::default()
    };
    let mut p = Pair::new(config);
    p.a.start_agreement();
    p.settle();
    let hog = p.a.open().unwrap();
    let idle = p.a.open().unwrap();
    let waiter = p.a.open().unwrap();
    p.settle();
    assert_eq!(p.a.write(hog, &[0u8; 128 * 1024]).unwrap(), 128 * 1024);
    assert_eq!(p.a.write(idle, b"x"), Err(WriteError::Blocked));
    assert_eq!(p.a.write(waiter, b"x"), Err(WriteError::Blocked));
    // One frame leaves: its room is the idle writer's turn, which it never takes.
    p.transmit(false, 1);
    p.drain_events();
    assert!(p.events_a.contains(&Event::Writable(idle)));
    assert!(!p.events_a.contains(&Event::Writable(waiter)));
    let due = p.a.poll_timeout().unwrap();
    assert!(
        due <= p.now + Duration::from_millis(500),
        "no timer for the turn"
    );
    p.now = due;
    p.a.handle_timeout(p.now);
    p.drain_events();
    assert!(
        p.events_a.contains(&Event::Writable(waiter)),
        "the expired turn went to the next writer"
    );
    assert!(p.a.write(waiter, b"x").is_ok());
}

/// Only an exact offer counts (every bit of it), and the answer to our own offer is
/// never answered (that could start an endless exchange with a reference peer).
#[test]
fn only_an_exact_offer_counts_and_answers_to_ours_are_never_answered() {
    let now = std::time::Instant::now();
    for (role, near) in [
        (Role::Acceptor, vrm(ASK_ID, CAPS ^ 2)),
        (Role::Acceptor, vrm(ASK_ID ^ 0x100, CAPS)),
        (Role::Dialer, vrm(HELLO_ID, CAPS | 0x8000)),
        (Role::Dialer, vrm(ASK_ID, CAPS)),
        (Role::Acceptor, vrm(HELLO_ID, CAPS)),
    ] {
        let mut s = Session::new(Config::default(), role, now).unwrap();
        s.handle_input(now, &mut frames(&[(near, &[])]));
        assert_eq!(s.agreement(), Agreement::Pending, "{role:?} {near:?}");
        let (a, b) = verify_code(near.id, near.length);
        assert!(sent_by(&mut s, now).contains(&vrm(a, b)), "answered");
    }
    // A dialer asks a peer without extensions: its answer ends the question, unanswered.
    let mut p = Pair::with_roles(Config::default(), off(), Role::Dialer, Role::Acceptor);
    p.a.start_agreement();
    p.settle();
    assert_eq!(p.a.agreement(), Agreement::Base);
    assert_eq!(p.a.stats().frames_sent, 1, "only the ASK");
    assert_eq!(p.b.stats().frames_sent, 1, "only its answer");
}

/// Issue: our dialer reused the lowest free ID at once, so a PSH the reference still
/// sent for a stream after its FIN (a write in progress) landed in the new stream. IDs
/// go round-robin now: the late frame finds no stream and is dropped.
#[test]
fn a_late_frame_for_a_closed_stream_finds_no_new_stream() {
    let now = std::time::Instant::now();
    let mut s = Session::new(off(), Role::Dialer, now).unwrap();
    let old = s.open().unwrap();
    sent_by(&mut s, now);
    s.close(old).unwrap();
    sent_by(&mut s, now);
    // The peer's FIN completes the close; its late PSH follows.
    s.handle_input(
        now,
        &mut frames(&[(Header::new(Cmd::Fin, old.num, 0), &[])]),
    );
    assert!(s.stream_ids().is_empty());
    let new = s.open().unwrap();
    assert_ne!(new, old);
    let late = [9u8; 16];
    s.handle_input(
        now,
        &mut frames(&[(Header::new(Cmd::Psh, old.num, 16), &late)]),
    );
    assert_eq!(s.stats().bytes_discarded, 16);
    assert_eq!(s.readable_len(new), 0);
}

#[test]
fn poll_transmit_with_limit_zero_sends_one_frame() {
    let now = std::time::Instant::now();
    let mut s = Session::new(off(), Role::Dialer, now).unwrap();
    s.open().unwrap();
    s.open().unwrap();
    let mut tx = Transmit::new();
    s.poll_transmit(now, &mut tx, 0);
    assert_eq!(tx.len(), 7, "one frame");
    s.poll_transmit(now, &mut tx, 0);
    assert_eq!(tx.len(), 7, "nothing more while out is above the limit");
}

/// Issue: a larger `window` on one end made its writes overrun the other end's window
/// (a protocol error ending the session). The receiver's window governs: sent in the
/// agreement, and assumed to be at most 512 KiB until then.
#[test]
fn the_receivers_window_governs_between_our_ends() {
    let big = Config {
        window: 2 * 1024 * 1024,
        ..Config::default()
    };
    let small = Config {
        window: 64 * 1024,
        cfm_threshold: 32 * 1024,
        ..Config::default()
    };
    // A receiver with a large window and threshold, and a sender that cannot know it
    // (extensions off): the sender stops at 512 KiB, far below the threshold, so the
    // receiver must confirm once its reader caught up, or both wait forever.
    let big_off = Config {
        window: 4 * 1024 * 1024,
        cfm_threshold: 2 * 1024 * 1024,
        ..off()
    };
    for (ca, cb) in [
        (big.clone(), Config::default()),
        (Config::default(), big.clone()),
        (Config::default(), small.clone()),
        (small.clone(), big.clone()),
        (big.clone(), off()),
        (off(), big_off),
    ] {
        let label = format!("{} -> {}", ca.window, cb.window);
        let mut p = Pair::with_roles(ca, cb.clone(), Role::Dialer, Role::Acceptor);
        let id = p.a.open().unwrap();
        let data = vec![3u8; 3 * 1024 * 1024];
        let mut sent = 0;
        let mut got = Vec::new();
        let mut s = None;
        for _ in 0..1000 {
            sent += p.a.write(id, &data[sent..]).unwrap_or(0);
            p.settle();
            assert!(
                !p.a.is_ended() && !p.b.is_ended(),
                "{label}: {:?}",
                p.b.end_reason()
            );
            if s.is_none() {
                s = p.b.accept();
            }
            if let Some(s) = s {
                got.extend(read_all(&mut p.b, s).0);
            }
            if got.len() == data.len() {
                break;
            }
        }
        assert_eq!(got.len(), data.len(), "{label}");
        // A stream opened after the agreement never has more than the receiver's window
        // (or 512 KiB towards an end that cannot tell) in flight.
        let id2 = p.a.open().unwrap();
        p.a.write(id2, &data).unwrap_or(0);
        p.settle();
        let limit = if cb.extensions { cb.window } else { 512 * 1024 };
        assert!(p.b.stats().buffered_in <= limit as usize, "{label}");
    }
}
