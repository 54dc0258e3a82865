//! The edge's FRR configuration, written from ours (`backbone frr-config`): one eBGP
//! session with each client router that has an `asn`, inside its tunnel (between the two
//! sides of the tunnel's link, through the host interface `bb-<tunnel>`), with BFD; what
//! each client may announce (its own `prefixes`, and more-specifics of them down to
//! `[bgp] max_prefix_len`), and what every client hears (every client's prefixes: so a
//! client learns every other client, and a new one, without anyone touching its router);
//! the clients without BGP are announced by the edge itself; zebra hands the routes it
//! selects to the appliance over FPM, where the appliance listens for it (`[fpm]`).
//! With `[bgp] ibgp_peers`, iBGP across the core to the backbone's route reflectors: the
//! edge announces its own clients' routes (tagged with the large community `ASN:1:0`,
//! each tunnel's `local_pref`) with its core address as next hop, and passes the other
//! edges' tagged client routes on to its clients.
//!
//! IPv6: the session with a client whose tunnel has IPv6 `prefixes` carries the IPv6
//! unicast address family too, with the same filters written for IPv6 (the client's own
//! IPv6 prefixes and their more-specifics down to /48, [`MAX_PREFIX_LEN6`]; every client's
//! IPv6 prefixes announced to it), and the edge announces the IPv6 prefixes of clients
//! without a session. Across the core (iBGP) only IPv4 travels: the core forwards IPv4.
//!
//! On a client site's router (`[site]`) it writes the site's side instead: an eBGP session
//! with each edge inside its tunnel, with BFD, announcing the site's own prefixes and
//! learning the carrier's, the backup's session preferred less (see `render_site`).
//!
//! The output is a complete `frr.conf` for FRR 8.4 (`service integrated-vtysh-config`),
//! the same for the same configuration: `frr-reload.py` applies the difference to a running
//! FRR.

use pipeline_config::{TunnelConfig, ValidatedConfig};
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

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

/// zebra's FPM port when `fpm address` names none.
const FRR_FPM_PORT: u16 = 2620;

/// The large community (RFC 8092) every client route of the backbone carries across the
/// core: `ASN:1:0`, our AS number first.
fn client_tag(asn: u32) -> String {
    format!("{asn}:1:0")
}

/// The longest IPv6 prefix a client may announce: more-specifics of its IPv6 prefixes are
/// accepted down to /48, the usual limit between networks (RFC 7454 section 6.1.3).
pub const MAX_PREFIX_LEN6: u8 = 48;

/// A prefix-list entry for `net`: itself, and its more-specifics down to `max_len`.
fn entry<N: std::fmt::Display>(net: &N, prefix_len: u8, max_len: u8) -> String {
    if max_len > prefix_len {
        format!("{net} le {max_len}")
    } else {
        net.to_string()
    }
}

/// [`entry`] for an IPv4 prefix.
fn entry4(net: &ipnet::Ipv4Net, max_len: u8) -> String {
    entry(net, net.prefix_len(), max_len)
}

/// [`entry`] for an IPv6 prefix, down to [`MAX_PREFIX_LEN6`].
fn entry6(net: &ipnet::Ipv6Net) -> String {
    entry(net, net.prefix_len(), MAX_PREFIX_LEN6)
}

