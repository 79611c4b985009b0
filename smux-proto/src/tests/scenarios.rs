//! Hand-written scenarios: each checks one behaviour of the protocol.

use std::time::Duration;

use bytes::BytesMut;

use super::{frames, read_all, Pair};
use crate::error::{EndReason, OpenError, ProtocolError, ReadError, WriteError};
use crate::frame::{Cmd, Header};
use crate::{Config, Event, Role, StreamId};

/// These scenarios check the base protocol, as between two ends of which one (a
/// reference peer, say) has no extensions.
fn base() -> Config {
    Config {
        extensions: false,
        ..Config::default()
    }
}

fn small() -> Config {
    Config {
        window: 1000,
        cfm_threshold: 500,
        max_frame: 100,
        max_buffered_in: 100_000,
        ..base()
    }
}

#[test]
fn a_new_session_sends_nothing_until_asked() {
    let mut p = Pair::new(base());
    p.transmit(false, usize::MAX);
    p.transmit(true, usize::MAX);
    assert!(p.ab.is_empty() && p.ba.is_empty());
    p.advance(Duration::from_secs(9));
    p.transmit(false, usize::MAX);
    assert!(p.ab.is_empty(), "no PIN before the interval");
}

#[test]
fn open_write_read_and_full_close_free_both_ids() {
    let mut p = Pair::new(base());
    let id = p.a.open().unwrap();
    assert_eq!(id.number(), 0, "the dialler allocates from the bottom");
    p.a.write(id, b"ping").unwrap();
    p.settle();
    assert_eq!(p.events_b[0], Event::Incoming(id));
    let got = p.b.accept().unwrap();
    assert_eq!(read_all(&mut p.b, got), (b"ping".to_vec(), false));
    p.b.write(got, b"pong").unwrap();
    p.settle();
    assert_eq!(read_all(&mut p.a, id), (b"pong".to_vec(), false));

    p.a.close(id).unwrap();
    p.settle();
    assert!(p.events_b.contains(&Event::Finished(got)));
    // The passive side keeps the ID until its application releases the stream.
    assert_eq!(p.a.stream_ids(), vec![0]);
    assert_eq!(p.b.write(got, b"x"), Err(WriteError::PeerClosed));
    assert_eq!(read_all(&mut p.b, got), (vec![], true));
    let again = p.a.open().unwrap();
    assert_eq!(
        again.number(),
        1,
        "an ID is not reused before the handshake ends"
    );
    p.b.close(got).unwrap();
    p.settle();
    assert!(p.events_a.contains(&Event::Closed(id)));
    assert!(p.events_b.contains(&Event::Closed(got)));
    assert_eq!(p.a.stream_ids(), vec![1]);
    assert_eq!(p.b.stream_ids(), vec![1]);
    // IDs go round-robin: a freed one comes back only after the others.
    assert_eq!(p.a.open().unwrap().number(), 2);
}

#[test]
fn buffered_data_stays_readable_after_peer_fin() {
    let mut p = Pair::new(base());
    let id = p.a.open().unwrap();
    p.a.write(id, b"last words").unwrap();
    p.a.close(id).unwrap();
    p.settle();
    let got = p.b.accept().unwrap();
    assert_eq!(read_all(&mut p.b, got), (b"last words".to_vec(), true));
}

#[test]
fn fin_follows_queued_data() {
    let mut p = Pair::new(small());
    let id = p.a.open().unwrap();
    assert_eq!(p.a.write(id, &[7u8; 1000]).unwrap(), 1000);
    p.a.close(id).unwrap();
    // Hand out data in small slices: the FIN must come after all ten frames.
    let mut got = Vec::new();
    let mut eof = false;
    for _ in 0..50 {
        p.transmit(false, 150);
        p.deliver(true, usize::MAX);
        p.transmit(true, usize::MAX);
        p.deliver(false, usize::MAX);
        if let Some(s) = p.b.accept() {
            assert_eq!(s, id);
        }
        let (d, e) = read_all(&mut p.b, id);
        got.extend(d);
        eof |= e;
    }
    assert_eq!(got, vec![7u8; 1000]);
    assert!(eof);
}

