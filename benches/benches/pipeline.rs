//! Whole bursts through `Pipeline::process` against a snapshot shaped like a busy edge
//! router: 1,000 GRE tunnels (key only) with 4 client /24s each, 64 IP-in-IP tunnels, and
//! about a million routes in the LPM (the real table's 564k prefixes plus random /24s), every
//! explicit route into a random GRE tunnel.
//!
//! Traffic: 256 bursts of 32 frames, rotated so that successive bursts hit different
//! routes and tunnels. Each frame comes from a random tunnel (a random source in its client
//! prefixes) toward a random address inside a random route, so a burst spreads over ~32
//! ingress and ~32 egress tunnels (no run of one tunnel for the lookup cache to reuse): a
//! pessimistic mix. Inner packets are IPv4/UDP with 64 payload bytes: 134-byte GRE frames
//! and 126-byte IP-in-IP frames in, 134-byte GRE frames out. Throughput is 32 elements per
//! iteration, so criterion reports time per packet.
//!
//! Each iteration first copies the burst's frames back into its `TestBuf`s
//! (`TestBuf::reset`, as a NIC would have written them): that cost is included, nothing is
//! subtracted. `reset_only` measures it alone for reference.
//!
//! `cargo bench -p backbone-benches --bench pipeline`

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use backbone_benches::{bufs, build_lpm, rng, Backbone, BenchTunnel};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dataplane::buffer::DEFAULT_HEADROOM;
use dataplane::lpm::NextHop;
use dataplane::pipeline::{Action, DropReason, Pipeline, MAX_BURST};
use dataplane::tables::Target;
use rand::rngs::SmallRng;
use rand::Rng;

const BURSTS: usize = 256;
const PAYLOAD: usize = 64;

/// `BURSTS * MAX_BURST` frames from random tunnels of `sources` to random routed
/// destinations in some other tunnel.
fn traffic(bb: &Backbone, sources: &[BenchTunnel], rng: &mut SmallRng) -> Vec<Vec<u8>> {
    let snap = &bb.snapshot;
    (0..BURSTS * MAX_BURST)
        .map(|_| {
            let from = &sources[rng.gen_range(0..sources.len())];
            let src = from.client.bits() | (rng.gen::<u32>() & !from.client.mask());
            loop {
                let route = bb.routes[rng.gen_range(0..bb.routes.len())];
                let dst = route.bits() | (rng.gen::<u32>() & !route.mask());
                // Skip the few that would hairpin back into the tunnel they came from.
                let Target::Tunnel(id) = snap.target(snap.routes().lookup_u32(dst)) else {
                    continue;
                };
                if snap
                    .tunnels()
                    .get(id)
                    .is_some_and(|t| t.config.name != from.name)
                {
                    break bb.frame(from, Ipv4Addr::from(src), Ipv4Addr::from(dst), PAYLOAD);
                }
            }
        })
        .collect()
}

fn pipeline(c: &mut Criterion) {
    let setup = Instant::now();
    let mut r = rng(7);
    let bb = Backbone::new(1000, 64, 1_000_000, &mut r);
    let routes = bb.snapshot.routes();
    eprintln!(
        "pipeline: snapshot with {} tunnels, {} LPM prefixes ({} explicit routes), LPM memory \
         {:.1} MiB; SnapshotBuilder::build {:.2} s (setup {:.2} s in all)",
        bb.snapshot.tunnels().len(),
        routes.len(),
        bb.routes.len(),
        routes.memory_bytes() as f64 / (1024.0 * 1024.0),
        bb.build_time.as_secs_f64(),
        setup.elapsed().as_secs_f64(),
    );
    // How much of the snapshot build is the route LPM itself (same prefixes, one next hop).
    let (_, lpm_alone) = build_lpm(
        &bb.routes
            .iter()
            .map(|&p| (p, NextHop::new(0).unwrap()))
            .collect::<Vec<_>>(),
    );
    eprintln!(
        "pipeline: the {} explicit routes alone build an Ipv4Lpm in {:.2} s",
        bb.routes.len(),
        lpm_alone.as_secs_f64()
    );
    let gre = traffic(&bb, &bb.gre, &mut r);
    let ipip = traffic(&bb, &bb.ipip, &mut r);
    eprintln!(
        "pipeline: frames GRE {} bytes, IP-in-IP {} bytes",
        gre[0].len(),
        ipip[0].len()
    );

    let mut g = c.benchmark_group("pipeline/1m_routes_1000_tunnels");
    g.throughput(Throughput::Elements(MAX_BURST as u64));
    for (name, frames) in [("gre_to_gre", &gre), ("ipip_to_gre", &ipip)] {
        let bursts: Vec<&[Vec<u8>]> = frames.chunks(MAX_BURST).collect();
        let mut pipeline = Pipeline::new(1);
        let mut actions = [Action::Drop(DropReason::NoRoute); MAX_BURST];
        // Every frame must be forwarded, or the bench measures drops.
        for burst in &bursts {
            let mut b = bufs(burst);
            pipeline.process(&bb.snapshot, bb.port, &mut b, &mut actions);
            assert!(
                actions.iter().all(|a| *a == Action::Transmit(bb.port)),
                "{name}: {actions:?}"
            );
        }
        let mut buf = bufs(bursts[0]);
        let mut next = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                // The reset (copying the frames back in) is part of the measured time.
                let burst = bursts[next];
                next = (next + 1) % bursts.len();
                for (b, f) in buf.iter_mut().zip(burst) {
                    b.reset(f, DEFAULT_HEADROOM);
                }
                pipeline.process(&bb.snapshot, bb.port, &mut buf, &mut actions);
                black_box(&actions);
            })
        });
        let c = pipeline.counters();
        assert_eq!(c.total_drops(), 0, "{name}: {:?}", c.nonzero_drops());
    }

    let bursts: Vec<&[Vec<u8>]> = gre.chunks(MAX_BURST).collect();
    let mut buf = bufs(bursts[0]);
    let mut next = 0;
    g.bench_function("reset_only", |b| {
        b.iter(|| {
            let burst = bursts[next];
            next = (next + 1) % bursts.len();
            for (b, f) in buf.iter_mut().zip(burst) {
                b.reset(f, DEFAULT_HEADROOM);
            }
            black_box(&buf);
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = pipeline
}
criterion_main!(benches);
