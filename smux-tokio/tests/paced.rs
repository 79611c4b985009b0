//! Paced wake-ups (see `smux_proto::Connection::pace_wakes`): a driver round that
//! owes two wake-ups wakes the first task and leaves the second to the next call on
//! the session. When the first task never calls again, the driver hands the second
//! out itself within `PACE_LIMIT`: nobody waits for an unrelated timer.

mod common;

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use common::bounded;
use smux_tokio::{Config, Role, Session};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

/// A base-protocol frame: command, stream ID (u16 LE), length (u32 LE), payload.
fn frame(cmd: u8, id: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![cmd];
    f.extend_from_slice(&id.to_le_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

const SYN: u8 = 0;
const PSH: u8 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_up_held_for_a_task_that_never_calls_again_still_arrives() {
    bounded(20, "held wake-up", async {
        let (ours, mut peer) = tokio::io::duplex(64 * 1024);
        // No keepalive for a long while: only the pacing bound can bring the driver
        // back.
        let config = Config::default()
            .with_extensions(false)
            .with_keepalive_interval(Duration::from_secs(60))
            .with_keepalive_timeout(Duration::from_secs(120));
        let session = Session::new(ours, config, Role::Acceptor).expect("session");
        peer.write_all(&frame(SYN, 1, b"")).await.unwrap();
        let mut first = session.accept().await.expect("first stream");

        // This task parks a read on the first stream, then stops calling: its wake-up
        // comes first and it never comes back for the data.
        let mut buf = [0u8; 8];
        poll_fn(|cx| {
            let mut rb = ReadBuf::new(&mut buf);
            assert!(Pin::new(&mut first).poll_read(cx, &mut rb).is_pending());
            Poll::Ready(())
        })
        .await;
        let acceptor = {
            let session = session.clone();
            tokio::spawn(async move { session.accept().await })
        };
        // Let the acceptor park.
        tokio::time::sleep(Duration::from_millis(100)).await;

        // Data for the first stream and the next stream's SYN in one write: one driver
        // round owes the parked read, then the parked accept.
        let mut both = frame(PSH, 1, b"x");
        both.extend(frame(SYN, 3, b""));
        peer.write_all(&both).await.unwrap();
        let second = tokio::time::timeout(Duration::from_secs(2), acceptor)
            .await
            .expect("the accept was woken within the pacing bound")
            .expect("acceptor task")
            .expect("second stream");
        assert_eq!(second.id().number(), 3);

        // The first stream's data is there for a read that comes back.
        let mut got = [0u8; 1];
        first.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"x");
    })
    .await;
}
