//! `backbone ctl`: the command-line client of the control API (see
//! `dataplane::control::server` for the protocol).

use crate::lifecycle::DEFAULT_SOCKET;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct CtlArgs {
    /// The appliance's control socket (`backbone run --control-socket`).
    #[arg(long, short, default_value = DEFAULT_SOCKET)]
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
    /// The tunnels: state, next hop and its MAC, flags, MTU, packets.
    Tunnels,
    /// Every route: the configured ones, the tunnels' prefixes, those added at run time;
    /// with target, next hop and source.
    Routes,
    /// The neighbours, static and learned.
    Neighbors,
    /// The ports: driver, MAC, MTU, addresses, queues, link, counters.
    Interfaces,
    /// Counters, summed over the workers (since the last `counters clear`).
    Counters {
        /// One tunnel's counters, and its drops by reason (the packets that came through it).
        #[arg(long, value_name = "NAME", conflicts_with_all = ["port", "rate"])]
        tunnel: Option<String>,
        /// One port's counters, and the drops by reason of what it received that no
        /// tunnel claimed (native traffic, tunnel packets dropped before their tunnel was
        /// found).
        #[arg(long, value_name = "NAME", conflicts_with = "rate")]
        port: Option<String>,
        /// Per-second rates over an interval instead of totals.
        #[arg(long)]
        rate: bool,
        /// The interval for --rate, in seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
        interval: f64,
        #[command(subcommand)]
        action: Option<CountersAction>,
    },
    /// The newest snapshot generation and the one each worker has reached.
    Generations,
    /// Where a destination goes now, and which route decides it.
    Lookup { dst: String },
    /// Versions, file prefix, configuration file, uptime.
    Status,
    /// How the running configuration differs from the configuration file.
    Diff,
    /// Write the running configuration to the configuration file (atomically; the
    /// file's comments are kept where its tables did not change).
    Save,
    /// Make the configuration file the running configuration again (as SIGHUP does).
    Reload,
    /// Trace the next COUNT packets (that match) through every stage: the fields each
    /// stage read and the decision it made, like VPP's `show trace`.
    Trace {
        /// How many packets (1 to 10,000).
        count: u64,
        /// Only packets received on this port or sent out of it.
        #[arg(long, value_name = "NAME")]
        port: Option<String>,
        /// Only packets that came through this tunnel (once its lookup found it) or were
        /// sent into it.
        #[arg(long, value_name = "NAME")]
        tunnel: Option<String>,
        /// Give up waiting for packets after this many seconds (at most 60).
        #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
        timeout: f64,
    },
    /// Write what a port received and sent, or what a tunnel received and sent (outer
    /// frames and inner packets), to a pcapng file.
    Capture {
        /// A port: what it received, and what the workers sent out of it.
        #[arg(
            long,
            value_name = "NAME",
            required_unless_present = "tunnel",
            conflicts_with = "tunnel"
        )]
        port: Option<String>,
        /// A tunnel: what came through it and what was sent into it, each as the outer
        /// frame (interface "NAME outer") and the inner packet ("NAME inner").
        #[arg(long, value_name = "NAME")]
        tunnel: Option<String>,
        /// How many packets (1 to 10,000).
        #[arg(long, default_value_t = 100)]
        count: u64,
        /// Give up waiting for packets after this many seconds (at most 60).
        #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
        timeout: f64,
        /// The pcapng file to write.
        file: PathBuf,
    },
    /// Add or replace a route: exactly one of --tunnel, --port with --next-hop (without:
    /// a connected subnet, each destination resolved by ARP on demand), --blackhole,
    /// --unreachable, --prohibit.
    RouteAdd {
        prefix: String,
        #[arg(long)]
        tunnel: Option<String>,
        #[arg(long)]
        port: Option<String>,
        #[arg(long)]
        next_hop: Option<String>,
        /// Drop matching packets silently.
        #[arg(long)]
        blackhole: bool,
        /// Drop matching packets and answer ICMP net unreachable.
        #[arg(long)]
        unreachable: bool,
        /// Drop matching packets and answer ICMP administratively prohibited.
        #[arg(long)]
        prohibit: bool,
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
    /// Give a port a new address in place of an old one (a client site's WAN address
    /// changing): every tunnel whose local end was OLD sends from NEW, in one publication.
    WanAddress {
        /// The port (the WAN), by name.
        #[arg(long)]
        port: String,
        /// The address it had.
        old: String,
        /// The address it has now.
        new: String,
    },
    /// Replace the whole configuration with a file (validated first; ports cannot change).
    Apply { file: PathBuf },
    /// Apply a JSON array of changes as one publication.
    Batch { file: PathBuf },
}