/// Where zebra connects for the appliance that listens on `listen`: that address, or
/// loopback where it listens on every address.
fn fpm_target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// The FRR configuration for the edge `cfg` describes; `fpm` is where the appliance
/// listens for zebra's FPM connection (`None`: it does not, and zebra is told nothing).
pub fn render(
    cfg: &ValidatedConfig,
    source: &str,
    fpm: Option<SocketAddr>,
) -> Result<String, FrrError> {
    let bgp = cfg.bgp.as_ref().ok_or(FrrError::NoBgp)?;
    if let Some(site) = &cfg.site {
        return Ok(render_site(cfg, bgp, site, source, fpm));
    }
    let mut o = String::new();
    // Writing to a String cannot fail: the results below are ignored on purpose.
    let _ = writeln!(
        o,
        "! The edge's FRR configuration, written by `backbone frr-config` from {source}.\n\
         ! Regenerate it rather than edit it: the appliance's configuration is the source."
    );
    let profile = format!("bb-{}x{}", bgp.bfd_interval_ms, bgp.bfd_multiplier);
    let sessions: Vec<&TunnelConfig> = cfg.tunnels.iter().filter(|t| t.bgp.is_some()).collect();
    let bfd = sessions.iter().any(|t| t.bgp.is_some_and(|b| b.bfd))
        || (bgp.ibgp_bfd && !bgp.ibgp_peers.is_empty());
    preamble(
        &mut o,
        fpm,
        bfd.then_some((profile.as_str(), bgp.bfd_interval_ms, bgp.bfd_multiplier)),
    );

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
                entry4(p, bgp.max_prefix_len)
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
            entry4(p, bgp.max_prefix_len)
        );
    }
    // The same in IPv6, for the sessions of clients with IPv6 prefixes.
    let sessions6: Vec<&TunnelConfig> = sessions
        .iter()
        .copied()
        .filter(|t| !t.prefixes6.is_empty())
        .collect();
    let all6: Vec<_> = cfg
        .tunnels
        .iter()
        .flat_map(|t| t.prefixes6.iter())
        .collect();
    for t in &sessions6 {
        for (k, p) in t.prefixes6.iter().enumerate() {
            let _ = writeln!(
                o,
                "ipv6 prefix-list {} seq {} permit {}",
                client_name(t),
                5 * (k + 1),
                entry6(p)
            );
        }
    }
    if !sessions6.is_empty() {
        for (k, p) in all6.iter().enumerate() {
            let _ = writeln!(
                o,
                "ipv6 prefix-list bb-clients seq {} permit {}",
                5 * (k + 1),
                entry6(p)
            );
        }
    }
    o.push_str("!\n");
    // Across the core: every client route this edge accepts or originates is tagged, so
    // that the other edges tell the client routes they learn by iBGP from anything else.
    let ibgp = bgp.ibgp_source.filter(|_| !bgp.ibgp_peers.is_empty());
    let tag = client_tag(bgp.asn);
    if ibgp.is_some() {
        let _ = writeln!(
            o,
            "bgp large-community-list standard bb-client-routes permit {tag}\n!"
        );
    }
    let sets = |o: &mut String, t: &TunnelConfig| {
        if ibgp.is_some() {
            let _ = writeln!(o, " set large-community {tag} additive");
        }
        if let Some(lp) = t.local_pref {
            let _ = writeln!(o, " set local-preference {lp}");
        }
    };
    for t in &sessions {
        let name = client_name(t);
        let _ = writeln!(
            o,
            "route-map {name}-in permit 10\n match ip address prefix-list {name}"
        );
        sets(&mut o, t);
        o.push_str("exit\n!\n");
    }
    for t in &sessions6 {
        let name = client_name(t);
        let _ = writeln!(
            o,
            "route-map {name}-in6 permit 10\n match ipv6 address prefix-list {name}"
        );
        sets(&mut o, t);
        o.push_str("exit\n!\n");
    }
    // The prefixes the edge announces for a client without a session.
    let networks: Vec<&TunnelConfig> = cfg
        .tunnels
        .iter()
        .filter(|t| t.bgp.is_none() && !(t.prefixes.is_empty() && t.prefixes6.is_empty()))
        .collect();
    let tagged_networks = ibgp.is_some() || networks.iter().any(|t| t.local_pref.is_some());
    if tagged_networks {
        for t in &networks {
            let _ = writeln!(o, "route-map {}-net permit 10", client_name(t));
            sets(&mut o, t);
            o.push_str("exit\n!\n");
        }
    }
    o.push_str(
        "route-map bb-clients-out permit 10\n match ip address prefix-list bb-clients\nexit\n",
    );
    if !sessions6.is_empty() {
        o.push_str(
            "route-map bb-clients-out6 permit 10\n match ipv6 address prefix-list bb-clients\n\
             exit\n",
        );
    }
    if ibgp.is_some() {
        // The clients of the other edges, learned across the core.
        o.push_str(
            "route-map bb-clients-out permit 20\n match large-community bb-client-routes\nexit\n\
             !\n! What this edge tells the other edges: its own clients' routes.\n\
             route-map bb-core-out permit 10\n match ip address prefix-list bb-clients\n \
             match large-community bb-client-routes\nexit\n",
        );
    }
    o.push_str("!\n");

    // The clients without BGP are announced by the edge: their routes are the appliance's
    // own (a tunnel's prefixes), not in zebra's table.
    router_bgp(&mut o, bgp, &sessions, &profile);
    if let Some(source) = ibgp {
        // No `bgp suppress-fib-pending`: in FRR 8.4 it holds each announcement about a
        // second after zebra installed the route (measured in the edges lab), which a
        // client's move between its edges would then cost twice. Without it, a route
        // reaches the appliance (zebra, then FPM: milliseconds) long before an
        // announcement has crossed a reflector, another edge and a client router.
        for peer in &bgp.ibgp_peers {
            let _ = writeln!(o, " neighbor {peer} remote-as internal");
            let _ = writeln!(o, " neighbor {peer} description core");
            let _ = writeln!(o, " neighbor {peer} update-source {source}");
            let _ = writeln!(o, " neighbor {peer} timers connect 1");
            // A client's move between its edges goes out at once.
            let _ = writeln!(o, " neighbor {peer} advertisement-interval 0");
            // A frozen or cut edge is found down in a second: the reflector withdraws
            // its clients' routes and the other edges route them to their backup edge.
            if bgp.ibgp_bfd {
                neighbor_bfd(&mut o, &peer.to_string(), &profile);
            }
        }
    }
    o.push_str(" !\n address-family ipv4 unicast\n");
    for t in &networks {
        for p in &t.prefixes {
            if tagged_networks {
                let _ = writeln!(o, "  network {p} route-map {}-net", client_name(t));
            } else {
                let _ = writeln!(o, "  network {p}");
            }
        }
    }
    if ibgp.is_some() {
        for peer in &bgp.ibgp_peers {
            let _ = writeln!(o, "  neighbor {peer} activate");
            // The other edges send our clients' traffic to our core address.
            let _ = writeln!(o, "  neighbor {peer} next-hop-self");
            let _ = writeln!(o, "  neighbor {peer} send-community large");
            let _ = writeln!(o, "  neighbor {peer} route-map bb-core-out out");
        }
    }
    activate_sessions(&mut o, &sessions, Some("bb-clients-out"));
    o.push_str(" exit-address-family\n");
    let networks6: Vec<&TunnelConfig> = networks
        .iter()
        .copied()
        .filter(|t| !t.prefixes6.is_empty())
        .collect();
    if !sessions6.is_empty() || !networks6.is_empty() {
        o.push_str(" !\n address-family ipv6 unicast\n");
        for t in &networks6 {
            for p in &t.prefixes6 {
                if tagged_networks {
                    let _ = writeln!(o, "  network {p} route-map {}-net", client_name(t));
                } else {
                    let _ = writeln!(o, "  network {p}");
                }
            }
        }
        for t in &sessions6 {
            let Some(b) = t.bgp else { continue };
            let name = client_name(t);
            let _ = writeln!(o, "  neighbor {} activate", b.peer);
            let _ = writeln!(o, "  neighbor {} soft-reconfiguration inbound", b.peer);
            let _ = writeln!(o, "  neighbor {} route-map {name}-in6 in", b.peer);
            let _ = writeln!(o, "  neighbor {} route-map bb-clients-out6 out", b.peer);
        }
        o.push_str(" exit-address-family\n");
    }
    o.push_str("exit\n!\nend\n");
    Ok(o)
}

