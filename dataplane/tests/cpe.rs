//! A client site's router (CPE) through the pipeline: the configuration of
//! `pipeline-config/examples/cpe.toml` (LAN 10.5.0.0/16 behind lan0, WAN 203.0.113.5 on
//! wan0, GRE primary edge1 with key 5, sequence numbers and checksums carrying the carrier's
//! 10.0.0.0/8, IPIP backup edge2, default route natively to the WAN gateway).
//!
//! Every expected frame is built by scapy from what SPEC.md and the RFCs prescribe
//! (RFC 2784/2890 for the GRE header, RFC 2003 for IPIP, RFC 791/1812 for the forwarded
//! inner header: TTL one less, checksum valid), never copied from our output; only the
//! values that are ours to choose (the outer identification, the first sequence number)
//! are read from the frame.

mod common;

use common::{check_fields, pkt, pkts, Lab};
use dataplane::config::builder_from_config;
use dataplane::pipeline::{DropReason, Pipeline};
use dataplane::tables::{PortIndex, TunnelId};
use dataplane::wire::EthernetAddress;
use std::net::Ipv4Addr;
use std::path::Path;

const LAN: PortIndex = 0;
const WAN: PortIndex = 1;
const MAC_LAN: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0c, 1]);
const MAC_WAN: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0c, 2]);
/// The WAN gateway 203.0.113.254 and the LAN router 10.5.0.2.
const MAC_GW: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0d, 1]);
const MAC_LAN_ROUTER: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0d, 2]);

fn mac(m: EthernetAddress) -> String {
    let b = m.0;
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5]
    )
}

/// The example configuration, as the appliance would load it, with the two next hops'
/// MACs known.
fn cpe() -> Lab {
    cpe_from(&example())
}

fn example() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipeline-config/examples/cpe.toml");
    std::fs::read_to_string(path).expect("examples/cpe.toml")
}

/// A CPE from configuration `text`, the next hops' MACs known.
fn cpe_from(text: &str) -> Lab {
    let cfg = pipeline_config::parse(text, "cpe.toml").expect("the CPE configuration validates");
    let mut builder = builder_from_config(&cfg, &[(LAN, MAC_LAN), (WAN, MAC_WAN)]);
    builder.neighbor(WAN, Ipv4Addr::new(203, 0, 113, 254), MAC_GW);
    builder.neighbor(LAN, Ipv4Addr::new(10, 5, 0, 2), MAC_LAN_ROUTER);
    let snap = builder.build().expect("the example builds");
    Lab {
        builder,
        snap,
        pipe: Pipeline::new(0x1000),
    }
}

impl CpeExt for Lab {
    fn set_down(&mut self, tunnel: &str, down: bool) {
        assert!(
            self.builder.set_tunnel_down(tunnel, down),
            "{tunnel} changed"
        );
        self.snap = self.builder.build().expect("builds");
    }
}

trait CpeExt {
    fn set_down(&mut self, tunnel: &str, down: bool);
}

/// A host of the site sends: from the host's MAC to the LAN port's.
fn from_host(src: &str, dst: &str) -> String {
    format!(
        "Ether(dst='{}', src='02:00:00:00:ee:01')/IP(src='{src}', dst='{dst}', ttl=64)/data(40)",
        mac(MAC_LAN)
    )
}

/// The same inner packet as forwarded: TTL one less (RFC 1812 5.3.1), checksum valid.
fn forwarded(src: &str, dst: &str) -> String {
    format!("IP(src='{src}', dst='{dst}', ttl=63)/data(40)")
}

fn u16_at(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

fn u32_at(f: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]])
}

fn tx(lab: &Lab, name: &str) -> u64 {
    let id: TunnelId = lab.snap.tunnels().by_name(name).expect("tunnel");
    lab.counters()
        .tunnels
        .get(id.index())
        .map_or(0, |c| c.tx.packets)
}

fn rx(lab: &Lab, name: &str) -> u64 {
    let id: TunnelId = lab.snap.tunnels().by_name(name).expect("tunnel");
    lab.counters()
        .tunnels
        .get(id.index())
        .map_or(0, |c| c.rx.packets)
}

