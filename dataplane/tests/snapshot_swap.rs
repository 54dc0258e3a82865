//! Publication and reclamation under stress: a writer publishes thousands of snapshots
//! through the control state (the path the API uses) while readers hold old snapshots and
//! check them. A reader must never see half a batch, never see generations go back, and an
//! old snapshot must answer the same way for as long as a reader holds it (copy-on-write:
//! publishing never changes a published table; reclamation waits for the last holder).

use dataplane::control::state::ControlState;
use dataplane::tables::{Snapshot, Target};
use dataplane::wire::EthernetAddress;
use pipeline_config::ConfigDocument;
use serde_json::json;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

const CONFIG: &str = r#"
[[port]]
name = "p0"
device = "0"
roles = ["client"]
addresses = ["192.0.2.1"]
  [[port.neighbor]]
  ip = "198.51.100.1"
  mac = "02:00:00:00:00:0a"
  [[port.neighbor]]
  ip = "198.51.100.2"
  mac = "02:00:00:00:00:0b"
  [[port.neighbor]]
  ip = "198.51.100.3"
  mac = "02:00:00:00:00:0c"

[[tunnel]]
name = "a"
mode = "gre"
local = "192.0.2.1"
remote = "198.51.100.1"
port = "p0"
prefixes = ["10.1.0.0/16"]

[[tunnel]]
name = "b"
mode = "ipip"
local = "192.0.2.1"
remote = "198.51.100.2"
port = "p0"
prefixes = ["10.2.0.0/16"]

[[route]]
prefix = "10.100.0.0/16"
tunnel = "a"

[[route]]
prefix = "10.101.0.0/16"
tunnel = "a"
"#;

fn via(s: &Snapshot, dst: [u8; 4]) -> Option<String> {
    let nh = s.routes().lookup(Ipv4Addr::from(dst))?;
    match s.target(nh) {
        Target::Tunnel(id) => s.tunnels().get(id).map(|t| t.config.name.clone()),
        _ => None,
    }
}

/// Where the moving routes go in one snapshot: (10.100/16 and 10.101/16, 10.102/16).
type Seen = (Option<String>, Option<String>);

/// What a reader checks in one snapshot: the two moved-together routes agree, and the
/// optional tunnel c is present exactly when its route is.
fn observe(s: &Snapshot) -> Seen {
    let r100 = via(s, [10, 100, 7, 7]);
    let r101 = via(s, [10, 101, 7, 7]);
    assert_eq!(
        r100,
        r101,
        "generation {}: half a batch is visible",
        s.generation()
    );
    let r102 = via(s, [10, 102, 0, 1]);
    assert_eq!(
        r102.is_some(),
        s.tunnels().by_name("c").is_some(),
        "generation {}: tunnel c and its route come and go together",
        s.generation()
    );
    (r100, r102)
}