/// The local preference of routes learned through a backup tunnel's session: below the
/// default 100 of the primary's, so zebra uses them only while the primary's are gone.
pub const BACKUP_LOCAL_PREFERENCE: u32 = 50;

/// `router bgp` with its router id and one neighbour per tunnel session. Our own prefixes
/// are announced whether or not zebra has them (`no bgp network import-check`): they are
/// the appliance's routes, not zebra's.
fn router_bgp(
    o: &mut String,
    bgp: &pipeline_config::BgpConfig,
    sessions: &[&TunnelConfig],
    profile: &str,
) {
    let _ = writeln!(o, "router bgp {}", bgp.asn);
    let _ = writeln!(o, " bgp router-id {}", bgp.router_id);
    o.push_str(" no bgp network import-check\n");
    for t in sessions {
        let Some(b) = t.bgp else { continue };
        let _ = writeln!(o, " neighbor {} remote-as {}", b.peer, b.asn);
        let _ = writeln!(o, " neighbor {} description tunnel {}", b.peer, t.name);
        // A new session comes up at once (we try every second), and what changes goes out
        // at once (no advertisement interval): a new client is announced to every other
        // within seconds.
        let _ = writeln!(o, " neighbor {} timers connect 1", b.peer);
        let _ = writeln!(o, " neighbor {} advertisement-interval 0", b.peer);
        if b.bfd {
            neighbor_bfd(o, &b.peer.to_string(), profile);
        }
    }
}

