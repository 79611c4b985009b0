//! `smux probe ADDR`: does the server at ADDR speak smux?

use std::process::ExitCode;
use std::time::Duration;

use crate::args::{duration, peer_addr};

/// Arguments of `smux probe`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Connects to ADDR, sends a smux verify challenge and judges the answer. Prints the
verdict; exit status 0 if ADDR speaks smux, 1 if not, 2 if it could not tell (cannot
connect, bad arguments).

Example: smux probe 127.0.0.1:7000")]
pub struct Args {
    /// Address to probe (HOST:PORT)
    #[arg(value_name = "ADDR", value_parser = peer_addr)]
    addr: String,
    /// Bound on connecting and on the answer
    #[arg(long, value_name = "D", default_value = "3s", value_parser = duration)]
    timeout: Duration,
}

/// Entry point of `smux probe`.
pub fn main(args: Args) -> ExitCode {
    let Args {
        addr,
        timeout: limit,
    } = args;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
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
            eprintln!("error: {addr}: {e}");
            ExitCode::from(2)
        }
    }
}
