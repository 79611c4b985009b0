//! Idle for 112 s in both roles, for each adapter and the tool at once.

use std::thread;
use std::time::Instant;

use smux_tests::pattern_sum;
use smux_tests::reference::adapter::Adapter;
use smux_tests::reference::echo::{echo_check, EchoServer};
use smux_tests::reference::{binaries, Binaries, Peer};
use smux_tokio::{Config, EndReason};

use crate::{echo_target, refpeer_client, tcp_round_trip, Tool, IDLE, SECS};

/// Idle for 112 s, then used: a reference client against each adapter's server and
/// against the tunnel server, and each adapter's client and the tunnel client against
/// a reference server, all at once. A control session that sends no PIN must be
/// closed by the reference meanwhile, which shows that the wait was long enough.
#[test]
fn idle_110_seconds_in_both_roles() {
    let Some(bins) = binaries() else { return };
    let started = Instant::now();
    let mut jobs: Vec<(String, thread::JoinHandle<Result<(), String>>)> = Vec::new();
    let hold = format!("{}s", IDLE.as_secs());
    for adapter in Adapter::ALL {
        let hold = hold.clone();
        jobs.push((
            format!("reference client, {adapter} server"),
            thread::spawn(move || {
                let ours = EchoServer::start(adapter, Config::default());
                let (verdict, ok) = refpeer_client(
                    bins,
                    ours.addr(),
                    &["-hold", &hold, "-streams", "4", "-size", "100000"],
                );
                (ok && verdict == "4/4 streams intact")
                    .then_some(())
                    .ok_or(verdict)
            }),
        ));
        jobs.push((
            format!("{adapter} client, reference server"),
            thread::spawn(move || our_idle_client(bins, adapter, Config::default())),
        ));
    }
    jobs.push((
        "reference client, tunnel server".into(),
        thread::spawn(move || {
            let (target, _) = echo_target();
            let tunnel = Tool::start(&[
                "tunnel",
                "server",
                "--listen",
                "127.0.0.1:0",
                "--to",
                &target.to_string(),
            ]);
            let (verdict, ok) = refpeer_client(
                bins,
                tunnel.addr,
                &["-hold", &hold, "-streams", "4", "-size", "100000"],
            );
            (ok && verdict == "4/4 streams intact")
                .then_some(())
                .ok_or(verdict)
        }),
    ));
    jobs.push((
        "tunnel client, reference server".into(),
        thread::spawn(move || {
            let (_server, addr) = Peer::refpeer_server("refpeer server", bins, "server");
            let tunnel = Tool::start(&[
                "tunnel",
                "client",
                "--listen",
                "127.0.0.1:0",
                "--server",
                &addr.to_string(),
            ]);
            tunnel.wait_for("connected", SECS(10));
            thread::sleep(IDLE);
            tcp_round_trip(tunnel.addr, 11, 100_000)?;
            match (tunnel.count("connected"), tunnel.count("connection lost")) {
                (1, 0) => Ok(()),
                (c, l) => Err(format!("{c} connects, {l} lost connections while idle")),
            }
        }),
    ));
    // The control: no PIN for 200 s, so the reference ends the session at about 110 s.
    let silent = Config::default()
        .with_keepalive_interval(SECS(200))
        .with_keepalive_timeout(SECS(300));
    let control = thread::spawn(move || our_idle_client(bins, Adapter::Tokio, silent));

    for (what, job) in jobs {
        let r = job.join().unwrap_or_else(|_| Err("panicked".into()));
        eprintln!("idle, {what}: {r:?}");
        assert_eq!(r, Ok(()), "idle, {what}");
    }
    let r = control.join().expect("control");
    eprintln!("idle, control without PIN: {r:?}");
    assert!(
        r.as_ref().is_err_and(|e| e.contains("by the peer: true")),
        "the reference should have closed the control session, which sent no PIN: {r:?}"
    );
    eprintln!(
        "idle scenarios took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Our client idles against a reference server, then echoes 100 KB.
fn our_idle_client(bins: &Binaries, adapter: Adapter, config: Config) -> Result<(), String> {
    let (_server, addr) = Peer::refpeer_server("refpeer server", bins, "server");
    let session = adapter.connect(addr, config).map_err(|e| e.to_string())?;
    thread::sleep(IDLE);
    if let Some(reason) = session.end_reason() {
        let peer_closed = matches!(reason, EndReason::PeerClosed | EndReason::Transport(..));
        return Err(format!(
            "{adapter}: session ended while idle ({reason}; by the peer: {peer_closed})"
        ));
    }
    let stream = session.open().map_err(|e| e.to_string())?;
    let sum = echo_check(stream, b"", 3, 100_000).map_err(|e| e.to_string())?;
    (sum.sum() == pattern_sum(3, 100_000))
        .then_some(())
        .ok_or_else(|| "echo differs".into())
}
