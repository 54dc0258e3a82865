//! `backbone frr-config`: the FRR configuration written from ours. Each session, filter and
//! announcement is checked against the configuration it comes from, and FRR's own parser
//! (`vtysh --dryrun`) must accept the whole (and refuse a broken copy, so that its
//! acceptance means something).

use dataplane::control::frr::{render, FrrError};
use std::net::SocketAddr;

const CONFIG: &str = r#"
[[port]]
name = "to-a"
device = "net_null0"
roles = ["client"]
addresses = ["172.16.1.1"]

[bgp]
asn = 65000
bfd_interval_ms = 150
bfd_multiplier = 4

[[tunnel]]                       # BGP with BFD
name = "site-a"
mode = "gre"
local = "172.16.1.1"
remote = "172.16.1.2"
key = 100
port = "to-a"
prefixes = ["10.1.0.0/16"]
link = "169.254.1.1/31"
asn = 65001

[[tunnel]]                       # BGP without BFD, a /30 link, a prefix at the limit
name = "site-b"
mode = "gre"
local = "172.16.1.1"
remote = "172.16.1.3"
port = "to-a"
prefixes = ["10.2.0.0/16", "10.22.0.0/24"]
link = "169.254.2.1/30"
asn = 4200000002
bfd = false

[[tunnel]]                       # no BGP: the edge announces it
name = "site-c"
mode = "ipip"
local = "172.16.1.1"
remote = "172.16.1.4"
port = "to-a"
prefixes = ["10.3.0.0/16"]
"#;

fn fpm() -> SocketAddr {
    "127.0.0.1:2620".parse().unwrap()
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().map(str::trim_end).collect()
}

#[test]
fn sessions_filters_and_announcements_follow_the_configuration() {
    let cfg = pipeline_config::parse(CONFIG, "edge.toml").expect("config");
    let text = render(&cfg, "edge.toml", Some(fpm())).expect("rendered");
    let l = lines(&text);
    let has = |line: &str| l.contains(&line);
    // FPM to the appliance, routes with their next hops inline (no next-hop groups).
    // FRR's default port is left out, as zebra's running configuration shows it, so that
    // frr-reload.py does not set it again (and zebra reconnect) at every reload.
    assert!(has("fpm address 127.0.0.1"), "{text}");
    assert!(has("no fpm use-next-hop-groups"));
    // BFD as [bgp] says.
    for want in [
        " profile bb-150x4",
        "  detect-multiplier 4",
        "  receive-interval 150",
        "  transmit-interval 150",
    ] {
        assert!(has(want), "{want:?} in\n{text}");
    }
    assert!(has("router bgp 65000"));
    assert!(has(" bgp router-id 172.16.1.1"), "the first port's address");
    // The sessions: to the other side of each link, with the client's AS.
    assert!(has(" neighbor 169.254.1.0 remote-as 65001"));
    assert!(has(" neighbor 169.254.2.2 remote-as 4200000002"));
    assert!(has(" neighbor 169.254.1.0 bfd profile bb-150x4"));
    assert!(has(" neighbor 169.254.1.0 advertisement-interval 0"));
    bfd_as_frr_shows_it(&text);
    assert!(
        !text.contains("neighbor 169.254.2.2 bfd"),
        "site-b has bfd = false"
    );
    // No session for site-c; its prefix is announced by the edge.
    assert_eq!(text.matches("remote-as").count(), 2);
    assert!(has("  network 10.3.0.0/16"));
    assert!(!text.contains("network 10.1.") && !text.contains("network 10.2."));
    // What each client may announce: its prefixes, more-specifics to /24.
    let list = |name: &str| -> Vec<&str> {
        l.iter()
            .filter_map(|x| x.strip_prefix(&format!("ip prefix-list {name} seq ")))
            .map(|x| x.split_once(' ').expect("seq and rule").1)
            .collect()
    };
    assert_eq!(list("bb-site-a"), ["permit 10.1.0.0/16 le 24"]);
    assert_eq!(
        list("bb-site-b"),
        ["permit 10.2.0.0/16 le 24", "permit 10.22.0.0/24"]
    );
    assert!(list("bb-site-c").is_empty(), "no session, no filter");
    // What every client hears: every client's prefixes.
    assert_eq!(
        list("bb-clients"),
        [
            "permit 10.1.0.0/16 le 24",
            "permit 10.2.0.0/16 le 24",
            "permit 10.22.0.0/24",
            "permit 10.3.0.0/16 le 24"
        ]
    );
    for (peer, name) in [("169.254.1.0", "bb-site-a"), ("169.254.2.2", "bb-site-b")] {
        assert!(has(&format!("  neighbor {peer} route-map {name}-in in")));
        assert!(has(&format!(
            "  neighbor {peer} route-map bb-clients-out out"
        )));
        assert!(has(&format!("  neighbor {peer} activate")));
        assert!(has(&format!(
            "  neighbor {peer} soft-reconfiguration inbound"
        )));
    }
    assert!(has("route-map bb-site-a-in permit 10"));
    assert!(has(" match ip address prefix-list bb-site-a"));
    // The same configuration, the same text (frr-reload.py then changes nothing).
    assert_eq!(render(&cfg, "edge.toml", Some(fpm())).unwrap(), text);
}

