//! The extensions over loopback TCP: half-close, reset codes, go-away, and the
//! fallback to the base protocol when one end has them off (standing in for a
//! reference peer), in both roles.

mod common;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smux_smol::{reset_code, EndReason, Session, RESET_REFUSED};

use common::{both_modes, config, fnv, pair, random_bytes, run, Pair};

both_modes!(released_handle_never_touches_a_stream_that_reuses_its_id);

/// Waits until neither session holds a stream (every close handshake finished).
async fn wait_idle(p: &Pair) {
    while p.client.stats().streams + p.server.stats().streams > 0 {
        smol::Timer::after(Duration::from_millis(2)).await;
    }
}

/// Accepts one stream, reads the request to end-of-file, then answers with the
/// request's length and checksum followed by `answer`, and closes.
async fn answer_after_eof(server: Session, answer: Arc<Vec<u8>>) -> io::Result<usize> {
    let mut s = server.accept().await?;
    assert!(s.is_extended());
    let mut request = Vec::new();
    s.read_to_end(&mut request).await?;
    let mut hdr = [0u8; 16];
    hdr[..8].copy_from_slice(&(request.len() as u64).to_le_bytes());
    hdr[8..].copy_from_slice(&fnv(&request).to_le_bytes());
    s.write_all(&hdr).await?;
    s.write_all(&answer).await?;
    s.close().await?;
    Ok(request.len())
}

#[test]
fn half_close_then_read_the_whole_answer() {
    run(Duration::from_secs(60), async {
        let p = pair(config(true), config(true)).await;
        let mut rng = fastrand::Rng::with_seed(11);
        // Both larger than a window, so both directions wait for confirmations.
        let request = random_bytes(&mut rng, 1536 * 1024);
        let answer = Arc::new(random_bytes(&mut rng, 2 * 1024 * 1024));
        let server = smol::spawn(answer_after_eof(p.server.clone(), answer.clone()));

        let mut s = p.client.open().await.unwrap();
        assert!(s.is_extended());
        s.write_all(&request).await.unwrap();
        s.close().await.unwrap();
        // Our writing has ended, our reading has not.
        let err = s.write_all(b"x").await.expect_err("write after close");
        assert_eq!(err.kind(), io::ErrorKind::NotConnected);
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(server.await.unwrap(), request.len());
        assert_eq!(got.len(), 16 + answer.len());
        assert_eq!(got[..8], (request.len() as u64).to_le_bytes());
        assert_eq!(got[8..16], fnv(&request).to_le_bytes());
        assert!(got[16..] == answer[..]);
        // End-of-file stays end-of-file; closing again is fine.
        assert_eq!(s.read(&mut [0u8; 8]).await.unwrap(), 0);
        s.close().await.unwrap();

        // The same with split halves: the read half, parked before the write half
        // closes, reads the answer that only comes after our end-of-file.
        let server = smol::spawn(answer_after_eof(p.server.clone(), answer.clone()));
        let (mut r, mut w) = p.client.open().await.unwrap().into_split();
        let reader = smol::spawn(async move {
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.map(|_| got)
        });
        w.write_all(b"short request").await.unwrap();
        smol::Timer::after(Duration::from_millis(20)).await;
        w.close().await.unwrap();
        let got = reader.await.unwrap();
        assert_eq!(server.await.unwrap(), 13);
        assert_eq!(got.len(), 16 + answer.len());
        assert!(got[16..] == answer[..]);

        // Both FINs were exchanged and every handle dropped: the IDs are free.
        drop((s, w));
        wait_idle(&p).await;
        assert_eq!(p.client.end_reason(), None);
        assert_eq!(p.server.end_reason(), None);
    });
}