#[test]
fn simultaneous_close_completes_on_both_ends() {
    let mut p = Pair::new(base());
    let id = p.a.open().unwrap();
    p.settle();
    let got = p.b.accept().unwrap();
    p.a.close(id).unwrap();
    p.b.close(got).unwrap();
    p.settle();
    assert!(p.a.stream_ids().is_empty());
    assert!(p.b.stream_ids().is_empty());
    assert!(p.events_a.contains(&Event::Closed(id)));
    assert!(p.events_b.contains(&Event::Closed(got)));
}

#[test]
fn simultaneous_open_binds_to_one_stream() {
    let c = base();
    let mut p = Pair::with_roles(c.clone(), c, Role::Dialer, Role::Dialer);
    let x = p.a.open().unwrap();
    let y = p.b.open().unwrap();
    assert_eq!(x, y);
    p.a.write(x, b"from a").unwrap();
    p.b.write(y, b"from b").unwrap();
    p.settle();
    assert_eq!(p.a.accept(), None, "the peer's SYN binds to our own stream");
    assert_eq!(read_all(&mut p.a, x).0, b"from b");
    assert_eq!(read_all(&mut p.b, y).0, b"from a");
}

#[test]
fn acceptor_allocates_from_the_top() {
    let mut p = Pair::new(base());
    assert_eq!(p.b.open().unwrap().number(), 65535);
    assert_eq!(p.b.open().unwrap().number(), 65534);
}

#[test]
fn opening_fails_clearly_when_all_ids_are_used() {
    let mut p = Pair::new(base());
    for _ in 0..65536 {
        p.a.open().unwrap();
    }
    assert_eq!(p.a.open(), Err(OpenError::IdsExhausted));
    assert_eq!(p.a.stats().streams, 65536);
}

#[test]
fn window_bounds_writes_and_cfm_reopens_it() {
    let mut p = Pair::new(small());
    let id = p.a.open().unwrap();
    assert_eq!(p.a.write(id, &[1u8; 600]).unwrap(), 600);
    assert_eq!(
        p.a.write(id, &[1u8; 600]).unwrap(),
        400,
        "honest partial write"
    );
    assert_eq!(p.a.write(id, &[1u8; 1]), Err(WriteError::Blocked));
    p.settle();
    let got = p.b.accept().unwrap();
    let mut buf = [0u8; 1000];
    // The peer is out of credit: whatever is consumed is confirmed at once.
    assert_eq!(p.b.read(got, &mut buf[..61]).unwrap(), 61);
    p.settle();
    assert!(p.events_a.contains(&Event::Writable(id)));
    assert_eq!(p.a.writable_len(id), 61);
    // With credit left, only the threshold (or a reader that caught up) confirms.
    assert_eq!(p.b.read(got, &mut buf[..499]).unwrap(), 499);
    p.settle();
    assert_eq!(p.a.writable_len(id), 61, "below threshold: no CFM yet");
    assert_eq!(p.b.read(got, &mut buf[..1]).unwrap(), 1);
    p.settle();
    assert_eq!(p.a.writable_len(id), 561);
    assert_eq!(p.a.write(id, &[1u8; 563]).unwrap(), 561);
}

#[test]
fn psh_beyond_the_window_ends_the_session() {
    // Windows below 512 KiB are honoured by peers that learn them, but a peer that
    // cannot (a reference) may always send 512 KiB: that much is accepted.
    let mut p = Pair::new(Config {
        max_buffered_in: 1 << 20,
        max_frame: 64 * 1024,
        ..small()
    });
    let id = p.a.open().unwrap();
    p.settle();
    let frame = |n: u32| frames(&[(Header::new(Cmd::Psh, id.num, n), &vec![0u8; n as usize])]);
    let mut input = BytesMut::new();
    for _ in 0..8 {
        input.extend_from_slice(&frame(64 * 1024));
    }
    p.a.handle_input(p.now, &mut input);
    assert!(!p.a.is_ended(), "512 KiB is within what a peer may assume");
    let mut input = frame(100);
    p.a.handle_input(p.now, &mut input);
    assert_eq!(
        p.a.end_reason(),
        Some(&EndReason::Protocol(ProtocolError::WindowExceeded {
            id: id.num,
            unconfirmed: 512 * 1024 + 100,
            window: 512 * 1024
        }))
    );
    assert_eq!(p.a.stats().protocol_errors, 1);
    // Data that arrived before the error stays readable, then the reason is reported.
    assert_eq!(read_all(&mut p.a, id).0.len(), 512 * 1024);
    assert!(matches!(
        p.a.read(id, &mut [0u8; 1]),
        Err(ReadError::SessionEnded(_))
    ));
}

