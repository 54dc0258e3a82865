//! `backbone ctl`: the command-line client of the control API (see
//! `dataplane::control::server` for the protocol).

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct CtlArgs {
    /// The appliance's control socket (`backbone run --control-socket`).
    #[arg(long, short, default_value = "/run/backbone/control.sock")]
    socket: PathBuf,
    /// Print the API's JSON answer instead of text.
    #[arg(long)]
    json: bool,
    /// After a change, wait until every worker runs the generation that holds it.
    #[arg(long)]
    wait: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Subcommand, Debug)]
enum CtlCommand {
    /// List the tunnels.
    Tunnels,
    /// List the explicit routes.
    Routes,
    /// List the neighbours.
    Neighbors,
    /// Counters, summed over the workers.
    Counters,
    /// The newest snapshot generation and the one each worker has reached.
    Generations,
    /// Where a destination goes now.
    Lookup { dst: String },
    /// Add or replace a route: exactly one of --tunnel, --port with --next-hop, --blackhole.
    RouteAdd {
        prefix: String,
        #[arg(long)]
        tunnel: Option<String>,
        #[arg(long)]
        port: Option<String>,
        #[arg(long)]
        next_hop: Option<String>,
        #[arg(long)]
        blackhole: bool,
    },
    /// Remove a route.
    RouteDel { prefix: String },
    /// Add the [[tunnel]] tables of a TOML file (the configuration file's syntax).
    TunnelAdd { file: PathBuf },
    /// Remove a tunnel.
    TunnelDel { name: String },
    /// Add or replace a static neighbour.
    NeighborAdd {
        port: String,
        ip: String,
        mac: String,
    },
    /// Remove a static neighbour.
    NeighborDel { port: String, ip: String },
    /// Replace the whole configuration with a file (validated first; ports cannot change).
    Apply { file: PathBuf },
    /// Apply a JSON array of changes as one publication.
    Batch { file: PathBuf },
}

fn request(socket: &PathBuf, req: &Value) -> Result<Value, String> {
    let mut stream =
        UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("{req}\n").as_bytes())
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    serde_json::from_str(&line).map_err(|e| format!("bad answer from the appliance: {e}"))
}

fn read_json_or_toml(file: &PathBuf) -> Result<Value, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    serde_json::to_value(table).map_err(|e| e.to_string())
}

