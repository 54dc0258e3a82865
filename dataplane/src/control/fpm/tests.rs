//! The FPM path from bytes to tables: frames cut from a stream, translated against the
//! running configuration's host interfaces, applied whole or refused whole, reconciled
//! after a reconnection; and the precedence of zebra's routes beside the configuration's.

use super::netlink::{encode, Nexthop, RouteKind, RTM_DELROUTE, RTM_NEWROUTE};
use super::*;
use crate::lpm::{Ipv4Prefix, Ipv6Prefix};
use crate::tables::Target;
use crate::wire::EthernetAddress;
use pipeline_config::ConfigDocument;
use serde_json::{json, Value};

const LAB: &str = r#"
    [[port]]
    name = "client0"
    device = "0"
    roles = ["client"]
    addresses = ["192.0.2.1"]
    [[port]]
    name = "inet0"
    device = "1"
    roles = ["internet"]
    addresses = ["203.0.113.1"]
    host_interface = true
    [[tunnel]]
    name = "acme"
    mode = "gre"
    key = 100
    local = "192.0.2.1"
    remote = "198.51.100.10"
    port = "client0"
    prefixes = ["10.1.0.0/16", "2001:db8:a::/48"]
    link = "169.254.10.1/31"
    link6 = "fd00:a::1/127"
    [[tunnel]]
    name = "globex"
    mode = "ipip"
    local = "192.0.2.1"
    remote = "198.51.100.20"
    port = "client0"
    prefixes = ["10.2.0.0/16", "2001:db8:b::/48"]
    link = "169.254.20.1/31"
    link6 = "fd00:b::1/127"
    [[route]]
    prefix = "10.50.0.0/16"
    blackhole = true
    [[route]]
    prefix = "2001:db8:50::/48"
    blackhole = true
"#;

/// Interface indexes as a kernel would give them.
const ACME: u32 = 7;
const GLOBEX: u32 = 8;
const INET0: u32 = 9;
const ETH0: u32 = 2;

fn state() -> Mutex<ControlState> {
    let (doc, cfg) = ConfigDocument::parse(LAB, "lab.toml").unwrap();
    let ports = vec![
        (0, EthernetAddress([2, 0, 0, 0, 0, 1])),
        (1, EthernetAddress([2, 0, 0, 0, 0, 2])),
    ];
    Mutex::new(ControlState::new(doc, cfg, ports).unwrap())
}

fn interfaces() -> HashMap<u32, String> {
    [
        (ACME, "bb-acme"),
        (GLOBEX, "bb-globex"),
        (INET0, "bb-inet0"),
        (ETH0, "eth0"),
    ]
    .into_iter()
    .map(|(i, n)| (i, n.to_owned()))
    .collect()
}

fn p(s: &str) -> Ipv4Prefix {
    s.parse().unwrap()
}

fn via(ifindex: u32, gateway: Option<&str>) -> RouteKind {
    RouteKind::Unicast(vec![Nexthop {
        ifindex: Some(ifindex),
        gateway: gateway.map(|g| g.parse().unwrap()),
    }])
}

fn add(prefix: &str, kind: RouteKind) -> Vec<u8> {
    encode::route(RTM_NEWROUTE, p(prefix), 186, &kind)
}

fn del(prefix: &str) -> Vec<u8> {
    encode::route(RTM_DELROUTE, p(prefix), 186, &RouteKind::Unicast(vec![]))
}

/// The frames of a byte stream.
fn frames(stream: &[u8]) -> Vec<Frame> {
    let mut f = Framer::default();
    f.push(stream);
    let mut out = Vec::new();
    while let Some(frame) = f.next_frame().unwrap() {
        out.push(frame);
    }
    assert_eq!(f.pending(), 0);
    out
}

/// Where the running snapshot sends `dst`: a tunnel's name, `port N`, or the drop kind.
fn goes(st: &Mutex<ControlState>, dst: &str) -> String {
    let st = st.lock().unwrap();
    let snap = st.snapshots().current();
    match snap
        .routes()
        .lookup(dst.parse().unwrap())
        .map(|nh| snap.target(nh))
    {
        None => "none".into(),
        Some(Target::Tunnel(id)) => snap.tunnels().get(id).unwrap().config.name.clone(),
        Some(Target::Native { port, .. }) => format!("port {port}"),
        Some(other) => format!("{other:?}"),
    }
}