#[test]
fn oversized_and_unknown_frames_are_protocol_errors() {
    let mut p = Pair::new(small());
    p.a.handle_input(p.now, &mut frames(&[(Header::new(Cmd::Pin, 0, 0), &[])]));
    let mut input = frames(&[(Header::new(Cmd::Psh, 3, 101), &[0u8; 101])]);
    p.a.handle_input(p.now, &mut input);
    assert_eq!(
        p.a.end_reason(),
        Some(&EndReason::Protocol(ProtocolError::FrameTooLarge {
            len: 101,
            max: 100
        }))
    );
    let mut p = Pair::new(small());
    p.a.handle_input(p.now, &mut frames(&[(Header::new(Cmd::Pin, 0, 0), &[])]));
    p.a.handle_input(
        p.now,
        &mut bytes::BytesMut::from(&[6u8, 0, 0, 0, 0, 0, 0][..]),
    );
    assert_eq!(
        p.a.end_reason(),
        Some(&EndReason::Protocol(ProtocolError::UnknownCommand(6)))
    );
    assert!(p
        .a
        .poll_event()
        .is_some_and(|e| matches!(e, Event::Ended(_))));
}

#[test]
fn an_http_peer_is_named_as_such() {
    let mut p = Pair::new(base());
    p.b.handle_input(
        p.now,
        &mut bytes::BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]),
    );
    assert_eq!(
        p.b.end_reason(),
        Some(&EndReason::Protocol(ProtocolError::NotSmux(
            crate::NotSmux::Http
        )))
    );
}

#[test]
fn strays_are_ignored() {
    let mut p = Pair::new(small());
    let id = p.a.open().unwrap();
    p.a.write(id, &[1; 10]).unwrap();
    p.settle();
    let mut input = frames(&[
        (Header::new(Cmd::Psh, 999, 5), b"stray"),
        (Header::new(Cmd::Fin, 999, 0), &[]),
        (Header::new(Cmd::Cfm, id.num, 1_000_000), &[]),
        (Header::new(Cmd::Cfm, 999, 5), &[]),
    ]);
    p.a.handle_input(p.now, &mut input);
    assert!(input.is_empty());
    assert!(!p.a.is_ended());
    assert_eq!(p.a.stats().bytes_discarded, 5);
    // A CFM for more than was sent creates no extra credit.
    assert_eq!(p.a.writable_len(id), 1000);
    p.a.assert_invariants();
}

#[test]
fn fin_twice_and_syn_for_a_closing_id_are_harmless() {
    let mut p = Pair::new(base());
    let id = p.a.open().unwrap();
    p.settle();
    let got = p.b.accept().unwrap();
    p.a.close(id).unwrap();
    p.transmit(false, usize::MAX);
    let mut input = frames(&[
        (Header::new(Cmd::Syn, id.num, 0), &[]),
        (Header::new(Cmd::Fin, id.num, 0), &[]),
    ]);
    p.a.handle_input(p.now, &mut input);
    assert!(
        p.a.stream_ids().is_empty(),
        "the FIN completed the handshake"
    );
    p.a.handle_input(
        p.now,
        &mut frames(&[(Header::new(Cmd::Fin, id.num, 0), &[])]),
    );
    assert!(!p.a.is_ended());
    p.deliver(true, usize::MAX);
    p.b.handle_input(
        p.now,
        &mut frames(&[(Header::new(Cmd::Fin, got.num, 0), &[])]),
    );
    assert_eq!(read_all(&mut p.b, got), (vec![], true));
    p.a.assert_invariants();
    p.b.assert_invariants();
}

