//! Every file in examples/ loads and validates.

use pipeline_config::{load, Role, RouteTarget, TunnelMode};
use std::path::Path;

#[test]
fn every_example_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let config = load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!config.ports.is_empty(), "{}", path.display());
            assert!(!config.summary().is_empty());
            seen += 1;
        }
    }
    assert!(
        seen >= 2,
        "expected lab.toml and minimal.toml in {}",
        dir.display()
    );
}

#[test]
fn lab_example_has_what_it_promises() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/lab.toml");
    let c = load(&path).unwrap();
    assert_eq!(c.ports.len(), 2);
    assert!(c.ports[0].has_role(Role::Client) && !c.ports[0].transit);
    assert!(c.ports[1].has_role(Role::Internet) && c.ports[1].transit);
    assert_eq!(c.tunnels.len(), 3);
    let b = &c.tunnels[1];
    assert_eq!(
        (b.mode, b.key, b.sequence, b.checksum),
        (TunnelMode::Gre, Some(200), true, true)
    );
    assert_eq!(c.tunnels[2].mode, TunnelMode::Ipip);
    assert!(c.routes.iter().any(|r| r.prefix.prefix_len() == 0
        && matches!(&r.target, RouteTarget::Port { port, .. } if port.index == 1)));
    assert_eq!(c.worker_lcores, Some(vec![1]));
}

#[test]
fn the_annotated_example_in_config_md_validates() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("CONFIG.md")).unwrap();
    let start = doc.find("```toml\n").expect("a toml block in CONFIG.md") + "```toml\n".len();
    let len = doc[start..].find("```").unwrap();
    let config = pipeline_config::parse(&doc[start..start + len], "CONFIG.md")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (
            config.ports.len(),
            config.tunnels.len(),
            config.routes.len()
        ),
        (2, 2, 3)
    );
    assert_eq!((config.icmp.rate, config.icmp.burst), (1000, 50));
}

/// CONFIG.md's example of a tunnel with IPv6 endpoints validates as it is written.
#[test]
fn the_ipv6_endpoints_example_in_config_md_validates() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("CONFIG.md")).unwrap();
    let section = doc
        .find("#### Tunnels with IPv6 endpoints")
        .expect("the section in CONFIG.md");
    let start = section + doc[section..].find("```toml\n").unwrap() + "```toml\n".len();
    let len = doc[start..].find("```").unwrap();
    let config = pipeline_config::parse(&doc[start..start + len], "CONFIG.md")
        .unwrap_or_else(|e| panic!("{e}"));
    let o = config.tunnels[0].outer6.expect("IPv6 endpoints");
    assert_eq!(o.remote.to_string(), "2001:db8:b::20");
    assert_eq!(o.next_hop.to_string(), "2001:db8:a::fe");
    // 1500 - 40 (IPv6) - 8 (GRE with a key).
    assert_eq!(config.tunnels[0].inner_mtu(), 1452);
}