/// A session under BFD with `profile`, in the two lines FRR's running configuration shows
/// for it. `frr-reload.py` compares the file with the running configuration line by line:
/// with the profile's line alone it would find `neighbor PEER bfd` missing and remove it
/// (`no neighbor PEER bfd`) on every reload, taking down the BFD session and with it every
/// BGP session, before adding the profile back. The profile's line comes first: a reload
/// that adds the session sends the lines in this order, and the profile's creates the BFD
/// session with its timers at once (the plain line first would start it on FRR's default
/// timers and change them a moment later, which BIRD's BFD, on the other side, has been
/// seen to take down).
fn neighbor_bfd(o: &mut String, peer: &str, profile: &str) {
    let _ = writeln!(
        o,
        " neighbor {peer} bfd profile {profile}\n neighbor {peer} bfd"
    );
}

/// Each session's neighbour lines in `address-family ipv4 unicast`: what it may send us
/// (its own `-in` route map) and what we send it (`out`, or its own `-out` map).
fn activate_sessions(o: &mut String, sessions: &[&TunnelConfig], out: Option<&str>) {
    for t in sessions {
        let Some(b) = t.bgp else { continue };
        let name = client_name(t);
        let _ = writeln!(o, "  neighbor {} activate", b.peer);
        // What the client sent, refused routes included: `show bgp neighbors PEER
        // received-routes` against `routes` shows what the filter kept out.
        let _ = writeln!(o, "  neighbor {} soft-reconfiguration inbound", b.peer);
        let _ = writeln!(o, "  neighbor {} route-map {name}-in in", b.peer);
        match out {
            Some(map) => {
                let _ = writeln!(o, "  neighbor {} route-map {map} out", b.peer);
            }
            None => {
                let _ = writeln!(o, "  neighbor {} route-map {name}-out out", b.peer);
            }
        }
    }
}

/// The preamble both roles share: version, logging, the route-map delay, FPM, BFD profile.
fn preamble(o: &mut String, fpm: Option<SocketAddr>, profile: Option<(&str, u32, u8)>) {
    o.push_str("frr version 8.4\nfrr defaults traditional\nhostname backbone\n");
    o.push_str("log syslog informational\nservice integrated-vtysh-config\n!\n");
    // A new client changes the prefix list every client's outbound route map reads: bgpd
    // applies route-map and prefix-list changes after this delay (5 s by default; 0 would
    // disable the updates altogether).
    o.push_str("bgp route-map delay-timer 1\n!\n");
    match fpm.map(fpm_target) {
        Some(fpm) => {
            // FRR's own port is left out, as zebra shows its running configuration:
            // frr-reload.py would otherwise see the line differ at every reload and set
            // it again, and zebra drops the FPM connection when it is set (its routes
            // stay away from the appliance until it connects again, seconds later).
            let port = if fpm.port() == FRR_FPM_PORT {
                String::new()
            } else {
                format!(" port {}", fpm.port())
            };
            let _ = writeln!(
                o,
                "! zebra hands the routes it selects to the appliance (zebra runs with -M \
                 dplane_fpm_nl)\nfpm address {}{port}\nno fpm use-next-hop-groups\n!",
                fpm.ip(),
            );
        }
        None => o.push_str(
            "! No FPM: the appliance does not listen for zebra ([fpm] in its configuration).\n!\n",
        ),
    }
    if let Some((name, interval, multiplier)) = profile {
        let _ = writeln!(
            o,
            "bfd\n profile {name}\n  detect-multiplier {multiplier}\n  receive-interval \
             {interval}\n  transmit-interval {interval}\n exit\nexit\n!",
        );
    }
}

