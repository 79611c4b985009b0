//! idle with the blocking adapter: one thread opens the streams (a byte each way on
//! each), one accepts and answers them; then the heap per stream. The session's own
//! threads are spawned inside the adapter, where the allocation counter cannot tag
//! them by end, so the figure is the process heap's growth: both ends together.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use super::super::scenarios::{failed, hung, Metrics, Params, Res, Stop};
use super::super::systems::System;
use super::Pair;
use crate::alloc;

/// The idle scenario: `p.idle_streams` streams opened and left idle.
pub(super) fn idle(system: System, p: &Params) -> Res<Metrics> {
    let n = p.idle_streams;
    let pair = Pair::new(system, p)?;
    // Let the session's threads start and the handshake settle before the baseline.
    thread::sleep(Duration::from_millis(50));
    let base = alloc::live_total();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (kept_tx, kept_rx) = mpsc::channel();
    {
        let server = pair.server.clone();
        let accepted = accepted.clone();
        let limit = p.phase_timeout;
        pair.spawn(move || {
            let mut kept = Vec::with_capacity(n);
            while kept.len() < n {
                let Ok(mut s) = server.accept() else { break };
                let mut b = [0u8; 1];
                let answered = s
                    .set_read_timeout(Some(limit))
                    .and_then(|()| s.read_exact(&mut b))
                    .and_then(|()| s.write_all(&b));
                if answered.is_err() {
                    break;
                }
                kept.push(s);
                accepted.store(kept.len(), Ordering::Release);
            }
            // Handed over, so the streams outlive the measurement.
            let _ = kept_tx.send(kept);
        });
    }
    let mut kept = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = pair.open(p.phase_timeout)?;
        let mut b = [1u8; 1];
        if let Err(e) = s.write_all(&b).and_then(|()| s.read_exact(&mut b)) {
            return Err(if e.kind() == std::io::ErrorKind::TimedOut {
                hung(format!("exchange on stream {i}"))
            } else {
                failed("exchange", e)
            });
        }
        kept.push(s);
    }
    let deadline = Instant::now() + p.phase_timeout;
    while accepted.load(Ordering::Acquire) < n {
        if Instant::now() >= deadline {
            let got = accepted.load(Ordering::Acquire);
            return Err(hung(format!("{got} of {n} streams accepted")));
        }
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(Duration::from_millis(100));
    let grown = alloc::live_total() - base;
    let server_kept = kept_rx
        .recv_timeout(p.phase_timeout)
        .map_err(|_| Stop::Failed("the accepting thread did not hand its streams".into()))?;
    drop((kept, server_kept));
    Ok(Metrics {
        total_bytes: Some(grown as f64 / n as f64),
        ..Metrics::default()
    })
}