/// The frame the primary must send for `inner` (RFC 2784 with checksum, RFC 2890 key and
/// sequence number): from the WAN port to the gateway, outer 203.0.113.5 -> 198.51.100.1,
/// TTL 64, DF, DSCP/ECN copied from the inner (0), protocol 47.
fn into_edge1(out: &[u8], inner: &str) -> Vec<u8> {
    let id = u16_at(out, 14 + 4);
    // C, K, S present: checksum+reserved at 38, key at 42, sequence number at 46.
    let seq = u32_at(out, 14 + 20 + 12);
    pkt(&format!(
        "Ether(dst='{}', src='{}')/IP(src='203.0.113.5', dst='198.51.100.1', ttl=64, \
         id={id}, flags='DF', tos=0)/GRE(chksum_present=1, key_present=1, seqnum_present=1, \
         key=5, sequence_number={seq})/{inner}",
        mac(MAC_GW),
        mac(MAC_WAN)
    ))
}

/// The frame the backup must send for `inner` (RFC 2003): outer 203.0.113.5 ->
/// 198.51.100.2, protocol 4.
fn into_edge2(out: &[u8], inner: &str) -> Vec<u8> {
    let id = u16_at(out, 14 + 4);
    pkt(&format!(
        "Ether(dst='{}', src='{}')/IP(src='203.0.113.5', dst='198.51.100.2', ttl=64, \
         id={id}, flags='DF', tos=0, proto=4)/{inner}",
        mac(MAC_GW),
        mac(MAC_WAN)
    ))
}

/// Natively out of the WAN port to the gateway.
fn native_wan(inner: &str) -> Vec<u8> {
    pkt(&format!(
        "Ether(dst='{}', src='{}')/{inner}",
        mac(MAC_GW),
        mac(MAC_WAN)
    ))
}

#[test]
fn lan_to_the_carrier_enters_the_primary_tunnel() {
    let mut lab = cpe();
    let f = pkt(&from_host("10.5.1.10", "10.1.2.3"));
    let (egress, out) = lab.expect_transmit(LAN, &f, "LAN host to another site");
    assert_eq!(egress, WAN, "tunnels leave through the WAN");
    let want = into_edge1(&out, &forwarded("10.5.1.10", "10.1.2.3"));
    assert_eq!(out, want, "GRE into edge1, byte for byte against scapy");
    check_fields(
        "into edge1",
        &out,
        &[
            ("p[GRE].chksum_present", "1"),
            ("p[GRE].key", "5"),
            ("p[IP][1].ttl", "63"),
        ],
    );
    // A second packet: the sequence number advances by one (RFC 2890 section 2.2).
    let (_, out2) = lab.expect_transmit(LAN, &f, "again");
    assert_eq!(
        u32_at(&out2, 46),
        u32_at(&out, 46).wrapping_add(1),
        "sequence numbers increase"
    );
    assert_eq!(tx(&lab, "edge1"), 2);
    assert_eq!(tx(&lab, "edge2"), 0);
}

#[test]
fn lan_to_the_internet_leaves_natively_through_the_wan() {
    let mut lab = cpe();
    let f = pkt(&from_host("10.5.1.10", "8.8.8.8"));
    let (egress, out) = lab.expect_transmit(LAN, &f, "LAN host to the Internet");
    assert_eq!(egress, WAN);
    assert_eq!(out, native_wan(&forwarded("10.5.1.10", "8.8.8.8")));
    assert_eq!(tx(&lab, "edge1") + tx(&lab, "edge2"), 0, "no tunnel");
}

#[test]
fn the_tunnel_delivers_to_the_lan_and_accepts_only_the_carriers_sources() {
    let mut lab = cpe();
    let edge1 = |seq: u32, src: &str| {
        format!(
            "Ether(dst='{}', src='{}')/IP(src='198.51.100.1', dst='203.0.113.5')/\
             GRE(chksum_present=1, key_present=1, seqnum_present=1, key=5, \
             sequence_number={seq})/IP(src='{src}', dst='10.5.1.10', ttl=64)/data(40)",
            mac(MAC_WAN),
            mac(MAC_GW)
        )
    };
    let f = pkts(&[
        edge1(1, "10.1.2.3"),
        edge1(2, "10.5.9.9"),
        edge1(3, "8.8.8.8"),
    ]);
    let (egress, out) = lab.expect_transmit(WAN, &f[0], "another site to a LAN host");
    assert_eq!(egress, LAN);
    let want = pkt(&format!(
        "Ether(dst='{}', src='{}')/{}",
        mac(MAC_LAN_ROUTER),
        mac(MAC_LAN),
        forwarded("10.1.2.3", "10.5.1.10")
    ));
    assert_eq!(out, want, "decapsulated to the LAN, byte for byte");
    assert_eq!(rx(&lab, "edge1"), 1);
    // The site's own source from the carrier: someone spoofing us (BCP 38).
    lab.expect_drop(WAN, &f[1], DropReason::InnerSpoofed, "our own source");
    // The Internet's: not the carrier's to send.
    lab.expect_drop(WAN, &f[2], DropReason::InnerSpoofed, "an Internet source");
}

