//! Runtime updates, library side: the time to load the real-world table, and route changes
//! per second through `ControlState::apply` (the path the control API takes: edit a copy of
//! the document, validate it whole, update the tables copy-on-write, publish) and directly
//! through `SnapshotBuilder` (no validation of the document), in batches.
//!
//! `cargo bench -p backbone-benches --bench updates`; the API side (and the latency to every
//! worker, and forwarding while updates stream) is `scripts/bench-updates.sh`.

use backbone_benches::real_table;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dataplane::control::state::ControlState;
use dataplane::tables::{PortEntry, PortRoles, RouteTarget, SnapshotBuilder, Tunnel, TunnelMode};
use dataplane::wire::EthernetAddress;
use pipeline_config::ConfigDocument;
use serde_json::json;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const TUNNELS: usize = 64;

/// The configuration text: one port, 64 tunnels, every real-world prefix routed to one.
fn config_text(prefixes: &[String]) -> String {
    let mut s = String::from(
        "[[port]]\nname = \"p0\"\ndevice = \"0\"\nroles = [\"client\"]\naddresses = [\"192.0.2.1\"]\n",
    );
    for t in 0..TUNNELS {
        let _ = write!(
            s,
            "[[tunnel]]\nname = \"t{t}\"\nmode = \"gre\"\nlocal = \"192.0.2.1\"\nremote = \"198.18.{}.{}\"\nkey = {t}\nport = \"p0\"\n",
            t / 250,
            1 + t % 250
        );
    }
    for (i, p) in prefixes.iter().enumerate() {
        let _ = write!(
            s,
            "[[route]]\nprefix = \"{p}\"\ntunnel = \"t{}\"\n",
            i % TUNNELS
        );
    }
    s
}

fn bench(c: &mut Criterion) {
    // The real table, less what overlaps the tunnels' own remotes (198.18.0.0/15).
    let table: Vec<String> = real_table()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| {
            !(p.contains(Ipv4Addr::new(198, 18, 0, 1)) || p.contains(Ipv4Addr::new(198, 19, 0, 1)))
        })
        .collect::<std::collections::BTreeSet<_>>() // the file lists one prefix twice
        .into_iter()
        .map(|p| p.to_string())
        .collect();
    let text = config_text(&table);

    let t0 = Instant::now();
    let (doc, cfg) = ConfigDocument::parse(&text, "real.toml").expect("valid");
    let parsed = t0.elapsed();
    let t1 = Instant::now();
    let mut state = ControlState::new(doc, cfg, vec![(0, EthernetAddress([2, 0, 0, 0, 0, 1]))])
        .expect("builds");
    let built = t1.elapsed();
    eprintln!(
        "load the real-world table ({} routes): parse + validate {:.2} s, build the first snapshot {:.2} s",
        table.len(),
        parsed.as_secs_f64(),
        built.as_secs_f64()
    );

    let mut g = c.benchmark_group("updates");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_secs(1));
    let mut n = 0usize;
    for batch in [1usize, 1000] {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("control_state_apply/batch_{batch}"), |b| {
            b.iter_batched(
                || {
                    (0..batch)
                        .map(|_| {
                            n += 1;
                            json!({"op": "set_route", "route": {"prefix": table[n % table.len()], "tunnel": format!("t{}", n % TUNNELS)}})
                        })
                        .collect::<Vec<_>>()
                },
                |ops| state.apply(&ops).expect("valid change"),
                BatchSize::PerIteration,
            )
        });
    }

    // The builder alone: the same routes, no document validation.
    let mut b = SnapshotBuilder::new();
    b.port(
        0,
        PortEntry {
            mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            addrs: vec![Ipv4Addr::new(192, 0, 2, 1)],
            mtu: 1500,
            roles: PortRoles {
                client: true,
                ..PortRoles::default()
            },
            transit: false,
            host_interface: false,
        },
    );
    for t in 0..TUNNELS {
        let mut tun = Tunnel::new(
            &format!("t{t}"),
            TunnelMode::Gre,
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(198, 18, (t / 250) as u8, (1 + t % 250) as u8),
            0,
        );
        tun.key = Some(t as u32);
        b.tunnel(tun);
    }
    let prefixes: Vec<_> = table.iter().map(|p| p.parse().expect("prefix")).collect();
    for (i, p) in prefixes.iter().enumerate() {
        b.route(*p, RouteTarget::Tunnel(format!("t{}", i % TUNNELS)));
    }
    let t2 = Instant::now();
    b.build().expect("builds");
    eprintln!(
        "snapshot builder alone, first build of {} routes: {:.2} s",
        prefixes.len(),
        t2.elapsed().as_secs_f64()
    );
    for batch in [1usize, 1000] {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("snapshot_builder/batch_{batch}"), |bch| {
            bch.iter(|| {
                for _ in 0..batch {
                    n += 1;
                    b.route(
                        prefixes[n % prefixes.len()],
                        RouteTarget::Tunnel(format!("t{}", n % TUNNELS)),
                    );
                }
                b.build().expect("builds")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