fn generation(st: &Mutex<ControlState>) -> u64 {
    st.lock().unwrap().snapshots().current().generation()
}

fn frr_routes(st: &Mutex<ControlState>) -> Vec<Value> {
    st.lock().unwrap().list_dynamic_routes()
}

#[test]
fn frames_are_cut_from_a_stream_however_it_arrives() {
    let stream = [
        encode::frame(&[add("10.9.0.0/16", via(ACME, None))]),
        encode::frame(&[del("10.9.0.0/16"), add("10.9.0.0/16", via(GLOBEX, None))]),
    ]
    .concat();
    for cut in [1, 3, 4, 5, 40, stream.len() - 1] {
        let mut f = Framer::default();
        f.push(&stream[..cut]);
        let mut got = Vec::new();
        while let Some(frame) = f.next_frame().unwrap() {
            got.push(frame);
        }
        f.push(&stream[cut..]);
        while let Some(frame) = f.next_frame().unwrap() {
            got.push(frame);
        }
        assert_eq!(got, frames(&stream), "cut at {cut}");
        assert_eq!(got.len(), 2);
    }
    // A frame that is not netlink is refused, and the next one still found.
    let mut odd = vec![1, 2, 0, 6, 0xaa, 0xbb];
    odd.extend(encode::frame(&[del("10.9.0.0/16")]));
    let got = frames(&odd);
    assert_eq!(got[0], Err(FrameError::Type(2)));
    assert!(got[1].is_ok());
    // A header that loses the stream.
    let mut f = Framer::default();
    f.push(&[2, 1, 0, 8, 0, 0, 0, 0]);
    assert!(f.next_frame().is_err());
}

#[test]
fn an_update_moves_a_route_in_one_publication() {
    let st = state();
    let c = FpmCounters::default();
    let mut ifs = interfaces();
    let g0 = generation(&st);
    let g1 = apply(
        &st,
        frames(&encode::frame(&[add(
            "10.9.0.0/16",
            via(ACME, Some("169.254.10.0")),
        )])),
        &mut ifs,
        &c,
    );
    assert_eq!(g1, Some(g0 + 1));
    assert_eq!(goes(&st, "10.9.1.1"), "acme");
    // zebra moves it: a removal and an addition in one frame, one new generation.
    let g2 = apply(
        &st,
        frames(&encode::frame(&[
            del("10.9.0.0/16"),
            add("10.9.0.0/16", via(GLOBEX, None)),
        ])),
        &mut ifs,
        &c,
    );
    assert_eq!(g2, Some(g0 + 2));
    assert_eq!(goes(&st, "10.9.1.1"), "globex");
    let routes = frr_routes(&st);
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0]["tunnel"], "globex");
    assert_eq!(routes[0]["source"], "frr");
    assert_eq!(routes[0]["protocol"], "bgp");
    assert_eq!(routes[0]["active"], true);
    assert_eq!(c.routes_added.load(Ordering::Relaxed), 2);
    assert_eq!(c.routes_removed.load(Ordering::Relaxed), 1);
    assert_eq!(c.frames.load(Ordering::Relaxed), 2);
    assert_eq!(c.publications.load(Ordering::Relaxed), 2);
}