#[test]
fn thousands_of_publications_while_readers_hold_snapshots() {
    let (doc, cfg) = ConfigDocument::parse(CONFIG, "stress.toml").unwrap();
    let mut state =
        ControlState::new(doc, cfg, vec![(0, EthernetAddress([2, 0, 0, 0, 0, 1]))]).unwrap();
    let snaps = state.snapshots();
    let done = AtomicBool::new(false);
    let observed = AtomicU64::new(0);
    const BATCHES: u64 = 1000;

    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let mut held: Vec<(Arc<Snapshot>, Seen)> = Vec::new();
                let mut last_gen = 0;
                let mut i = 0u64;
                while !done.load(Ordering::Acquire) || i == 0 {
                    i += 1;
                    let s = snaps.load_full();
                    assert!(s.generation() >= last_gen, "generations never go back");
                    last_gen = s.generation();
                    let seen = observe(&s);
                    // Keep some snapshots for a while: they must not change under us.
                    if i % 7 == 0 {
                        if held.len() == 32 {
                            let (old, then) = held.remove(0);
                            assert_eq!(observe(&old), then, "a held snapshot changed");
                        }
                        held.push((s, seen));
                    }
                    observed.fetch_add(1, Ordering::Relaxed);
                    // Two cores here: leave the writer room to publish.
                    std::thread::yield_now();
                }
                for (old, then) in held {
                    assert_eq!(observe(&old), then, "a held snapshot changed");
                }
            });
        }

        let mut expect_c = false;
        for n in 0..BATCHES {
            let to = if n % 2 == 0 { "b" } else { "a" };
            let mut ops = vec![
                json!({"op": "set_route", "route": {"prefix": "10.100.0.0/16", "tunnel": to}}),
                json!({"op": "set_route", "route": {"prefix": "10.101.0.0/16", "tunnel": to}}),
            ];
            if n % 10 == 0 {
                if expect_c {
                    ops.push(json!({"op": "remove_route", "prefix": "10.102.0.0/16"}));
                    ops.push(json!({"op": "remove_tunnel", "name": "c"}));
                } else {
                    ops.push(json!({"op": "add_tunnel", "tunnel": {
                        "name": "c", "mode": "gre", "local": "192.0.2.1", "remote": "198.51.100.3",
                        "key": n, "port": "p0", "prefixes": ["10.3.0.0/16"]}}));
                    ops.push(json!({"op": "set_route", "route": {"prefix": "10.102.0.0/16", "tunnel": "c"}}));
                }
                expect_c = !expect_c;
            }
            let g = state.apply(&ops).expect("valid batch");
            assert_eq!(g, n + 2, "one publication per batch");
        }
        done.store(true, Ordering::Release);
        let last = snaps.load_full();
        assert_eq!(last.generation(), BATCHES + 1);
        assert_eq!(via(&last, [10, 100, 0, 1]).as_deref(), Some("a"));
        assert_eq!(last.tunnels().by_name("c").is_some(), expect_c);
    });
    assert!(observed.load(Ordering::Relaxed) > 0);
}

#[test]
fn a_refused_change_leaves_the_running_tables_untouched() {
    let (doc, cfg) = ConfigDocument::parse(CONFIG, "bad.toml").unwrap();
    let mut state =
        ControlState::new(doc, cfg, vec![(0, EthernetAddress([2, 0, 0, 0, 0, 1]))]).unwrap();
    let snaps = state.snapshots();
    let before = snaps.load_full();
    let cases = [
        (
            json!({"op": "set_route", "route": {"prefix": "10.100.0.0/16", "tunnel": "nope"}}),
            "\"nope\"",
        ),
        (
            json!({"op": "set_route", "route": {"prefix": "10.100.0.1/16", "tunnel": "a"}}),
            "10.100.0.1/16",
        ),
        (
            json!({"op": "add_tunnel", "tunnel": {"name": "dup", "mode": "gre", "local": "192.0.2.1",
                   "remote": "198.51.100.1", "port": "p0"}}),
            "dup",
        ),
        (json!({"op": "remove_tunnel", "name": "a"}), "\"a\""),
    ];
    for (op, named) in cases {
        // A good change in the same batch is refused with it: nothing half-applied.
        let batch = [
            json!({"op": "set_route", "route": {"prefix": "10.101.0.0/16", "tunnel": "b"}}),
            op.clone(),
        ];
        let e = state.apply(&batch).expect_err("refused");
        assert!(e.contains(named), "error for {op} names {named}: {e}");
        let now = snaps.load_full();
        assert!(Arc::ptr_eq(&now, &before), "no new snapshot after {op}");
    }
    assert_eq!(via(&before, [10, 101, 0, 1]).as_deref(), Some("a"));
    // And the state still takes good changes afterwards.
    assert_eq!(
        state
            .apply(&[
                json!({"op": "set_route", "route": {"prefix": "10.101.0.0/16", "tunnel": "b"}})
            ])
            .unwrap(),
        2
    );
}