#[derive(Subcommand, Debug)]
enum CountersAction {
    /// Count from zero again (for `ctl`; metrics and telemetry keep counting from start).
    Clear,
}

/// Connect to the appliance, or say what to do about it.
fn connect(socket: &PathBuf) -> Result<UnixStream, String> {
    UnixStream::connect(socket).map_err(|e| {
        let at = socket.display();
        match e.kind() {
            ErrorKind::NotFound => format!(
                "{at}: {e}: no appliance serves its control API there. Is `backbone run` \
                 running (`systemctl status backbone`)? It listens on {DEFAULT_SOCKET} unless \
                 started with --control-socket PATH; give ctl the same --socket PATH"
            ),
            ErrorKind::ConnectionRefused => format!(
                "{at}: {e}: nothing listens on it: the appliance that made it is no longer \
                 running (a new one replaces it)"
            ),
            ErrorKind::PermissionDenied => format!(
                "{at}: {e}: the socket is only for the user the appliance runs as (root under \
                 systemd): run ctl as that user, for instance with sudo"
            ),
            _ => format!("{at}: {e}"),
        }
    })
}

fn request(socket: &PathBuf, req: &Value) -> Result<Value, String> {
    request_waiting(socket, req, Duration::from_secs(60))
}

/// A request whose answer may take up to `wait`.
fn request_waiting(socket: &PathBuf, req: &Value, wait: Duration) -> Result<Value, String> {
    let mut stream = connect(socket)?;
    stream
        .set_read_timeout(Some(wait))
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

/// The `timeout_ms` of a trace or capture request.
fn timeout_ms(seconds: f64) -> Result<u64, String> {
    if seconds.is_finite() && (0.001..=60.0).contains(&seconds) {
        Ok((seconds * 1000.0) as u64)
    } else {
        Err(format!("--timeout {seconds}: give 0.001 to 60 seconds"))
    }
}

/// `ctl trace` and `ctl capture`: one request that waits for the packets.
fn tap(args: &CtlArgs) -> Result<(), String> {
    let (req, wait) = match &args.command {
        CtlCommand::Trace {
            count,
            port,
            tunnel,
            timeout,
        } => (
            json!({"op": "trace", "count": count, "port": port, "tunnel": tunnel,
                   "timeout_ms": timeout_ms(*timeout)?}),
            *timeout,
        ),
        CtlCommand::Capture {
            port,
            tunnel,
            count,
            timeout,
            ..
        } => (
            json!({"op": "capture", "count": count, "port": port, "tunnel": tunnel,
                   "timeout_ms": timeout_ms(*timeout)?}),
            *timeout,
        ),
        _ => return Ok(()),
    };
    let a = request_waiting(
        &args.socket,
        &req,
        Duration::from_secs_f64(wait) + Duration::from_secs(30),
    )?;
    if a.get("ok") != Some(&Value::Bool(true)) {
        if args.json {
            println!("{a}");
        }
        return Err(a["error"].as_str().unwrap_or("refused").to_owned());
    }
    let summary = format!(
        "{} of {} packets{}{}",
        a["seen"],
        a["asked"],
        if a["timed_out"] == Value::Bool(true) {
            format!(
                " (no more within {} s)",
                a["timeout_ms"].as_u64().unwrap_or(0) / 1000
            )
        } else {
            String::new()
        },
        match a["lost"].as_u64() {
            Some(0) | None => String::new(),
            Some(l) =>
                format!("; {l} more matched but were not recorded (the control side fell behind)"),
        }
    );
    if let CtlCommand::Capture { file, .. } = &args.command {
        let interfaces: Vec<(String, u16)> = a["interfaces"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                (
                    text(&i["name"]),
                    i["linktype"]
                        .as_u64()
                        .and_then(|l| u16::try_from(l).ok())
                        .unwrap_or(1),
                )
            })
            .collect();
        let mut data = Vec::new();
        for p in a["packets"].as_array().into_iter().flatten() {
            data.push((
                p,
                unhex(p["data"].as_str().unwrap_or(""))
                    .ok_or("bad answer from the appliance: packet data is not hex")?,
            ));
        }
        let packets: Vec<crate::pcapng::Packet<'_>> = data
            .iter()
            .map(|(p, bytes)| crate::pcapng::Packet {
                interface: p["interface"].as_u64().unwrap_or(0) as u32,
                inbound: p["inbound"] == Value::Bool(true),
                time_ns: p["time_unix_ns"]
                    .as_str()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0),
                data: bytes,
                len: p["len"].as_u64().unwrap_or(0) as u32,
                comment: p["comment"].as_str().unwrap_or(""),
            })
            .collect();
        let mut out = Vec::new();
        crate::pcapng::write(&mut out, &interfaces, &packets).map_err(|e| e.to_string())?;
        std::fs::write(file, out).map_err(|e| format!("{}: {e}", file.display()))?;
        if args.json {
            println!(
                "{}",
                json!({"file": file.display().to_string(), "records": a["seen"],
                       "frames": packets.len(), "lost": a["lost"], "timed_out": a["timed_out"]})
            );
        } else {
            println!("{}: {} frames of {summary}", file.display(), packets.len());
        }
        return Ok(());
    }
    if args.json {
        println!("{a}");
        return Ok(());
    }
    for p in a["packets"].as_array().into_iter().flatten() {
        println!("Packet {}", p["packet"]);
        for s in p["stages"].as_array().into_iter().flatten() {
            let stage = format!("{}:", text(&s["stage"]));
            let read = text(&s["read"]);
            let decision = text(&s["decision"]);
            if read == "-" {
                println!("  {stage:<13}=> {decision}");
            } else {
                println!("  {stage:<13}{read}");
                println!("  {:<13}=> {decision}", "");
            }
        }
        println!("  {:<13}{}", "result:", text(&p["result"]));
        println!();
    }
    println!("traced {summary}");
    Ok(())
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Run one `backbone ctl` command.
pub fn ctl(args: &CtlArgs) -> Result<(), String> {
    let req = match &args.command {
        CtlCommand::Trace { .. } | CtlCommand::Capture { .. } => return tap(args),
        CtlCommand::Tunnels => json!({"op": "list_tunnels"}),
        CtlCommand::Routes => json!({"op": "list_routes", "all": true}),
        CtlCommand::Neighbors => json!({"op": "list_neighbors"}),
        CtlCommand::Interfaces => json!({"op": "interfaces"}),
        CtlCommand::Counters {
            action: Some(CountersAction::Clear),
            ..
        } => json!({"op": "clear_counters"}),
        CtlCommand::Counters {
            rate: true,
            interval,
            ..
        } => return rates(args, *interval),
        CtlCommand::Counters { .. } => json!({"op": "counters"}),
        CtlCommand::Generations => json!({"op": "generations"}),
        CtlCommand::Lookup { dst } => json!({"op": "lookup", "dst": dst}),
        CtlCommand::Status => json!({"op": "status"}),
        CtlCommand::Diff => json!({"op": "diff"}),
        CtlCommand::Save => json!({"op": "save"}),
        CtlCommand::Reload => json!({"op": "reload"}),
        CtlCommand::RouteAdd {
            prefix,
            tunnel,
            port,
            next_hop,
            blackhole,
            unreachable,
            prohibit,
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
            for (set, kind) in [
                (blackhole, "blackhole"),
                (unreachable, "unreachable"),
                (prohibit, "prohibit"),
            ] {
                if *set {
                    route[kind] = json!(true);
                }
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
        CtlCommand::WanAddress { port, old, new } => {
            json!({"op": "set_address", "port": port, "old": old, "new": new})
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
    let mut answer = request(&args.socket, &req)?;
    if matches!(args.command, CtlCommand::Tunnels) && !args.json {
        // The packets column: the counters (since the last clear), asked separately.
        if let Ok(c) = request(&args.socket, &json!({"op": "counters"})) {
            answer["counters"] = c["tunnels"].clone();
        }
    }
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
    if let CtlCommand::Counters { tunnel, port, .. } = &args.command {
        for (name, section, list) in [
            (tunnel, "tunnels", "ctl tunnels"),
            (port, "ports", "ctl interfaces"),
        ] {
            let Some(name) = name else { continue };
            let known = answer[section]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["name"] == name.as_str()));
            if !known {
                return Err(format!(
                    "no {} named {name:?} ({list} lists them)",
                    section.trim_end_matches('s')
                ));
            }
        }
    }
    if args.json {
        println!("{answer}");
        return Ok(());
    }
    print_human(&args.command, &answer);
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(&width).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for r in rows {
        line(r.clone());
    }
}

/// A tunnel's MTU, marked `(path)` while the underlay's path MTU holds it down.
fn mtu(t: &Value) -> String {
    if t["path_mtu"].is_object() {
        format!("{} (path)", text(&t["mtu"]))
    } else {
        text(&t["mtu"])
    }
}

fn flags(t: &Value) -> String {
    let mut f = Vec::new();
    if let Some(k) = t["key"].as_u64() {
        f.push(format!("key={k}"));
    }
    if t["sequence"] == Value::Bool(true) {
        f.push("seq".into());
    }
    if t["checksum"] == Value::Bool(true) {
        f.push("csum".into());
    }
    if let Some(p) = t["backup_of"].as_str() {
        f.push(format!("backup={p}"));
    }
    if f.is_empty() {
        "-".into()
    } else {
        f.join(",")
    }
}

fn print_human(cmd: &CtlCommand, a: &Value) {
    let rows = |key: &str| a[key].as_array().cloned().unwrap_or_default();
    match cmd {
        CtlCommand::Tunnels => {
            let counted = rows("counters");
            let packets = |name: &Value, key: &str| {
                counted
                    .iter()
                    .find(|c| c["name"] == *name)
                    .map_or("-".into(), |c| text(&c[key]))
            };
            let r: Vec<Vec<String>> = rows("tunnels")
                .iter()
                .map(|t| {
                    vec![
                        text(&t["name"]),
                        text(&t["state"]),
                        text(&t["mode"]),
                        text(&t["local"]),
                        text(&t["remote"]),
                        flags(t),
                        text(&t["port"]),
                        text(&t["next_hop"]),
                        text(&t["next_hop_mac"]),
                        mtu(t),
                        packets(&t["name"], "rx_packets"),
                        packets(&t["name"], "tx_packets"),
                        t["prefixes"].as_array().map_or(String::new(), |p| {
                            p.iter().map(text).collect::<Vec<_>>().join(" ")
                        }),
                    ]
                })
                .collect();
            table(
                &[
                    "NAME",
                    "STATE",
                    "MODE",
                    "LOCAL",
                    "REMOTE",
                    "FLAGS",
                    "PORT",
                    "NEXT HOP",
                    "NEXT-HOP MAC",
                    "MTU",
                    "RX",
                    "TX",
                    "PREFIXES",
                ],
                &r,
            );
            for t in rows("tunnels") {
                let p = &t["path_mtu"];
                if p.is_object() {
                    println!(
                        "{}: path MTU {} from the underlay ({} said fragmentation needed, \
                         next-hop MTU {}) for {} s more; configured {}",
                        text(&t["name"]),
                        text(&p["mtu"]),
                        text(&p["from"]),
                        text(&p["reported"]),
                        text(&p["expires_in_s"]),
                        text(&t["configured_mtu"])
                    );
                }
            }
        }
        CtlCommand::Routes => {
            let all = rows("routes");
            let r: Vec<Vec<String>> = all
                .iter()
                .map(|r| {
                    let (target, via) = if let Some(t) = r["tunnel"].as_str() {
                        let resolved = if r["resolved"] == Value::Bool(false) {
                            " (unresolved)"
                        } else {
                            ""
                        };
                        (
                            format!("tunnel {t}"),
                            format!("{} on {}{resolved}", text(&r["next_hop"]), text(&r["port"])),
                        )
                    } else if let (Some(p), true) =
                        (r["port"].as_str(), r["connected"] == Value::Bool(true))
                    {
                        (
                            format!("port {p}, connected"),
                            format!("each destination (ARP from {})", text(&r["arp_source"])),
                        )
                    } else if let Some(p) = r["port"].as_str() {
                        (format!("port {p}"), text(&r["next_hop"]))
                    } else if r["unreachable"] == Value::Bool(true) {
                        (
                            "unreachable (no_route, ICMP 3/0)".to_owned(),
                            "-".to_owned(),
                        )
                    } else if r["prohibit"] == Value::Bool(true) {
                        ("prohibit (no_route, ICMP 3/13)".to_owned(), "-".to_owned())
                    } else {
                        ("blackhole (dropped: no_route)".to_owned(), "-".to_owned())
                    };
                    let source = match (r["source"].as_str(), r["set_in_generation"].as_u64()) {
                        (Some("api"), Some(g)) => format!("api (generation {g})"),
                        (Some("frr"), _) => {
                            let mut s = format!("frr {}", text(&r["protocol"]));
                            if r["stale"] == Value::Bool(true) {
                                s.push_str(" (stale)");
                            }
                            match r["shadowed_by"].as_str() {
                                Some("tunnel") => s.push_str(" (shadowed by the tunnel's prefix)"),
                                Some(_) => s.push_str(" (shadowed by the configured route)"),
                                None => {}
                            }
                            s
                        }
                        (s, _) => {
                            let mut s = s.unwrap_or("?").to_owned();
                            if let Some(why) = r["not_routed"].as_str() {
                                s.push_str(&format!(" (not routed: {why})"));
                            }
                            s
                        }
                    };
                    vec![text(&r["prefix"]), target, via, source]
                })
                .collect();
            table(&["PREFIX", "TARGET", "NEXT HOP", "SOURCE"], &r);
            if !all.iter().any(|r| r["prefix"] == "0.0.0.0/0") {
                println!(
                    "(no default route: a destination no prefix holds is dropped as no_route)"
                );
            }
        }
        CtlCommand::Neighbors => {
            let r: Vec<Vec<String>> = rows("neighbors")
                .iter()
                .map(|n| {
                    vec![
                        text(&n["port"]),
                        text(&n["ip"]),
                        text(&n["mac"]),
                        if n["static"] == Value::Bool(true) {
                            "static".into()
                        } else if n["on_demand"] == Value::Bool(true) {
                            "on-demand".into()
                        } else {
                            "learned".into()
                        },
                    ]
                })
                .collect();
            table(&["PORT", "IP", "MAC", "KIND"], &r);
        }
        CtlCommand::Interfaces => {
            for p in rows("interfaces") {
                let l = &p["link"];
                let speed = match l["speed_mbps"].as_u64() {
                    Some(0) | None => "speed unknown".to_owned(),
                    Some(m) if m % 1000 == 0 => format!("{} Gbit/s", m / 1000),
                    Some(m) => format!("{m} Mbit/s"),
                };
                let duplex = if l["full_duplex"] == Value::Bool(true) {
                    ", full duplex"
                } else {
                    ""
                };
                let device_mtu = match p["device_mtu"].as_u64() {
                    Some(m) if Some(m) != p["mtu"].as_u64() => format!(" (device {m})"),
                    _ => String::new(),
                };
                let c = &p["counters"];
                println!(
                    "{}: {} (port {}, driver {}) link {} ({speed}{duplex}, {} changes{})",
                    text(&p["name"]),
                    text(&p["ethdev"]),
                    text(&p["port_id"]),
                    text(&p["driver"]),
                    if l["up"] == Value::Bool(true) {
                        "up"
                    } else {
                        "DOWN"
                    },
                    text(&l["changes"]),
                    if l["interrupt"] == Value::Bool(true) {
                        ", by interrupt"
                    } else {
                        ""
                    },
                );
                println!(
                    "    mac {}  mtu {}{device_mtu}  link-local {}",
                    text(&p["mac"]),
                    text(&p["mtu"]),
                    text(&p["link_local"])
                );
                println!(
                    "    addresses {}  roles {}  transit {}",
                    p["addresses"]
                        .as_array()
                        .filter(|a| !a.is_empty())
                        .map_or("-".into(), |a| a
                            .iter()
                            .map(text)
                            .collect::<Vec<_>>()
                            .join(" ")),
                    p["roles"].as_array().map_or(String::new(), |a| a
                        .iter()
                        .map(text)
                        .collect::<Vec<_>>()
                        .join(",")),
                    if p["transit"] == Value::Bool(true) {
                        "yes"
                    } else {
                        "no"
                    },
                );
                println!(
                    "    queues rx {} tx {} ({}), rss {}",
                    text(&p["rx_queues"]),
                    text(&p["tx_queues"]),
                    if p["control_queue"] == Value::Bool(true) {
                        "one for ARP requests"
                    } else {
                        "none spare for ARP requests"
                    },
                    if p["rss"] == Value::Bool(true) {
                        "on"
                    } else {
                        "off"
                    },
                );
                println!(
                    "    device  rx {} packets {} bytes  tx {} packets {} bytes",
                    text(&c["hw_rx_packets"]),
                    text(&c["hw_rx_bytes"]),
                    text(&c["hw_tx_packets"]),
                    text(&c["hw_tx_bytes"]),
                );
                println!(
                    "            rx errors {}  missed {}  no mbuf {}  tx errors {}",
                    text(&c["rx_errors"]),
                    text(&c["rx_missed"]),
                    text(&c["rx_no_mbuf"]),
                    text(&c["tx_errors"]),
                );
                println!(
                    "    pipeline rx {} packets {} bytes  tx {} packets {} bytes  tx sent {} dropped {}",
                    text(&c["rx_packets"]),
                    text(&c["rx_bytes"]),
                    text(&c["tx_packets"]),
                    text(&c["tx_bytes"]),
                    text(&c["tx_sent"]),
                    text(&c["tx_dropped"]),
                );
            }
        }
        CtlCommand::Counters {
            tunnel: Some(name), ..
        } => one_counted(a, "tunnels", "tunnel", name),
        CtlCommand::Counters {
            port: Some(name), ..
        } => one_counted(a, "ports", "port", name),
        CtlCommand::Counters {
            action: Some(CountersAction::Clear),
            ..
        } => println!(
            "counters cleared at generation {}: ctl counts from here (metrics and telemetry \
             count from start)",
            a["generation"]
        ),
        CtlCommand::Counters { .. } => {
            let since = match a["since"]["generation"].as_u64() {
                Some(g) => format!(" (since cleared at generation {g})"),
                None => " (since start)".to_owned(),
            };
            println!("generation {}{since}", a["generation"]);
            let r: Vec<Vec<String>> = rows("ports")
                .iter()
                .map(|p| {
                    vec![
                        text(&p["name"]),
                        match p["link_up"].as_bool() {
                            Some(true) => "up".into(),
                            Some(false) => "DOWN".into(),
                            None => "?".into(),
                        },
                        text(&p["rx_packets"]),
                        text(&p["tx_packets"]),
                        text(&p["tx_dropped"]),
                        text(&p["rx_missed"]),
                        text(&p["rx_no_mbuf"]),
                    ]
                })
                .collect();
            table(
                &[
                    "PORT",
                    "LINK",
                    "RX",
                    "TX",
                    "TX DROPPED",
                    "RX MISSED",
                    "RX NO MBUF",
                ],
                &r,
            );
            let r: Vec<Vec<String>> = rows("tunnels")
                .iter()
                .map(|t| {
                    vec![
                        text(&t["name"]),
                        text(&t["rx_packets"]),
                        text(&t["tx_packets"]),
                    ]
                })
                .collect();
            table(&["TUNNEL", "RX", "TX"], &r);
            let mut any = false;
            for (k, v) in a["drops"].as_object().into_iter().flatten() {
                if v.as_u64().unwrap_or(0) > 0 {
                    if !any {
                        println!("drops:");
                        any = true;
                    }
                    println!("  {k:<24} {v}");
                }
            }
            if !any {
                println!("drops: none");
            }
            let r: Vec<Vec<String>> = rows("workers")
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    vec![
                        i.to_string(),
                        text(&w["poll"]),
                        text(&w["polls"]),
                        w["busy_share"]
                            .as_f64()
                            .map_or("-".into(), |b| format!("{:.1}%", b * 100.0)),
                        text(&w["idle_sleeps"]),
                        text(&w["generation"]),
                    ]
                })
                .collect();
            table(
                &[
                    "WORKER",
                    "POLL",
                    "POLLS",
                    "BUSY SHARE",
                    "IDLE SLEEPS",
                    "GENERATION",
                ],
                &r,
            );
            let f = &a["fpm"];
            if !f["listen"].is_null() {
                let errors: Vec<String> = f["errors"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect();
                println!(
                    "fpm: zebra {} ({} connections) on {}; {} routes ({} stale); frames {} \
                     ({} refused) in {} publications; routes added {}, removed {}; errors: {}",
                    if f["connected"] == 1 {
                        "connected"
                    } else {
                        "NOT connected"
                    },
                    f["connections"],
                    text(&f["listen"]),
                    f["routes"],
                    f["stale"],
                    f["frames"],
                    f["frames_refused"],
                    f["publications"],
                    f["routes_added"],
                    f["routes_removed"],
                    if errors.is_empty() {
                        "none".to_owned()
                    } else {
                        errors.join(", ")
                    }
                );
            }
        }
        CtlCommand::Generations => println!(
            "generation {}, workers at {}",
            a["generation"], a["workers"]
        ),
        CtlCommand::Lookup { dst } => {
            let via = &a["via"];
            let route = &a["route"];
            let decided = match route["prefix"].as_str() {
                Some(p) if route["source"] == "tunnel" => format!(" (tunnel prefix {p})"),
                Some(p) if route["source"] == "frr" => {
                    format!(" (route {p} from zebra, {})", text(&route["protocol"]))
                }
                Some(p) => format!(" (route {p})"),
                None => String::new(),
            };
            let mac = |v: &Value| match v["next_hop_mac"].as_str() {
                Some(m) => format!(" at {m}"),
                None => " (MAC unknown: dropped as no_neighbor until ARP resolves it)".into(),
            };
            let what = if via["blackhole"] == Value::Bool(true) {
                format!("blackhole{decided}: dropped as no_route")
            } else if via["unreachable"] == Value::Bool(true) {
                format!("unreachable{decided}: dropped as no_route, answered ICMP net unreachable")
            } else if via["prohibit"] == Value::Bool(true) {
                format!(
                    "prohibit{decided}: dropped as no_route, answered ICMP administratively prohibited"
                )
            } else if via["no_route"] == Value::Bool(true) {
                "no route: dropped as no_route".to_owned()
            } else if let Some(t) = via["tunnel"].as_str() {
                format!(
                    "tunnel {t}{decided}, next hop {} on {}{}",
                    text(&via["next_hop"]),
                    text(&via["port"]),
                    mac(via)
                )
            } else {
                format!(
                    "port {}{decided}, next hop {}{}",
                    text(&via["port"]),
                    text(&via["next_hop"]),
                    mac(via)
                )
            };
            println!("{dst}: {what} [generation {}]", a["generation"]);
        }
        CtlCommand::Status => {
            for k in [
                "version",
                "dpdk",
                "pid",
                "config",
                "control_socket",
                "metrics",
                "fpm",
                "file_prefix",
                "runtime_dir",
                "capture",
                "uptime_s",
                "generation",
                "workers",
                "ports",
                "tunnels",
            ] {
                println!("{k:<15} {}", text(&a[k]));
            }
        }
        CtlCommand::Diff => {
            let d = rows("differences");
            if d.is_empty() {
                println!(
                    "no difference: the running configuration is {}",
                    text(&a["file"])
                );
            } else {
                println!("--- {} (the file)", text(&a["file"]));
                println!("+++ running (generation {})", a["generation"]);
                for x in d {
                    let restart = if x["needs_restart"] == Value::Bool(true) {
                        "   (takes a restart)"
                    } else {
                        ""
                    };
                    println!("{}{restart}", text(&x["text"]));
                }
            }
        }
        CtlCommand::Save => println!(
            "{} {} (generation {})",
            if a["changed"] == Value::Bool(true) {
                "saved the running configuration to"
            } else {
                "unchanged: the running configuration is already"
            },
            text(&a["file"]),
            a["generation"]
        ),
        CtlCommand::Reload => println!(
            "{}: generation {}",
            if a["changed"] == Value::Bool(true) {
                "reloaded"
            } else {
                "the file configures what runs: nothing to do"
            },
            a["generation"]
        ),
        _ => println!("applied: generation {}", a["generation"]),
    }
}

/// `ctl counters --tunnel NAME` or `--port NAME`: one entry of the `counters` answer's
/// `section`, its packets and bytes, and its drops by reason.
fn one_counted(a: &Value, section: &str, what: &str, name: &str) {
    let since = match a["since"]["generation"].as_u64() {
        Some(g) => format!("since cleared at generation {g}"),
        None => "since start".to_owned(),
    };
    let Some(x) = a[section]
        .as_array()
        .into_iter()
        .flatten()
        .find(|x| x["name"] == name)
    else {
        // Checked before printing (see `ctl`): not reached.
        return;
    };
    println!("{what} {name} ({since}, generation {})", a["generation"]);
    println!(
        "  rx {} packets {} bytes  tx {} packets {} bytes",
        text(&x["rx_packets"]),
        text(&x["rx_bytes"]),
        text(&x["tx_packets"]),
        text(&x["tx_bytes"]),
    );
    let drops = x["drops"].as_object().cloned().unwrap_or_default();
    if drops.is_empty() {
        println!("  drops: none");
    } else {
        println!("  drops:");
        for (k, v) in drops {
            println!("    {k:<24} {v}");
        }
    }
}

/// Counters whose per-second rate `ctl counters --rate` shows, from one `counters`
/// answer: (section, name, counter, value).
fn rate_values(a: &Value) -> Vec<(String, String, String, u64)> {
    let mut out = Vec::new();
    for (section, key) in [("port", "ports"), ("tunnel", "tunnels")] {
        for x in a[key].as_array().into_iter().flatten() {
            for (k, v) in x.as_object().into_iter().flatten() {
                if let Some(n) = v.as_u64().filter(|_| k != "name") {
                    out.push((section.to_owned(), text(&x["name"]), k.clone(), n));
                }
            }
        }
    }
    for section in ["drops", "events", "punts"] {
        for (k, v) in a[section].as_object().into_iter().flatten() {
            out.push((
                section.to_owned(),
                String::new(),
                k.clone(),
                v.as_u64().unwrap_or(0),
            ));
        }
    }
    out
}

/// `ctl counters --rate`: two readings `interval` seconds apart, as rates per second.
fn rates(args: &CtlArgs, interval: f64) -> Result<(), String> {
    if !(interval.is_finite() && (0.1..=3600.0).contains(&interval)) {
        return Err(format!("--interval {interval}: give 0.1 to 3600 seconds"));
    }
    let first = request(&args.socket, &json!({"op": "counters", "raw": true}))?;
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(interval));
    let second = request(&args.socket, &json!({"op": "counters", "raw": true}))?;
    let secs = start.elapsed().as_secs_f64();
    let before = rate_values(&first);
    let rated: Vec<(String, String, String, f64)> = rate_values(&second)
        .into_iter()
        .map(|(s, n, k, v)| {
            let was = before
                .iter()
                .find(|(s2, n2, k2, _)| *s2 == s && *n2 == n && *k2 == k)
                .map_or(v, |x| x.3);
            let r = v.saturating_sub(was) as f64 / secs;
            (s, n, k, r)
        })
        .collect();
    if args.json {
        let mut out = serde_json::Map::new();
        out.insert("interval_s".into(), json!(secs));
        out.insert("generation".into(), second["generation"].clone());
        for (s, n, k, r) in &rated {
            let entry = out.entry(s.clone()).or_insert_with(|| json!({}));
            if n.is_empty() {
                entry[k] = json!(r);
            } else {
                entry[n][k] = json!(r);
            }
        }
        println!("{}", Value::Object(out));
        return Ok(());
    }
    let get = |s: &str, n: &str, k: &str| {
        rated
            .iter()
            .find(|x| x.0 == s && x.1 == n && x.2 == k)
            .map_or(0.0, |x| x.3)
    };
    let fmt = |x: f64| {
        if x >= 1e9 {
            format!("{:.2}G", x / 1e9)
        } else if x >= 1e6 {
            format!("{:.2}M", x / 1e6)
        } else if x >= 1e3 {
            format!("{:.1}k", x / 1e3)
        } else {
            format!("{x:.0}")
        }
    };
    println!(
        "per second, over {secs:.2} s (generation {})",
        second["generation"]
    );
    let names = |key: &str| -> Vec<String> {
        second[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| text(&x["name"]))
            .collect()
    };
    let r: Vec<Vec<String>> = names("ports")
        .iter()
        .map(|n| {
            vec![
                n.clone(),
                fmt(get("port", n, "rx_packets")),
                fmt(get("port", n, "rx_bytes") * 8.0),
                fmt(get("port", n, "tx_packets")),
                fmt(get("port", n, "tx_bytes") * 8.0),
                fmt(get("port", n, "tx_dropped")),
                fmt(get("port", n, "rx_missed")),
            ]
        })
        .collect();
    table(
        &[
            "PORT",
            "RX PKT/S",
            "RX BIT/S",
            "TX PKT/S",
            "TX BIT/S",
            "TX DROP/S",
            "RX MISS/S",
        ],
        &r,
    );
    let r: Vec<Vec<String>> = names("tunnels")
        .iter()
        .map(|n| {
            vec![
                n.clone(),
                fmt(get("tunnel", n, "rx_packets")),
                fmt(get("tunnel", n, "rx_bytes") * 8.0),
                fmt(get("tunnel", n, "tx_packets")),
                fmt(get("tunnel", n, "tx_bytes") * 8.0),
            ]
        })
        .collect();
    table(
        &["TUNNEL", "RX PKT/S", "RX BIT/S", "TX PKT/S", "TX BIT/S"],
        &r,
    );
    let drops: Vec<&(String, String, String, f64)> = rated
        .iter()
        .filter(|x| x.0 == "drops" && x.3 > 0.0)
        .collect();
    if drops.is_empty() {
        println!("drops/s: none");
    } else {
        println!("drops/s:");
        for (_, _, k, r) in drops {
            println!("  {k:<24} {}", fmt(*r));
        }
    }
    Ok(())
}
