//! Helpers shared by the integration tests: bounded runs, session pairs over
//! loopback TCP and a checksum.
#![allow(dead_code)]

use std::future::Future;
use std::net::TcpListener;
use std::time::Duration;

use async_io::Async;
use smol::Task;
use smux_smol::{Config, EndReason, Role, Session, TcpTransport};

/// Runs `fut` to completion on the current thread (other tasks run on smol's global
/// executor) and fails the test if it takes longer than `limit`.
pub fn run<T>(limit: Duration, fut: impl Future<Output = T>) -> T {
    smol::block_on(smol::future::or(fut, async move {
        smol::Timer::after(limit).await;
        panic!("test did not finish within {limit:?}");
    }))
}

/// Two connected sessions over loopback TCP, with their running drivers.
pub struct Pair {
    pub client: Session,
    pub server: Session,
    pub client_driver: Task<EndReason>,
    pub server_driver: Task<EndReason>,
}

/// Connected TCP sockets over 127.0.0.1: (dialer's end, acceptor's end).
pub async fn tcp_pair() -> (TcpTransport, TcpTransport) {
    let listener = Async::new(TcpListener::bind("127.0.0.1:0").unwrap()).unwrap();
    let addr = listener.get_ref().local_addr().unwrap();
    let (dialed, accepted) = smol::future::zip(
        Async::<std::net::TcpStream>::connect(addr),
        listener.accept(),
    )
    .await;
    (dialed.unwrap().into(), accepted.unwrap().0.into())
}

/// A dialling and an accepting session over loopback TCP, drivers spawned. When both
/// configurations have extensions on, they are negotiated before this returns, so
/// every stream the test opens is extended.
pub async fn pair(client: Config, server: Config) -> Pair {
    let (c, s) = tcp_pair().await;
    let both = client.extensions() && server.extensions();
    let (client, cd) = Session::with_driver(c, client, Role::Dialer).unwrap();
    let (server, sd) = Session::with_driver(s, server, Role::Acceptor).unwrap();
    let (client_driver, server_driver) = (smol::spawn(cd), smol::spawn(sd));
    if both {
        negotiate(&client, &server).await;
    }
    Pair {
        client,
        server,
        client_driver,
        server_driver,
    }
}

/// Makes the dialer send a first frame (a ping), which makes the acceptor offer the
/// extensions, and waits until both ends have enabled them. The drivers must run.
pub async fn negotiate(client: &Session, server: &Session) {
    assert!(client.ping());
    // No event says so; the test's own time bound catches a negotiation that hangs.
    while !(client.extensions_enabled() && server.extensions_enabled()) {
        smol::Timer::after(Duration::from_millis(1)).await;
    }
}

/// The default configuration with extensions on or off.
pub fn config(ext: bool) -> Config {
    with_ext(Config::default(), ext)
}

/// `c` with extensions on or off.
pub fn with_ext(c: Config, ext: bool) -> Config {
    c.with_extensions(ext)
}

/// Declares, for each `name`, the tests `name::ext_on` and `name::ext_off`, which run
/// the function `name(ext: bool)` with extensions on and off.
// Not every test file that includes this module uses it.
#[allow(unused_macros)]
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn ext_on() {
                super::$name(true)
            }

            #[test]
            fn ext_off() {
                super::$name(false)
            }
        }
    )*};
}
#[allow(unused_imports)]
pub(crate) use both_modes;

/// FNV-1a, 64-bit.
pub fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// `n` pseudo-random bytes from `rng`.
pub fn random_bytes(rng: &mut fastrand::Rng, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill(&mut v);
    v
}
