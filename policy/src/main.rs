//! `backbone-policy`: the central policy's commands and the edge agent.
//!
//! ```text
//! backbone-policy check FILE [--edge NAME]     validate; with --edge, print that edge's part
//! backbone-policy apply FILE                   validate whole, write to etcd in one transaction
//! backbone-policy set-remote CLIENT ADDRESS    a client router's new address (its remote)
//! backbone-policy rollback                     restore the document the last apply replaced
//! backbone-policy show                         the stored document and its revision
//! backbone-policy diff FILE                    how FILE differs from the stored document
//! backbone-policy status                       each edge agent's report
//! backbone-policy audit paths                  the edges each client pair's traffic crosses
//! backbone-policy agent --edge NAME [--socket CTL | --dry-run]
//! ```
//! Every command that talks to etcd takes `--etcd URL[,URL...]` (or `BACKBONE_ETCD`) and
//! `--prefix` (default `/backbone`).

use backbone_policy::agent::{self, Options};
use backbone_policy::audit;
use backbone_policy::diff::diff;
use backbone_policy::part::{edge_config, part};
use backbone_policy::remote::set_remote;
use backbone_policy::store::{Store, DEFAULT_PREFIX};
use backbone_policy::Policy;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "backbone-policy",
    version,
    about = "The backbone's central policy in etcd, and the edge agent"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct Etcd {
    /// etcd endpoints, comma-separated.
    #[arg(long, env = "BACKBONE_ETCD", default_value = "http://127.0.0.1:2379")]
    etcd: String,
    /// The key prefix under which the policy and the reports live.
    #[arg(long, default_value = DEFAULT_PREFIX)]
    prefix: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a policy document; print a summary, or with --edge that edge's part.
    Check {
        file: PathBuf,
        /// Print the tunnels and routes this edge would run, in the configuration
        /// file's syntax.
        #[arg(long)]
        edge: Option<String>,
    },
    /// Validate a policy document whole, then write it to etcd in one transaction that
    /// records the document it replaces (for rollback). A refused document writes nothing.
    Apply {
        file: PathBuf,
        #[command(flatten)]
        etcd: Etcd,
        /// Then wait, at most SECONDS, until every edge's agent reports the revision
        /// applied and run by every worker (exit 2 naming the edges that do not).
        #[arg(long, value_name = "SECONDS")]
        wait: Option<f64>,
    },
    /// A client router's new address: the stored document with that client's `remote`
    /// changed (nothing else of its text), validated whole and written as `apply` writes
    /// a document. The edges' tunnels to the client follow it in place.
    SetRemote {
        /// The client, by its name in the policy.
        client: String,
        /// Its router's new tunnel address.
        address: String,
        #[command(flatten)]
        etcd: Etcd,
        /// Then wait, at most SECONDS, until every edge's agent reports the revision
        /// applied and run by every worker (exit 2 naming the edges that do not).
        #[arg(long, value_name = "SECONDS")]
        wait: Option<f64>,
    },
    /// Restore the document the last apply replaced (itself validated first).
    Rollback {
        #[command(flatten)]
        etcd: Etcd,
    },
    /// Print the stored policy document, with its revision.
    Show {
        #[command(flatten)]
        etcd: Etcd,
    },
    /// How a policy document differs from the stored one (exit 1 when it does).
    Diff {
        file: PathBuf,
        #[command(flatten)]
        etcd: Etcd,
    },
    /// Each edge agent's report: the revision applied, the generation its workers run,
    /// its tunnels' states.
    Status {
        #[command(flatten)]
        etcd: Etcd,
        /// The reports as JSON, one line per edge.
        #[arg(long)]
        json: bool,
    },
    /// Audit the backbone's live state.
    Audit {
        #[command(subcommand)]
        what: Audit,
    },
    /// Follow the policy and apply this edge's part to its appliance.
    Agent {
        /// This edge's name in the policy.
        #[arg(long)]
        edge: String,
        #[command(flatten)]
        etcd: Etcd,
        /// The appliance's control socket (default: the one the policy names for the edge).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// No appliance: print the edge's part and its changes, and report them.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run, print every change as the JSON the API would get.
        #[arg(long)]
        print_ops: bool,
        /// Stop once the current policy is applied and reported (new tunnels held for make
        /// before announce included: it waits for the hold to end).
        #[arg(long)]
        once: bool,
        /// The report's lease, seconds.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i64).range(2..=3600))]
        lease_ttl: i64,
        /// How often the appliance is compared with the part, milliseconds.
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(50..))]
        resync_ms: u64,
        /// How long to wait before trying an unreachable etcd again, milliseconds.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..))]
        retry_ms: u64,
    },
}