#[test]
fn zebra_is_told_where_the_appliance_listens_or_nothing() {
    let cfg = pipeline_config::parse(CONFIG, "edge.toml").expect("config");
    let fpm_lines = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("fpm ") || l.starts_with("no fpm "))
            .map(str::to_owned)
            .collect()
    };
    let at = |a: &str| render(&cfg, "edge.toml", Some(a.parse().unwrap())).expect("rendered");
    assert_eq!(
        fpm_lines(&at("127.0.0.2:2700")),
        [
            "fpm address 127.0.0.2 port 2700",
            "no fpm use-next-hop-groups"
        ]
    );
    assert_eq!(
        fpm_lines(&at("[::1]:2620")),
        ["fpm address ::1", "no fpm use-next-hop-groups"]
    );
    // Listening on every address: zebra connects over loopback.
    assert_eq!(
        fpm_lines(&at("0.0.0.0:2620")),
        ["fpm address 127.0.0.1", "no fpm use-next-hop-groups"]
    );
    assert_eq!(
        fpm_lines(&at("[::]:2620")),
        ["fpm address ::1", "no fpm use-next-hop-groups"]
    );
    // No FPM listener: zebra is told no address, and the text says why.
    let text = render(&cfg, "edge.toml", None).expect("rendered");
    assert!(fpm_lines(&text).is_empty(), "{text}");
    assert!(text.contains("! No FPM"), "{text}");
    let (ok, said) = dryrun(&text);
    assert!(ok, "vtysh --dryrun refused it:\n{said}\n{text}");
}

#[test]
fn without_bgp_there_is_nothing_to_write() {
    let text = CONFIG.split("[bgp]").next().expect("the ports").to_owned();
    let cfg = pipeline_config::parse(&text, "edge.toml").expect("config");
    assert_eq!(render(&cfg, "edge.toml", Some(fpm())), Err(FrrError::NoBgp));
}