/// TESTPLAN C6: a worker stuck inside a burst holds its snapshot. Publication goes on, the
/// stuck worker's tables stay valid and unchanged (reclamation waits for it: no use after
/// free), nothing else is kept alive, the stall alarm fires within 100 ms and clears when it
/// moves on; then its old tables are freed.
#[test]
fn a_stalled_worker_delays_reclamation_and_raises_an_alarm() {
    use dataplane::control::progress::WorkerProgress;
    use dataplane::control::stall::{StallEvent, StallWatch};
    use std::time::{Duration, Instant};

    let (doc, cfg) = ConfigDocument::parse(CONFIG, "stall.toml").unwrap();
    let mut state =
        ControlState::new(doc, cfg, vec![(0, EthernetAddress([2, 0, 0, 0, 0, 1]))]).unwrap();
    let snaps = state.snapshots();
    let workers = [WorkerProgress::default(), WorkerProgress::default()];
    let mut watch = StallWatch::new(2, StallWatch::DEFAULT_THRESHOLD);
    let mut events = Vec::new();

    // Worker 1 stalls holding the first snapshot.
    let stuck = snaps.load_full();
    let stuck_gen = stuck.generation();
    let stuck_seen = observe(&stuck);
    workers[1].generation.store(stuck_gen, Ordering::Relaxed);
    let first = Arc::downgrade(&stuck);
    let start = Instant::now();
    let mut retired: Vec<std::sync::Weak<Snapshot>> = Vec::new();
    let mut alarm_after = None;
    let mut n = 0u64;
    // At least 400 ms (well past the threshold) and 20 publications, however slow the
    // machine is.
    while start.elapsed() < Duration::from_millis(400) || n < 20 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{n} publications in 30 s"
        );
        let to = if n % 2 == 0 { "b" } else { "a" };
        n += 1;
        let before = snaps.load_full();
        retired.push(Arc::downgrade(&before));
        drop(before);
        state
            .apply(&[
                json!({"op": "set_route", "route": {"prefix": "10.100.0.0/16", "tunnel": to}}),
                json!({"op": "set_route", "route": {"prefix": "10.101.0.0/16", "tunnel": to}}),
            ])
            .expect("valid batch");
        // Worker 0 keeps up, as an idle or busy healthy worker does.
        let current = snaps.load().generation();
        workers[0].generation.store(current, Ordering::Relaxed);
        watch.check(
            Instant::now(),
            current,
            workers.iter().map(|w| w.generation.load(Ordering::Relaxed)),
            &mut events,
        );
        if alarm_after.is_none() && !events.is_empty() {
            alarm_after = Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // The alarm: one, for worker 1, once it has been stuck for the threshold (the unit
    // tests in dataplane/src/control/stall.rs pin the timing exactly; here a busy machine
    // may delay a check).
    assert!(
        matches!(events[..], [StallEvent::Stalled { worker: 1, holds, .. }] if holds == stuck_gen),
        "{events:?}"
    );
    let after = alarm_after.expect("an alarm");
    assert!(
        after >= StallWatch::DEFAULT_THRESHOLD && after < Duration::from_secs(1),
        "alarm after {after:?}"
    );
    // The stuck worker's tables: alive and as they were; every other retired version freed.
    assert_eq!(observe(&stuck), stuck_seen, "a held snapshot changed");
    assert!(first.upgrade().is_some());
    let alive = retired.iter().filter(|w| w.upgrade().is_some()).count();
    assert_eq!(
        alive, 1,
        "only the stuck worker's snapshot outlives its publication"
    );

    // It moves on: the alarm clears and its old tables are freed.
    drop(stuck);
    let current = snaps.load().generation();
    workers[1].generation.store(current, Ordering::Relaxed);
    events.clear();
    watch.check(
        Instant::now(),
        current,
        workers.iter().map(|w| w.generation.load(Ordering::Relaxed)),
        &mut events,
    );
    assert!(
        matches!(events[..], [StallEvent::Recovered { worker: 1, .. }]),
        "{events:?}"
    );
    assert_eq!((watch.alarms(), watch.stalled()), (1, 0));
    assert!(
        first.upgrade().is_none(),
        "freed once its last holder let go"
    );
    assert!(retired.iter().all(|w| w.upgrade().is_none()));
}