#[test]
fn a_lan_host_spoofing_another_source_is_dropped_as_lan_spoofed() {
    let mut lab = cpe();
    let f = pkts(&[
        from_host("10.1.2.3", "10.1.9.9"), // another site's source, to the carrier
        from_host("10.6.0.1", "8.8.8.8"),  // inside the carrier's /8, to the Internet
        from_host("192.0.2.77", "8.8.8.8"), // anyone's
        from_host("10.5.255.254", "10.1.9.9"),
    ]);
    lab.expect_drop(LAN, &f[0], DropReason::LanSpoofed, "another site's source");
    lab.expect_drop(LAN, &f[1], DropReason::LanSpoofed, "the carrier's space");
    lab.expect_drop(LAN, &f[2], DropReason::LanSpoofed, "the Internet's");
    assert_eq!(tx(&lab, "edge1"), 0, "nothing spoofed entered the tunnel");
    assert_eq!(
        lab.counters().ports[usize::from(LAN)].drops[DropReason::LanSpoofed as usize],
        3,
        "counted on the LAN port"
    );
    // The last address of the site's prefix is the site's.
    lab.expect_transmit(LAN, &f[3], "control: the site's own source");
    // The counter has a name operators read (docs/COUNTERS.md).
    assert_eq!(DropReason::LanSpoofed.name(), "lan_spoofed");
}

#[test]
fn the_primary_down_moves_the_carrier_to_the_backup_then_to_the_wan_and_back() {
    let mut lab = cpe();
    let f = pkt(&from_host("10.5.1.10", "10.1.2.3"));
    let inner = forwarded("10.5.1.10", "10.1.2.3");
    lab.set_down("edge1", true);
    let (egress, out) = lab.expect_transmit(LAN, &f, "primary down");
    assert_eq!(egress, WAN);
    assert_eq!(out, into_edge2(&out, &inner), "IPIP into the backup");
    // The backup accepts the carrier's sources (its primary's), not the site's.
    let from_edge2 = |src: &str| {
        format!(
            "Ether(dst='{}', src='{}')/IP(src='198.51.100.2', dst='203.0.113.5', proto=4)/\
             IP(src='{src}', dst='10.5.1.10', ttl=64)/data(40)",
            mac(MAC_WAN),
            mac(MAC_GW)
        )
    };
    let g = pkts(&[from_edge2("10.1.2.3"), from_edge2("10.5.3.3")]);
    let (egress, _) = lab.expect_transmit(WAN, &g[0], "the carrier through the backup");
    assert_eq!(egress, LAN);
    lab.expect_drop(
        WAN,
        &g[1],
        DropReason::InnerSpoofed,
        "our own source via backup",
    );

    // Both down: natively, best effort, through the WAN gateway.
    lab.set_down("edge2", true);
    let (_, out) = lab.expect_transmit(LAN, &f, "both down");
    assert_eq!(out, native_wan(&inner), "native fallback");

    // The backup back: into it again; the primary back: into the primary.
    lab.set_down("edge2", false);
    let (_, out) = lab.expect_transmit(LAN, &f, "backup back");
    assert_eq!(out, into_edge2(&out, &inner));
    lab.set_down("edge1", false);
    let (_, out) = lab.expect_transmit(LAN, &f, "primary back");
    assert_eq!(out, into_edge1(&out, &inner));
    assert_eq!((tx(&lab, "edge1"), tx(&lab, "edge2")), (1, 2));
}