#[test]
fn a_port_route_goes_natively_to_its_gateway_and_needs_one() {
    let st = state();
    let c = FpmCounters::default();
    let mut ifs = interfaces();
    apply(
        &st,
        frames(&encode::frame(&[add(
            "0.0.0.0/0",
            via(INET0, Some("203.0.113.254")),
        )])),
        &mut ifs,
        &c,
    );
    assert_eq!(goes(&st, "8.8.8.8"), "port 1");
    let l = st.lock().unwrap().lookup("8.8.8.8".parse().unwrap());
    assert_eq!(l["via"]["next_hop"], "203.0.113.254");
    assert_eq!(l["route"]["source"], "frr");
    // The gateway is a next hop to resolve by ARP.
    assert!(st
        .lock()
        .unwrap()
        .snapshots()
        .current()
        .wants_neighbor(1, "203.0.113.254".parse().unwrap()));
    for (kind, counter) in [
        (via(INET0, None), "bad_next_hop"),
        (via(INET0, Some("224.0.0.1")), "bad_next_hop"),
        (via(INET0, Some("203.0.113.1")), "refused"), // our own address
        (via(ETH0, Some("192.168.1.1")), "unknown_interface"),
        (via(42, Some("192.168.1.1")), "unknown_interface"),
    ] {
        let g = generation(&st);
        let before = c.errors().find(|(k, _)| *k == counter).unwrap().1;
        let applied = apply(
            &st,
            frames(&encode::frame(&[add("10.77.0.0/16", kind.clone())])),
            &mut ifs,
            &c,
        );
        assert_eq!(applied, None, "{kind:?}");
        assert_eq!(generation(&st), g, "{kind:?}: nothing published");
        assert_eq!(
            c.errors().find(|(k, _)| *k == counter).unwrap().1,
            before + 1,
            "{kind:?}"
        );
    }
    assert_eq!(
        goes(&st, "10.77.0.1"),
        "port 1",
        "the default route still decides"
    );
    // The host's own routes (protocol kernel: zebra's connected routes) out of a port's
    // host interface without a gateway, or out of the management interface: left alone.
    let g = generation(&st);
    let connected = |prefix: &str, ifindex| {
        encode::route(
            RTM_NEWROUTE,
            p(prefix),
            netlink::RTPROT_KERNEL,
            &via(ifindex, None),
        )
    };
    apply(
        &st,
        frames(&encode::frame(&[
            connected("203.0.113.0/24", INET0),
            connected("192.168.1.0/24", ETH0),
        ])),
        &mut ifs,
        &c,
    );
    assert_eq!(generation(&st), g);
    assert_eq!(c.routes_ignored.load(Ordering::Relaxed), 2);
    // ... but the one of a tunnel's link goes into the tunnel.
    apply(
        &st,
        frames(&encode::frame(&[connected("169.254.10.0/31", ACME)])),
        &mut ifs,
        &c,
    );
    assert_eq!(goes(&st, "169.254.10.0"), "acme");
}

#[test]
fn a_bad_frame_is_refused_whole_and_the_others_of_its_batch_apply() {
    let st = state();
    let c = FpmCounters::default();
    let mut ifs = interfaces();
    apply(
        &st,
        frames(&encode::frame(&[add("10.9.0.0/16", via(ACME, None))])),
        &mut ifs,
        &c,
    );
    let g = generation(&st);
    let stream = [
        encode::frame(&[add("10.11.0.0/16", via(ACME, None))]),
        // The move of 10.9/16 to an interface that is not ours: the removal must not
        // apply without the addition.
        encode::frame(&[del("10.9.0.0/16"), add("10.9.0.0/16", via(ETH0, None))]),
        encode::frame(&[add("10.12.0.0/16", via(GLOBEX, None))]),
    ]
    .concat();
    assert_eq!(apply(&st, frames(&stream), &mut ifs, &c), Some(g + 1));
    assert_eq!(
        goes(&st, "10.9.0.1"),
        "acme",
        "the refused frame changed nothing"
    );
    assert_eq!(goes(&st, "10.11.0.1"), "acme");
    assert_eq!(goes(&st, "10.12.0.1"), "globex");
    assert_eq!(c.frames_refused.load(Ordering::Relaxed), 1);
    // Bytes that are no netlink at all inside a well-framed frame.
    let mut junk = encode::frame(&[add("10.13.0.0/16", via(ACME, None))]);
    junk[4] = 17; // nlmsg_len 17: shorter than what follows
    assert_eq!(apply(&st, frames(&junk), &mut ifs, &c), None);
    assert_eq!(goes(&st, "10.13.0.1"), "none");
    assert_eq!(c.errors().find(|(k, _)| *k == "bad_length").unwrap().1, 1);
}

