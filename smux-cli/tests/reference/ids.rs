//! Stream IDs against the reference, on each adapter: more than 65,536 sequential
//! streams in both roles, and what our end sees when the reference runs out of IDs
//! (docs/PROTOCOL.md, section 14.1).
//!
//! The reference allocates a 512 KiB buffer per stream; its collector is tuned for
//! that (see `smux_tests::reference::Peer`), which keeps each run near 15 s.

use std::sync::Arc;
use std::thread;
use std::time::Instant;

use smux_tests::reference::adapter::{soon, wait_no_streams, Adapter, Sess, Strm};
use smux_tests::reference::{binaries, Peer};
use smux_tokio::Config;

use crate::SECS;

smux_tests::per_adapter!(
    id_reuse_our_dialer,
    id_reuse_reference_dialer,
    id_exhaustion_reference_dialer,
);

/// Sequential streams in the ID tests: more than the 65,536 IDs there are.
const SEQUENTIAL: u64 = 70_000;

/// One short stream: the 8 bytes of `i` after `prefix`, the same 8 bytes back.
fn ping_stream(mut stream: Strm, prefix: &[u8], i: u64) -> Result<u16, String> {
    let mut out = prefix.to_vec();
    out.extend_from_slice(&i.to_le_bytes());
    stream
        .write_all(&out, soon(10))
        .map_err(|e| format!("stream {i} (ID {}): write: {e}", stream.id))?;
    let mut back = [0u8; 8];
    stream
        .read_exact(&mut back, soon(10))
        .map_err(|e| format!("stream {i} (ID {}): reading the echo: {e}", stream.id))?;
    if back != i.to_le_bytes() {
        return Err(format!(
            "stream {i} (ID {}): echo came back as {}",
            stream.id,
            u64::from_le_bytes(back)
        ));
    }
    Ok(stream.id)
}

/// Our dialer opens 70,000 streams one after another against the reference and
/// closes each first (the reference is the passive side: it never frees their IDs in
/// its own table). Every echo must be intact. Then the reference tries to open a
/// stream itself: it must fail ("id use up.") exactly when our streams used all 65,536
/// IDs, and work otherwise.
fn id_reuse_our_dialer(adapter: Adapter) {
    let Some(bins) = binaries() else { return };
    let (_server, addr) = Peer::scenarios_server("scenarios server", bins, &[]);
    let session = adapter.connect(addr, Config::default()).expect("connect");
    let mut used = vec![false; 65_536];
    let started = Instant::now();
    for i in 0..SEQUENTIAL {
        let stream = session
            .open()
            .unwrap_or_else(|e| panic!("{adapter}: open {i}: {e}"));
        let id = ping_stream(stream, b"E", i).unwrap_or_else(|e| panic!("{adapter}: {e}"));
        used[usize::from(id)] = true;
    }
    let distinct = used.iter().filter(|&&u| u).count();
    eprintln!(
        "{adapter}: {SEQUENTIAL} sequential streams in {:.1} s over {distinct} distinct IDs",
        started.elapsed().as_secs_f64()
    );
    wait_no_streams(&*session, SECS(10));

    let mut control = session.open().expect("open the control stream");
    control
        .write_all(b"O", soon(10))
        .expect("ask the reference to open");
    let answer = control.read_line(soon(10)).expect("the reference's answer");
    if distinct == 65_536 {
        assert_eq!(
            answer, "err id use up. ",
            "{adapter}: the reference's ID table should be full"
        );
    } else {
        assert!(
            answer.starts_with("ok "),
            "{adapter}: reference open: {answer:?}"
        );
        let back = session.accept(SECS(10)).expect("the reference's stream");
        drop(back);
    }
    drop(control);
    let last = session.open().expect("open after the reference's attempt");
    ping_stream(last, b"E", 1).unwrap_or_else(|e| panic!("{adapter}: last stream: {e}"));
    assert_eq!(session.end_reason(), None);
}

/// Our server, closing each stream only after the reference did (the reference's
/// active close frees its IDs): the reference opens 70,000 streams one after another,
/// every echo intact.
fn id_reuse_reference_dialer(adapter: Adapter) {
    let Some(bins) = binaries() else { return };
    let listener = adapter.listen(Config::default()).expect("listen");
    let n = SEQUENTIAL.to_string();
    let addr = listener.addr().to_string();
    let args = [
        "-mode",
        "seq-client",
        "-addr",
        &addr,
        "-n",
        &n,
        "-closer",
        "client",
    ];
    let client = Peer::scenarios("scenarios seq-client", bins, &args);
    let session: Arc<dyn Sess> = Arc::from(listener.accept(SECS(10)).expect("accept"));
    let started = Instant::now();
    let server = serve_sequential(session.clone(), false);
    let report = client.line_starting("seq-done", SECS(150));
    assert_eq!(report, format!("seq-done {SEQUENTIAL}"));
    eprintln!(
        "{adapter}: {SEQUENTIAL} sequential streams in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(server.join().expect("server thread"), SEQUENTIAL);
    wait_no_streams(&*session, SECS(10));
    assert_eq!(session.end_reason(), None);
}

/// Serves the streams of a `seq-client` one at a time (it waits for each): echoes its
/// 8 bytes, then closes first (`close_first`) or waits for the reference's close.
/// Returns the count served once no stream came for 2 s.
fn serve_sequential(session: Arc<dyn Sess>, close_first: bool) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut served = 0u64;
        while let Ok(mut stream) = session.accept(SECS(2)) {
            let mut req = [0u8; 8];
            stream.read_exact(&mut req, soon(10)).expect("request");
            stream.write_all(&req, soon(10)).expect("answer");
            if !close_first {
                let n = stream
                    .rd
                    .read(&mut req, soon(10))
                    .expect("the reference's close");
                assert_eq!(n, 0, "end-of-file expected");
            }
            served += 1;
        }
        served
    })
}

/// Our server closes each stream first, so the reference is the passive side of every
/// close and never frees the ID it opened: its 65,537th open fails with "id use up."
/// (an error in the reference application; nothing reaches the wire). Our session sees
/// no error at all: it holds no stream, stays up, and can still open streams towards
/// the reference, which still accepts them.
fn id_exhaustion_reference_dialer(adapter: Adapter) {
    let Some(bins) = binaries() else { return };
    let listener = adapter.listen(Config::default()).expect("listen");
    let n = SEQUENTIAL.to_string();
    let addr = listener.addr().to_string();
    let args = [
        "-mode",
        "seq-client",
        "-addr",
        &addr,
        "-n",
        &n,
        "-closer",
        "server",
    ];
    let client = Peer::scenarios("scenarios seq-client", bins, &args);
    let session: Arc<dyn Sess> = Arc::from(listener.accept(SECS(10)).expect("accept"));
    let started = Instant::now();
    let server = serve_sequential(session.clone(), true);
    let report = client.line_starting("open-error", SECS(150));
    assert_eq!(
        report, "open-error 65536 id use up. ",
        "{adapter}: the reference should run out of IDs after 65,536 streams"
    );
    eprintln!(
        "{adapter}: 65,536 sequential streams in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let served = server.join().expect("server thread");
    assert_eq!(served, 65_536, "{adapter}: streams served");
    assert_eq!(session.end_reason(), None, "{adapter}: our session ended");
    wait_no_streams(&*session, SECS(10));
    // Our end can still open streams, and the reference still accepts them.
    let stream = session.open().expect("open towards the reference");
    ping_stream(stream, b"", 42).unwrap_or_else(|e| panic!("{adapter}: after exhaustion: {e}"));
}