#[test]
fn reset_code_reaches_the_peers_read_and_write() {
    const CODE: u32 = 0xdead_beef;
    run(Duration::from_secs(30), async {
        let p = pair(config(true), config(true)).await;
        let window = p.client.config().window() as usize;

        // Stream A: the peer has unread data buffered and a writer blocked on a full
        // window (we never read) when we reset.
        let mut a = p.client.open().await.unwrap();
        a.write_all(b"data the peer never reads").await.unwrap();
        let (mut ar, mut aw) = p.server.accept().await.unwrap().into_split();
        let written = Arc::new(AtomicUsize::new(0));
        let counter = written.clone();
        let writer = smol::spawn(async move {
            let chunk = vec![7u8; 64 * 1024];
            loop {
                match aw.write(&chunk).await {
                    Ok(n) => counter.fetch_add(n, Ordering::SeqCst),
                    Err(e) => return e,
                };
            }
        });
        while written.load(Ordering::SeqCst) < window {
            smol::Timer::after(Duration::from_millis(2)).await;
        }

        // Stream B: the peer's reader is parked (no data yet) when we reset.
        let mut b = p.client.open().await.unwrap();
        b.write_all(b"!").await.unwrap();
        let mut br = p.server.accept().await.unwrap();
        let mut one = [0u8; 1];
        br.read_exact(&mut one).await.unwrap();
        let parked = smol::spawn(async move {
            let r = br.read(&mut [0u8; 64]).await;
            (br, r)
        });
        smol::Timer::after(Duration::from_millis(20)).await;

        a.reset(CODE);
        b.reset(CODE + 1);

        // The blocked writer and the parked reader wake with the codes.
        let e = writer.await;
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(reset_code(&e), Some(CODE));
        let (mut br, r) = parked.await;
        let e = r.expect_err("read on a reset stream");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(reset_code(&e), Some(CODE + 1));
        // A deadline-bound write reports the code too.
        let deadline = Instant::now() + Duration::from_secs(5);
        let e = br
            .write_all_before(b"x", deadline)
            .await
            .expect_err("reset");
        assert_eq!(e.written(), 0);
        let e = io::Error::from(e);
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(reset_code(&e), Some(CODE + 1));
        // So does closing it: no clean FIN can follow a reset.
        let e = br.close().await.expect_err("close after reset");
        assert_eq!(reset_code(&e), Some(CODE + 1));
        // The buffered data was dropped: the read half reports the reset, not data.
        let e = ar.read(&mut [0u8; 64]).await.expect_err("read after reset");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(reset_code(&e), Some(CODE));
        // Resetting a stream the peer reset just releases it.
        ar.reset(5);

        // Our own handles: released, later calls fail locally.
        let e = a.write_all(b"x").await.expect_err("write after our reset");
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);
        assert_eq!(reset_code(&e), None);
        let e = a
            .read(&mut [0u8; 8])
            .await
            .expect_err("read after our reset");
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);
        // Resetting again does nothing: the handle stays released.
        a.reset(1);
        let e = a
            .write_all(b"x")
            .await
            .expect_err("write after a second reset");
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);

        // Resetting one half wakes the other half parked on the same stream.
        let c = p.client.open().await.unwrap();
        let (mut cr, mut cw) = c.into_split();
        cw.write_all(b"?").await.unwrap();
        let _peer = p.server.accept().await.unwrap();
        let reader = smol::spawn(async move { cr.read(&mut [0u8; 8]).await });
        smol::Timer::after(Duration::from_millis(20)).await;
        cw.reset(9);
        let e = reader
            .await
            .expect_err("read half after the write half reset");
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);

        // The resets are acknowledged and every ID comes back once released.
        drop((a, b, ar, br, cw, _peer));
        wait_idle(&p).await;
        assert_eq!(p.client.end_reason(), None);
    });
}

#[test]
fn go_away_refuses_new_streams_and_lets_open_ones_finish() {
    run(Duration::from_secs(30), async {
        let p = pair(config(true), config(true)).await;

        // An open stream, mid-request when the server goes away.
        let mut s = p.client.open().await.unwrap();
        s.write_all(b"first half, ").await.unwrap();
        let mut srv = p.server.accept().await.unwrap();
        // A stream the server has not accepted yet: the go-away refuses it.
        let mut refused = p.client.open().await.unwrap();
        refused.write_all(b"too late").await.unwrap();
        while p.server.stats().accept_backlog == 0 {
            smol::Timer::after(Duration::from_millis(1)).await;
        }
        // Accepts pending through a go-away wait until the session ends, then fail.
        let client = p.client.clone();
        let acceptor = smol::spawn(async move { client.accept().await.map(|_| ()) });
        smol::Timer::after(Duration::from_millis(20)).await;

        p.server.go_away(42);
        assert!(p.server.is_going_away());
        let e = p.server.open().await.expect_err("open after our go-away");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        let server = p.server.clone();
        let server_acceptor = smol::spawn(async move { server.accept().await.map(|_| ()) });

        // The client learns it: its new opens fail, its accept still waits.
        while !p.client.is_going_away() {
            smol::Timer::after(Duration::from_millis(1)).await;
        }
        smol::Timer::after(Duration::from_millis(20)).await;
        assert!(!acceptor.is_finished() && !server_acceptor.is_finished());
        let e = p
            .client
            .open()
            .await
            .expect_err("open after the peer's go-away");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        // The unaccepted stream was refused with the refusal code.
        let e = refused
            .read(&mut [0u8; 8])
            .await
            .expect_err("refused stream");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(reset_code(&e), Some(RESET_REFUSED));
        drop(refused);

        // The open stream still works both ways, and half-closes as usual.
        s.write_all(b"second half").await.unwrap();
        s.close().await.unwrap();
        let mut request = Vec::new();
        srv.read_to_end(&mut request).await.unwrap();
        assert_eq!(request, b"first half, second half");
        srv.write_all(b"answer").await.unwrap();
        srv.close().await.unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"answer");
        assert_eq!(p.client.end_reason(), None, "a stream is still held");

        // Once both ends released it, both sessions end drained.
        drop((s, srv));
        assert_eq!(p.server.closed().await, EndReason::Drained);
        assert_eq!(p.client.closed().await, EndReason::Drained);
        acceptor.await.expect_err("accept once drained");
        server_acceptor.await.expect_err("accept once drained");
        assert_eq!(p.server_driver.await, EndReason::Drained);
        assert_eq!(p.client_driver.await, EndReason::Drained);
    });
}