#[test]
fn zebras_routes_stand_behind_the_tunnels_and_the_configuration() {
    let st = state();
    let c = FpmCounters::default();
    let mut ifs = interfaces();
    // 10.1/16 is acme's own prefix, 10.50/16 a configured blackhole.
    apply(
        &st,
        frames(&encode::frame(&[
            add("10.1.0.0/16", via(GLOBEX, None)),
            add("10.50.0.0/16", via(GLOBEX, None)),
        ])),
        &mut ifs,
        &c,
    );
    assert_eq!(goes(&st, "10.1.0.1"), "acme");
    assert_eq!(goes(&st, "10.50.0.1"), "Blackhole");
    let routes = frr_routes(&st);
    let by = |prefix: &str| {
        routes
            .iter()
            .find(|r| r["prefix"] == prefix)
            .cloned()
            .unwrap()
    };
    assert_eq!(by("10.1.0.0/16")["active"], false);
    assert_eq!(by("10.1.0.0/16")["shadowed_by"], "tunnel");
    assert_eq!(by("10.50.0.0/16")["shadowed_by"], "route");
    // Every route listed once per source, with its distance.
    let all = st.lock().unwrap().list_all_routes();
    let sources: Vec<(String, String, u64)> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["prefix"] == "10.50.0.0/16" || r["prefix"] == "10.1.0.0/16")
        .map(|r| {
            (
                r["prefix"].as_str().unwrap().to_owned(),
                r["source"].as_str().unwrap().to_owned(),
                r["distance"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sources,
        [
            ("10.1.0.0/16".to_owned(), "tunnel".to_owned(), 0),
            ("10.1.0.0/16".to_owned(), "frr".to_owned(), 20),
            ("10.50.0.0/16".to_owned(), "file".to_owned(), 1),
            ("10.50.0.0/16".to_owned(), "frr".to_owned(), 20),
        ]
    );
    // The configured route goes: zebra's takes over, in the same publication.
    st.lock()
        .unwrap()
        .apply(&[json!({"op": "remove_route", "prefix": "10.50.0.0/16"})])
        .unwrap();
    assert_eq!(goes(&st, "10.50.0.1"), "globex");
    // A configured route comes back in front of it.
    st.lock()
        .unwrap()
        .apply(&[json!({"op": "set_route", "route": {"prefix": "10.50.0.0/16", "prohibit": true}})])
        .unwrap();
    assert_eq!(goes(&st, "10.50.0.1"), "Prohibit");
}

#[test]
fn a_tunnel_that_goes_takes_zebras_routes_into_it_along() {
    let st = state();
    let c = FpmCounters::default();
    let mut ifs = interfaces();
    apply(
        &st,
        frames(&encode::frame(&[
            add("10.9.0.0/16", via(GLOBEX, None)),
            add("10.10.0.0/16", via(ACME, None)),
        ])),
        &mut ifs,
        &c,
    );
    st.lock()
        .unwrap()
        .apply(&[json!({"op": "remove_tunnel", "name": "globex"})])
        .unwrap();
    assert_eq!(goes(&st, "10.9.0.1"), "none");
    assert_eq!(goes(&st, "10.10.0.1"), "acme");
    assert_eq!(frr_routes(&st).len(), 1);
    // zebra's removal when it notices comes to nothing, and is counted as such.
    apply(
        &st,
        frames(&encode::frame(&[del("10.9.0.0/16")])),
        &mut ifs,
        &c,
    );
    assert_eq!(c.removals_unknown.load(Ordering::Relaxed), 1);
}

#[test]
fn a_route_that_would_carry_a_remote_into_a_tunnel_is_refused() {
    let st = state();
    let c = FpmCounters::default();
    let mut ifs = interfaces();
    let g = generation(&st);
    // 198.51.100.0/24 holds acme's and globex's remotes.
    assert_eq!(
        apply(
            &st,
            frames(&encode::frame(&[add("198.51.100.0/24", via(ACME, None))])),
            &mut ifs,
            &c,
        ),
        None
    );
    assert_eq!(generation(&st), g);
    assert_eq!(c.errors().find(|(k, _)| *k == "refused").unwrap().1, 1);
}

#[test]
fn after_a_reconnection_what_zebra_does_not_send_again_goes() {
    let st = state();
    let c = FpmCounters::default();
    let mut ifs = interfaces();
    st.lock().unwrap().begin_dynamic_epoch();
    apply(
        &st,
        frames(
            &[
                encode::frame(&[add("10.9.0.0/16", via(ACME, None))]),
                encode::frame(&[add("10.10.0.0/16", via(ACME, None))]),
            ]
            .concat(),
        ),
        &mut ifs,
        &c,
    );
    // zebra restarts: both stay and forward; it sends one of them again.
    st.lock().unwrap().begin_dynamic_epoch();
    assert_eq!(st.lock().unwrap().dynamic_counts(), (2, 2));
    assert_eq!(goes(&st, "10.10.0.1"), "acme");
    apply(
        &st,
        frames(&encode::frame(&[add("10.9.0.0/16", via(GLOBEX, None))])),
        &mut ifs,
        &c,
    );
    assert_eq!(st.lock().unwrap().dynamic_counts(), (2, 1));
    let stale: Vec<Value> = frr_routes(&st)
        .into_iter()
        .filter(|r| r["stale"] == true)
        .collect();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0]["prefix"], "10.10.0.0/16");
    let (n, g) = st.lock().unwrap().remove_stale_dynamic();
    assert_eq!(n, 1);
    assert!(g.is_some());
    assert_eq!(goes(&st, "10.9.0.1"), "globex");
    assert_eq!(goes(&st, "10.10.0.1"), "none");
    assert_eq!(st.lock().unwrap().remove_stale_dynamic(), (0, None));
}