/// A client site's router: an eBGP session with each edge inside its tunnel, with BFD;
/// the site announces its own `[site] prefixes` and nothing else, and takes from each edge
/// what lies inside the tunnel's `prefixes` (its primary's, for a backup), down to
/// `max_prefix_len`, never the site's own space. Routes through a backup's session get a
/// lower local preference, and what the site announces there is prepended with its AS
/// twice, so that both sides prefer the primary while it is up.
fn render_site(
    cfg: &ValidatedConfig,
    bgp: &pipeline_config::BgpConfig,
    site: &pipeline_config::SiteConfig,
    source: &str,
    fpm: Option<SocketAddr>,
) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "! The client site's FRR configuration, written by `backbone frr-config` from \
         {source}.\n! Regenerate it rather than edit it: the appliance's configuration is the \
         source."
    );
    let profile = format!("bb-{}x{}", bgp.bfd_interval_ms, bgp.bfd_multiplier);
    let sessions: Vec<&TunnelConfig> = cfg.tunnels.iter().filter(|t| t.bgp.is_some()).collect();
    let bfd = sessions.iter().any(|t| t.bgp.is_some_and(|b| b.bfd));
    preamble(
        &mut o,
        fpm,
        bfd.then_some((profile.as_str(), bgp.bfd_interval_ms, bgp.bfd_multiplier)),
    );
    // What the site announces: its own prefixes, exactly.
    for (k, p) in site.prefixes.iter().enumerate() {
        let _ = writeln!(o, "ip prefix-list bb-site seq {} permit {p}", 5 * (k + 1));
    }
    // What each edge may announce: the carrier's space the tunnel carries, not the site's.
    for t in &sessions {
        let name = client_name(t);
        let carried = match &t.backup {
            Some(p) => &cfg.tunnels[p.index].prefixes,
            None => &t.prefixes,
        };
        let mut seq = 5;
        for p in &site.prefixes {
            let _ = writeln!(o, "ip prefix-list {name} seq {seq} deny {}", entry4(p, 32));
            seq += 5;
        }
        if carried.is_empty() {
            let _ = writeln!(o, "ip prefix-list {name} seq {seq} deny any");
        }
        for p in carried {
            let _ = writeln!(
                o,
                "ip prefix-list {name} seq {seq} permit {}",
                entry4(p, bgp.max_prefix_len)
            );
            seq += 5;
        }
    }
    o.push_str("!\n");
    for t in &sessions {
        let name = client_name(t);
        let _ = writeln!(
            o,
            "route-map {name}-in permit 10\n match ip address prefix-list {name}"
        );
        if t.backup.is_some() {
            let _ = writeln!(o, " set local-preference {BACKUP_LOCAL_PREFERENCE}");
        }
        o.push_str("exit\n!\n");
        let _ = writeln!(
            o,
            "route-map {name}-out permit 10\n match ip address prefix-list bb-site"
        );
        if t.backup.is_some() {
            let _ = writeln!(o, " set as-path prepend {0} {0}", bgp.asn);
        }
        o.push_str("exit\n!\n");
    }
    // The site's prefixes are the appliance's own routes (to the LAN), not zebra's.
    router_bgp(&mut o, bgp, &sessions, &profile);
    o.push_str(" !\n address-family ipv4 unicast\n");
    for p in &site.prefixes {
        let _ = writeln!(o, "  network {p}");
    }
    activate_sessions(&mut o, &sessions, None);
    o.push_str(" exit-address-family\nexit\n!\nend\n");
    o
}

/// Keeps FRR's configuration what ours says while the appliance runs: after every change
/// of the tables (a tunnel added or removed through the control API, a reload) it renders
/// the configuration again and, when the text changed, writes `[bgp] frr_config` (a new
/// file renamed over the old one) and runs `[bgp] frr_reload` (`{file}`: that path), on a
/// thread of its own, so that the control thread never waits for FRR. A failed reload is
/// logged and tried again (every 5 s) until one succeeds.
#[derive(Debug)]
pub struct FrrSync {
    to_writer: std::sync::mpsc::Sender<Job>,
    last_generation: Option<u64>,
    last_text: Option<String>,
    next_check: std::time::Instant,
    /// Reloads that succeeded, and that failed (tried again later).
    pub counters: std::sync::Arc<FrrCounters>,
}