#[derive(Subcommand, Debug)]
enum Audit {
    /// For every ordered client pair, the edges its forward and its return traffic
    /// cross, by each edge's live tables (the agents' forwarding reports); exit 1 when a
    /// pair is asymmetric or does not arrive.
    Paths {
        #[command(flatten)]
        etcd: Etcd,
        /// One JSON object per pair.
        #[arg(long)]
        json: bool,
        /// Only the pairs that are asymmetric or broken (and the counts).
        #[arg(long)]
        flagged: bool,
    },
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("backbone-policy: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Check { file, edge } => {
            let policy = Policy::load(&file).map_err(|e| e.to_string())?;
            match edge {
                None => {
                    println!(
                        "{}: valid: {} edges, {} clients",
                        file.display(),
                        policy.edges.len(),
                        policy.clients.len()
                    );
                    for (i, e) in policy.edges.iter().enumerate() {
                        println!("  edge {:?}: {}", e.name, part(&policy, i).summary());
                    }
                }
                Some(name) => {
                    let (i, _) = policy
                        .edge(&name)
                        .ok_or_else(|| format!("{}: no edge {name:?} in the policy", file.display()))?;
                    print!("{}", part_toml(&policy, i));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Apply { file, etcd, wait } => {
            // Validate before anything else: a refused document never reaches etcd.
            let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let policy = Policy::parse(&text, &file.display().to_string()).map_err(|e| e.to_string())?;
            runtime()?.block_on(async {
                let mut store = Store::connect(&etcd.etcd, &etcd.prefix).await.map_err(|e| e.to_string())?;
                let (current, _) = store.document().await.map_err(|e| e.to_string())?;
                if let Some(c) = current.as_ref().filter(|c| c.text == text) {
                    println!(
                        "unchanged: the stored policy is this document (revision {})",
                        c.revision
                    );
                    return wait_for_edges(&mut store, &policy, c.revision, wait).await;
                }
                let old = current
                    .as_ref()
                    .and_then(|c| Policy::parse(&c.text, "stored").ok());
                let written = store.write(&text, current.as_ref()).await.map_err(|e| e.to_string())?;
                match written.replaced {
                    Some(r) => println!("applied: revision {} (replaces revision {r}; `backbone-policy rollback` restores it)", written.revision),
                    None => println!("applied: revision {} (the first policy)", written.revision),
                }
                if let Some(old) = old {
                    for line in diff(&old, &policy) {
                        println!("{line}");
                    }
                }
                wait_for_edges(&mut store, &policy, written.revision, wait).await
            })
        }
        Command::SetRemote { client, address, etcd, wait } => runtime()?.block_on(async {
            let mut store = Store::connect(&etcd.etcd, &etcd.prefix).await.map_err(|e| e.to_string())?;
            let (current, _) = store.document().await.map_err(|e| e.to_string())?;
            let current = current.ok_or_else(|| format!("no policy at {}", store.document_key()))?;
            let (text, old) = set_remote(&current.text, &client, &address)?;
            // Validated whole before anything is written, as `apply` does.
            let origin = format!("the policy of revision {} with {client:?}'s remote {address}", current.revision);
            let policy = Policy::parse(&text, &origin).map_err(|e| e.to_string())?;
            if old == address {
                println!("unchanged: {client:?}'s remote is {address} (revision {})", current.revision);
                return wait_for_edges(&mut store, &policy, current.revision, wait).await;
            }
            let written = store.write(&text, Some(&current)).await.map_err(|e| e.to_string())?;
            println!(
                "applied: revision {} ({client:?}'s remote {old} -> {address}; replaces revision {}; \
                 `backbone-policy rollback` restores it)",
                written.revision, current.revision
            );
            wait_for_edges(&mut store, &policy, written.revision, wait).await
        }),
        Command::Rollback { etcd } => runtime()?.block_on(async {
            let mut store = Store::connect(&etcd.etcd, &etcd.prefix).await.map_err(|e| e.to_string())?;
            let previous = store.previous().await.map_err(|e| e.to_string())?.ok_or_else(|| {
                backbone_policy::store::StoreError::NoPrevious.to_string()
            })?;
            let origin = format!("the document of revision {}", previous.revision);
            Policy::parse(&previous.document, &origin).map_err(|e| e.to_string())?;
            let (current, _) = store.document().await.map_err(|e| e.to_string())?;
            let written = store
                .write(&previous.document, current.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "rolled back: revision {} holds the document of revision {} (it replaces revision {})",
                written.revision,
                previous.revision,
                written.replaced.unwrap_or(0)
            );
            Ok(ExitCode::SUCCESS)
        }),
        Command::Show { etcd } => runtime()?.block_on(async {
            let mut store = Store::connect(&etcd.etcd, &etcd.prefix).await.map_err(|e| e.to_string())?;
            match store.document().await.map_err(|e| e.to_string())?.0 {
                None => Err(format!("no policy at {}", store.document_key())),
                Some(s) => {
                    println!("# {} at revision {}", store.document_key(), s.revision);
                    print!("{}", s.text);
                    Ok(ExitCode::SUCCESS)
                }
            }
        }),
        Command::Diff { file, etcd } => {
            let new = Policy::load(&file).map_err(|e| e.to_string())?;
            runtime()?.block_on(async {
                let mut store = Store::connect(&etcd.etcd, &etcd.prefix).await.map_err(|e| e.to_string())?;
                let lines = match store.policy().await.map_err(|e| e.to_string())? {
                    None => vec![format!("no stored policy: {} would be the first", file.display())],
                    Some((old, s)) => {
                        println!("# revision {} -> {}", s.revision, file.display());
                        diff(&old, &new)
                    }
                };
                if lines.is_empty() {
                    println!("no difference");
                    return Ok(ExitCode::SUCCESS);
                }
                for line in lines {
                    println!("{line}");
                }
                Ok(ExitCode::from(1))
            })
        }
        Command::Status { etcd, json } => runtime()?.block_on(async {
            let mut store = Store::connect(&etcd.etcd, &etcd.prefix).await.map_err(|e| e.to_string())?;
            let reports = store.statuses().await.map_err(|e| e.to_string())?;
            for (edge, r) in reports {
                if json {
                    println!("{r}");
                    continue;
                }
                let states = r["tunnel_states"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("?"))).collect::<Vec<_>>().join(" "))
                    .unwrap_or_default();
                println!(
                    "{edge}: revision {} (policy at {}), generation {} {}, {} tunnels, {} routes{}{}{}",
                    r["revision"],
                    r["policy_revision"],
                    r["generation"],
                    match r["workers_run_it"].as_bool() {
                        Some(true) => "run by every worker",
                        Some(false) => "not yet run by every worker",
                        None => "(dry run)",
                    },
                    r["tunnels"],
                    r["routes"],
                    if states.is_empty() { String::new() } else { format!(": {states}") },
                    backbone_policy::store::held(&r).replacen(", ", "\n  ", 1),
                    r["error"].as_str().map(|e| format!("\n  error: {e}")).unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }),
        Command::Audit { what: Audit::Paths { etcd, json, flagged } } => runtime()?.block_on(async {
            let mut store = Store::connect(&etcd.etcd, &etcd.prefix).await.map_err(|e| e.to_string())?;
            let (policy, stored) = store
                .policy()
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no policy at {}", store.document_key()))?;
            let tables = store.forwardings().await.map_err(|e| e.to_string())?;
            let pairs = audit::audit(&policy, &tables);
            let asymmetric = pairs.iter().filter(|p| p.verdict() == "asymmetric").count();
            let broken = pairs.iter().filter(|p| p.broken()).count();
            // Some 10^6 lines for 1,000 clients: one buffered writer.
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut write = || -> std::io::Result<()> {
                use std::io::Write;
                if !json {
                    writeln!(out, "# policy revision {}; tables of {}", stored.revision, tables_summary(&policy, &tables))?;
                }
                for p in pairs.iter().filter(|p| !flagged || p.verdict() != "symmetric") {
                    if json {
                        writeln!(out, "{}", p.to_json())?;
                    } else {
                        writeln!(out, "{}", p.line())?;
                    }
                }
                if !json {
                    writeln!(
                        out,
                        "{} ordered pairs: {} symmetric, {asymmetric} asymmetric, {broken} broken",
                        pairs.len(),
                        pairs.len() - asymmetric - broken
                    )?;
                }
                out.flush()
            };
            write().map_err(|e| format!("standard output: {e}"))?;
            Ok(if asymmetric + broken > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }),
        Command::Agent { edge, etcd, socket, dry_run, print_ops, once, lease_ttl, resync_ms, retry_ms } => {
            let opts = Options {
                edge,
                etcd: etcd.etcd,
                prefix: etcd.prefix,
                socket,
                dry_run,
                lease_ttl,
                resync: Duration::from_millis(resync_ms),
                retry: Duration::from_millis(retry_ms),
                once,
                print_ops,
            };
            // Two threads: the report's lease is kept alive on one while the other works.
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| format!("tokio runtime: {e}"))?
                .block_on(agent::run(opts))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Which edges' tables the audit read (and their revisions), and which have none.
fn tables_summary(
    policy: &Policy,
    tables: &std::collections::BTreeMap<String, audit::Forwarding>,
) -> String {
    policy
        .edges
        .iter()
        .map(|e| match tables.get(&e.name) {
            Some(f) => format!("{} (revision {})", e.name, f.revision),
            None => format!("{} (none: no agent reports)", e.name),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An edge's part as `[[tunnel]]` and `[[route]]` tables (the configuration file's
/// syntax, as `backbone ctl tunnel-add` takes them).
fn part_toml(policy: &Policy, e: usize) -> String {
    let text = edge_config(policy, e);
    let doc: toml::Table = toml::from_str(&text).unwrap_or_default();
    let mut out = toml::Table::new();
    for key in ["tunnel", "route"] {
        if let Some(v) = doc.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    toml::to_string(&out).unwrap_or_default()
}

/// With `--wait`, wait until every edge of `policy` reports `revision` run.
async fn wait_for_edges(
    store: &mut Store,
    policy: &Policy,
    revision: i64,
    wait: Option<f64>,
) -> Result<ExitCode, String> {
    let Some(seconds) = wait else {
        return Ok(ExitCode::SUCCESS);
    };
    let limit =
        Duration::try_from_secs_f64(seconds).map_err(|e| format!("--wait {seconds}: {e}"))?;
    let edges: Vec<String> = policy.edges.iter().map(|e| e.name.clone()).collect();
    let order = store
        .wait_applied(&edges, revision, limit)
        .await
        .map_err(|e| e.to_string())?;
    for (edge, t) in order {
        println!(
            "  edge {edge:?} runs revision {revision} after {:.3} s",
            t.as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}
