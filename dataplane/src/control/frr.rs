//! The edge's FRR configuration, written from ours (`backbone frr-config`): one eBGP
//! session with each client router that has an `asn`, inside its tunnel (between the two
//! sides of the tunnel's link, through the host interface `bb-<tunnel>`), with BFD; what
//! each client may announce (its own `prefixes`, and more-specifics of them down to
//! `[bgp] max_prefix_len`), and what every client hears (every client's prefixes: so a
//! client learns every other client, and a new one, without anyone touching its router);
//! the clients without BGP are announced by the edge itself; zebra hands the routes it
//! selects to the appliance over FPM.
//!
//! The output is a complete `frr.conf` for FRR 8.4 (`service integrated-vtysh-config`),
//! the same for the same configuration: `frr-reload.py` applies the difference to a running
//! FRR.

use pipeline_config::{TunnelConfig, ValidatedConfig};
use std::fmt::Write;
use std::net::SocketAddr;

/// Why no FRR configuration can be written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrrError {
    #[error("the configuration has no [bgp] section: there is no BGP for FRR to run")]
    NoBgp,
}

/// The name of everything generated for one client (prefix list, route map).
fn client_name(t: &TunnelConfig) -> String {
    format!("bb-{}", t.name)
}

/// A prefix-list entry for `net`: itself, and its more-specifics down to `max_len`.
fn entry(net: &ipnet::Ipv4Net, max_len: u8) -> String {
    if max_len > net.prefix_len() {
        format!("{net} le {max_len}")
    } else {
        net.to_string()
    }
}

/// The FRR configuration for the edge `cfg` describes; `fpm` is where the appliance
/// listens for zebra's FPM connection.
pub fn render(cfg: &ValidatedConfig, source: &str, fpm: SocketAddr) -> Result<String, FrrError> {
    let bgp = cfg.bgp.as_ref().ok_or(FrrError::NoBgp)?;
    let mut o = String::new();
    // Writing to a String cannot fail: the results below are ignored on purpose.
    let _ = writeln!(
        o,
        "! The edge's FRR configuration, written by `backbone frr-config` from {source}.\n\
         ! Regenerate it rather than edit it: the appliance's configuration is the source."
    );
    o.push_str("frr version 8.4\nfrr defaults traditional\nhostname backbone\n");
    o.push_str("log syslog informational\nservice integrated-vtysh-config\n!\n");
    let _ = writeln!(
        o,
        "! zebra hands the routes it selects to the appliance (zebra runs with -M dplane_fpm_nl)\n\
         fpm address {} port {}\nno fpm use-next-hop-groups\n!",
        fpm.ip(),
        fpm.port()
    );
    let profile = format!("bb-{}x{}", bgp.bfd_interval_ms, bgp.bfd_multiplier);
    let sessions: Vec<&TunnelConfig> = cfg.tunnels.iter().filter(|t| t.bgp.is_some()).collect();
    if sessions.iter().any(|t| t.bgp.is_some_and(|b| b.bfd)) {
        let _ = writeln!(
            o,
            "bfd\n profile {profile}\n  detect-multiplier {}\n  receive-interval {}\n  \
             transmit-interval {}\n exit\nexit\n!",
            bgp.bfd_multiplier, bgp.bfd_interval_ms, bgp.bfd_interval_ms
        );
    }

    // What each client may announce: its own prefixes and their more-specifics.
    for t in &sessions {
        let name = client_name(t);
        if t.prefixes.is_empty() {
            let _ = writeln!(o, "ip prefix-list {name} seq 5 deny any");
        }
        for (k, p) in t.prefixes.iter().enumerate() {
            let _ = writeln!(
                o,
                "ip prefix-list {name} seq {} permit {}",
                5 * (k + 1),
                entry(p, bgp.max_prefix_len)
            );
        }
    }
    // What every client hears: every client's prefixes, nothing else.
    let all: Vec<_> = cfg.tunnels.iter().flat_map(|t| t.prefixes.iter()).collect();
    if all.is_empty() {
        o.push_str("ip prefix-list bb-clients seq 5 deny any\n");
    }
    for (k, p) in all.iter().enumerate() {
        let _ = writeln!(
            o,
            "ip prefix-list bb-clients seq {} permit {}",
            5 * (k + 1),
            entry(p, bgp.max_prefix_len)
        );
    }
    o.push_str("!\n");
    for t in &sessions {
        let name = client_name(t);
        let _ = writeln!(
            o,
            "route-map {name}-in permit 10\n match ip address prefix-list {name}\nexit\n!"
        );
    }
    o.push_str(
        "route-map bb-clients-out permit 10\n match ip address prefix-list bb-clients\nexit\n!\n",
    );

    let _ = writeln!(o, "router bgp {}", bgp.asn);
    let _ = writeln!(o, " bgp router-id {}", bgp.router_id);
    // The clients without BGP are announced by the edge: their routes are the appliance's
    // own (a tunnel's prefixes), not in zebra's table.
    o.push_str(" no bgp network import-check\n");
    for t in &sessions {
        let Some(b) = t.bgp else { continue };
        let _ = writeln!(o, " neighbor {} remote-as {}", b.peer, b.asn);
        let _ = writeln!(o, " neighbor {} description tunnel {}", b.peer, t.name);
        let _ = writeln!(o, " neighbor {} timers connect 5", b.peer);
        if b.bfd {
            let _ = writeln!(o, " neighbor {} bfd profile {profile}", b.peer);
        }
    }
    o.push_str(" !\n address-family ipv4 unicast\n");
    for t in cfg.tunnels.iter().filter(|t| t.bgp.is_none()) {
        for p in &t.prefixes {
            let _ = writeln!(o, "  network {p}");
        }
    }
    for t in &sessions {
        let Some(b) = t.bgp else { continue };
        let name = client_name(t);
        let _ = writeln!(o, "  neighbor {} activate", b.peer);
        let _ = writeln!(o, "  neighbor {} route-map {name}-in in", b.peer);
        let _ = writeln!(o, "  neighbor {} route-map bb-clients-out out", b.peer);
    }
    o.push_str(" exit-address-family\nexit\n!\nend\n");
    Ok(o)
}