/// The WAN address changing (a new DHCP lease) through the control path: one publication
/// moves the port's address and re-sources the tunnels from it; the tunnels keep their
/// state (sequence numbers go on); a change that does not validate changes nothing.
#[test]
fn a_new_wan_address_re_sources_the_tunnels_and_keeps_their_state() {
    use dataplane::control::state::ControlState;
    use pipeline_config::ConfigDocument;
    use serde_json::json;

    // The WAN address `old` changing to `new`, as the edge agent asks for it.
    fn set_address(st: &mut ControlState, old: &str, new: &str) -> Result<u64, String> {
        st.apply_as(
            &[json!({"op": "set_address", "port": "wan0", "old": old, "new": new})],
            "test",
        )
    }

    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipeline-config/examples/cpe.toml"),
    )
    .unwrap();
    let (doc, cfg) = ConfigDocument::parse(&text, "cpe.toml").unwrap();
    let mut st = ControlState::new(doc, cfg, vec![(LAN, MAC_LAN), (WAN, MAC_WAN)]).unwrap();
    st.apply_as(
        &[
            json!({"op": "set_neighbor", "port": "wan0", "ip": "203.0.113.254",
                   "mac": mac(MAC_GW)}),
            json!({"op": "set_neighbor", "port": "lan0", "ip": "10.5.0.2",
                   "mac": mac(MAC_LAN_ROUTER)}),
        ],
        "test",
    )
    .unwrap();
    let mut pipe = Pipeline::new(0x1000);
    let mut send = |st: &ControlState, port: PortIndex, frame: &[u8]| {
        let snap = st.snapshots().current().clone();
        let mut bufs = [dataplane::buffer::TestBuf::new(frame)];
        let mut actions = [dataplane::pipeline::Action::Drop(DropReason::Runt)];
        pipe.process(&snap, port, &mut bufs, &mut actions);
        (
            actions[0],
            dataplane::buffer::PacketBuf::data(&bufs[0]).to_vec(),
        )
    };
    let f = pkt(&from_host("10.5.1.10", "10.1.2.3"));
    let (a, before) = send(&st, LAN, &f);
    assert_eq!(a, dataplane::pipeline::Action::Transmit(WAN), "into edge1");
    assert_eq!(
        &before[26..30],
        &[203, 0, 113, 5],
        "outer source: the old address"
    );
    let seq = u32_at(&before, 46);
    let generation = st.snapshots().current().generation();

    // A change that cannot apply: nothing changes (the address is not the port's; the new
    // one is not unicast).
    let refused = set_address(&mut st, "203.0.113.9", "203.0.113.77").unwrap_err();
    assert!(
        refused.contains("address.old") && refused.contains("203.0.113.9"),
        "{refused}"
    );
    let refused = set_address(&mut st, "203.0.113.5", "127.0.0.1").unwrap_err();
    assert!(
        refused.contains("port[1] \"wan0\".addresses[0]") && refused.contains("127.0.0.1"),
        "{refused}"
    );
    assert_eq!(
        st.snapshots().current().generation(),
        generation,
        "nothing published"
    );
    assert_eq!(
        st.config().ports[1].addresses,
        vec![Ipv4Addr::new(203, 0, 113, 5)]
    );

    let g = set_address(&mut st, "203.0.113.5", "203.0.113.77").unwrap();
    assert_eq!(g, generation + 1, "one publication");
    let cfg = st.config();
    assert_eq!(cfg.ports[1].addresses, vec![Ipv4Addr::new(203, 0, 113, 77)]);
    assert!(cfg
        .tunnels
        .iter()
        .all(|t| t.local == Ipv4Addr::new(203, 0, 113, 77)));

    let (_, after) = send(&st, LAN, &f);
    let inner = forwarded("10.5.1.10", "10.1.2.3");
    let id = u16_at(&after, 18);
    let want = pkt(&format!(
        "Ether(dst='{}', src='{}')/IP(src='203.0.113.77', dst='198.51.100.1', ttl=64, \
         id={id}, flags='DF', tos=0)/GRE(chksum_present=1, key_present=1, seqnum_present=1, \
         key=5, sequence_number={})/{inner}",
        mac(MAC_GW),
        mac(MAC_WAN),
        seq.wrapping_add(1)
    ));
    assert_eq!(after, want, "from the new address, the sequence going on");

    // The edge's packets to the new address are the tunnel's.
    let from_edge = |dst: &str, seq: u32| {
        format!(
            "Ether(dst='{}', src='{}')/IP(src='198.51.100.1', dst='{dst}')/\
             GRE(chksum_present=1, key_present=1, seqnum_present=1, key=5, \
             sequence_number={seq})/IP(src='10.1.2.3', dst='10.5.1.10', ttl=64)/data(40)",
            mac(MAC_WAN),
            mac(MAC_GW)
        )
    };
    let (a, _) = send(&st, WAN, &pkt(&from_edge("203.0.113.77", 7)));
    assert_eq!(
        a,
        dataplane::pipeline::Action::Transmit(LAN),
        "decapsulated to the LAN"
    );

    // The same through a file (a reload): another lease, written into the configuration.
    let dir = std::env::temp_dir().join(format!("cpe-wan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cpe.toml");
    // The neighbours set through the API above are not in the file: a reload undoes them
    // unless the file has them.
    let neighbor = |ip: &str, m: EthernetAddress| {
        format!("[[port.neighbor]]\nip = \"{ip}\"\nmac = \"{}\"\n\n", mac(m))
    };
    let edited = text.replace("203.0.113.5", "203.0.113.99").replacen(
        "[site]",
        &format!("{}[site]", neighbor("203.0.113.254", MAC_GW)),
        1,
    );
    std::fs::write(&file, edited).unwrap();
    let before = st.snapshots().current().generation();
    st.apply_as(
        &[json!({"op": "apply_config", "path": file.display().to_string()})],
        "test",
    )
    .unwrap_or_else(|e| panic!("a reload with a new WAN address: {e}"));
    assert_eq!(st.snapshots().current().generation(), before + 1);
    let (_, again) = send(&st, LAN, &f);
    assert_eq!(
        &again[26..30],
        &[203, 0, 113, 99],
        "outer source: the file's address"
    );
    assert_eq!(
        u32_at(&again, 46),
        seq.wrapping_add(2),
        "the sequence going on"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The edge's side of the backup's link (as the source of its ICMP errors, say) is the
/// carrier's: accepted from the backup, as the primary's link is from the primary.
#[test]
fn the_backup_accepts_its_own_links_peer_as_well_as_the_carriers_sources() {
    let text = example().replacen(
        "backup = \"edge1\"",
        "backup = \"edge1\"\nlink = \"169.254.6.0/31\"",
        1,
    );
    let mut lab = cpe_from(&text);
    let from_edge2 = |src: &str| {
        format!(
            "Ether(dst='{}', src='{}')/IP(src='198.51.100.2', dst='203.0.113.5', proto=4)/\
             IP(src='{src}', dst='10.5.1.10', ttl=64)/data(40)",
            mac(MAC_WAN),
            mac(MAC_GW)
        )
    };
    let f = pkts(&[
        from_edge2("169.254.6.1"),
        from_edge2("10.1.2.3"),
        from_edge2("169.254.7.1"),
    ]);
    let (egress, _) = lab.expect_transmit(WAN, &f[0], "the backup link's peer");
    assert_eq!(egress, LAN);
    lab.expect_transmit(WAN, &f[1], "the carrier's space through the backup");
    lab.expect_drop(WAN, &f[2], DropReason::InnerSpoofed, "outside the link");
}

// ------------------------------------------------ the LAN's connected subnet (ARP on demand)

/// A host directly on the LAN's connected 10.5.0.0/24 (no route of its own).
const HOST: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 20);
const MAC_HOST: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0e, 20]);
/// Our LAN address: the one inside the connected prefix, where ARP asks from.
const LAN_ADDR: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 1);

