//! A driver that stops: what only smux-smol has (the session's driver is a future the
//! application runs). Failures the adapters share (transport loss, keepalive, the
//! last session handle dropped) are in the conformance suite (smux-tests).

mod common;

use std::time::Duration;

use smux_smol::{EndReason, Role, Session};

use common::{both_modes, config, run, tcp_pair};

both_modes!(dropping_the_driver_ends_everything,);

/// The driver dropped (never run, or its executor gone): a parked accept fails, and so
/// does every later call; the session ends with a transport error, and the transport
/// is closed though the session's handles live on.
fn dropping_the_driver_ends_everything(ext: bool) {
    run(Duration::from_secs(30), async {
        let (c, mut peer) = tcp_pair().await;
        let (session, driver) = Session::with_driver(c, config(ext), Role::Dialer).unwrap();
        let mut s = session.open().await.unwrap();
        let acceptor = {
            let session = session.clone();
            smol::spawn(async move { session.accept().await.map(|_| ()) })
        };
        smol::Timer::after(Duration::from_millis(20)).await;
        drop(driver);
        acceptor
            .await
            .expect_err("accept fails once the driver is gone");
        let mut buf = [0u8; 1];
        assert!(smol::io::AsyncReadExt::read(&mut s, &mut buf)
            .await
            .is_err());
        assert!(session.open().await.is_err());
        assert!(matches!(session.closed().await, EndReason::Transport(..)));
        // The transport went with the driver, though the session's handles live on.
        let eof = smol::future::or(
            async { smol::io::AsyncReadExt::read(&mut peer, &mut buf).await.ok() },
            async {
                smol::Timer::after(Duration::from_secs(5)).await;
                None
            },
        );
        assert_eq!(eof.await, Some(0), "the peer sees the connection close");
    });
}