#[test]
fn keepalive_pins_on_time_and_times_out_on_silence() {
    let mut p = Pair::new(base());
    assert_eq!(p.a.poll_timeout(), Some(p.now + Duration::from_secs(10)));
    p.advance(Duration::from_secs(10));
    p.transmit(false, usize::MAX);
    assert_eq!(&p.ab[..], &Header::new(Cmd::Pin, 0, 0).to_bytes());
    p.deliver(true, usize::MAX);
    // a hears nothing from b (b's PINs are dropped) and times out at 100 s.
    for _ in 0..8 {
        p.advance(Duration::from_secs(10));
        p.transmit(false, usize::MAX);
        p.transmit(true, usize::MAX);
        p.ba.clear();
        p.deliver(true, usize::MAX);
    }
    assert!(!p.a.is_ended());
    assert!(!p.b.is_ended(), "b hears a's PINs");
    p.advance(Duration::from_secs(10));
    assert_eq!(p.a.end_reason(), Some(&EndReason::KeepaliveTimeout));
    assert!(!p.b.is_ended());
}

#[test]
fn pin_is_not_stuck_behind_bulk_data() {
    let mut p = Pair::new(base());
    let ids: Vec<_> = (0..8).map(|_| p.a.open().unwrap()).collect();
    for id in &ids {
        p.a.write(*id, &vec![0u8; 512 * 1024]).unwrap();
    }
    p.transmit(false, 64 * 1024);
    p.ab.clear();
    p.advance(Duration::from_secs(10));
    p.transmit(false, 1);
    assert_eq!(&p.ab[..7], &Header::new(Cmd::Pin, 0, 0).to_bytes());
}

#[test]
fn data_is_interleaved_round_robin() {
    let mut p = Pair::new(base());
    let x = p.a.open().unwrap();
    let y = p.a.open().unwrap();
    p.a.write(x, &vec![1u8; 256 * 1024]).unwrap();
    p.a.write(y, &vec![2u8; 256 * 1024]).unwrap();
    p.transmit(false, 4 * 64 * 1024);
    p.deliver(true, usize::MAX);
    assert_eq!(p.b.readable_len(x), 128 * 1024);
    assert_eq!(p.b.readable_len(y), 128 * 1024);
}

#[test]
fn vrm_is_answered_and_ping_measures_rtt() {
    // The reference's behaviour exactly: no HELLO after the first frame.
    let mut p = Pair::new(Config {
        extensions: false,
        ..base()
    });
    let mut input = frames(&[(Header::new(Cmd::Vrm, 0x1234, 0x11223344), &[])]);
    p.b.handle_input(p.now, &mut input);
    p.transmit(true, usize::MAX);
    assert_eq!(
        &p.ba[..],
        &Header::new(Cmd::Vrm, 0x3420, 0x11442233).to_bytes()
    );
    p.ba.clear();

    assert!(p.a.ping(p.now));
    assert!(!p.a.ping(p.now), "one ping at a time");
    p.transmit(false, usize::MAX);
    p.deliver(true, usize::MAX);
    p.now += Duration::from_millis(30);
    p.transmit(true, usize::MAX);
    p.deliver(false, usize::MAX);
    assert_eq!(p.a.stats().rtt, Some(Duration::from_millis(30)));
    p.transmit(false, usize::MAX);
    assert!(p.ab.is_empty(), "an answer is not answered");
}

#[test]
fn accept_backlog_refuses_with_fin() {
    let c = Config {
        accept_backlog: 2,
        ..base()
    };
    let mut p = Pair::new(c);
    let ids: Vec<_> = (0..3).map(|_| p.a.open().unwrap()).collect();
    p.settle();
    assert_eq!(p.b.stats().streams_refused, 1);
    assert_eq!(p.b.stats().accept_backlog, 2);
    assert!(p.events_a.contains(&Event::Finished(ids[2])));
    assert_eq!(p.a.write(ids[2], b"x"), Err(WriteError::PeerClosed));
    p.a.close(ids[2]).unwrap();
    p.settle();
    assert_eq!(p.a.stream_ids(), vec![0, 1]);
    assert_eq!(p.b.stream_ids(), vec![0, 1]);
}

