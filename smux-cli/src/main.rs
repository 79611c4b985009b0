//! The `smux` command-line tool.
//!
//! * `smux bench` runs the same loopback scenarios for raw TCP, smux-rs and the other
//!   Rust multiplexers and prints a table of medians;
//! * `smux tunnel server|client` carries TCP connections as streams of one
//!   multiplexed connection;
//! * `smux probe ADDR` tells whether a server speaks smux.

mod alloc;
mod args;
mod bench;
mod probe;
mod tunnel;

use std::process::ExitCode;

use args::Args;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

const USAGE: &str = "\
usage: smux <command> [options]

commands:
  bench                   loopback benchmark: raw TCP, smux-rs, yamux, tokio-yamux, async-smux
  tunnel server|client    carry TCP connections over one multiplexed connection
  probe ADDR              does ADDR speak smux? (exit 0 yes, 1 no, 2 error)

Run `smux <command> --help` for the options of a command.
";

fn main() -> ExitCode {
    let mut args = Args::new(std::env::args().skip(1));
    let command = match args.next_flag() {
        Ok(Some(c)) => c,
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match command.as_str() {
        "bench" => bench::main(args),
        "tunnel" => tunnel::main(args),
        "probe" => probe::main(args),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        "-V" | "--version" => {
            println!("smux {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        other => {
            eprint!("smux: unknown command '{other}'\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
