//! Publication and reclamation under stress: a writer publishes thousands of snapshots
//! through the control state (the path the API uses) while readers, each with the handle a
//! worker has, read them. A reader must never see half a batch, never see generations go
//! back, and a snapshot must answer the same way for as long as it is held (copy-on-write:
//! publishing never changes a published table; reclamation waits for every reader). Old
//! snapshots stay bounded while that goes on, and all of them are reclaimed at the end.
//!
//! The stalled worker (TESTPLAN C6) runs the real worker loop on EAL lcores: see
//! `stalled_worker.rs`, a process of its own (one EAL per process, and its timing is not
//! shared with the stress here).

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
    const READERS: usize = 2;
    let readers: Vec<_> = (0..READERS).map(|_| state.reader()).collect();
    let done = AtomicBool::new(false);
    let observed = AtomicU64::new(0);
    const BATCHES: u64 = 1000;

    std::thread::scope(|scope| {
        for mut reader in readers {
            let (done, observed) = (&done, &observed);
            scope.spawn(move || {
                let mut last_gen = 0;
                let mut i = 0u64;
                while !done.load(Ordering::Acquire) || i == 0 {
                    i += 1;
                    // A worker's burst: the quiescent point, then one snapshot throughout.
                    reader.refresh();
                    let s = reader.get();
                    assert_eq!(s.generation(), reader.generation());
                    assert!(s.generation() >= last_gen, "generations never go back");
                    last_gen = s.generation();
                    let seen = observe(s);
                    // Two cores here: leave the writer room to publish, meanwhile.
                    std::thread::yield_now();
                    assert_eq!(observe(s), seen, "a held snapshot changed");
                    observed.fetch_add(1, Ordering::Relaxed);
                }
            });
        }

        // The writer also keeps some snapshots for a while: they must not change either.
        let mut held: Vec<(Arc<Snapshot>, Seen)> = Vec::new();
        let mut retired_max = 0;
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
            retired_max = retired_max.max(state.snapshots().retired());
            assert!(
                state.snapshots().retired() <= 2 * READERS,
                "old snapshots bounded: {:?}",
                state.snapshots()
            );
            if n % 7 == 0 {
                let s = Arc::clone(state.snapshots().current());
                let seen = observe(&s);
                if held.len() == 32 {
                    let (old, then) = held.remove(0);
                    assert_eq!(observe(&old), then, "a held snapshot changed");
                }
                held.push((s, seen));
            }
        }
        done.store(true, Ordering::Release);
        let last = Arc::clone(state.snapshots().current());
        assert_eq!(last.generation(), BATCHES + 1);
        assert_eq!(via(&last, [10, 100, 0, 1]).as_deref(), Some("a"));
        assert_eq!(last.tunnels().by_name("c").is_some(), expect_c);
        for (old, then) in held {
            assert_eq!(observe(&old), then, "a held snapshot changed");
        }
        println!("at most {retired_max} old snapshots retained at once");
    });
    assert!(observed.load(Ordering::Relaxed) > 0);
    // The readers are gone: every old snapshot is reclaimed, each once.
    state.reclaim();
    assert_eq!(state.snapshots().retired(), 0, "{:?}", state.snapshots());
    assert_eq!(state.snapshots().reclaimed(), BATCHES);
    assert_eq!(state.snapshots().readers(), 0);
}

#[test]
fn a_refused_change_leaves_the_running_tables_untouched() {
    let (doc, cfg) = ConfigDocument::parse(CONFIG, "bad.toml").unwrap();
    let mut state =
        ControlState::new(doc, cfg, vec![(0, EthernetAddress([2, 0, 0, 0, 0, 1]))]).unwrap();
    let before = Arc::clone(state.snapshots().current());
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
        assert!(
            Arc::ptr_eq(state.snapshots().current(), &before),
            "no new snapshot after {op}"
        );
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
