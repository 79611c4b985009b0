//! The `smux` command-line tool.
//!
//! * `smux bench` runs the same loopback scenarios for raw TCP, smux-rs and the other
//!   Rust multiplexers and prints a table of medians;
//! * `smux tunnel server|client` carries TCP connections as streams of one
//!   multiplexed connection;
//! * `smux probe ADDR` tells whether a server speaks smux;
//! * `smux completions SHELL` prints a shell completion script.
//!
//! Exit status: 0 on success, 2 for a usage error (a bad flag or value, named in the
//! message), 1 for a failure at run time. `smux probe` answers with its status (0
//! yes, 1 no, 2 could not tell).

mod alloc;
mod args;
mod bench;
mod probe;
mod tunnel;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

const EXAMPLES: &str = "\
Examples:
  smux bench                        the full loopback benchmark (about 3 minutes)
  smux bench --quick                a run of a few seconds
  smux tunnel server --listen 0.0.0.0:7000 --to 127.0.0.1:80
  smux tunnel client --listen 127.0.0.1:8080 --server server.example:7000
  smux probe 127.0.0.1:7000         does it speak smux? (exit 0 yes, 1 no, 2 error)
  smux completions bash > ~/.local/share/bash-completion/completions/smux";

/// A stream multiplexer's command-line tool: benchmark, TCP tunnel, probe.
#[derive(Parser, Debug)]
#[command(name = "smux", version, after_help = EXAMPLES)]
struct Cli {
    /// More log output: -v debug, -vv trace (RUST_LOG, if set, overrides)
    #[arg(
        short,
        long,
        action = clap::ArgAction::Count,
        global = true,
        display_order = 900
    )]
    verbose: u8,
    /// Less log output: -q warnings and errors only, -qq errors only, -qqq none
    #[arg(
        short,
        long,
        action = clap::ArgAction::Count,
        global = true,
        conflicts_with = "verbose",
        display_order = 901
    )]
    quiet: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Loopback benchmark: raw TCP, smux-rs and other Rust multiplexers, medians of
    /// interleaved repetitions
    Bench(bench::Args),
    /// Carry TCP connections as streams of one multiplexed connection
    Tunnel(tunnel::Args),
    /// Tell whether the server at ADDR speaks smux (exit 0 yes, 1 no, 2 error)
    Probe(probe::Args),
    /// Print a completion script for a shell
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = |base| log_level(base, cli.verbose, cli.quiet);
    match cli.command {
        Command::Bench(a) => {
            // The bench's own output is its progress and table: other crates' log
            // lines (errors aside) would only break them up.
            init_logging(level(1));
            bench::main(a)
        }
        Command::Tunnel(a) => {
            init_logging(level(3));
            tunnel::main(a)
        }
        Command::Probe(a) => {
            init_logging(level(2));
            probe::main(a)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "smux", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}

/// The log level `verbose` steps above and `quiet` steps below `base` (an index in
/// off, error, warn, info, debug, trace).
fn log_level(base: usize, verbose: u8, quiet: u8) -> &'static str {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let i = (base + verbose as usize).saturating_sub(quiet as usize);
    LEVELS[i.min(LEVELS.len() - 1)]
}

/// Logs to stderr through `tracing` at `level`, unless `RUST_LOG` is set.
fn init_logging(level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Prints a usage error about `path` (a subcommand path such as `["tunnel",
/// "client"]`) the way clap prints its own, and returns exit status 2.
pub fn usage_error(path: &[&str], msg: impl std::fmt::Display) -> ExitCode {
    let mut cmd = Cli::command();
    // Gives each subcommand its full name ("smux tunnel client") for the usage line.
    cmd.build();
    for name in path {
        match cmd.find_subcommand(name) {
            Some(sub) => cmd = sub.clone(),
            None => break,
        }
    }
    let err = cmd.error(clap::error::ErrorKind::ValueValidation, msg);
    let _ = err.print();
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn verbosity_moves_the_level() {
        assert_eq!(log_level(3, 0, 0), "info");
        assert_eq!(log_level(3, 1, 0), "debug");
        assert_eq!(log_level(3, 5, 0), "trace");
        assert_eq!(log_level(3, 0, 1), "warn");
        assert_eq!(log_level(3, 0, 3), "off");
        assert_eq!(log_level(1, 0, 9), "off");
        let cli = Cli::try_parse_from(["smux", "tunnel", "-vv", "server", "--help"]);
        assert!(cli.is_err(), "--help exits through an error value");
        let cli = Cli::try_parse_from(["smux", "-q", "probe", "127.0.0.1:1"]).unwrap();
        assert_eq!((cli.verbose, cli.quiet), (0, 1));
        assert!(Cli::try_parse_from(["smux", "-q", "-v", "probe", "127.0.0.1:1"]).is_err());
    }
}
