//! The seed corpus of the fuzz targets, built by `smux_fuzzing::seeds`.
//!
//! Regenerate `fuzz/corpus/` after changing the seeds or an input format:
//!
//! ```text
//! SMUX_WRITE_CORPUS=1 cargo test -p smux-fuzzing --test fuzz_corpus
//! ```
//!
//! Without the variable the test checks that every seed file on disk is current (files
//! that libFuzzer adds next to them are left alone and not checked).

use std::fs;
use std::path::Path;

use smux_fuzzing as fuzzing;

#[test]
fn seed_corpus_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let write = std::env::var_os("SMUX_WRITE_CORPUS").is_some_and(|v| v != "0");
    let mut stale = Vec::new();
    for (target, name, data) in fuzzing::seeds() {
        let dir = root.join(target);
        let path = dir.join(format!("seed-{name}"));
        if write {
            fs::create_dir_all(&dir).expect("create corpus directory");
            fs::write(&path, &data).expect("write seed");
        } else if fs::read(&path).ok().as_deref() != Some(&data[..]) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale seeds (run SMUX_WRITE_CORPUS=1 cargo test -p smux-fuzzing --test \
         fuzz_corpus): {stale:?}"
    );
}

#[test]
fn seeds_pass_their_targets() {
    let mut failed = Vec::new();
    for (target, name, data) in fuzzing::seeds() {
        let f = fuzzing::target(target).expect("known target");
        if std::panic::catch_unwind(|| f(&data)).is_err() {
            failed.push(format!("{target}/{name}"));
        }
    }
    assert!(failed.is_empty(), "seeds failing their targets: {failed:?}");
}