/// One end with extensions, the other without (a stand-in for a reference peer), in
/// both roles: nothing is negotiated, streams are base streams, and half-close,
/// reset and go-away fall back to what the base protocol has.
#[test]
fn extensions_fall_back_against_a_base_peer() {
    for ext_dials in [true, false] {
        run(Duration::from_secs(30), async {
            let p = pair(config(ext_dials), config(!ext_dials)).await;
            let (ext_end, base_end) = if ext_dials {
                (&p.client, &p.server)
            } else {
                (&p.server, &p.client)
            };
            // Traffic both ways and a ping round trip give HELLO every chance.
            let mut s = p.client.open().await.unwrap();
            s.write_all(b"hello").await.unwrap();
            let mut t = p.server.accept().await.unwrap();
            t.read_exact(&mut [0u8; 5]).await.unwrap();
            t.write_all(b"hi").await.unwrap();
            s.read_exact(&mut [0u8; 2]).await.unwrap();
            assert!(p.client.ping());
            while p.client.rtt().is_none() {
                smol::Timer::after(Duration::from_millis(1)).await;
            }
            assert!(!p.client.extensions_enabled());
            assert!(!p.server.extensions_enabled());
            assert!(!s.is_extended() && !t.is_extended());

            // No half-close on a base stream: closing the write side fails and sends
            // nothing, the stream works on both ways, and releasing it ends it.
            let (mut ext_s, mut base_s) = if ext_dials { (s, t) } else { (t, s) };
            let e = ext_s.close().await.expect_err("close of a base stream");
            assert_eq!(e.kind(), io::ErrorKind::Unsupported);
            base_s.write_all(b"late").await.unwrap();
            let mut late = [0u8; 4];
            ext_s.read_exact(&mut late).await.unwrap();
            assert_eq!(&late, b"late");
            drop(ext_s);
            let mut rest = Vec::new();
            base_s.read_to_end(&mut rest).await.unwrap();
            drop(base_s);

            // Reset is a close: the peer reads what was sent, then end-of-file.
            let mut r = ext_end.open().await.unwrap();
            r.write_all(b"before the reset").await.unwrap();
            r.reset(77);
            let mut peer = base_end.accept().await.unwrap();
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"before the reset");
            drop((r, peer));

            // Go-away: the peer is not told, its new streams are refused the base
            // way (FIN: end-of-file, then writes fail), open ones finish.
            let mut open = base_end.open().await.unwrap();
            open.write_all(b"x").await.unwrap();
            let mut open_peer = ext_end.accept().await.unwrap();
            ext_end.go_away(3);
            let e = ext_end.open().await.expect_err("open after go-away");
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
            // Read first: the refusal (a FIN) may arrive before any write could.
            let mut late = base_end.open().await.unwrap();
            assert_eq!(late.read(&mut [0u8; 8]).await.unwrap(), 0);
            let e = late.write_all(b"refused").await.expect_err("refused");
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
            drop(late);
            assert!(!base_end.is_going_away());
            open_peer.write_all(b"still open").await.unwrap();
            let mut got = [0u8; 10];
            open.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"still open");
            drop((open, open_peer));
            // Our end drains and closes; the base end sees the connection closed.
            assert_eq!(ext_end.closed().await, EndReason::Drained);
            assert_eq!(base_end.closed().await, EndReason::PeerClosed);
        });
    }
}

/// A handle that released its stream (a reset) outlives the close handshake. The old
/// handle must fail on its own and, when dropped, leave the next stream alone.
fn released_handle_never_touches_a_stream_that_reuses_its_id(ext: bool) {
    run(Duration::from_secs(30), async {
        let p = pair(config(ext), config(ext)).await;
        let mut old = p.client.open().await.unwrap();
        old.write_all(b"old").await.unwrap();
        let mut peer = p.server.accept().await.unwrap();
        peer.read_exact(&mut [0u8; 3]).await.unwrap();
        // A reset releases the stream (on a base stream it is a close).
        old.reset(1);
        drop(peer);
        wait_idle(&p).await;

        // IDs go round-robin, so the new stream takes the next one; the old handle
        // stays released whatever the new stream's ID.
        let mut new = p.client.open().await.unwrap();
        let e = old.write_all(b"stale").await.expect_err("released");
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);
        let e = old.read(&mut [0u8; 8]).await.expect_err("released");
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);
        old.close().await.unwrap();
        // A reset of a released handle does nothing (it must not reach the new stream).
        old.reset(2);
        drop(old);

        // The new stream is untouched: open both ways, nothing stale on it.
        new.write_all(b"fresh").await.unwrap();
        let mut peer = p.server.accept().await.unwrap();
        let mut got = [0u8; 5];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"fresh");
        peer.write_all(b"back").await.unwrap();
        new.read_exact(&mut got[..4]).await.unwrap();
        assert_eq!(&got[..4], b"back");
        new.write_all(b"!").await.unwrap();
        peer.read_exact(&mut got[..1]).await.unwrap();
        assert_eq!(got[0], b'!');
    });
}
