//! The client-site role: LAN ports, `[site]`, backup tunnels. Each rejection names the
//! file, the field and the value.

use pipeline_config::{parse, ConfigError, Role};
use std::path::Path;

const ORIGIN: &str = "cpe.toml";

fn example() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cpe.toml");
    std::fs::read_to_string(path).expect("examples/cpe.toml")
}

/// The example with the first `from` replaced by `to`.
fn replaced(from: &str, to: &str) -> String {
    let text = example();
    assert!(text.contains(from), "{from:?} not in the example");
    text.replacen(from, to, 1)
}

#[track_caller]
fn invalid(text: &str, field: &str, value: Option<&str>, problem: &str) {
    let err = parse(text, ORIGIN).expect_err("accepted");
    let message = err.to_string();
    match &err {
        ConfigError::Invalid {
            field: f,
            value: v,
            problem: p,
            ..
        } => {
            assert_eq!(f, field, "{message}");
            assert_eq!(v.as_deref(), value, "{message}");
            assert!(p.contains(problem), "{message:?} lacks {problem:?}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(
        message.starts_with(&format!("{ORIGIN}: {field}")),
        "{message}"
    );
}

#[test]
fn the_example_is_a_client_site_router() {
    let cfg = parse(&example(), ORIGIN).unwrap_or_else(|e| panic!("{e}"));
    let lan = &cfg.ports[0];
    assert_eq!(lan.roles, vec![Role::Lan]);
    assert!(lan.transit, "a LAN port forwards its hosts' packets");
    let site = cfg.site.as_ref().expect("[site]");
    assert_eq!(site.prefixes, vec!["10.5.0.0/16".parse().unwrap()]);
    let (primary, backup) = (&cfg.tunnels[0], &cfg.tunnels[1]);
    assert_eq!(primary.backup, None);
    assert!(
        primary.fallback,
        "an internet port makes fallback the default"
    );
    let of = backup.backup.as_ref().expect("edge2 is a backup");
    assert_eq!((of.index, of.name.as_str()), (0, "edge1"));
    assert!(backup.prefixes.is_empty());
    // `backbone check` says so.
    let summary = cfg.summary();
    for part in [
        "site: a client site's router for 10.5.0.0/16",
        "backup of \"edge1\"",
        "roles lan",
    ] {
        assert!(summary.contains(part), "{summary}\nlacks {part:?}");
    }
}

#[test]
fn a_lan_port_needs_the_site_and_the_site_a_lan_port() {
    let text = example();
    let (head, tail) = text.split_once("[site]").unwrap();
    let (_, rest) = tail.split_once("\n\n").unwrap();
    invalid(
        &format!("{head}{rest}"),
        "port[0] \"lan0\".roles",
        Some("\"lan\""),
        "needs a [site] section",
    );
    invalid(
        &replaced("roles = [\"lan\"]", "roles = [\"client\"]"),
        "site",
        None,
        "give a port the \"lan\" role",
    );
    invalid(
        &replaced("prefixes = [\"10.5.0.0/16\"]", "prefixes = []"),
        "site.prefixes",
        Some("[]"),
        "names no prefix",
    );
    invalid(
        &replaced(
            "prefixes = [\"10.5.0.0/16\"]",
            "prefixes = [\"10.5.0.1/16\"]",
        ),
        "site.prefixes[0]",
        Some("\"10.5.0.1/16\""),
        "host bits",
    );
}

#[test]
fn a_site_prefix_is_never_exactly_a_tunnels_source() {
    invalid(
        &replaced(
            "prefixes = [\"10.5.0.0/16\"]",
            "prefixes = [\"10.0.0.0/8\"]",
        ),
        "site.prefixes[0]",
        Some("10.0.0.0/8"),
        "is also tunnel[0] \"edge1\".prefixes[0]",
    );
}

#[test]
fn a_backup_names_an_earlier_primary_that_can_go_down() {
    invalid(
        &replaced("backup = \"edge1\"", "backup = \"edge9\""),
        "tunnel[1] \"edge2\".backup",
        Some("\"edge9\""),
        "is not a tunnel defined earlier",
    );
    invalid(
        &replaced("backup = \"edge1\"", "backup = \"edge2\""),
        "tunnel[1] \"edge2\".backup",
        Some("\"edge2\""),
        "is not a tunnel defined earlier",
    );
    // The primary cannot go down: nothing would ever move its prefixes.
    invalid(
        &replaced(
            "probe = true                     # in-tunnel",
            "# in-tunnel",
        ),
        "tunnel[1] \"edge2\".backup",
        Some("\"edge1\""),
        "neither probed",
    );
    invalid(
        &replaced(
            "probe = true                     # in-tunnel",
            "probe = true\nfallback = false #",
        ),
        "tunnel[1] \"edge2\".backup",
        Some("\"edge1\""),
        "fallback = false",
    );
    invalid(
        &replaced(
            "backup = \"edge1\"",
            "backup = \"edge1\"\nprefixes = [\"10.9.0.0/16\"]",
        ),
        "tunnel[1] \"edge2\".prefixes[0]",
        Some("10.9.0.0/16"),
        "is set on a backup tunnel",
    );
    // A backup of a backup: name the primary.
    let chain = format!(
        "{}\n[[tunnel]]\nname = \"edge3\"\nmode = \"ipip\"\nlocal = \"203.0.113.5\"\n\
         remote = \"198.51.100.3\"\nport = \"wan0\"\nbackup = \"edge2\"\n",
        example()
    );
    invalid(
        &chain,
        "tunnel[2] \"edge3\".backup",
        Some("\"edge2\""),
        "is itself a backup (of \"edge1\")",
    );
}

#[test]
fn a_primary_found_down_by_bgp_needs_its_routes_over_fpm() {
    let bgp = replaced(
        "probe = true                     # in-tunnel",
        "link = \"169.254.5.0/31\"\nasn = 65000 #",
    ) + "\n[bgp]\nasn = 65005\n";
    invalid(
        &bgp,
        "tunnel[1] \"edge2\".backup",
        Some("\"edge1\""),
        "whose routes reach the appliance ([fpm])",
    );
    let cfg = parse(&format!("{bgp}\n[fpm]\n"), ORIGIN).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.tunnels[0].bgp.is_some() && cfg.tunnels[1].backup.is_some());
}
