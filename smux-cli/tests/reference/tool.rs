//! The `smux` tool against the reference: probe, tunnel server and client, a cut
//! connection.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use smux_tests::reference::{binaries, Peer};

use crate::{echo_target, refpeer_client, tcp_round_trip, Tool, SECS};

#[test]
fn a_reference_server_that_cannot_listen_is_noticed() {
    let Some(bins) = binaries() else { return };
    // Another test's listener holds the port (the race a free-port pick can lose):
    // connects succeed, but not to refpeer, which exits.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address");
    let peer = Peer::refpeer_server_on("refpeer server", bins, "server", addr);
    assert!(
        peer.is_none(),
        "a refpeer that could not bind {addr} was taken as listening"
    );
    drop(taken);
    let (_server, addr) = Peer::refpeer_server("refpeer server", bins, "server");
    assert!(std::net::TcpStream::connect(addr).is_ok());
}

#[test]
fn probe_both_ways() {
    let Some(bins) = binaries() else { return };
    let (_server, addr) = Peer::refpeer_server("refpeer server", bins, "server");
    let out = Command::new(env!("CARGO_BIN_EXE_smux"))
        .args(["probe", &addr.to_string(), "--timeout", "5s"])
        .output()
        .expect("run smux probe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("speaks smux"),
        "smux probe of a reference server: {} {stdout}",
        out.status
    );

    let (target, _) = echo_target();
    let tunnel = Tool::start(&[
        "tunnel",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--to",
        &target.to_string(),
    ]);
    let mut probe = Peer::spawn(
        "refpeer probe",
        &bins.refpeer,
        &["-mode", "probe", "-addr", &tunnel.addr.to_string()],
    );
    let verdict = probe.line(SECS(15));
    assert!(
        probe.wait(SECS(15)).success() && verdict == "smux: yes",
        "{verdict}"
    );
}

#[test]
fn tunnel_server_behind_a_reference_client() {
    let Some(bins) = binaries() else { return };
    let (target, _) = echo_target();
    let tunnel = Tool::start(&[
        "tunnel",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--to",
        &target.to_string(),
    ]);
    let (verdict, ok) = refpeer_client(bins, tunnel.addr, &["-streams", "64", "-size", "300000"]);
    assert!(ok && verdict == "64/64 streams intact", "{verdict}");
}

#[test]
fn tunnel_client_in_front_of_a_reference_server() {
    let Some(bins) = binaries() else { return };
    let (_server, addr) = Peer::refpeer_server("refpeer server", bins, "server");
    let tunnel = Tool::start(&[
        "tunnel",
        "client",
        "--listen",
        "127.0.0.1:0",
        "--server",
        &addr.to_string(),
    ]);
    let local = tunnel.addr;
    let threads: Vec<_> = (0..64u64)
        .map(|i| thread::spawn(move || tcp_round_trip(local, 500 + i, 300_000 + i * 997)))
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        t.join()
            .expect("connection thread")
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
    }
}

/// Servers built on the reference often probe each accepted connection first; the
/// tunnel client sends nothing before its first local connection, so the probe is
/// answered first.
#[test]
fn tunnel_client_behind_a_probing_reference_server() {
    let Some(bins) = binaries() else { return };
    let (_gate, addr) = Peer::refpeer_server("refpeer gate", bins, "gate");
    let tunnel = Tool::start(&[
        "tunnel",
        "client",
        "--listen",
        "127.0.0.1:0",
        "--server",
        &addr.to_string(),
    ]);
    tunnel.wait_for("connected", SECS(10));
    // The gate probes at once and our session answers at once; give it a moment.
    thread::sleep(Duration::from_millis(300));
    tcp_round_trip(tunnel.addr, 9, 200_000).expect("through the tunnel and the gate");
    assert_eq!(
        tunnel.count("connection lost"),
        0,
        "the gate dropped the session"
    );
}

/// A reference client closes the whole connection while 8 streams are busy: the tunnel
/// server closes the 8 target connections and serves the next client.
#[test]
fn reference_client_closes_the_connection_mid_transfer() {
    let Some(bins) = binaries() else { return };
    let (target, open) = echo_target();
    let tunnel = Tool::start(&[
        "tunnel",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--to",
        &target.to_string(),
    ]);
    let addr = tunnel.addr.to_string();
    let args = [
        "-mode",
        "cut-client",
        "-addr",
        &addr,
        "-n",
        "8",
        "-size",
        "2097152",
        "-after",
        "4194304",
    ];
    let cut = Peer::scenarios("scenarios cut-client", bins, &args);
    let line = cut.line_starting("cut-done", SECS(60));
    eprintln!("{line}");
    let end = Instant::now() + SECS(15);
    while open.load(Ordering::SeqCst) > 0 {
        assert!(
            Instant::now() < end,
            "{} target connections still open",
            open.load(Ordering::SeqCst)
        );
        thread::sleep(Duration::from_millis(20));
    }
    let (verdict, ok) = refpeer_client(bins, tunnel.addr, &["-streams", "4", "-size", "100000"]);
    assert!(
        ok && verdict == "4/4 streams intact",
        "after the cut: {verdict}"
    );
}
