//! A path MTU from the underlay, through the control state (what the control thread does
//! with the workers' reports): published in one new generation, shown in the tunnel listing,
//! kept across other changes, forgotten when its tunnel changes, and expired after ten
//! minutes of simulated time, back to the configured MTU.

use dataplane::control::pmtu::{Outcome, EXPIRY};
use dataplane::control::state::ControlState;
use dataplane::pipeline::PathMtuReport;
use dataplane::tables::TunnelId;
use dataplane::wire::EthernetAddress;
use pipeline_config::ConfigDocument;
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[[port]]
name = "p0"
device = "0"
roles = ["client"]
addresses = ["192.0.2.1"]
mtu = 1600

[[tunnel]]
name = "a"
mode = "gre"
local = "192.0.2.1"
remote = "198.51.100.1"
key = 7
mtu = 1500
port = "p0"
prefixes = ["10.1.0.0/16"]

[[tunnel]]
name = "b"
mode = "ipip"
local = "192.0.2.1"
remote = "198.51.100.2"
port = "p0"
prefixes = ["10.2.0.0/16"]
"#;

const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
const REMOTE_A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

fn state() -> ControlState {
    let (doc, cfg) = ConfigDocument::parse(CONFIG, "pmtu.toml").unwrap();
    ControlState::new(doc, cfg, vec![(0, EthernetAddress([2, 0, 0, 0, 0, 1]))]).unwrap()
}

fn id(st: &ControlState, name: &str) -> TunnelId {
    st.snapshots().current().tunnels().by_name(name).unwrap()
}

fn listed(st: &ControlState, name: &str) -> Value {
    st.list_tunnels()
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .cloned()
        .unwrap()
}

fn mtu(st: &ControlState, name: &str) -> (u16, Option<u16>) {
    let snap = st.snapshots().current();
    let t = snap.tunnels().get(id(st, name)).unwrap();
    (t.mtu, t.path_mtu)
}

fn report(tunnel: TunnelId, remote: Ipv4Addr, mtu: u16) -> PathMtuReport {
    PathMtuReport {
        tunnel,
        remote,
        from: ROUTER,
        reported: mtu,
        mtu,
    }
}

#[test]
fn a_path_mtu_is_published_listed_kept_and_expires() {
    let mut st = state();
    let a = id(&st, "a");
    let g0 = st.snapshots().current().generation();
    // The port carries 1600; tunnel a is configured at 1500 (28 bytes of GRE with a key),
    // b takes the port's 1600.
    assert_eq!(mtu(&st, "a"), (1500, None));
    assert_eq!(mtu(&st, "b"), (1600, None));
    assert_eq!(listed(&st, "a")["path_mtu"], Value::Null);

    let t0 = Instant::now();
    // Two reports for a in one batch, the lower one first: one publication, the lower wins.
    let (outcomes, generation) = st
        .path_mtu_reports(&[report(a, REMOTE_A, 1400), report(a, REMOTE_A, 1450)], t0)
        .unwrap();
    assert_eq!(
        outcomes,
        [
            Outcome::Lowered {
                tunnel: "a".into(),
                was: 1500,
                mtu: 1400,
                reported: 1400,
                from: ROUTER,
            },
            Outcome::Ignored("not below the tunnel's MTU"),
        ]
    );
    assert_eq!(generation, Some(g0 + 1));
    assert_eq!(st.snapshots().current().generation(), g0 + 1);
    assert_eq!(mtu(&st, "a"), (1400, Some(1400)));
    assert_eq!(mtu(&st, "b"), (1600, None), "b is not a's path");
    let hot = *st.snapshots().current().tunnels().hot(a).unwrap();
    assert_eq!(hot.inner_mtu(), 1400 - 28);
    let l = listed(&st, "a");
    assert_eq!(l["mtu"], 1400);
    assert_eq!(l["configured_mtu"], 1500);
    assert_eq!(l["path_mtu"]["mtu"], 1400);
    assert_eq!(l["path_mtu"]["reported"], 1400);
    assert_eq!(l["path_mtu"]["from"], "192.0.2.254");
    let left = l["path_mtu"]["expires_in_s"].as_u64().unwrap();
    assert!((590..=600).contains(&left), "{left} s left");

    // A change elsewhere keeps it.
    st.apply(&[json!({"op": "set_route", "route": {"prefix": "10.9.0.0/16", "tunnel": "b"}})])
        .unwrap();
    assert_eq!(mtu(&st, "a"), (1400, Some(1400)));

    // Nothing is published before the ten minutes are up; at ten minutes, one generation
    // takes a back to its 1500.
    let before = st.snapshots().current().generation();
    let (gone, g) = st
        .expire_path_mtus(t0 + EXPIRY - Duration::from_millis(1))
        .unwrap();
    assert!(gone.is_empty() && g.is_none());
    assert_eq!(st.snapshots().current().generation(), before);
    let (gone, g) = st.expire_path_mtus(t0 + EXPIRY).unwrap();
    assert_eq!(gone, [("a".to_owned(), 1400, 1500)]);
    assert_eq!(g, Some(before + 1));
    assert_eq!(mtu(&st, "a"), (1500, None));
    assert_eq!(listed(&st, "a")["path_mtu"], Value::Null);
    assert!(st.path_mtus().is_empty());
}

#[test]
fn a_changed_tunnel_forgets_its_path_mtu_and_stale_reports_change_nothing() {
    let mut st = state();
    let a = id(&st, "a");
    let t0 = Instant::now();
    st.path_mtu_reports(&[report(a, REMOTE_A, 1400)], t0)
        .unwrap();
    assert_eq!(mtu(&st, "a"), (1400, Some(1400)));
    // a's client router moves to another address: the old path says nothing of the new.
    let mut changed = CONFIG.replace("198.51.100.1\"", "198.51.100.11\"");
    assert_ne!(changed, CONFIG);
    changed.push('\n');
    let path = std::env::temp_dir().join(format!("pmtu-{}.toml", std::process::id()));
    std::fs::write(&path, &changed).unwrap();
    st.apply(&[json!({"op": "apply_config", "path": path.display().to_string()})])
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(mtu(&st, "a"), (1500, None));
    assert!(st.path_mtus().get("a").is_none());
    // A report the workers checked against the old tables (a's old remote), and one
    // about a removed tunnel: nothing is published.
    let g = st.snapshots().current().generation();
    let (outcomes, generation) = st
        .path_mtu_reports(
            &[
                report(a, REMOTE_A, 1300),
                report(TunnelId(42), REMOTE_A, 1300),
            ],
            t0,
        )
        .unwrap();
    assert_eq!(
        outcomes,
        [
            Outcome::Ignored("the tunnel's remote changed"),
            Outcome::Ignored("the tunnel is gone"),
        ]
    );
    assert_eq!(generation, None);
    assert_eq!(st.snapshots().current().generation(), g);
    assert_eq!(mtu(&st, "a"), (1500, None));
}