/// Run one `backbone ctl` command.
pub fn ctl(args: &CtlArgs) -> Result<(), String> {
    let req = match &args.command {
        CtlCommand::Tunnels => json!({"op": "list_tunnels"}),
        CtlCommand::Routes => json!({"op": "list_routes"}),
        CtlCommand::Neighbors => json!({"op": "list_neighbors"}),
        CtlCommand::Counters => json!({"op": "counters"}),
        CtlCommand::Generations => json!({"op": "generations"}),
        CtlCommand::Lookup { dst } => json!({"op": "lookup", "dst": dst}),
        CtlCommand::RouteAdd {
            prefix,
            tunnel,
            port,
            next_hop,
            blackhole,
        } => {
            let mut route = json!({"prefix": prefix});
            if let Some(t) = tunnel {
                route["tunnel"] = json!(t);
            }
            if let Some(p) = port {
                route["port"] = json!(p);
            }
            if let Some(n) = next_hop {
                route["next_hop"] = json!(n);
            }
            if *blackhole {
                route["blackhole"] = json!(true);
            }
            json!({"op": "set_route", "route": route})
        }
        CtlCommand::RouteDel { prefix } => json!({"op": "remove_route", "prefix": prefix}),
        CtlCommand::TunnelAdd { file } => {
            let v = read_json_or_toml(file)?;
            let tunnels = v
                .get("tunnel")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if tunnels.is_empty() {
                return Err(format!("{}: no [[tunnel]] table", file.display()));
            }
            let ops: Vec<Value> = tunnels
                .into_iter()
                .map(|t| json!({"op": "add_tunnel", "tunnel": t}))
                .collect();
            json!({"op": "batch", "ops": ops})
        }
        CtlCommand::TunnelDel { name } => json!({"op": "remove_tunnel", "name": name}),
        CtlCommand::NeighborAdd { port, ip, mac } => {
            json!({"op": "set_neighbor", "port": port, "ip": ip, "mac": mac})
        }
        CtlCommand::NeighborDel { port, ip } => {
            json!({"op": "remove_neighbor", "port": port, "ip": ip})
        }
        CtlCommand::Apply { file } => {
            let abs =
                std::fs::canonicalize(file).map_err(|e| format!("{}: {e}", file.display()))?;
            json!({"op": "apply_config", "path": abs})
        }
        CtlCommand::Batch { file } => {
            let text =
                std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
            let ops: Value =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            json!({"op": "batch", "ops": ops})
        }
    };
    let answer = request(&args.socket, &req)?;
    if answer.get("ok") != Some(&Value::Bool(true)) {
        let e = answer
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("refused");
        if args.json {
            println!("{answer}");
        }
        return Err(e.to_owned());
    }
    if let (true, Some(g)) = (args.wait, answer.get("generation").and_then(Value::as_u64)) {
        let start = Instant::now();
        loop {
            let gens = request(&args.socket, &json!({"op": "generations"}))?;
            let reached = gens["workers"]
                .as_array()
                .is_some_and(|w| w.iter().all(|x| x.as_u64() >= Some(g)));
            if reached {
                break;
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err(format!(
                    "workers did not reach generation {g} in 10 s: {gens}"
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    if args.json {
        println!("{answer}");
        return Ok(());
    }
    print_human(&args.command, &answer);
    Ok(())
}

fn print_human(cmd: &CtlCommand, a: &Value) {
    let rows = |key: &str| a[key].as_array().cloned().unwrap_or_default();
    match cmd {
        CtlCommand::Tunnels => {
            println!(
                "{:<16} {:<5} {:<16} {:<16} {:>10} {:<10} prefixes",
                "name", "mode", "local", "remote", "key", "port"
            );
            for t in rows("tunnels") {
                println!(
                    "{:<16} {:<5} {:<16} {:<16} {:>10} {:<10} {}",
                    t["name"].as_str().unwrap_or(""),
                    t["mode"].as_str().unwrap_or(""),
                    t["local"].as_str().unwrap_or(""),
                    t["remote"].as_str().unwrap_or(""),
                    t["key"].as_u64().map_or("-".into(), |k| k.to_string()),
                    t["port"].as_str().unwrap_or(""),
                    t["prefixes"].as_array().map_or(String::new(), |p| p
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" "))
                );
            }
        }
        CtlCommand::Routes => {
            for r in rows("routes") {
                let via = if let Some(t) = r["tunnel"].as_str() {
                    format!("tunnel {t}")
                } else if let Some(p) = r["port"].as_str() {
                    format!("port {p} via {}", r["next_hop"].as_str().unwrap_or("?"))
                } else {
                    "blackhole".into()
                };
                println!("{:<20} {via}", r["prefix"].as_str().unwrap_or(""));
            }
        }
        CtlCommand::Neighbors => {
            for n in rows("neighbors") {
                println!(
                    "{:<10} {:<16} {} {}",
                    n["port"].as_str().unwrap_or(""),
                    n["ip"].as_str().unwrap_or(""),
                    n["mac"].as_str().unwrap_or(""),
                    if n["static"] == Value::Bool(true) {
                        "static"
                    } else {
                        "learned"
                    }
                );
            }
        }
        CtlCommand::Counters => {
            println!("generation {}", a["generation"]);
            for p in rows("ports") {
                let link = match p["link_up"].as_bool() {
                    Some(true) => "up",
                    Some(false) => "DOWN",
                    None => "?",
                };
                println!(
                    "port {:<18} link {:<4} rx {:>12} tx {:>12} tx dropped {:>10} rx no mbuf {:>8}",
                    p["name"].as_str().unwrap_or(""),
                    link,
                    p["rx_packets"],
                    p["tx_packets"],
                    p["tx_dropped"],
                    p["rx_no_mbuf"]
                );
            }
            for t in rows("tunnels") {
                println!(
                    "tunnel {:<16} rx {:>12} tx {:>12}",
                    t["name"].as_str().unwrap_or(""),
                    t["rx_packets"],
                    t["tx_packets"]
                );
            }
            for (k, v) in a["drops"].as_object().into_iter().flatten() {
                if v.as_u64().unwrap_or(0) > 0 {
                    println!("drop {k:<24} {v}");
                }
            }
        }
        CtlCommand::Generations => println!(
            "generation {}, workers at {}",
            a["generation"], a["workers"]
        ),
        CtlCommand::Lookup { dst } => {
            println!("{dst}: {} (generation {})", a["via"], a["generation"])
        }
        _ => println!("applied: generation {}", a["generation"]),
    }
}