/// From the Internet, natively through the WAN, to `dst` on the site.
fn from_internet(dst: &str) -> String {
    format!(
        "Ether(dst='{}', src='{}')/IP(src='192.0.2.80', dst='{dst}', ttl=64)/data(40)",
        mac(MAC_WAN),
        mac(MAC_GW)
    )
}

#[test]
fn a_host_on_the_connected_lan_is_its_own_next_hop_resolved_on_demand() {
    let mut lab = cpe();
    // The connected /24 asks from our address inside it; the rest of the /16 is behind
    // the LAN router (a configured next hop), and the WAN has no connected subnet.
    assert_eq!(lab.snap.on_link(LAN, HOST), Some(LAN_ADDR));
    assert_eq!(lab.snap.on_link(LAN, Ipv4Addr::new(10, 5, 1, 10)), None);
    assert_eq!(lab.snap.on_link(WAN, HOST), None);

    // Unknown: dropped as no_neighbor (SPEC.md Encapsulation step 5) and noted for the
    // control thread, once for a burst of packets to the same host.
    let f = pkt(&from_internet("10.5.0.20"));
    lab.expect_drop(WAN, &f, DropReason::NoNeighbor, "host not resolved yet");
    assert_eq!(lab.pipe.unresolved().collect::<Vec<_>>(), [(LAN, HOST)]);
    let mut burst: Vec<_> = pkts(&[
        from_internet("10.5.0.20"),
        from_internet("10.5.0.20"),
        from_internet("10.5.0.21"),
    ])
    .iter()
    .map(|f| dataplane::buffer::TestBuf::new(f))
    .collect();
    let actions = lab.process(WAN, &mut burst);
    assert!(actions
        .iter()
        .all(|a| *a == dataplane::pipeline::Action::Drop(DropReason::NoNeighbor)));
    assert_eq!(
        lab.pipe.unresolved().collect::<Vec<_>>(),
        [(LAN, HOST), (LAN, Ipv4Addr::new(10, 5, 0, 21))],
        "one note per host in a row"
    );

    // Known: natively out of the LAN port, from its MAC to the host's, TTL one less and
    // the checksum valid (RFC 1812 5.3.1), byte for byte against scapy.
    lab.builder.neighbor(LAN, HOST, MAC_HOST);
    lab.snap = lab.builder.build().expect("builds");
    let (egress, out) = lab.expect_transmit(WAN, &f, "host resolved");
    assert_eq!(egress, LAN);
    let want = pkt(&format!(
        "Ether(dst='{}', src='{}')/{}",
        mac(MAC_HOST),
        mac(MAC_LAN),
        forwarded("192.0.2.80", "10.5.0.20")
    ));
    assert_eq!(out, want);
    assert_eq!(lab.pipe.unresolved().count(), 0, "nothing to resolve");
    // The hosts behind the LAN router still go to the router.
    let (_, out) = lab.expect_transmit(WAN, &pkt(&from_internet("10.5.1.10")), "behind");
    assert_eq!(&out[..6], &MAC_LAN_ROUTER.0);
}

