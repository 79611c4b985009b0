//! A session whose runtime shut down (its driver dropped before the session ended)
//! while the application still holds the session: calls fail, and the transport is
//! closed, so the peer is not left waiting on a connection nobody drives.

use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use smux_tokio::{Config, EndReason, Role, Session};

#[test]
fn the_transport_closes_when_the_runtime_is_gone() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let ours = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (mut peer, _) = listener.accept().expect("accept");
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let session = rt.block_on(async {
        ours.set_nonblocking(true).unwrap();
        let tcp = tokio::net::TcpStream::from_std(ours).unwrap();
        Session::new(tcp, Config::default(), Role::Dialer).expect("session")
    });
    // The driver goes with the runtime; the session handle stays.
    drop(rt);
    assert!(session.is_closed(), "the session ended with its driver");
    assert!(matches!(
        session.end_reason(),
        Some(EndReason::Transport(_))
    ));

    // Whatever the session sent (nothing, or a frame), the peer then sees end-of-file
    // rather than a connection that stays open with nobody behind it.
    let mut buf = [0u8; 64];
    let end = loop {
        match peer.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(e) => break Err(e),
        }
    };
    assert!(
        end.is_ok(),
        "the peer still waits on the connection: {end:?}"
    );
    let _ = peer.shutdown(Shutdown::Both);
    drop(session);
}