#[test]
fn the_input_bound_pauses_and_resumes_the_link() {
    let c = Config {
        max_buffered_in: 64 * 1024,
        ..base()
    };
    let mut p = Pair::new(c);
    let x = p.a.open().unwrap();
    let y = p.a.open().unwrap();
    p.a.write(x, &vec![1u8; 100 * 1024]).unwrap();
    p.a.write(y, &vec![2u8; 100 * 1024]).unwrap();
    p.transmit(false, usize::MAX);
    p.deliver(true, usize::MAX);
    assert!(!p.b.wants_input());
    assert!(p.b.stats().buffered_in <= 64 * 1024);
    assert!(p.unconsumed(true) > 0, "the rest waits in the input buffer");
    let mut total = 0;
    for _ in 0..20 {
        while let Some(_s) = p.b.accept() {}
        total += read_all(&mut p.b, x).0.len() + read_all(&mut p.b, y).0.len();
        p.deliver(true, usize::MAX);
        p.b.assert_invariants();
    }
    assert_eq!(total, 200 * 1024);
}

#[test]
fn vrm_flood_pauses_input_until_answers_are_sent() {
    let c = Config {
        max_pending_answers: 4,
        extensions: false,
        ..base()
    };
    let mut p = Pair::new(c);
    let mut input = bytes::BytesMut::new();
    for i in 0..10u16 {
        Header::new(Cmd::Vrm, i, 0).encode(&mut input);
    }
    p.b.handle_input(p.now, &mut input);
    assert_eq!(input.len(), 6 * 7);
    assert!(!p.b.wants_input());
    p.transmit(true, usize::MAX);
    assert!(p.b.wants_input());
    while !input.is_empty() {
        p.b.handle_input(p.now, &mut input);
        p.transmit(true, usize::MAX);
    }
    assert_eq!(p.ba.len(), 10 * 7);
}

#[test]
fn local_close_ends_everything() {
    let mut p = Pair::new(base());
    let id = p.a.open().unwrap();
    p.a.close_session();
    assert_eq!(
        p.a.write(id, b"x"),
        Err(WriteError::SessionEnded(EndReason::Local))
    );
    assert_eq!(p.a.poll_event(), Some(Event::Ended(EndReason::Local)));
    assert_eq!(p.a.poll_timeout(), None);
    p.a.handle_eof(0);
    assert_eq!(
        p.a.end_reason(),
        Some(&EndReason::Local),
        "the first reason stays"
    );
}

#[test]
fn eof_inside_a_frame_is_reported_as_truncated() {
    let mut p = Pair::new(base());
    let mut input = bytes::BytesMut::from(&[2u8, 0, 0, 10, 0][..]);
    p.a.handle_input(p.now, &mut input);
    p.a.handle_eof(input.len());
    assert_eq!(
        p.a.end_reason(),
        Some(&EndReason::Protocol(ProtocolError::TruncatedFrame {
            have: 5
        }))
    );
}

/// The reference's reader can wait for its own writer; ours never does. Two sessions
/// with tiny links, both writing bulk on many streams and echoing: it must complete.
#[test]
fn bulk_both_ways_over_tiny_links_completes() {
    let mut p = Pair::new(base());
    const STREAMS: usize = 64;
    const EACH: usize = 300 * 1000;
    let ids: Vec<_> = (0..STREAMS).map(|_| p.a.open().unwrap()).collect();
    let mut sent = vec![0usize; STREAMS];
    let mut echoed = vec![0usize; STREAMS];
    let mut pending_echo: std::collections::HashMap<StreamId, Vec<u8>> = Default::default();
    let mut back = vec![0usize; STREAMS];
    let chunk = vec![0xABu8; 16 * 1024];
    let link = 8 * 1024;
    let mut rounds = 0;
    while back.iter().sum::<usize>() < STREAMS * EACH {
        rounds += 1;
        assert!(rounds < 200_000, "stalled: {back:?}");
        for (i, id) in ids.iter().enumerate() {
            let want = (EACH - sent[i]).min(chunk.len());
            if want > 0 {
                sent[i] += p.a.write(*id, &chunk[..want]).unwrap_or(0);
            }
        }
        // A link that takes at most 8 KiB per round in each direction.
        if p.ab.len() < link {
            p.transmit(false, link);
        }
        if p.ba.len() < link {
            p.transmit(true, link);
        }
        p.deliver(true, link);
        p.deliver(false, link);
        while p.b.accept().is_some() {}
        for id in &ids {
            let mut buf = vec![0u8; 32 * 1024];
            let q = pending_echo.entry(*id).or_default();
            if let Ok(n) = p.b.read(*id, &mut buf) {
                q.extend_from_slice(&buf[..n]);
            }
            if !q.is_empty() {
                if let Ok(n) = p.b.write(*id, q) {
                    q.drain(..n);
                    echoed[id.num as usize] += n;
                }
            }
        }
        for (i, id) in ids.iter().enumerate() {
            back[i] += read_all(&mut p.a, *id).0.len();
        }
        p.drain_events();
    }
    assert_eq!(echoed.iter().sum::<usize>(), STREAMS * EACH);
}

