//! `backbone`: the edge-router appliance.
//!
//! - `backbone check --config FILE`: validate a configuration and print a summary.
//! - `backbone run --config FILE [--stop-when-idle MS] [--stats FILE] [-- EAL ARGS]`:
//!   start EAL, the ports and one worker per lcore, and forward until SIGINT/SIGTERM (or,
//!   with `--stop-when-idle`, until every RX queue has been empty that long).
//! - `backbone smoke [--bursts N] [-- EAL ARGS]`: a loopback check of the DPDK layer.

mod ctl;
mod run;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "backbone",
    version,
    about = "Tunnel-terminating edge router on DPDK"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a configuration file and print what it sets up.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the appliance. EAL arguments after `--` replace those of the file.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Exit cleanly once every RX queue has been empty for this many milliseconds.
        #[arg(long, value_name = "MS")]
        stop_when_idle: Option<u64>,
        /// Write the final counters to this file as JSON.
        #[arg(long, value_name = "FILE")]
        stats: Option<PathBuf>,
        /// Serve the control API on this Unix socket (mode 0600; `backbone ctl` talks to it).
        #[arg(long, value_name = "PATH")]
        control_socket: Option<PathBuf>,
        /// EAL arguments (after `--`).
        #[arg(last = true)]
        eal: Vec<String>,
    },
    /// Talk to a running appliance's control API.
    Ctl(ctl::CtlArgs),
    /// Loop bursts through a net_ring port: a check that DPDK works on this machine.
    Smoke {
        #[arg(long, default_value_t = 1000)]
        bursts: u32,
        #[arg(last = true)]
        eal: Vec<String>,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { config } => pipeline_config::load(&config)
            .map_err(|e| e.to_string())
            .and_then(|cfg| {
                // The tables must build too: the snapshot builder checks what spans items.
                let ports: Vec<_> = (0..cfg.ports.len())
                    .map(|i| {
                        (
                            i as u16,
                            dataplane::wire::EthernetAddress([2, 0, 0, 0, 0, i as u8]),
                        )
                    })
                    .collect();
                dataplane::config::builder_from_config(&cfg, &ports)
                    .build()
                    .map_err(|e| format!("{}: {e}", config.display()))?;
                print!("{}", cfg.summary());
                println!("{}: OK", config.display());
                Ok(())
            }),
        Command::Run {
            config,
            stop_when_idle,
            stats,
            control_socket,
            eal,
        } => run::run(
            &config,
            stop_when_idle,
            stats.as_deref(),
            (!eal.is_empty()).then_some(eal),
            control_socket.as_deref(),
        ),
        Command::Ctl(args) => ctl::ctl(&args),
        Command::Smoke { bursts, eal } => run::smoke(bursts, (!eal.is_empty()).then_some(eal)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("backbone: {e}");
            ExitCode::FAILURE
        }
    }
}
