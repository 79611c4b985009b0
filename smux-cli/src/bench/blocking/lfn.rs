//! lfn on the blocking harness (smux-blocking, tcp-threads): the same long fat link (the relay between the two
//! ends) and the same checks as the async harness (`scenarios::lfn`): two round trips
//! on a first stream, then one stream writing the pattern from a thread while the
//! reading end checks every byte; after the window the writer shuts its side down
//! and the run fails unless every byte written arrived intact, then end-of-file.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use super::super::scenarios::{
    expected, failed, hung, LfnSink, Metrics, Params, Res, Stop, WRITE_SIZE,
};
use super::super::systems::System;
use super::Pair;

/// The lfn scenario.
pub(super) fn lfn(system: System, p: &Params) -> Res<Metrics> {
    let limit = p.lfn_phase_timeout();
    let pair = Pair::through(system, Some(p.link), limit)?;
    let sink = Arc::new(LfnSink::default());
    serve(&pair, sink.clone(), limit);
    // As in the async harness: the extensions are agreed within these round trips,
    // so the measured stream opened next is extended (raw TCP just makes them).
    let mut hello = pair.open(limit)?;
    let mut b = [0u8; 1];
    for _ in 0..3 {
        hello
            .write_all(b"H")
            .and_then(|()| hello.read_exact(&mut b))
            .map_err(|e| stall("first stream's round trips", e))?;
    }
    let mut s = pair.open(limit)?;
    s.write_all(b"L")
        .and_then(|()| s.read_exact(&mut b))
        .map_err(|e| stall("first exchange", e))?;
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel();
    {
        let stop = stop.clone();
        pair.spawn(move || {
            let mut offset = 0u64;
            let r = (|| {
                while !stop.load(Ordering::Relaxed) {
                    s.write_all(expected(offset, WRITE_SIZE))?;
                    offset += WRITE_SIZE as u64;
                }
                s.shutdown(Shutdown::Write)
            })();
            // The stream goes along so it lives until the reader is done.
            let _ = done_tx.send(r.map(|()| (offset, s)));
        });
    }
    let t0 = Instant::now();
    let (warmup, window) = p.lfn_times();
    thread::sleep(warmup);
    let (a, ta) = (sink.read.load(Ordering::Acquire), Instant::now());
    thread::sleep(window);
    let (b, tb) = (sink.read.load(Ordering::Acquire), Instant::now());
    stop.store(true, Ordering::Relaxed);

    // Drain: the writer's end and the reader's end-of-file, while bytes keep coming.
    let mut sent = None;
    let mut last = (b, Instant::now());
    loop {
        if let Some(e) = sink.error.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(Stop::Failed(e));
        }
        if sent.is_none() {
            match done_rx.try_recv() {
                Ok(Ok(x)) => sent = Some(x),
                Ok(Err(e)) => return Err(failed("write", e)),
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => {
                    return Err(Stop::Failed("the writer thread died".into()))
                }
            }
        }
        let read = sink.read.load(Ordering::Acquire);
        if sent.is_some() && sink.finished.load(Ordering::Acquire) {
            break;
        }
        if read != last.0 {
            last = (read, Instant::now());
        } else if last.1.elapsed() >= limit {
            let what = if sent.is_some() {
                "no end-of-file"
            } else {
                "writer stuck"
            };
            return Err(hung(format!("{what} after the window: {read} bytes read")));
        }
        thread::sleep(Duration::from_millis(5));
    }
    let Some((sent, _stream)) = sent else {
        return Err(Stop::Failed("the writer did not finish".into()));
    };
    let got = sink.read.load(Ordering::Acquire);
    if got != sent {
        return Err(Stop::Failed(format!(
            "{got} bytes arrived of {sent} written"
        )));
    }
    if b == a {
        return Err(hung("no data moved in the window"));
    }
    let steady = (b - a) as f64 / (tb - ta).as_secs_f64() / 1e6;
    Ok(Metrics {
        mbps: Some(steady),
        whole_mbps: Some(b as f64 / (tb - t0).as_secs_f64() / 1e6),
        link_fraction: Some(steady * 1e6 / p.link.bytes_per_sec()),
        verified_bytes: Some(got as f64),
        ..Metrics::default()
    })
}

/// A failed exchange: a timeout is a hang, anything else a failure.
fn stall(what: &str, e: std::io::Error) -> Stop {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => hung(what),
        _ => failed(what, e),
    }
}

/// The reading end: a stream tagged 'H' echoes single bytes until end-of-file; one
/// tagged 'L' is read to end-of-file, every byte checked by `sink`.
fn serve(pair: &Pair, sink: Arc<LfnSink>, limit: Duration) {
    let rx = pair.accepted();
    pair.spawn(move || {
        // The readers are joined here, so the pair's teardown waits for them too.
        let mut threads = Vec::new();
        while let Ok(mut s) = rx.recv() {
            let sink = sink.clone();
            threads.push(thread::spawn(move || {
                let _ = s.set_read_timeout(Some(limit));
                let mut tag = [0u8; 1];
                if s.read_exact(&mut tag).is_err() || s.write_all(&tag).is_err() {
                    return;
                }
                if tag[0] == b'H' {
                    let mut b = [0u8; 1];
                    while s.read_exact(&mut b).is_ok() && s.write_all(&b).is_ok() {}
                    return;
                }
                let mut buf = vec![0u8; WRITE_SIZE];
                let error = loop {
                    match s.read(&mut buf) {
                        Ok(0) => {
                            sink.finished.store(true, Ordering::Release);
                            return;
                        }
                        Ok(n) => {
                            if let Err(e) = sink.take(&buf[..n]) {
                                break e;
                            }
                        }
                        Err(e) => {
                            let at = sink.read.load(Ordering::Acquire);
                            break format!("read after {at} bytes: {e}");
                        }
                    }
                };
                *sink.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
            }));
        }
        for t in threads {
            let _ = t.join();
        }
    });
}