#[test]
fn no_cfm_follows_our_fin() {
    let c = Config {
        cfm_threshold: 10,
        ..base()
    };
    let mut p = Pair::new(c);
    let id = p.a.open().unwrap();
    p.settle();
    let got = p.b.accept().unwrap();
    p.b.write(got, &[5u8; 100]).unwrap();
    p.settle();
    assert_eq!(read_all(&mut p.a, id).0.len(), 100);
    p.a.close(id).unwrap();
    p.transmit(false, usize::MAX);
    assert_eq!(
        &p.ab[..],
        &Header::new(Cmd::Fin, id.num, 0).to_bytes(),
        "FIN alone"
    );
}

#[test]
fn control_frames_respect_the_transmit_limit() {
    let mut p = Pair::new(base());
    let mut input = bytes::BytesMut::new();
    for i in 0..100u16 {
        Header::new(Cmd::Vrm, i, 0).encode(&mut input);
    }
    p.b.handle_input(p.now, &mut input);
    p.transmit(true, 70);
    assert_eq!(p.ba.len(), 70, "ten answers, the rest stays queued");
    assert!(p.b.has_transmit());
    p.b.assert_invariants();
}

#[test]
fn closing_after_the_end_reports_the_end() {
    let mut p = Pair::new(base());
    let id = p.a.open().unwrap();
    p.a.handle_eof(0);
    assert_eq!(
        p.a.close(id),
        Err(WriteError::SessionEnded(EndReason::PeerClosed))
    );
}

#[test]
fn end_of_file_outlives_the_session() {
    let mut p = Pair::new(base());
    let id = p.a.open().unwrap();
    p.a.write(id, b"x").unwrap();
    p.a.close(id).unwrap();
    p.settle();
    let got = p.b.accept().unwrap();
    assert_eq!(p.b.stream_state(got), Some(crate::StreamState::Finished));
    p.b.handle_eof(0);
    assert_eq!(read_all(&mut p.b, got), (b"x".to_vec(), true));
}

#[test]
fn want_writable_arms_an_event_without_a_refused_write() {
    let mut p = Pair::new(small());
    let id = p.a.open().unwrap();
    let room = p.a.writable_len(id);
    assert_eq!(p.a.write(id, &vec![0u8; room]).unwrap(), room);
    p.a.want_writable(id);
    p.settle();
    assert!(!p.events_a.contains(&Event::Writable(id)));
    let got = p.b.accept().unwrap();
    read_all(&mut p.b, got);
    p.settle();
    assert!(p.events_a.contains(&Event::Writable(id)));
    p.events_a.clear();
    p.a.want_writable(id);
    p.drain_events();
    assert_eq!(
        p.events_a,
        vec![Event::Writable(id)],
        "room now: the event comes at once"
    );
    assert_eq!(p.a.stream_state(id), Some(crate::StreamState::Open));
    p.a.close(id).unwrap();
    assert_eq!(p.a.stream_state(id), Some(crate::StreamState::Closing));
}

