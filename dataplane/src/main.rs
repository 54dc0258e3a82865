//! `backbone`: the edge-router appliance.
//!
//! - `backbone check [--config FILE]`: validate a configuration and print a summary.
//! - `backbone run [--config FILE] [--control-socket PATH | --no-control-socket]
//!   [--metrics ADDR] [--fpm ADDR] [--stop-when-idle MS] [--stats FILE] [-- EAL ARGS]`:
//!   start EAL, the ports and one worker per lcore, and forward until SIGINT/SIGTERM (or,
//!   with `--stop-when-idle`, until every RX queue has been empty that long); SIGHUP
//!   reloads the configuration file; zebra's routes arrive over FPM.
//! - `backbone ctl ...`: the control API's client.
//! - `backbone smoke [--bursts N] [-- EAL ARGS]`: a loopback check of the DPDK layer.

mod ctl;
mod lifecycle;
mod observe;
mod pcapng;
mod run;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "backbone",
    version,
    about = "Tunnel-terminating edge router on DPDK",
    after_help = "The configuration file's reference: pipeline-config/CONFIG.md; counters: docs/COUNTERS.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a configuration file and print what it sets up.
    Check {
        /// The configuration file (its reference: pipeline-config/CONFIG.md).
        #[arg(long, short, default_value = lifecycle::DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Run the appliance. EAL arguments after `--` replace those of the file.
    ///
    /// SIGINT or SIGTERM stops it (the final counters are printed); SIGHUP reloads the
    /// configuration file (validated first; on error the running configuration stays).
    #[command(after_long_help = RUN_NOTES)]
    Run {
        /// The configuration file (its reference: pipeline-config/CONFIG.md).
        #[arg(long, short, default_value = lifecycle::DEFAULT_CONFIG)]
        config: PathBuf,
        /// Exit cleanly once every RX queue has been empty for this many milliseconds.
        #[arg(long, value_name = "MS")]
        stop_when_idle: Option<u64>,
        /// Write the final counters to this file as JSON.
        #[arg(long, value_name = "FILE")]
        stats: Option<PathBuf>,
        /// Serve the control API on this Unix socket (mode 0600; `backbone ctl` talks to it).
        #[arg(long, value_name = "PATH", default_value = lifecycle::DEFAULT_SOCKET)]
        control_socket: PathBuf,
        /// Serve no control API (replays and tests).
        #[arg(long)]
        no_control_socket: bool,
        /// Serve metrics (Prometheus text or OpenMetrics) at http://ADDR/metrics.
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: Option<std::net::SocketAddr>,
        /// Accept zebra's FPM connection (routes from FRR) on this address, in place of the
        /// file's `[fpm] listen` (port 0: one the kernel chooses, shown by `ctl status`).
        #[arg(long, value_name = "ADDR:PORT")]
        fpm: Option<std::net::SocketAddr>,
        /// EAL arguments (after `--`).
        #[arg(last = true)]
        eal: Vec<String>,
    },
    /// Write the edge's FRR configuration (frr.conf) from ours: an eBGP session with BFD
    /// inside each client's tunnel that has an `asn`, the filters that keep each client to
    /// its own prefixes, every client's prefixes announced to every other, FPM to us.
    FrrConfig {
        /// The configuration file (its reference: pipeline-config/CONFIG.md).
        #[arg(long, short, default_value = lifecycle::DEFAULT_CONFIG)]
        config: PathBuf,
        /// Where the appliance listens for zebra's FPM connection, when it runs with
        /// `--fpm ADDR:PORT`; default: the file's `[fpm] listen`, and without one, zebra is
        /// told no FPM address (the appliance takes no routes from it).
        #[arg(long, value_name = "ADDR:PORT")]
        fpm: Option<std::net::SocketAddr>,
        /// Write it to this file (atomically: a new file renamed over the old one) instead
        /// of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
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
    /// Write the manual pages (backbone.1, backbone-run.1, ...) into DIR.
    #[command(hide = true)]
    Manpages { dir: PathBuf },
    /// Print the completion script for SHELL (bash, zsh, fish, elvish, powershell).
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
}

/// The rest of `backbone run --help` (and its man page).
const RUN_NOTES: &str = "\
Signals:
  SIGINT, SIGTERM  stop: the workers finish their burst, the TX buffers drain, the final
                   counters are printed (and written with --stats); exit 0.
  SIGHUP           reload the configuration file: validated as a whole and applied as one
                   publication (ports, [eal] and [workers] need a restart); on an error
                   nothing changes, forwarding goes on and the log says why. Changes made
                   through `backbone ctl` and not saved (`ctl save`) are undone.
  Others           their default action. SIGKILL or a crash leaves the socket file behind:
                   the next start replaces it (the locks die with the process).

One instance per control socket and per DPDK file prefix: a second one refuses to start
and names the pid of the first. Under systemd (Type=notify) readiness is reported once
every worker runs the first tables. Every change is logged (target backbone::audit) with
who made it and the generation that holds it.";

/// `backbone --version`: the version, the git commit it was built from, and the DPDK
/// library it runs on.
fn version() -> &'static str {
    let v = format!(
        "{} (git {}, {})",
        env!("CARGO_PKG_VERSION"),
        env!("BACKBONE_GIT_COMMIT"),
        dataplane::dpdk::Eal::version()
    );
    Box::leak(v.into_boxed_str())
}