#[test]
fn the_listener_serves_one_connection_at_a_time_and_reconciles() {
    use std::io::Write;
    let st = state();
    let c = FpmCounters::default();
    let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = AtomicBool::new(false);
    let wait = |what: &str, cond: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !cond() {
            assert!(t.elapsed() < Duration::from_secs(10), "waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    /// Stops the listener when the test ends, a failed assertion included (the scope
    /// would otherwise wait for it for ever, and the failure never show).
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        s.spawn(|| serve(&listener, &st, &c, Duration::from_millis(300), &stop));
        let _stop = StopOnDrop(&stop);
        let mut first = TcpStream::connect(addr).unwrap();
        // Routes via interfaces this host has: loopback stands for bb-<name> here, so
        // these frames are refused as not ours, which is what this test can see.
        first
            .write_all(&encode::frame(&[add("10.9.0.0/16", via(1, None))]))
            .unwrap();
        // The frame is counted, then its refusal: wait for both.
        let refused = || {
            c.errors()
                .find(|(k, _)| *k == "unknown_interface")
                .map_or(0, |e| e.1)
        };
        wait("the frame and its refusal", &|| {
            c.frames.load(Ordering::Relaxed) >= 1 && refused() >= 1
        });
        assert_eq!(c.frames.load(Ordering::Relaxed), 1);
        assert_eq!(refused(), 1);
        assert_eq!(c.connected.load(Ordering::Relaxed), 1);
        // Half a frame, then a second connection: the first is closed, its half frame
        // dropped (whether or not it was read yet).
        let f = encode::frame(&[add("10.9.0.0/16", RouteKind::Blackhole)]);
        first.write_all(&f[..10]).unwrap();
        let mut second = TcpStream::connect(addr).unwrap();
        wait("the second connection", &|| {
            c.connections.load(Ordering::Relaxed) == 2
        });
        // A whole frame, then half of one, then the end of the connection: the whole one
        // applies, the half is dropped (its bytes are read before the end is).
        second
            .write_all(&[f.as_slice(), &f[..10]].concat())
            .unwrap();
        wait("the blackhole", &|| goes(&st, "10.9.0.1") == "Blackhole");
        assert_eq!(c.frames.load(Ordering::Relaxed), 2);
        let cut_before = c.frames_cut.load(Ordering::Relaxed);
        // zebra goes away: the route stays.
        drop(second);
        drop(first);
        wait("the disconnection", &|| {
            c.connected.load(Ordering::Relaxed) == 0
        });
        assert_eq!(c.frames_cut.load(Ordering::Relaxed), cut_before + 1);
        assert_eq!(c.frames.load(Ordering::Relaxed), 2);
        assert_eq!(goes(&st, "10.9.0.1"), "Blackhole");
        // It comes back and sends something else: after the grace period the old route
        // goes, the new one stays.
        let mut third = TcpStream::connect(addr).unwrap();
        third
            .write_all(&encode::frame(&[add(
                "10.10.0.0/16",
                RouteKind::Unreachable,
            )]))
            .unwrap();
        wait("the stale route to go", &|| {
            c.stale_removed.load(Ordering::Relaxed) == 1
        });
        assert_eq!(goes(&st, "10.9.0.1"), "none");
        assert_eq!(goes(&st, "10.10.0.1"), "Unreachable");
    });
}

