//! The command line's conventions, run as a user would: usage errors exit 2 and name
//! the flag and the value; failures at run time exit 1 and name what failed; an end
//! that cannot listen has connected nowhere; help, examples and completions.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

fn smux(args: &[&str]) -> Output {
    // Every command here either fails at once or prints and exits.
    Command::new(env!("CARGO_BIN_EXE_smux"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run smux")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `args`, expects exit status 2 and a message naming each of `names`.
fn usage_error(args: &[&str], names: &[&str]) {
    let o = smux(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "smux {args:?}: {err}");
    for n in names {
        assert!(err.contains(n), "smux {args:?} should name {n}: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_addresses_are_usage_errors_naming_flag_and_value() {
    usage_error(
        &[
            "tunnel",
            "server",
            "--listen",
            "nonsense",
            "--to",
            "127.0.0.1:9",
        ],
        &["--listen", "nonsense"],
    );
    usage_error(
        &[
            "tunnel",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--to",
            "nonsense",
        ],
        &["--to", "nonsense"],
    );
    usage_error(
        &[
            "tunnel",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            "nonsense",
        ],
        &["--server", "nonsense"],
    );
    usage_error(
        &[
            "tunnel",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            "127.0.0.1:0",
        ],
        &["--server", "127.0.0.1:0", "port 0"],
    );
    usage_error(
        &[
            "tunnel",
            "client",
            "--listen",
            "127.0.0.1:99999",
            "--server",
            "127.0.0.1:9",
        ],
        &["--listen", "99999"],
    );
    usage_error(&["probe", "not-an-address"], &["ADDR", "not-an-address"]);
}

#[test]
fn bad_values_are_usage_errors() {
    usage_error(
        &[
            "tunnel",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--to",
            "127.0.0.1:9",
            "--window",
            "lots",
        ],
        &["--window", "lots"],
    );
    usage_error(
        &[
            "tunnel",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--to",
            "127.0.0.1:9",
            "--grace",
            "soon",
        ],
        &["--grace", "soon"],
    );
    usage_error(
        &[
            "tunnel",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            "127.0.0.1:9",
            "--keepalive",
            "10s",
            "--keepalive-timeout",
            "5s",
        ],
        &["--keepalive-timeout", "--keepalive"],
    );
    usage_error(&["tunnel", "server", "--listen", "127.0.0.1:0"], &["--to"]);
    usage_error(&["tunnel", "sideways"], &["sideways"]);
    usage_error(&["bench", "--reps", "0"], &["--reps", "0"]);
    usage_error(
        &["bench", "--systems", "tcp,nonesuch"],
        &["--systems", "nonesuch"],
    );
    usage_error(
        &["bench", "--scenarios", "bulk-x"],
        &["--scenarios", "bulk-x"],
    );
    usage_error(&["bench", "--duration=-1s"], &["--duration", "-1s"]);
    usage_error(&["bench", "--duration", "0"], &["--duration", "0"]);
    usage_error(&["frobnicate"], &["frobnicate"]);
    usage_error(&[], &["Usage"]);
}

/// An address in use: exit 1 with the address and the flag in the message. For the
/// client, nothing reached the server: it binds before it connects.
#[test]
fn an_address_in_use_is_named_and_nothing_was_connected() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    server.set_nonblocking(true).unwrap();
    let server_addr = server.local_addr().unwrap().to_string();
    for args in [
        vec![
            "tunnel",
            "server",
            "--listen",
            &taken_addr,
            "--to",
            "127.0.0.1:9",
        ],
        vec![
            "tunnel",
            "client",
            "--listen",
            &taken_addr,
            "--server",
            &server_addr,
        ],
    ] {
        let o = smux(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "smux {args:?}: {err}");
        assert!(err.contains(&taken_addr), "{err}");
        assert!(err.contains("--listen"), "{err}");
        assert!(err.to_lowercase().contains("in use"), "{err}");
    }
    // The client has exited: a connection it had made would be waiting here.
    match server.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the client connected to the server before binding: {other:?}"),
    }
}

#[test]
fn help_shows_examples() {
    let o = smux(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    for word in [
        "bench",
        "tunnel",
        "probe",
        "completions",
        "Examples",
        "-v",
        "-q",
    ] {
        assert!(out.contains(word), "{word}: {out}");
    }
    let o = smux(&["tunnel", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(out.contains("smux tunnel server --listen"), "{out}");
    assert!(out.contains("smux tunnel client --listen"), "{out}");
    for sub in [
        &["bench", "--help"][..],
        &["probe", "--help"],
        &["tunnel", "client", "--help"],
    ] {
        let o = smux(sub);
        assert_eq!(o.status.code(), Some(0), "{sub:?}");
        assert!(stdout(&o).contains("Example"), "{sub:?}: {}", stdout(&o));
    }
    let o = smux(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("smux "), "{}", stdout(&o));
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let o = smux(&["completions", shell]);
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", stderr(&o));
        let out = stdout(&o);
        for word in ["tunnel", "probe", "listen", "scenarios", "grace"] {
            assert!(out.contains(word), "{shell} completions lack {word}");
        }
    }
    usage_error(&["completions", "tcsh"], &["tcsh"]);
}