fn command() -> clap::Command {
    Cli::command().version(version())
}

/// A man page per command and subcommand, named as man expects (`backbone-ctl-routes.1`).
fn manpages(dir: &std::path::Path) -> Result<(), String> {
    fn write(cmd: &clap::Command, name: &str, dir: &std::path::Path) -> Result<(), String> {
        // A one-shot command: the names live until it exits.
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let cmd = cmd
            .clone()
            .name(leak(name.to_owned()))
            .bin_name(leak(name.replace('-', " ")));
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .render(&mut out)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::write(&path, out).map_err(|e| format!("{}: {e}", path.display()))?;
        for sub in cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            write(sub, &format!("{name}-{}", sub.get_name()), dir)?;
        }
        Ok(())
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut cmd = command();
    cmd.build();
    write(&cmd, "backbone", dir)
}

fn main() -> ExitCode {
    // First: a build for a CPU level (scripts/install.sh --cpu) names what this CPU lacks,
    // rather than die at the first instruction it does not have.
    if let Some(stop) = cpu_check() {
        return stop;
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let matches = command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
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
            no_control_socket,
            metrics,
            fpm,
            eal,
        } => run::run(
            &config,
            stop_when_idle,
            stats.as_deref(),
            (!eal.is_empty()).then_some(eal),
            (!no_control_socket).then_some(control_socket.as_path()),
            run::Extras {
                metrics,
                fpm,
                version: version(),
            },
        ),
        Command::FrrConfig {
            config,
            fpm,
            output,
        } => frr_config(&config, fpm, output.as_deref()),
        Command::Ctl(args) => ctl::ctl(&args),
        Command::Smoke { bursts, eal } => run::smoke(bursts, (!eal.is_empty()).then_some(eal)),
        Command::Manpages { dir } => manpages(&dir),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut command(), "backbone", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("backbone: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `backbone frr-config`.
fn frr_config(
    config: &std::path::Path,
    fpm: Option<std::net::SocketAddr>,
    output: Option<&std::path::Path>,
) -> Result<(), String> {
    let cfg = pipeline_config::load(config).map_err(|e| e.to_string())?;
    // Where `backbone run` with this file listens for zebra (its --fpm wins, as here).
    let fpm = fpm.or(cfg.fpm.map(|f| f.listen));
    if let Some(a) = fpm.filter(|a| a.port() == 0) {
        return Err(format!(
            "FPM address {a} (--fpm, else [fpm] listen in {}): port 0 is chosen when the \
             appliance starts, so zebra cannot be told it; give --fpm ADDR:PORT (ctl status \
             shows the port)",
            config.display()
        ));
    }
    let text = dataplane::control::frr::render(&cfg, &config.display().to_string(), fpm)
        .map_err(|e| format!("{}: {e}", config.display()))?;
    match output {
        None => {
            print!("{text}");
            Ok(())
        }
        Some(path) => {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, &text)
                .and_then(|()| std::fs::rename(&tmp, path))
                .map_err(|e| format!("{}: {e}", path.display()))
        }
    }
}

/// `Some` (after saying why) when this binary was built for CPU features this CPU lacks.
#[inline(never)]
fn cpu_check() -> Option<ExitCode> {
    let missing = dataplane::cpu::missing();
    if missing.is_empty() {
        return None;
    }
    eprintln!(
        "backbone: built for CPU features this CPU lacks: {} (build it without --cpu, or \
         with `scripts/install.sh --cpu native` on this machine)",
        missing.join(", ")
    );
    Some(ExitCode::from(2))
}