#[test]
fn arp_on_demand_asks_once_learns_only_what_it_asked_for_and_ages_out() {
    use dataplane::buffer::{PacketBuf, TestBuf};
    use dataplane::control::arp::{self, ArpOutcome, Heard};
    use dataplane::control::ondemand::{OnDemand, Verdict};
    use std::time::{Duration, Instant};

    let lab = cpe();
    let lan = lab.snap.port(LAN).expect("lan0").clone();
    let t0 = Instant::now();
    let mut od = OnDemand::new(OnDemand::DEFAULT_LIMIT, t0);
    let source = lab.snap.on_link(LAN, HOST).expect("on link");
    assert!(od.want(LAN, HOST, source, t0));
    assert!(od.want(LAN, HOST, source, t0), "a repeat is no new request");
    let mut due = Vec::new();
    od.due(t0, &mut due);
    assert_eq!(due, [(LAN, HOST, LAN_ADDR)], "one request");
    // At most one a second per address (the pacer's retry time).
    od.due(t0 + Duration::from_millis(500), &mut due);
    assert_eq!(due.len(), 1, "not again within a second");

    // The request as it goes on the wire: RFC 826 fields, broadcast, padded to 60 bytes.
    let mut buf = TestBuf::with_headroom(&[], 128);
    assert!(arp::request(&mut buf, &lan, LAN_ADDR, HOST));
    let frame = buf.data().to_vec();
    assert_eq!(frame.len(), 60, "padded to Ethernet's minimum");
    check_fields(
        "ARP request",
        &frame,
        &[
            ("p.dst", "ff:ff:ff:ff:ff:ff"),
            ("p.src", &mac(MAC_LAN)),
            ("p.type", "2054"),
            ("p[ARP].hwtype", "1"),
            ("p[ARP].ptype", "2048"),
            ("p[ARP].hwlen", "6"),
            ("p[ARP].plen", "4"),
            ("p[ARP].op", "1"),
            ("p[ARP].hwsrc", &mac(MAC_LAN)),
            ("p[ARP].psrc", "10.5.0.1"),
            ("p[ARP].hwdst", "00:00:00:00:00:00"),
            ("p[ARP].pdst", "10.5.0.20"),
            ("bytes(p[Padding]) == bytes(18)", "True"),
        ],
    );

    // The host's reply, as the worker reads it, is learned once: a second answer (a
    // forger racing the host) and a reply for an address never asked for are not.
    let reply = |ip: &str, hw: EthernetAddress| {
        let f = pkt(&format!(
            "Ether(dst='{}', src='{}')/ARP(op=2, hwsrc='{}', psrc='{ip}', hwdst='{}', \
             pdst='10.5.0.1')",
            mac(MAC_LAN),
            mac(hw),
            mac(hw),
            mac(MAC_LAN)
        ));
        let mut b = TestBuf::new(&f);
        match arp::handle(&mut b, &lan) {
            ArpOutcome::Learned { learned } => learned,
            other => panic!("{other:?}"),
        }
    };
    let t1 = t0 + Duration::from_millis(700);
    let (ip, m) = reply("10.5.0.20", MAC_HOST);
    assert_eq!((ip, m), (HOST, MAC_HOST));
    assert_eq!(
        od.heard(LAN, ip, source, Heard::Reply, t1),
        Verdict::Learn {
            waited: Some(Duration::from_millis(700))
        }
    );
    let forged = EthernetAddress([2, 0, 0, 0, 0x66, 6]);
    let (ip, _) = reply("10.5.0.20", forged);
    assert_eq!(
        od.heard(LAN, ip, source, Heard::Reply, t1),
        Verdict::Unsolicited
    );
    let (ip, _) = reply("10.5.0.21", forged);
    assert_eq!(
        od.heard(LAN, ip, source, Heard::Reply, t1),
        Verdict::Unsolicited
    );
    assert!(od.is_resolved(LAN, HOST));
    assert!(!od.is_resolved(LAN, ip));
    let c = od.counters();
    assert_eq!((c.requested, c.resolved, c.unsolicited), (1, 1, 2));

    // Aging: not heard from for 30 s, it is asked for again; no answer within 3 s more,
    // and it is forgotten (a host that left is not kept).
    due.clear();
    od.due(t1 + Duration::from_secs(29), &mut due);
    assert!(due.is_empty(), "fresh: {due:?}");
    assert!(od
        .expire(t1 + Duration::from_secs(29), |_, _| true)
        .is_empty());
    od.due(t1 + OnDemand::REACHABLE, &mut due);
    assert_eq!(due, [(LAN, HOST, LAN_ADDR)], "asked again");
    // Asked again where it was (RFC 1122 2.3.2.1: a unicast poll), not of every host.
    let mut buf = TestBuf::with_headroom(&[], 128);
    assert!(arp::request_to(&mut buf, &lan, LAN_ADDR, HOST, MAC_HOST));
    check_fields(
        "ARP request to confirm",
        buf.data(),
        &[
            ("len(f)", "60"),
            ("p.dst", &mac(MAC_HOST)),
            ("p[ARP].op", "1"),
            ("p[ARP].psrc", "10.5.0.1"),
            ("p[ARP].pdst", "10.5.0.20"),
        ],
    );
    let almost = t1 + OnDemand::REACHABLE + OnDemand::UNANSWERED - Duration::from_millis(1);
    assert!(od.expire(almost, |_, _| true).is_empty(), "still in time");
    let late = t1 + OnDemand::REACHABLE + OnDemand::UNANSWERED;
    assert_eq!(od.expire(late, |_, _| true), [(LAN, HOST)], "forgotten");
    assert!(!od.is_resolved(LAN, HOST));
    assert_eq!(od.counters().expired, 1);
    assert_eq!(od.held(), (0, 0));

    // An answer to the refresh keeps it; an address that never answers is given up after
    // three requests (3 s); one no longer on a connected subnet is forgotten at once.
    let mut od = OnDemand::new(OnDemand::DEFAULT_LIMIT, t0);
    od.want(LAN, HOST, source, t0);
    od.want(LAN, Ipv4Addr::new(10, 5, 0, 30), source, t0);
    due.clear();
    for s in 0..3 {
        od.due(t0 + Duration::from_secs(s), &mut due);
    }
    assert_eq!(due.len(), 6, "each asked at 0, 1 and 2 s: {due:?}");
    od.heard(LAN, HOST, source, Heard::Reply, t0 + Duration::from_secs(2));
    od.due(t0 + Duration::from_secs(32), &mut due);
    assert!(
        od.heard(
            LAN,
            HOST,
            source,
            Heard::Reply,
            t0 + Duration::from_secs(32)
        ) != Verdict::Unsolicited
    );
    assert!(
        od.expire(t0 + Duration::from_secs(3), |_, _| true)
            .is_empty(),
        "resolved kept, pending given up"
    );
    assert_eq!(od.counters().unanswered, 1);
    assert!(
        od.expire(t0 + Duration::from_secs(35), |_, _| true)
            .is_empty(),
        "refreshed at 32 s"
    );
    assert_eq!(
        od.expire(t0 + Duration::from_secs(35), |_, _| false),
        [(LAN, HOST)]
    );
}