// IPv6 routes from zebra: the same layers, distances and checks as IPv4's.

fn via6(ifindex: u32, gateway: Option<&str>) -> RouteKind<Ipv6Addr> {
    RouteKind::Unicast(vec![Nexthop {
        ifindex: Some(ifindex),
        gateway: gateway.map(|g| g.parse().unwrap()),
    }])
}

fn add6(prefix: &str, kind: RouteKind<Ipv6Addr>) -> Vec<u8> {
    let p: Ipv6Prefix = prefix.parse().unwrap();
    encode::route6(RTM_NEWROUTE, p, 186, &kind)
}

fn kernel6(prefix: &str, kind: RouteKind<Ipv6Addr>) -> Vec<u8> {
    let p: Ipv6Prefix = prefix.parse().unwrap();
    encode::route6(RTM_NEWROUTE, p, netlink::RTPROT_KERNEL, &kind)
}

fn del6(prefix: &str) -> Vec<u8> {
    let p: Ipv6Prefix = prefix.parse().unwrap();
    encode::route6(RTM_DELROUTE, p, 186, &RouteKind::Unicast(vec![]))
}

/// Where the running snapshot sends the IPv6 destination `dst`, as [`goes`].
fn goes6(st: &Mutex<ControlState>, dst: &str) -> String {
    let st = st.lock().unwrap();
    let snap = st.snapshots().current();
    match snap
        .routes6()
        .lookup(dst.parse().unwrap())
        .map(|nh| snap.target6(nh))
    {
        None => "none".into(),
        Some(Target::Tunnel(id)) => snap.tunnels().get(id).unwrap().config.name.clone(),
        Some(other) => format!("{other:?}"),
    }
}

fn error_count(c: &FpmCounters, kind: &str) -> u64 {
    c.errors().find(|(k, _)| *k == kind).unwrap().1
}

#[test]
fn ipv6_routes_go_into_tunnels_and_move_in_one_publication() {
    let st = state();
    let c = FpmCounters::default();
    let mut ifs = interfaces();
    let g0 = generation(&st);
    // BGP's IPv6 next hop on the tunnel link is often link-local: not needed, as for IPv4.
    let g1 = apply(
        &st,
        frames(&encode::frame(&[add6(
            "2001:db8:9::/48",
            via6(ACME, Some("fe80::1")),
        )])),
        &mut ifs,
        &c,
    );
    assert_eq!(g1, Some(g0 + 1));
    assert_eq!(goes6(&st, "2001:db8:9:1::1"), "acme");
    assert_eq!(goes6(&st, "2001:db8:10::1"), "none");
    // An update: removal and addition in one frame, one generation, never missing.
    let g2 = apply(
        &st,
        frames(&encode::frame(&[
            del6("2001:db8:9::/48"),
            add6("2001:db8:9::/48", via6(GLOBEX, None)),
        ])),
        &mut ifs,
        &c,
    );
    assert_eq!(g2, Some(g0 + 2));
    assert_eq!(goes6(&st, "2001:db8:9:1::1"), "globex");
    let routes = frr_routes(&st);
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0]["prefix"], "2001:db8:9::/48");
    assert_eq!(routes[0]["tunnel"], "globex");
    assert_eq!(routes[0]["source"], "frr");
    assert_eq!(routes[0]["protocol"], "bgp");
    assert_eq!(routes[0]["distance"], 20);
    assert_eq!(routes[0]["active"], true);
    let l = st
        .lock()
        .unwrap()
        .lookup6("2001:db8:9:1::1".parse().unwrap());
    assert_eq!(l["via"]["tunnel"], "globex");
    assert_eq!(l["route"]["source"], "frr");
    assert_eq!(l["route"]["protocol"], "bgp");
    assert_eq!(c.routes_added.load(Ordering::Relaxed), 2);
    assert_eq!(c.routes_removed.load(Ordering::Relaxed), 1);
    // Drops: blackhole, unreachable and prohibit routes, IPv4's kinds.
    apply(
        &st,
        frames(&encode::frame(&[
            add6("2001:db8:60::/48", RouteKind::Blackhole),
            add6("2001:db8:61::/48", RouteKind::Unreachable),
            add6("2001:db8:62::/48", RouteKind::Prohibit),
        ])),
        &mut ifs,
        &c,
    );
    assert_eq!(goes6(&st, "2001:db8:60::1"), "Blackhole");
    assert_eq!(goes6(&st, "2001:db8:61::1"), "Unreachable");
    assert_eq!(goes6(&st, "2001:db8:62::1"), "Prohibit");
    // IPv4 and IPv6 in one frame apply together.
    apply(
        &st,
        frames(&encode::frame(&[
            add("10.9.0.0/16", via(ACME, None)),
            add6("2001:db8:63::/48", via6(ACME, None)),
        ])),
        &mut ifs,
        &c,
    );
    assert_eq!(goes(&st, "10.9.0.1"), "acme");
    assert_eq!(goes6(&st, "2001:db8:63::1"), "acme");
}

