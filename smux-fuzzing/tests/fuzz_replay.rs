//! Replays the fuzz corpus and every recorded fuzz finding as ordinary tests, and feeds
//! random inputs to the same entry points (`smux_fuzzing`) with proptest.
//!
//! Inputs live in `fuzz/corpus/<target>/` (the seed corpus, see `fuzz/README.md`) and
//! `fuzz/regressions/<target>/` (inputs that once crashed a target; each must pass).

use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use smux_fuzzing as fuzzing;

use fuzzing::TARGETS;

/// Recorded findings whose core fix has not landed yet, as `target/file`: they replay,
/// and may fail without failing the test (each is described in the fuzz README). One
/// that passes again is reported, so the entry can go.
const AWAITING_CORE_FIX: &[&str] = &[];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Runs every file of `fuzz/<kind>/<target>/` through the target's function; returns
/// how many files ran and which failed.
fn replay(kind: &str, target: &str, f: fn(&[u8])) -> (usize, Vec<String>) {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = fs::read_dir(&dir) else {
        return (0, Vec::new());
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    let mut failed = Vec::new();
    for path in &paths {
        let data = fs::read(path).expect("readable corpus file");
        if std::panic::catch_unwind(|| f(&data)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    (paths.len(), failed)
}

#[test]
fn corpus_replays() {
    let mut failed = Vec::new();
    for (target, f) in TARGETS {
        let (n, mut bad) = replay("corpus", target, f);
        assert!(n > 0, "fuzz/corpus/{target}/ is empty: see fuzz/README.md");
        failed.append(&mut bad);
    }
    assert!(failed.is_empty(), "corpus inputs failing: {failed:?}");
}

#[test]
fn regressions_replay() {
    let mut failed = Vec::new();
    let mut total = 0;
    for (target, f) in TARGETS {
        let (n, mut bad) = replay("regressions", target, f);
        total += n;
        failed.append(&mut bad);
    }
    assert!(total > 0, "no recorded finding under fuzz/regressions/");
    let awaited = |path: &String| {
        AWAITING_CORE_FIX
            .iter()
            .any(|p| path.ends_with(&format!("regressions/{p}")))
    };
    for p in AWAITING_CORE_FIX {
        if !failed
            .iter()
            .any(|f| f.ends_with(&format!("regressions/{p}")))
        {
            eprintln!("{p} passes now: remove it from AWAITING_CORE_FIX");
        }
    }
    failed.retain(|path| !awaited(path));
    assert!(
        failed.is_empty(),
        "fuzz regressions failing again: {failed:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn decode_random(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        fuzzing::decode(&data);
    }

    #[test]
    fn session_random(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        fuzzing::session(&data);
    }

    #[test]
    fn pair_random(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        fuzzing::pair(&data);
    }

    #[test]
    fn ext_random(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        fuzzing::ext(&data);
    }

    /// Random inputs that start from a seed, so the random tail runs on a session
    /// that is already doing something.
    #[test]
    fn seeds_with_random_tails(
        pick in any::<prop::sample::Index>(),
        tail in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let seeds = fuzzing::seeds();
        let (target, _, seed) = &seeds[pick.index(seeds.len())];
        let mut data = seed.clone();
        data.extend_from_slice(&tail);
        let f = fuzzing::target(target).expect("known target");
        f(&data);
    }
}