#[test]
fn on_demand_neighbours_are_bounded_and_requests_from_the_lan_are_merged() {
    use dataplane::control::arp::Heard;
    use dataplane::control::ondemand::{OnDemand, Verdict};
    use std::time::Instant;

    let t0 = Instant::now();
    let mut od = OnDemand::new(4, t0);
    // A scan of the subnet: four addresses held, the rest refused and counted.
    let accepted = (1..=200u32)
        .filter(|i| od.want(LAN, Ipv4Addr::from(0x0a05_0000 + i), LAN_ADDR, t0))
        .count();
    assert_eq!(accepted, 4);
    assert_eq!(od.counters().full, 196);
    assert_eq!(od.held(), (0, 4));
    let mut due = Vec::new();
    od.due(t0, &mut due);
    assert_eq!(due.len(), 4, "only what is held is asked for");
    // A request from a host of the subnet addressed to us (RFC 826's merge) is learned
    // when there is room, refused when there is none.
    assert_eq!(
        od.heard(LAN, HOST, LAN_ADDR, Heard::Request, t0),
        Verdict::Full
    );
    let mut od = OnDemand::new(4, t0);
    assert_eq!(
        od.heard(LAN, HOST, LAN_ADDR, Heard::Request, t0),
        Verdict::Learn { waited: None }
    );
    assert!(od.is_resolved(LAN, HOST));
}