#[test]
fn zebras_ipv6_routes_stand_behind_the_tunnels_and_the_configuration() {
    let st = state();
    let c = FpmCounters::default();
    let mut ifs = interfaces();
    // 2001:db8:a::/48 is acme's own prefix, 2001:db8:50::/48 a configured blackhole: the
    // tunnel (distance 0) and the configuration (1) win over zebra (20).
    apply(
        &st,
        frames(&encode::frame(&[
            add6("2001:db8:a::/48", via6(GLOBEX, None)),
            add6("2001:db8:50::/48", via6(GLOBEX, None)),
        ])),
        &mut ifs,
        &c,
    );
    assert_eq!(c.frames_refused.load(Ordering::Relaxed), 0);
    assert_eq!(goes6(&st, "2001:db8:a::1"), "acme");
    assert_eq!(goes6(&st, "2001:db8:50::1"), "Blackhole");
    let routes = frr_routes(&st);
    let by = |prefix: &str| routes.iter().find(|r| r["prefix"] == prefix).unwrap();
    assert_eq!(by("2001:db8:a::/48")["active"], false);
    assert_eq!(by("2001:db8:a::/48")["shadowed_by"], "tunnel");
    assert_eq!(by("2001:db8:50::/48")["shadowed_by"], "route");
    // A longer prefix from zebra inside a tunnel's prefix is the longest match.
    apply(
        &st,
        frames(&encode::frame(&[add6(
            "2001:db8:a:1::/64",
            via6(GLOBEX, None),
        )])),
        &mut ifs,
        &c,
    );
    assert_eq!(goes6(&st, "2001:db8:a:1::1"), "globex");
    assert_eq!(goes6(&st, "2001:db8:a:2::1"), "acme");
    // The configured route goes: zebra's takes over.
    st.lock()
        .unwrap()
        .apply(&[json!({"op": "remove_route", "prefix": "2001:db8:50::/48"})])
        .unwrap();
    assert_eq!(goes6(&st, "2001:db8:50::1"), "globex");
}