/// What the FRR sync counted.
#[derive(Debug, Default)]
pub struct FrrCounters {
    pub writes: std::sync::atomic::AtomicU64,
    pub reloads: std::sync::atomic::AtomicU64,
    pub reload_failures: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct Job {
    text: String,
    path: std::path::PathBuf,
    reload: Option<Vec<String>>,
}

/// How often the tables' generation is looked at.
const CHECK: std::time::Duration = std::time::Duration::from_millis(100);
/// How long after a failed reload the next try comes.
const RETRY: std::time::Duration = std::time::Duration::from_secs(5);

impl FrrSync {
    /// Start the writer thread (it ends when this is dropped).
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let counters = std::sync::Arc::new(FrrCounters::default());
        let c = std::sync::Arc::clone(&counters);
        std::thread::Builder::new()
            .name("backbone-frr".into())
            .spawn(move || writer(&rx, &c))?;
        Ok(FrrSync {
            to_writer: tx,
            last_generation: None,
            last_text: None,
            next_check: std::time::Instant::now(),
            counters,
        })
    }

    /// Look at the tables now and then; hand a changed configuration to the writer. `fpm`:
    /// where the appliance listens for zebra, if it does.
    pub fn tick(
        &mut self,
        cfg: &ValidatedConfig,
        source: &str,
        generation: u64,
        fpm: Option<SocketAddr>,
    ) {
        let now = std::time::Instant::now();
        if now < self.next_check || self.last_generation == Some(generation) {
            return;
        }
        self.next_check = now + CHECK;
        self.last_generation = Some(generation);
        let Some(bgp) = &cfg.bgp else { return };
        let Some(path) = &bgp.frr_config else { return };
        let Ok(text) = render(cfg, source, fpm) else {
            return;
        };
        if self.last_text.as_deref() == Some(text.as_str()) {
            return;
        }
        self.last_text = Some(text.clone());
        let _ = self.to_writer.send(Job {
            text,
            path: path.clone(),
            reload: bgp.frr_reload.clone(),
        });
    }
}

/// The writer thread: the newest job only (older ones waiting are superseded), tried again
/// after a failure until it succeeds or a newer one comes.
fn writer(rx: &std::sync::mpsc::Receiver<Job>, c: &FrrCounters) {
    use std::sync::atomic::Ordering;
    let mut pending: Option<Job> = None;
    loop {
        let next = match &pending {
            None => match rx.recv() {
                Ok(j) => Some(j),
                Err(_) => return,
            },
            Some(_) => match rx.recv_timeout(RETRY) {
                Ok(j) => Some(j),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            },
        };
        if let Some(j) = next {
            pending = Some(j);
        }
        // The newest of what is waiting.
        while let Ok(j) = rx.try_recv() {
            pending = Some(j);
        }
        let Some(job) = &pending else { continue };
        let tmp = job.path.with_extension("tmp");
        if let Err(e) =
            std::fs::write(&tmp, &job.text).and_then(|()| std::fs::rename(&tmp, &job.path))
        {
            log::error!("FRR configuration {}: {e}", job.path.display());
            c.reload_failures.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        c.writes.fetch_add(1, Ordering::Relaxed);
        let Some(cmd) = &job.reload else {
            log::info!("FRR configuration written to {}", job.path.display());
            pending = None;
            continue;
        };
        let file = job.path.display().to_string();
        let words: Vec<String> = cmd.iter().map(|w| w.replace("{file}", &file)).collect();
        let out = std::process::Command::new(&words[0])
            .args(&words[1..])
            .stdin(std::process::Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {
                c.reloads.fetch_add(1, Ordering::Relaxed);
                log::info!(
                    "FRR configuration written to {} and reloaded ({})",
                    job.path.display(),
                    words.join(" ")
                );
                pending = None;
            }
            Ok(o) => {
                c.reload_failures.fetch_add(1, Ordering::Relaxed);
                log::error!(
                    "FRR reload failed ({}, {}): {}; trying again in {} s",
                    words.join(" "),
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim(),
                    RETRY.as_secs()
                );
            }
            Err(e) => {
                c.reload_failures.fetch_add(1, Ordering::Relaxed);
                log::error!(
                    "FRR reload failed ({}): {e}; trying again in {} s",
                    words.join(" "),
                    RETRY.as_secs()
                );
            }
        }
    }
}
