//! The extensions over loopback TCP: half-close, reset with a code, go-away, and an
//! end with extensions on talking to one with them off (which stands in for a
//! reference peer) in both roles.

mod common;

use std::io::ErrorKind;
use std::time::Duration;

use common::{bounded, config, pair, Rng};
use smux_tokio::{reset_code, EndReason, OpenError, Session, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Waits until `f` holds, polling every millisecond (the caller bounds the time).
async fn until(mut f: impl FnMut() -> bool) {
    while !f() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Both sessions hold no stream any more (every close handshake completed).
async fn all_freed(a: &Session, b: &Session) {
    bounded(
        10,
        "streams freed",
        until(|| a.stats().streams + b.stats().streams == 0),
    )
    .await;
}

/// The server side of a request/answer exchange: reads the request to end-of-file,
/// then answers with it reversed and closes.
async fn answer_reversed(mut s: Stream) -> usize {
    let mut request = Vec::new();
    s.read_to_end(&mut request).await.expect("read the request");
    let len = request.len();
    request.reverse();
    // Writes still work after the peer's FIN: it only half-closed.
    s.write_all(&request).await.expect("write the answer");
    drop(s);
    len
}

/// The client side: writes the request, shuts its write side, then reads the answer.
async fn ask<R, W>(r: &mut R, w: &mut W, request: &[u8]) -> Vec<u8>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    w.write_all(request).await.expect("write the request");
    w.shutdown().await.expect("half-close");
    // Writing after the half-close fails, reading goes on.
    let e = w
        .write_all(b"more")
        .await
        .expect_err("write after shutdown");
    assert_eq!(e.kind(), ErrorKind::NotConnected, "{e}");
    let mut answer = Vec::new();
    r.read_to_end(&mut answer).await.expect("read the answer");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_then_read_the_whole_answer() {
    bounded(30, "half-close", async {
        let (client, server) = pair(config(true), config(true)).await;
        let server_task = tokio::spawn(async move {
            let mut lens = Vec::new();
            for _ in 0..2 {
                let s = server.accept().await.expect("accept");
                assert!(s.is_extended());
                lens.push(tokio::spawn(answer_reversed(s)));
            }
            let mut total = 0;
            for t in lens {
                total += t.await.expect("server stream");
            }
            (server, total)
        });
        // Several windows each way (the window is 512 KiB), so the request needs the
        // server to read while it comes, and the answer flows after the half-close.
        let request = Rng::new(11).bytes(1_500_000);
        let mut expected = request.clone();
        expected.reverse();

        // A whole stream in a task, and one split into halves here.
        let mut whole = client.open().await.expect("open");
        assert!(whole.is_extended());
        let whole_task = {
            let request = request.clone();
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(&mut whole);
                let answer = ask(&mut r, &mut w, &request).await;
                // The handle keeps the stream until dropped: reads stay at
                // end-of-file.
                let mut b = [0u8; 1];
                assert_eq!(whole.read(&mut b).await.expect("eof again"), 0);
                answer
            })
        };
        let (mut r, mut w) = client.open().await.expect("open").into_split();
        assert!(r.is_extended() && w.is_extended());
        let answer = ask(&mut r, &mut w, &request).await;
        assert!(answer == expected, "split halves: the whole answer");
        let answer = whole_task.await.expect("whole stream");
        assert!(answer == expected, "whole stream: the whole answer");
        drop((r, w));
        let (server, total) = server_task.await.expect("server");
        assert_eq!(total, 2 * request.len());
        all_freed(&client, &server).await;
        assert!(client.end_reason().is_none() && server.end_reason().is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_reaches_the_peers_reads_and_writes() {
    bounded(30, "reset", async {
        let (client, server) = pair(config(true), config(true)).await;

        // 1. The peer waits in a read; data it has not read yet is dropped.
        let mut s = client.open().await.expect("open");
        s.write_all(b"unread").await.expect("write");
        let mut peer = server.accept().await.expect("accept");
        bounded(5, "data arrives", until(|| server.stats().buffered_in == 6)).await;
        s.reset(42);
        bounded(5, "dropped", until(|| server.stats().buffered_in == 0)).await;
        let mut buf = [0u8; 16];
        let e = peer.read(&mut buf).await.expect_err("read after reset");
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
        assert_eq!(reset_code(&e), Some(42), "{e}");
        // Its writes report the same code.
        let e = peer.write_all(b"x").await.expect_err("write after reset");
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
        assert_eq!(reset_code(&e), Some(42), "{e}");
        // So does a shutdown, and a reset of a reset stream is harmless.
        assert_eq!(reset_code(&peer.shutdown().await.unwrap_err()), Some(42));
        peer.reset(1);

        // 2. The peer waits in a write: the client never reads, the window fills.
        let mut s = client.open().await.expect("open");
        s.write_all(b"!").await.expect("write");
        let peer = server.accept().await.expect("accept");
        let writer = tokio::spawn(async move {
            let mut peer = peer;
            let chunk = vec![7u8; 64 * 1024];
            loop {
                if let Err(e) = peer.write_all(&chunk).await {
                    return e;
                }
            }
        });
        bounded(
            5,
            "window full",
            until(|| client.stats().buffered_in >= 512 * 1024),
        )
        .await;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.expect("some data");
        let (r, w) = s.into_split();
        w.reset(7);
        let e = bounded(5, "blocked writer", writer).await.expect("writer");
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
        assert_eq!(reset_code(&e), Some(7), "{e}");
        // Our own other half fails too, without a code: the reset was ours.
        let mut r = r;
        let e = r.read(&mut b).await.expect_err("read after our reset");
        assert_eq!(e.kind(), ErrorKind::NotConnected, "{e}");
        assert_eq!(reset_code(&e), None);
        drop(r);

        // 3. The reset of a half-closed stream still aborts the peer's answer.
        let mut s = client.open().await.expect("open");
        s.write_all(b"question").await.expect("write");
        s.shutdown().await.expect("half-close");
        let mut peer = server.accept().await.expect("accept");
        let mut q = Vec::new();
        peer.read_to_end(&mut q).await.expect("question");
        s.reset(3);
        let e = bounded(5, "answer refused", async {
            loop {
                if let Err(e) = peer.write_all(&[0u8; 4096]).await {
                    return e;
                }
            }
        })
        .await;
        assert_eq!(reset_code(&e), Some(3), "{e}");
        drop(peer);

        all_freed(&client, &server).await;
        assert!(client.end_reason().is_none() && server.end_reason().is_none());
    })
    .await;
}

mod go_away_lets_open_streams_finish {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn by_the_acceptor() {
        super::go_away_lets_open_streams_finish(true).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn by_the_dialer() {
        super::go_away_lets_open_streams_finish(false).await
    }
}

/// One end goes away (the acceptor if `acceptor_goes`, else the dialer): new opens
/// fail on both ends, the acceptor's backlog is refused if it went away, the open
/// stream finishes both ways, and both sessions end drained.
async fn go_away_lets_open_streams_finish(acceptor_goes: bool) {
    bounded(30, "go-away", async {
        let (client, server) = pair(config(true), config(true)).await;
        let mut open = client.open().await.expect("open");
        open.write_all(b"first part, ").await.expect("write");
        let peer = server.accept().await.expect("accept");
        // A stream the server has not accepted when the go-away starts.
        let mut waiting = client.open().await.expect("open");
        waiting.write_all(b"w").await.expect("write");
        bounded(5, "backlog", until(|| server.stats().accept_backlog == 1)).await;

        let (going, other) = if acceptor_goes {
            (&server, &client)
        } else {
            (&client, &server)
        };
        going.go_away(5);
        assert!(going.is_going_away());
        bounded(5, "go-away arrives", until(|| other.is_going_away())).await;
        for s in [&client, &server] {
            let e = s.open().await.expect_err("open after a go-away");
            assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
            let inner = e.get_ref().and_then(|i| i.downcast_ref::<OpenError>());
            assert_eq!(inner, Some(&OpenError::GoingAway));
        }
        let mut b = [0u8; 1];
        if acceptor_goes {
            // Going away refuses the backlog: the stream's reads report the code.
            let e = waiting.read(&mut b).await.expect_err("refused stream");
            assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
            assert_eq!(reset_code(&e), Some(smux_tokio::RESET_REFUSED), "{e}");
        } else {
            // The peer's go-away does not touch our backlog: accepted as usual.
            let mut w = server.accept().await.expect("accept from the backlog");
            w.read_exact(&mut b).await.expect("read");
            assert_eq!(&b, b"w");
        }
        drop(waiting);
        // From now on accepting waits for the end of the session and then fails.
        let acceptor = {
            let server = server.clone();
            tokio::spawn(async move { server.accept().await.map(|s| s.id()) })
        };

        // The open stream still works both ways, to its end.
        let server_side = tokio::spawn(async move { answer_reversed(peer).await });
        open.write_all(b"second part").await.expect("write");
        open.shutdown().await.expect("half-close");
        let mut answer = Vec::new();
        open.read_to_end(&mut answer).await.expect("answer");
        assert_eq!(answer, b"trap dnoces ,trap tsrif");
        assert_eq!(server_side.await.expect("server side"), 23);
        assert!(client.end_reason().is_none(), "a stream is still open");
        drop(open);

        assert_eq!(
            bounded(10, "client drains", client.closed()).await,
            EndReason::Drained
        );
        assert_eq!(
            bounded(10, "server drains", server.closed()).await,
            EndReason::Drained
        );
        let accepted = bounded(5, "acceptor", acceptor).await.expect("acceptor");
        assert!(accepted.is_err(), "{accepted:?}");
    })
    .await;
}

mod extensions_off_on_one_end_falls_back {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn off_on_the_dialer() {
        super::extensions_off_on_one_end_falls_back(true).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn off_on_the_acceptor() {
        super::extensions_off_on_one_end_falls_back(false).await
    }
}

/// A session with extensions on and one with them off (a stand-in for a reference
/// peer): the dialer has them off if `dialer_off`, else the acceptor. Neither end
/// turns them on, data flows, shutdown fails (no half-close), reset is a full close,
/// and a go-away only refuses new streams.
async fn extensions_off_on_one_end_falls_back(dialer_off: bool) {
    bounded(30, "fallback", async {
        // `pair` checks that neither end turned extensions on, after the dialer's
        // pings gave the acceptor every chance to offer them.
        let (client, server) = pair(config(!dialer_off), config(dialer_off)).await;

        // Data flows both ways, beyond one window.
        let data = Rng::new(5).bytes(1_200_000);
        let mut s = client.open().await.expect("open");
        assert!(!s.is_extended());
        let echo = tokio::spawn({
            let server = server.clone();
            async move {
                let peer = server.accept().await.expect("accept");
                assert!(!peer.is_extended());
                let (mut r, mut w) = peer.into_split();
                tokio::io::copy(&mut r, &mut w).await.expect("echo");
            }
        });
        let (mut r, mut w) = tokio::io::split(&mut s);
        let (written, got) = tokio::join!(
            async {
                w.write_all(&data).await.expect("write");
            },
            async {
                let mut got = vec![0u8; data.len()];
                r.read_exact(&mut got).await.expect("read");
                got
            }
        );
        let () = written;
        assert!(got == data);
        // No half-close on a base stream: shutdown fails, sends nothing, and the
        // stream goes on working; dropping it ends the echo.
        let e = s.shutdown().await.expect_err("shutdown on a base stream");
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        let mut b = [0u8; 1];
        s.write_all(b"z")
            .await
            .expect("write after the refused shutdown");
        s.read_exact(&mut b)
            .await
            .expect("echo after the refused shutdown");
        assert_eq!(&b, b"z");
        drop(s);
        bounded(5, "echo ends", echo).await.expect("echo");

        // Reset is a close: the peer reads the data, then end-of-file, no error.
        let mut s = client.open().await.expect("open");
        s.write_all(b"bye").await.expect("write");
        s.reset(77);
        let mut peer = server.accept().await.expect("accept");
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.expect("no reset error");
        assert_eq!(got, b"bye");
        drop(peer);
        all_freed(&client, &server).await;

        // A go-away on the end with extensions: the other end is not told, but its
        // new streams are refused (with a FIN: it reads end-of-file); ours finish, then
        // our session ends drained while the other sees the connection close.
        let (on, off) = if dialer_off {
            (&server, &client)
        } else {
            (&client, &server)
        };
        let mut kept = on.open().await.expect("open");
        kept.write_all(b"k").await.expect("write");
        let mut kept_peer = off.accept().await.expect("accept");
        on.go_away(1);
        let e = on.open().await.expect_err("open after our go-away");
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
        assert!(!off.is_going_away());
        let mut refused = off.open().await.expect("the other end may still open");
        assert_eq!(refused.read(&mut b).await.expect("refused: eof"), 0);
        assert_eq!(
            refused.write_all(b"r").await.expect_err("refused").kind(),
            ErrorKind::BrokenPipe
        );
        drop(refused);
        kept_peer.read_exact(&mut b).await.expect("read");
        drop(kept_peer);
        assert_eq!(kept.read(&mut b).await.expect("eof"), 0);
        drop(kept);
        assert_eq!(
            bounded(10, "drained", on.closed()).await,
            EndReason::Drained
        );
        assert_eq!(
            bounded(10, "other end", off.closed()).await,
            EndReason::PeerClosed
        );
    })
    .await;
}
