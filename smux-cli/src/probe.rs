//! `smux probe ADDR`: does the server at ADDR speak smux?

use std::process::ExitCode;
use std::time::Duration;

use crate::args::Args;

const USAGE: &str = "\
usage: smux probe ADDR [--timeout D]

Connects to ADDR, sends a smux verify challenge and judges the answer.
Prints the verdict; exits 0 if ADDR speaks smux, 1 if not, 2 on an error
(cannot connect, bad arguments).

options:
  --timeout D   bound on connecting and on the answer (default 3s)
  -h, --help    this text
";

/// Entry point of `smux probe`.
pub fn main(mut args: Args) -> ExitCode {
    let mut addr = None;
    let mut limit = Duration::from_secs(3);
    loop {
        match args.next_flag() {
            Ok(None) => break,
            Ok(Some(a)) if a == "-h" || a == "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            Ok(Some(a)) if a == "--timeout" => match args.duration(&a) {
                Ok(d) => limit = d,
                Err(e) => return usage_error(&e),
            },
            Ok(Some(a)) if !a.starts_with('-') && addr.is_none() => addr = Some(a),
            Ok(Some(a)) => return usage_error(&format!("unexpected argument '{a}'")),
            Err(e) => return usage_error(&e),
        }
    }
    let Some(addr) = addr else {
        return usage_error("ADDR is required");
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("smux probe: runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(smux_tokio::is_smux_at(addr.as_str(), limit)) {
        Ok(true) => {
            println!("{addr}: speaks smux");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("{addr}: does not speak smux");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("smux probe: {addr}: {e}");
            ExitCode::from(2)
        }
    }
}

fn usage_error(e: &str) -> ExitCode {
    eprint!("smux probe: {e}\n\n{USAGE}");
    ExitCode::from(2)
}