/// Many writers share the send queue: one that loops must not take every freed byte
/// ahead of those that wait (first come, first served once the queue is full).
#[test]
fn the_send_queue_is_shared_fairly() {
    let c = Config {
        max_buffered_out: 4 * 1024,
        max_frame: 1024,
        ..base()
    };
    let mut p = Pair::new(c);
    let ids: Vec<_> = (0..8).map(|_| p.a.open().unwrap()).collect();
    let mut accepted = vec![0usize; 8];
    let chunk = [1u8; 1024];
    let mut blocked = [false; 8];
    for _ in 0..400 {
        // Stream 0 writes whenever it can; the others only after a Writable event.
        for (i, id) in ids.iter().enumerate() {
            if i == 0 || !blocked[i] {
                match p.a.write(*id, &chunk) {
                    Ok(n) => accepted[i] += n,
                    Err(WriteError::Blocked) => blocked[i] = true,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        p.transmit(false, 1024);
        p.deliver(true, usize::MAX);
        while p.b.accept().is_some() {}
        for id in &ids {
            read_all(&mut p.b, *id);
        }
        p.transmit(true, usize::MAX);
        p.deliver(false, usize::MAX);
        while let Some(e) = p.a.poll_event() {
            if let Event::Writable(id) = e {
                blocked[id.num as usize] = false;
            }
        }
    }
    let (min, max) = (
        accepted.iter().min().unwrap(),
        accepted.iter().max().unwrap(),
    );
    assert!(*min > 0, "a waiting writer starved: {accepted:?}");
    assert!(max / min <= 3, "unfair shares: {accepted:?}");
    p.a.assert_invariants();
}

/// Found by the new-user echo test: a reader that consumed bytes below the CFM
/// threshold and then stopped reading (an echo whose own writes wait for the peer)
/// never confirmed them once the peer ran out of credit; the peer, writing before it
/// reads, then waited forever. Confirmed as soon as the peer is out of credit now,
/// whichever comes last: the reading or the data that exhausts the window.
#[test]
fn consumed_bytes_are_confirmed_once_the_peer_runs_out_of_credit() {
    let window = base().window as usize;
    // The reader reads first, then the peer's last credit arrives.
    let mut p = Pair::new(base());
    let id = p.a.open().unwrap();
    assert_eq!(p.a.write(id, &vec![1u8; 100_000]).unwrap(), 100_000);
    p.settle();
    let got = p.b.accept().unwrap();
    let mut buf = vec![0u8; 72 * 1024];
    assert_eq!(p.b.read(got, &mut buf).unwrap(), buf.len());
    let rest = window - 100_000;
    assert_eq!(p.a.write(id, &vec![2u8; rest]).unwrap(), rest);
    p.settle();
    assert_eq!(
        p.a.writable_len(id),
        buf.len(),
        "the consumed bytes were confirmed"
    );
    // The peer is out of credit first, then the reader reads a little and stops.
    let mut p = Pair::new(base());
    let id = p.a.open().unwrap();
    assert_eq!(p.a.write(id, &vec![1u8; window]).unwrap(), window);
    p.settle();
    let got = p.b.accept().unwrap();
    let mut small = [0u8; 8192];
    assert_eq!(p.b.read(got, &mut small).unwrap(), small.len());
    p.settle();
    assert_eq!(p.a.writable_len(id), small.len());
}

/// A handle kept while its number goes round all 65,536 IDs and comes back still names
/// nothing: the generation is not a counter that would come round with it.
#[test]
fn a_stale_handle_never_names_the_stream_that_reuses_its_number() {
    let now = std::time::Instant::now();
    let mut s = crate::Session::new(base(), Role::Dialer, now).unwrap();
    let mut tx = crate::Transmit::new();
    let mut cycle = |s: &mut crate::Session| -> StreamId {
        let id = s.open().unwrap();
        s.close(id).unwrap();
        s.poll_transmit(now, &mut tx, usize::MAX);
        tx = crate::Transmit::new();
        let mut fin = frames(&[(Header::new(Cmd::Fin, id.number(), 0), &[])]);
        s.handle_input(now, &mut fin);
        id
    };
    let stale = cycle(&mut s);
    for _ in 1..65_536 {
        cycle(&mut s);
    }
    let new = s.open().unwrap();
    assert_eq!(new.number(), stale.number(), "the number came round");
    assert_ne!(new, stale);
    assert_eq!(s.write(stale, b"x"), Err(WriteError::UnknownStream));
    assert_eq!(s.readable_len(stale), 0);
    assert!(s.write(new, b"x").is_ok());
}
