//! The quick benchmark runs end to end on loopback and prints a row for every
//! system and scenario. Timings are not asserted: they are the benchmark's job.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCENARIOS: [&str; 9] = [
    "bulk-1",
    "bulk-64",
    "bulk-1024",
    "rr-1",
    "rr-64",
    "churn-1",
    "churn-4",
    "idle",
    "hol",
];
const SYSTEMS: [&str; 9] = [
    "tcp",
    "smux-rs",
    "smux-smol",
    "tcp-smol",
    "smux-blocking",
    "tcp-threads",
    "yamux",
    "tokio-yamux",
    "async-smux",
];

/// Runs `smux` with `args`, killing it after `limit`; returns (success, stdout, stderr).
fn run_smux(args: &[&str], limit: Duration) -> (bool, String, String) {
    // A directory per call (tests run in parallel), removed once read; one whose run
    // hung stays, for a look.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let name = format!("smux-cli-test-{}-{n}", std::process::id());
    let dir = std::env::temp_dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let out_path = dir.join(format!("out-{}", args.join("_").replace('/', "_")));
    let err_path = out_path.with_extension("err");
    let mut child = Command::new(env!("CARGO_BIN_EXE_smux"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn smux");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "smux {args:?} did not finish within {limit:?}; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = std::fs::read_to_string(&out_path).unwrap();
    let err = std::fs::read_to_string(&err_path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (status.success(), out, err)
}

#[test]
fn quick_bench_prints_a_row_per_system_and_scenario() {
    let dir = std::env::temp_dir().join(format!("smux-cli-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json_path = dir.join("bench.json");
    let json_arg = json_path.to_str().unwrap();
    let svg_path = dir.join("bench.svg");
    let svg_arg = svg_path.to_str().unwrap();
    let (ok, out, err) = run_smux(
        &["bench", "--quick", "--json", json_arg, "--svg", svg_arg],
        Duration::from_secs(240),
    );
    assert!(ok, "smux bench failed\nstdout:\n{out}\nstderr:\n{err}");
    for scenario in SCENARIOS {
        for system in SYSTEMS {
            let row = out.lines().any(|l| {
                let mut words = l.split_whitespace();
                words.next() == Some(scenario) && words.next() == Some(system)
            });
            assert!(row, "no row for {scenario} / {system} in:\n{out}");
        }
    }
    assert!(
        out.contains("vs tcp") && out.contains("vs smux-rs"),
        "{out}"
    );
    let json = std::fs::read_to_string(&json_path).unwrap();
    assert_eq!(
        json.matches("\"scenario\":").count(),
        SCENARIOS.len() * SYSTEMS.len(),
        "{json}"
    );
    // Each churn result states its loop count.
    for (scenario, loops) in [("churn-1", 1), ("churn-4", 4)] {
        for system in SYSTEMS {
            let line = format!(
                "\"scenario\": \"{scenario}\", \"system\": \"{system}\", \"churn_loops\": {loops},"
            );
            assert!(json.contains(&line), "no {line} in:\n{json}");
        }
    }
    // The chart: a group per scenario, every system in the legend, and runs without
    // a figure marked (tokio-yamux's write-only stall hangs bulk-1; raw TCP has no
    // idle figure).
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for name in SCENARIOS.iter().chain(&SYSTEMS) {
        assert!(
            svg.contains(&format!(">{name}<")),
            "{name} missing from the chart"
        );
    }
    for (i, row) in out.lines().enumerate() {
        let mut words = row.split_whitespace();
        let (Some(scenario), Some(system), Some(result)) =
            (words.next(), words.next(), words.next())
        else {
            continue;
        };
        if !SCENARIOS.contains(&scenario) || !SYSTEMS.contains(&system) {
            continue;
        }
        let mark = match result {
            "hung" => "hung",
            "failed:" => "failed",
            "n/a" => "n/a",
            _ => continue,
        };
        assert!(
            svg.contains(&format!("<title>{system}: {mark}</title>")),
            "row {i} ({scenario} {system}) is {mark} but not marked so in the chart"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_rejects_unknown_names() {
    let (ok, _, err) = run_smux(&["bench", "--systems", "nonesuch"], Duration::from_secs(30));
    assert!(!ok);
    assert!(err.contains("unknown system"), "{err}");
    let (ok, _, err) = run_smux(&["bench", "--scenarios", "bulk-x"], Duration::from_secs(30));
    assert!(!ok);
    assert!(err.contains("unknown scenario"), "{err}");
}

/// The long-fat-link scenario in quick mode, for each of its default systems: every
/// byte written arrives, equal to what was sent (the reader compares each byte with
/// the pattern and the counts must match, else the run is "failed"), followed by
/// end-of-file. Speed is not asserted.
#[test]
fn quick_lfn_delivers_every_byte_intact() {
    const LFN_SYSTEMS: [&str; 10] = [
        "tcp",
        "smux-rs",
        "smux-rs-base",
        "smux-smol",
        "tcp-smol",
        "smux-blocking",
        "tcp-threads",
        "yamux",
        "tokio-yamux+peek",
        "async-smux",
    ];
    // The systems that must finish: ours and the physical references.
    const MUST_FINISH: [&str; 7] = [
        "tcp",
        "smux-rs",
        "smux-rs-base",
        "smux-smol",
        "tcp-smol",
        "smux-blocking",
        "tcp-threads",
    ];
    let dir = std::env::temp_dir().join(format!("smux-cli-lfn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json_path = dir.join("lfn.json");
    let json_arg = json_path.to_str().unwrap();
    // A phase is hung only after this long without progress: generous, so a loaded
    // machine running a debug build does not turn slowness into a failure.
    let (ok, out, err) = run_smux(
        &[
            "bench",
            "--quick",
            "--scenarios",
            "lfn",
            "--timeout",
            "5s",
            "--json",
            json_arg,
        ],
        Duration::from_secs(180),
    );
    assert!(ok, "smux bench failed\nstdout:\n{out}\nstderr:\n{err}");
    for system in LFN_SYSTEMS {
        let row = out.lines().any(|l| {
            let mut words = l.split_whitespace();
            words.next() == Some("lfn") && words.next() == Some(system)
        });
        assert!(row, "no lfn row for {system} in:\n{out}");
    }
    let json = std::fs::read_to_string(&json_path).unwrap();
    for system in MUST_FINISH {
        let line = json
            .lines()
            .find(|l| l.contains(&format!("\"scenario\": \"lfn\", \"system\": \"{system}\",")))
            .unwrap_or_else(|| panic!("no lfn result for {system} in:\n{json}"));
        assert!(
            line.contains("\"status\": \"ok\""),
            "lfn on {system} did not finish intact:\n{line}\nstdout:\n{out}"
        );
        let verified = line
            .split("\"verified_bytes\": ")
            .nth(1)
            .and_then(|rest| rest.split(['}', ',']).next())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no verified_bytes for {system}:\n{line}"));
        assert!(verified > 0.0, "{system}: nothing arrived\n{line}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