/// `vtysh --dryrun` on `text`: its exit status and what it said.
fn dryrun(text: &str) -> (bool, String) {
    let dir = backbone_scratch();
    let path = dir.join("frr.conf");
    std::fs::write(&path, text).expect("write");
    let out = std::process::Command::new("vtysh")
        .arg("--dryrun")
        .arg("--inputfile")
        .arg(&path)
        .output()
        .expect("vtysh (FRR; scripts/setup.sh installs it)");
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn backbone_scratch() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "backbone-frr-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

#[test]
fn frr_accepts_what_is_written() {
    let cfg = pipeline_config::parse(CONFIG, "edge.toml").expect("config");
    let text = render(&cfg, "edge.toml", Some(fpm())).expect("rendered");
    let (ok, said) = dryrun(&text);
    assert!(
        ok,
        "vtysh --dryrun refused the configuration:\n{said}\n{text}"
    );
    // The check can fail: a line FRR does not know is refused.
    let broken = text.replace(
        " no bgp network import-check",
        " no bgp network import-check\n neighbor 169.254.1.0 no-such-option 5",
    );
    let (ok, said) = dryrun(&broken);
    assert!(!ok, "vtysh --dryrun took a broken configuration:\n{said}");
}

/// A client site's router with BGP: two edges, the second a backup.
const SITE: &str = r#"
[[port]]
name = "lan0"
device = "net_null0"
roles = ["lan"]
addresses = ["10.5.0.1"]

[[port]]
name = "wan0"
device = "net_null1"
roles = ["internet"]
addresses = ["203.0.113.5"]

[site]
prefixes = ["10.5.0.0/16", "10.55.1.0/24"]

[bgp]
asn = 65005

[fpm]

[[tunnel]]
name = "edge1"
mode = "gre"
local = "203.0.113.5"
remote = "198.51.100.1"
port = "wan0"
next_hop = "203.0.113.254"
prefixes = ["10.0.0.0/8"]
link = "169.254.5.0/31"
asn = 65000

[[tunnel]]
name = "edge2"
mode = "ipip"
local = "203.0.113.5"
remote = "198.51.100.2"
port = "wan0"
next_hop = "203.0.113.254"
link = "169.254.6.0/31"
asn = 65000
backup = "edge1"
"#;

#[test]
fn a_client_site_announces_its_own_and_learns_the_carriers_with_the_backup_last() {
    let cfg = pipeline_config::parse(SITE, "cpe.toml").expect("config");
    let text = render(&cfg, "cpe.toml", Some(fpm())).expect("rendered");
    let l = lines(&text);
    let has = |line: &str| l.contains(&line);
    assert!(has("router bgp 65005"), "{text}");
    assert!(has(" bgp router-id 10.5.0.1"), "the first port's address");
    // An eBGP session with each edge, at the edge's side of the link, with BFD (default
    // 100 ms x 3).
    for peer in ["169.254.5.1", "169.254.6.1"] {
        assert!(has(&format!(" neighbor {peer} remote-as 65000")), "{text}");
        assert!(
            has(&format!(" neighbor {peer} bfd profile bb-100x3")),
            "{text}"
        );
    }
    // The site announces its own prefixes, and only them, to both edges.
    assert!(has("  network 10.5.0.0/16") && has("  network 10.55.1.0/24"));
    assert!(has("ip prefix-list bb-site seq 5 permit 10.5.0.0/16"));
    assert!(has("ip prefix-list bb-site seq 10 permit 10.55.1.0/24"));
    assert!(has("  neighbor 169.254.5.1 route-map bb-edge1-out out"));
    assert!(has("  neighbor 169.254.6.1 route-map bb-edge2-out out"));
    // From each edge: the carrier's space down to /24 (the backup: its primary's), never
    // the site's own (denied first, more-specifics included).
    for t in ["edge1", "edge2"] {
        assert!(has(&format!(
            "ip prefix-list bb-{t} seq 5 deny 10.5.0.0/16 le 32"
        )));
        assert!(has(&format!(
            "ip prefix-list bb-{t} seq 10 deny 10.55.1.0/24 le 32"
        )));
        assert!(has(&format!(
            "ip prefix-list bb-{t} seq 15 permit 10.0.0.0/8 le 24"
        )));
    }
    // The backup's routes lose to the primary's (local preference below the default 100),
    // and the carrier sees the site longer through it.
    let backup_in = text
        .split("route-map bb-edge2-in permit 10")
        .nth(1)
        .and_then(|s| s.split("exit").next())
        .expect("the backup's inbound route map");
    assert!(backup_in.contains("set local-preference 50"), "{backup_in}");
    let primary_in = text
        .split("route-map bb-edge1-in permit 10")
        .nth(1)
        .and_then(|s| s.split("exit").next())
        .expect("the primary's inbound route map");
    assert!(!primary_in.contains("local-preference"), "{primary_in}");
    let backup_out = text
        .split("route-map bb-edge2-out permit 10")
        .nth(1)
        .and_then(|s| s.split("exit").next())
        .expect("the backup's outbound route map");
    assert!(
        backup_out.contains("set as-path prepend 65005 65005"),
        "{backup_out}"
    );
    // Nothing of the edge's role: no client list, no clients announced.
    assert!(!text.contains("bb-clients"), "{text}");
    let (ok, said) = dryrun(&text);
    assert!(
        ok,
        "vtysh --dryrun refused the site's configuration:\n{said}\n{text}"
    );
}

/// CONFIG with a core port, iBGP to two route reflectors from its address, and local
/// preferences on site-a (a session) and site-c (announced by the edge).
fn core_config() -> String {
    CONFIG
        .replace(
            "[bgp]\nasn = 65000\n",
            "[[port]]\nname = \"core0\"\ndevice = \"net_null1\"\nroles = [\"core\"]\n\
             addresses = [\"10.255.0.1\"]\nhost_interface = true\ntransit = true\n\n\
             [bgp]\nasn = 65000\nibgp_peers = [\"10.255.0.254\", \"10.255.0.253\"]\n\
             ibgp_source = \"10.255.0.1\"\n",
        )
        .replace("asn = 65001\n", "asn = 65001\nlocal_pref = 200\n")
        .replace(
            "prefixes = [\"10.3.0.0/16\"]\n",
            "prefixes = [\"10.3.0.0/16\"]\nlocal_pref = 100\n",
        )
}

#[test]
fn ibgp_across_the_core_announces_our_clients_and_hears_the_others() {
    let cfg = pipeline_config::parse(&core_config(), "edge.toml").expect("config");
    let text = render(&cfg, "edge.toml", Some(fpm())).expect("rendered");
    let l = lines(&text);
    let has = |line: &str| l.contains(&line);
    // A session with each reflector, from our core address, which is the next hop the
    // other edges get for our clients.
    for rr in ["10.255.0.254", "10.255.0.253"] {
        for want in [
            format!(" neighbor {rr} remote-as internal"),
            format!(" neighbor {rr} update-source 10.255.0.1"),
            format!(" neighbor {rr} advertisement-interval 0"),
            format!("  neighbor {rr} activate"),
            format!("  neighbor {rr} next-hop-self"),
            format!("  neighbor {rr} send-community large"),
            format!("  neighbor {rr} route-map bb-core-out out"),
        ] {
            assert!(has(&want), "{want:?} in\n{text}");
        }
        assert!(!text.contains(&format!("neighbor {rr} bfd")), "{text}");
    }
    // Every client route this edge takes in or originates carries the backbone's tag
    // (RFC 8092: our AS, 1, 0) and the placement's preference, where it has one.
    let block = |name: &str| -> Vec<&str> {
        let start = l
            .iter()
            .position(|x| *x == format!("route-map {name} permit 10"))
            .unwrap_or_else(|| panic!("no route-map {name} in\n{text}"));
        l[start + 1..]
            .iter()
            .take_while(|x| **x != "exit")
            .copied()
            .collect()
    };
    assert_eq!(
        block("bb-site-a-in"),
        [
            " match ip address prefix-list bb-site-a",
            " set large-community 65000:1:0 additive",
            " set local-preference 200"
        ]
    );
    assert_eq!(
        block("bb-site-b-in"),
        [
            " match ip address prefix-list bb-site-b",
            " set large-community 65000:1:0 additive"
        ]
    );
    assert_eq!(
        block("bb-site-c-net"),
        [
            " set large-community 65000:1:0 additive",
            " set local-preference 100"
        ]
    );
    assert!(
        has("  network 10.3.0.0/16 route-map bb-site-c-net"),
        "{text}"
    );
    assert!(has(
        "bgp large-community-list standard bb-client-routes permit 65000:1:0"
    ));
    // To the core: our own clients' routes only, tagged; to the clients: ours, and what
    // the other edges tagged.
    assert_eq!(
        block("bb-core-out"),
        [
            " match ip address prefix-list bb-clients",
            " match large-community bb-client-routes"
        ]
    );
    let start = l
        .iter()
        .position(|x| *x == "route-map bb-clients-out permit 20")
        .expect("clause 20");
    assert_eq!(l[start + 1], " match large-community bb-client-routes");
    let (ok, said) = dryrun(&text);
    assert!(ok, "vtysh --dryrun refused it:\n{said}\n{text}");
    // Without ibgp_peers: none of it.
    let plain = pipeline_config::parse(CONFIG, "edge.toml").expect("config");
    let plain = render(&plain, "edge.toml", Some(fpm())).expect("rendered");
    for absent in [
        "large-community",
        "bb-core-out",
        "remote-as internal",
        "-net",
    ] {
        assert!(!plain.contains(absent), "{absent} in\n{plain}");
    }
}

#[test]
fn ibgp_bfd_puts_the_reflector_sessions_under_bfd() {
    // The reflector sessions get BFD with [bgp]'s timers (CONFIG: 150 ms, 4).
    let text = core_config().replace(
        "ibgp_source = \"10.255.0.1\"\n",
        "ibgp_source = \"10.255.0.1\"\nibgp_bfd = true\n",
    );
    let cfg = pipeline_config::parse(&text, "edge.toml").expect("config");
    let out = render(&cfg, "edge.toml", Some(fpm())).expect("rendered");
    let l = lines(&out);
    for rr in ["10.255.0.254", "10.255.0.253"] {
        let want = format!(" neighbor {rr} bfd profile bb-150x4");
        assert!(l.contains(&want.as_str()), "{want:?} in\n{out}");
    }
    let start = l
        .iter()
        .position(|x| *x == " profile bb-150x4")
        .unwrap_or_else(|| panic!("no BFD profile in\n{out}"));
    assert_eq!(
        &l[start + 1..start + 4],
        [
            "  detect-multiplier 4",
            "  receive-interval 150",
            "  transmit-interval 150"
        ]
    );
    bfd_as_frr_shows_it(&out);
    let (ok, said) = dryrun(&out);
    assert!(ok, "vtysh --dryrun refused it:\n{said}\n{out}");
}

/// Every session under a BFD profile also has the line FRR's running configuration shows
/// for it, ` neighbor PEER bfd` (right after the profile's). `frr-reload.py` diffs the file
/// against the running configuration line by line, and a missing `neighbor PEER bfd` line
/// makes it run `no neighbor PEER bfd`, which takes the session's BFD down and the BGP
/// session with it, on every reload.
fn bfd_as_frr_shows_it(text: &str) {
    let l = lines(text);
    let mut profiles = 0;
    for (i, line) in l.iter().enumerate() {
        let Some((peer, _)) = line
            .strip_prefix(" neighbor ")
            .and_then(|r| r.split_once(" bfd profile "))
        else {
            continue;
        };
        profiles += 1;
        let want = format!(" neighbor {peer} bfd");
        assert!(
            l.get(i + 1) == Some(&want.as_str()),
            "{want:?} after {line:?} in\n{text}"
        );
    }
    assert!(profiles > 0, "no session under BFD in\n{text}");
}

/// CONFIG with IPv6 prefixes for site-a (a session) and site-c (announced by the edge);
/// site-b's session stays IPv4 only.
fn dual_stack_config() -> String {
    CONFIG
        .replace(
            "prefixes = [\"10.1.0.0/16\"]\n",
            "prefixes = [\"10.1.0.0/16\", \"2001:db8:a::/48\", \"2001:db8:a00::/40\"]\n\
             link6 = \"fd00:a::1/127\"\n",
        )
        .replace(
            "prefixes = [\"10.3.0.0/16\"]\n",
            "prefixes = [\"10.3.0.0/16\", \"2001:db8:c::/48\"]\nlink6 = \"fd00:c::1/127\"\n",
        )
}

#[test]
fn sessions_of_clients_with_ipv6_prefixes_carry_ipv6_unicast() {
    let cfg = pipeline_config::parse(&dual_stack_config(), "edge.toml").expect("config");
    let text = render(&cfg, "edge.toml", Some(fpm())).expect("rendered");
    let l = lines(&text);
    let list6 = |name: &str| -> Vec<&str> {
        l.iter()
            .filter_map(|x| x.strip_prefix(&format!("ipv6 prefix-list {name} seq ")))
            .map(|x| x.split_once(' ').expect("seq and rule").1)
            .collect()
    };
    // What site-a may announce in IPv6: its IPv6 prefixes, more-specifics to /48 (RFC 7454
    // 6.1.3); a /48 is taken as it is.
    assert_eq!(
        list6("bb-site-a"),
        ["permit 2001:db8:a::/48", "permit 2001:db8:a00::/40 le 48"],
        "{text}"
    );
    assert!(list6("bb-site-b").is_empty(), "site-b has no IPv6 prefix");
    // What the IPv6 sessions hear: every client's IPv6 prefixes.
    assert_eq!(
        list6("bb-clients"),
        [
            "permit 2001:db8:a::/48",
            "permit 2001:db8:a00::/40 le 48",
            "permit 2001:db8:c::/48"
        ]
    );
    // The IPv6 address family: site-a's session only, its own filters; site-c announced.
    let af = text
        .split(" address-family ipv6 unicast\n")
        .nth(1)
        .and_then(|rest| rest.split(" exit-address-family").next())
        .unwrap_or_else(|| panic!("no IPv6 address family in\n{text}"));
    let af: Vec<&str> = af.lines().collect();
    assert_eq!(
        af,
        [
            "  network 2001:db8:c::/48",
            "  neighbor 169.254.1.0 activate",
            "  neighbor 169.254.1.0 soft-reconfiguration inbound",
            "  neighbor 169.254.1.0 route-map bb-site-a-in6 in",
            "  neighbor 169.254.1.0 route-map bb-clients-out6 out",
        ]
    );
    let block = |head: &str| -> Vec<&str> {
        let at = l
            .iter()
            .position(|x| *x == head)
            .unwrap_or_else(|| panic!("{head} in\n{text}"));
        l[at + 1..]
            .iter()
            .take_while(|x| **x != "exit")
            .copied()
            .collect()
    };
    assert_eq!(
        block("route-map bb-site-a-in6 permit 10"),
        [" match ipv6 address prefix-list bb-site-a"]
    );
    assert_eq!(
        block("route-map bb-clients-out6 permit 10"),
        [" match ipv6 address prefix-list bb-clients"]
    );
    // Nothing of the IPv4 side is lost: every line written without the IPv6 prefixes is
    // still there.
    let v4 = pipeline_config::parse(CONFIG, "edge.toml").expect("config");
    let v4 = render(&v4, "edge.toml", Some(fpm())).expect("rendered");
    for line in v4.lines() {
        assert!(l.contains(&line), "{line:?} lost in\n{text}");
    }
    assert!(
        !v4.contains("ipv6"),
        "an IPv4-only configuration writes no IPv6"
    );
    // FRR's parser takes it.
    let (ok, said) = dryrun(&text);
    assert!(ok, "vtysh --dryrun refused it:\n{said}\n{text}");
    // The check can fail: an option FRR does not know, inside the IPv6 address family.
    let broken = text.replace(
        "  neighbor 169.254.1.0 route-map bb-site-a-in6 in",
        "  neighbor 169.254.1.0 route-map bb-site-a-in6 in\n  neighbor 169.254.1.0 no-such-option",
    );
    assert_ne!(broken, text);
    let (ok, said) = dryrun(&broken);
    assert!(!ok, "vtysh --dryrun took a broken configuration:\n{said}");
}