#[test]
fn forgetting_an_on_demand_neighbour_removes_it_from_the_tables_but_never_a_static_one() {
    use dataplane::control::state::ControlState;
    use pipeline_config::ConfigDocument;

    let text = example().replace(
        "addresses = [\"10.5.0.1\"]         # the hosts' gateway",
        "addresses = [\"10.5.0.1\"]\n[[port.neighbor]]\nip = \"10.5.0.9\"\nmac = \"02:00:00:00:0e:09\"",
    );
    let (doc, cfg) = ConfigDocument::parse(&text, "cpe.toml").expect("validates");
    let mut st = ControlState::new(doc, cfg, vec![(LAN, MAC_LAN), (WAN, MAC_WAN)]).unwrap();
    let stat = Ipv4Addr::new(10, 5, 0, 9);
    st.learn(&[(LAN, HOST, MAC_HOST)]).expect("learns");
    let snap = std::sync::Arc::clone(st.snapshots().current());
    assert_eq!(snap.neighbor(LAN, HOST), Some(MAC_HOST));
    assert!(snap.neighbor(LAN, stat).is_some(), "the static entry");
    let g = st.forget(&[(LAN, HOST), (LAN, stat)]).expect("rebuilds");
    assert!(g.is_some(), "a publication");
    let snap = std::sync::Arc::clone(st.snapshots().current());
    assert_eq!(snap.neighbor(LAN, HOST), None, "forgotten");
    assert!(snap.neighbor(LAN, stat).is_some(), "a static entry stays");
    assert_eq!(
        st.forget(&[(LAN, HOST)]).expect("nothing"),
        None,
        "nothing left to forget"
    );
}

#[test]
fn a_connected_subnet_set_through_the_control_api_is_on_link_at_once() {
    use dataplane::control::state::ControlState;
    use pipeline_config::ConfigDocument;
    use serde_json::json;

    let (doc, cfg) = ConfigDocument::parse(&example(), "cpe.toml").expect("validates");
    let mut st = ControlState::new(doc, cfg, vec![(LAN, MAC_LAN), (WAN, MAC_WAN)]).unwrap();
    let far = Ipv4Addr::new(10, 5, 7, 9);
    assert_eq!(
        st.snapshots().current().on_link(LAN, far),
        None,
        "behind the router"
    );
    st.apply_as(
        &[json!({"op": "set_route", "route": {"prefix": "10.5.7.0/24", "port": "lan0"}})],
        "test",
    )
    .expect("a port without next_hop is a connected route");
    // No address of lan0 inside 10.5.7.0/24: ARP asks from its first.
    assert_eq!(st.snapshots().current().on_link(LAN, far), Some(LAN_ADDR));
    let listed = st.list_routes().to_string();
    assert!(
        listed.contains(r#""connected":true"#) && listed.contains(r#""arp_source":"10.5.0.1""#),
        "{listed}"
    );
    st.apply_as(
        &[json!({"op": "remove_route", "prefix": "10.5.7.0/24"})],
        "test",
    )
    .expect("removed");
    assert_eq!(st.snapshots().current().on_link(LAN, far), None);
}