#[test]
fn ipv6_routes_the_appliance_cannot_carry_refuse_their_frame_whole() {
    let st = state();
    let c = FpmCounters::default();
    let mut ifs = interfaces();
    apply(
        &st,
        frames(&encode::frame(&[add6("2001:db8:9::/48", via6(ACME, None))])),
        &mut ifs,
        &c,
    );
    // Each frame moves 2001:db8:9::/48 to globex and adds one route that cannot be: the
    // move must not apply without it.
    for (bad, counter) in [
        // Out of a port: zebra's IPv6 routes do not go natively out of ports yet.
        (
            add6("::/0", via6(INET0, Some("2001:db8:ffff::1"))),
            "unsupported",
        ),
        (add6("::/0", via6(INET0, None)), "unsupported"),
        // Out of an interface that is no tunnel's or port's, or one the host has not.
        (
            add6("2001:db8:77::/48", via6(ETH0, Some("fe80::9"))),
            "unknown_interface",
        ),
        (
            add6("2001:db8:77::/48", via6(42, None)),
            "unknown_interface",
        ),
        // Link-local and multicast destinations are never routed.
        (add6("fe80::/64", via6(ACME, None)), "bad_prefix"),
        (add6("ff0e::/16", via6(ACME, None)), "bad_prefix"),
    ] {
        let g = generation(&st);
        let before = error_count(&c, counter);
        let refused = c.frames_refused.load(Ordering::Relaxed);
        let applied = apply(
            &st,
            frames(&encode::frame(&[
                del6("2001:db8:9::/48"),
                add6("2001:db8:9::/48", via6(GLOBEX, None)),
                bad,
            ])),
            &mut ifs,
            &c,
        );
        assert_eq!(applied, None, "{counter}");
        assert_eq!(generation(&st), g, "{counter}: nothing published");
        assert_eq!(error_count(&c, counter), before + 1, "{counter}");
        assert_eq!(c.frames_refused.load(Ordering::Relaxed), refused + 1);
        assert_eq!(
            goes6(&st, "2001:db8:9::1"),
            "acme",
            "{counter}: half applied"
        );
    }
    assert_eq!(goes6(&st, "2001:db8:77::1"), "none");
    // The host's own routes (protocol kernel): its link-local and multicast routes, and
    // those out of interfaces not the dataplane's, are left alone and counted.
    let g = generation(&st);
    let ignored = c.routes_ignored.load(Ordering::Relaxed);
    apply(
        &st,
        frames(&encode::frame(&[
            kernel6("fe80::/64", via6(ACME, None)),
            kernel6("ff00::/8", via6(GLOBEX, None)),
            kernel6("2001:db8:eeee::/64", via6(ETH0, None)),
            kernel6("2001:db8:eeef::/64", via6(INET0, None)),
        ])),
        &mut ifs,
        &c,
    );
    assert_eq!(generation(&st), g);
    assert_eq!(c.routes_ignored.load(Ordering::Relaxed), ignored + 4);
    assert_eq!(c.frames_refused.load(Ordering::Relaxed), 6);
}

#[test]
fn zebras_ipv6_routes_go_with_their_tunnel_and_when_not_sent_again() {
    let st = state();
    let c = FpmCounters::default();
    let mut ifs = interfaces();
    st.lock().unwrap().begin_dynamic_epoch();
    apply(
        &st,
        frames(&encode::frame(&[
            add6("2001:db8:9::/48", via6(GLOBEX, None)),
            add6("2001:db8:10::/48", via6(ACME, None)),
            add6("2001:db8:11::/48", via6(ACME, None)),
        ])),
        &mut ifs,
        &c,
    );
    st.lock()
        .unwrap()
        .apply(&[json!({"op": "remove_tunnel", "name": "globex"})])
        .unwrap();
    assert_eq!(goes6(&st, "2001:db8:9::1"), "none");
    assert_eq!(goes6(&st, "2001:db8:10::1"), "acme");
    assert_eq!(frr_routes(&st).len(), 2);
    // zebra reconnects and sends one of the two again: the other goes after the grace.
    st.lock().unwrap().begin_dynamic_epoch();
    apply(
        &st,
        frames(&encode::frame(&[add6(
            "2001:db8:10::/48",
            via6(ACME, None),
        )])),
        &mut ifs,
        &c,
    );
    assert_eq!(st.lock().unwrap().dynamic_counts(), (2, 1));
    let (n, g) = st.lock().unwrap().remove_stale_dynamic();
    assert_eq!((n, g.is_some()), (1, true));
    assert_eq!(goes6(&st, "2001:db8:10::1"), "acme");
    assert_eq!(goes6(&st, "2001:db8:11::1"), "none");
}
