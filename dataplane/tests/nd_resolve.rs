//! IPv6 next hops resolved by Neighbor Discovery (RFC 4861): the solicitations the control
//! thread sends, byte for byte against what scapy builds from the fields RFC 4861 4.3 and
//! 7.2.2 prescribe; what it learns from the answers (and what it does not); the pacing; and
//! how an unanswered or silent next hop is counted and forgotten. Time is the tests' own
//! (made-up instants), as in the ARP pacer's and the on-demand neighbours' tests.
//!
//! The lab (tests/common): port 1 at 02:00:00:00:01:01 with 2001:db8:100::1 (link-local
//! fe80::ff:fe00:101); 2001:db8:200::/48 via 2001:db8:100::fe (a static neighbour at
//! 02:00:00:00:bb:01) and 2001:db8:201::/48 via 2001:db8:100::fd (no neighbour).

mod common;

use common::*;
use dataplane::buffer::{PacketBuf, TestBuf};
use dataplane::control::nd::{self, NdOutcome};
use dataplane::control::ndcache::{Decision, Expired, Ignored, NdCache, NdHeard};
use dataplane::control::state::ControlState;
use dataplane::pipeline::{Action, DropReason, PuntReason};
use dataplane::tables::RouteTarget;
use dataplane::wire::EthernetAddress;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

/// The unresolved next hop of 2001:db8:201::/48.
const NH: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0xfd);
/// Its MAC, as it answers.
const NH_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0xfd, 1]);
const NH_MAC_S: &str = "02:00:00:00:fd:01";
/// Someone else on the link.
const FORGER: &str = "02:00:00:00:66:66";

/// A Neighbor Advertisement of `tgt` at `lla` from the frame source `from`, to our address
/// on port 1, with the flags given (scapy's `ICMPv6ND_NA` fields).
fn advert(tgt: Ipv6Addr, lla: Option<&str>, from: &str, s: u8, o: u8) -> Vec<u8> {
    let opt = lla.map_or(String::new(), |m| {
        format!("/ICMPv6NDOptDstLLAddr(lladdr='{m}')")
    });
    pkt(&format!(
        "Ether(dst=P1, src='{from}')/IPv6(src='{tgt}', dst=LC6, hlim=255)/\
         ICMPv6ND_NA(R=1, S={s}, O={o}, tgt='{tgt}'){opt}"
    ))
}

/// What the worker makes of a frame on port 1: it must reach the ND handler, and it is
/// handed to the control thread only about a next hop the snapshot wants.
fn heard(lab: &mut Lab, frame: &[u8]) -> Option<(Ipv6Addr, NdHeard)> {
    lab.expect_punt(CORE_PORT, frame, PuntReason::Nd, "ND to us");
    let port = lab.snap.port(CORE_PORT).unwrap().clone();
    let mut b = TestBuf::new(frame);
    match nd::handle(&mut b, &port) {
        NdOutcome::Heard { target, advert } if lab.snap.wants_neighbor6(CORE_PORT, target) => {
            Some((target, NdHeard::Advert(advert)))
        }
        NdOutcome::Replied {
            learned: Some((ip, mac)),
        } if lab.snap.wants_neighbor6(CORE_PORT, ip) => Some((ip, NdHeard::Solicit(mac))),
        _ => None,
    }
}

/// The solicitations due at `now`.
fn due(nd: &mut NdCache, lab: &Lab, now: Instant) -> Vec<dataplane::control::ndcache::Solicit> {
    let mut out = Vec::new();
    nd.due(
        now,
        lab.snap.wanted6(),
        |p, ip| lab.snap.neighbor6(p, ip).is_some(),
        &mut out,
    );
    out
}

#[test]
fn the_next_hops_of_ipv6_routes_are_wanted_each_with_the_address_to_ask_from() {
    let mut lab = Lab::new();
    // A link-local next hop (as routers announce themselves and FRR names them).
    let ll: Ipv6Addr = "fe80::1".parse().unwrap();
    lab.builder.route6(
        "2001:db8:202::/48".parse().unwrap(),
        RouteTarget::Native6 {
            port: CORE_PORT,
            next_hop: ll,
        },
    );
    lab.snap = lab.builder.build().unwrap();
    let our_ll: Ipv6Addr = "fe80::ff:fe00:101".parse().unwrap();
    assert_eq!(
        lab.snap.wanted6(),
        [
            (CORE_PORT, NH, LC6),
            (CORE_PORT, UP6, LC6),
            (CORE_PORT, ll, our_ll)
        ],
        "sorted by address; global next hops asked from the port's global address, a \
         link-local one from the port's link-local address"
    );
    assert!(lab.snap.wants_neighbor6(CORE_PORT, NH));
    assert!(!lab.snap.wants_neighbor6(CLIENT_PORT, NH), "another port");
    assert!(!lab
        .snap
        .wants_neighbor6(CORE_PORT, "2001:db8:100::9".parse().unwrap()));
    // Its route gone, the next hop is no longer wanted.
    assert!(lab
        .builder
        .remove_route6("2001:db8:202::/48".parse().unwrap()));
    lab.snap = lab.builder.build().unwrap();
    assert!(!lab.snap.wants_neighbor6(CORE_PORT, ll));
}

#[test]
fn the_solicitation_we_send_is_what_scapy_builds() {
    let lab = Lab::new();
    let t0 = Instant::now();
    let mut cache = NdCache::new(t0);
    // Only the unresolved next hop is asked for; the static one never is.
    let asked = due(&mut cache, &lab, t0);
    assert_eq!(asked, [(CORE_PORT, NH, LC6, None)]);
    let port = lab.snap.port(CORE_PORT).unwrap();
    let mut b = TestBuf::with_headroom(&[], 128);
    assert!(nd::solicit(&mut b, port, LC6, NH, None));
    // RFC 4861 4.3 and 7.2.2: ICMPv6 type 135 code 0, hop limit 255, to the target's
    // solicited-node group ff02::1:ff00:fd (RFC 4291 2.7.1) at 33:33:ff:00:00:fd (RFC 2464
    // 7), from our address, with our MAC as the source link-layer address option.
    let want = pkt("Ether(dst='33:33:ff:00:00:fd', src=P1)/\
         IPv6(src=LC6, dst='ff02::1:ff00:fd', hlim=255)/\
         ICMPv6ND_NS(tgt='2001:db8:100::fd')/ICMPv6NDOptSrcLLAddr(lladdr=P1)");
    assert_eq!(hex(b.data()), hex(&want), "the solicitation, byte for byte");
    check_fields(
        "NS",
        b.data(),
        &[
            ("p[ICMPv6ND_NS].type", "135"),
            ("p[ICMPv6ND_NS].code", "0"),
            ("p[IPv6].hlim", "255"),
        ],
    );
    // The probe of a next hop we know goes unicast to it (RFC 4861 7.3.3).
    let mut b = TestBuf::with_headroom(&[], 128);
    assert!(nd::solicit(&mut b, port, LC6, NH, Some(NH_MAC)));
    let want = pkt(&format!(
        "Ether(dst='{NH_MAC_S}', src=P1)/IPv6(src=LC6, dst='{NH}', hlim=255)/\
         ICMPv6ND_NS(tgt='{NH}')/ICMPv6NDOptSrcLLAddr(lladdr=P1)"
    ));
    assert_eq!(
        hex(b.data()),
        hex(&want),
        "the unicast probe, byte for byte"
    );
}

#[test]
fn an_answer_resolves_the_next_hop_and_ipv6_then_leaves_for_its_mac() {
    let mut lab = Lab::new();
    let packet = pkt("e1()/IPv6(src='2001:db8:aaaa::1', dst='2001:db8:201::5', hlim=64)/data(16)");
    lab.expect_drop(CORE_PORT, &packet, DropReason::NoNeighbor, "unresolved");

    let t0 = Instant::now();
    let mut cache = NdCache::new(t0);
    assert_eq!(due(&mut cache, &lab, t0).len(), 1, "asked");
    let t1 = t0 + Duration::from_millis(40);
    let (ip, how) = heard(&mut lab, &advert(NH, Some(NH_MAC_S), NH_MAC_S, 1, 1)).expect("heard");
    assert_eq!(ip, NH);
    assert_eq!(
        cache.heard(CORE_PORT, ip, how, false, t1),
        Decision::Learn(NH_MAC)
    );
    assert_eq!(cache.counters().learned, 1);
    // Installed as the control thread does it: one publication, the native target's MAC.
    lab.builder.neighbor6(CORE_PORT, NH, NH_MAC);
    lab.snap = lab.builder.build().unwrap();
    let (a, out) = lab.send(CORE_PORT, &packet);
    assert_eq!(a, Action::Transmit(CORE_PORT));
    let want = pkt(&format!(
        "Ether(dst='{NH_MAC_S}', src=P1)/\
         IPv6(src='2001:db8:aaaa::1', dst='2001:db8:201::5', hlim=63)/data(16)"
    ));
    assert_eq!(hex(&out), hex(&want), "to the learned MAC, one hop less");
    // Resolved: nothing more to ask until it is due for a probe.
    assert!(due(&mut cache, &lab, t0 + Duration::from_secs(5)).is_empty());
}

#[test]
fn an_advertisement_nobody_asked_for_is_not_learned() {
    let mut lab = Lab::new();
    let t0 = Instant::now();
    let mut cache = NdCache::new(t0);
    // Not asked for at all: read (counted), not learned.
    let (ip, how) = heard(&mut lab, &advert(NH, Some(FORGER), FORGER, 1, 1)).expect("heard");
    assert_eq!(
        cache.heard(CORE_PORT, ip, how, false, t0),
        Decision::Ignored(Ignored::Unsolicited)
    );
    assert_eq!(
        cache.counters().unsolicited,
        1,
        "the advertisement was read"
    );
    assert_eq!(cache.learned(CORE_PORT, NH), None);
    // Asked for, but the advertisement is not marked Solicited (RFC 4861 7.2.6's
    // unsolicited announcement): not an answer either.
    due(&mut cache, &lab, t0);
    let (ip, how) = heard(&mut lab, &advert(NH, Some(FORGER), FORGER, 0, 1)).expect("heard");
    assert_eq!(
        cache.heard(CORE_PORT, ip, how, false, t0),
        Decision::Ignored(Ignored::Unsolicited)
    );
    // The answer is taken once: a second one racing it is not.
    let (ip, how) = heard(&mut lab, &advert(NH, Some(NH_MAC_S), NH_MAC_S, 1, 1)).unwrap();
    assert_eq!(
        cache.heard(CORE_PORT, ip, how, false, t0),
        Decision::Learn(NH_MAC)
    );
    let (ip, how) = heard(&mut lab, &advert(NH, Some(FORGER), FORGER, 1, 1)).unwrap();
    assert_eq!(
        cache.heard(CORE_PORT, ip, how, false, t0),
        Decision::Ignored(Ignored::Unsolicited)
    );
    assert_eq!(cache.learned(CORE_PORT, NH), Some(NH_MAC));
    assert_eq!(cache.counters().unsolicited, 3);
    // An answer that comes after the retry time (1 s) is late.
    let mut cache = NdCache::new(t0);
    due(&mut cache, &lab, t0);
    let (ip, how) = heard(&mut lab, &advert(NH, Some(NH_MAC_S), NH_MAC_S, 1, 1)).unwrap();
    assert_eq!(
        cache.heard(CORE_PORT, ip, how, false, t0 + Duration::from_secs(1)),
        Decision::Ignored(Ignored::Unsolicited)
    );
    // An advertisement about an address no route needs is not even handed over.
    let other: Ipv6Addr = "2001:db8:100::77".parse().unwrap();
    assert_eq!(
        heard(&mut lab, &advert(other, Some(FORGER), FORGER, 1, 1)),
        None
    );
}

#[test]
fn override_rules_for_a_next_hop_held() {
    let mut lab = Lab::new();
    let t0 = Instant::now();
    let mut cache = NdCache::new(t0);
    due(&mut cache, &lab, t0);
    let (ip, how) = heard(&mut lab, &advert(NH, Some(NH_MAC_S), NH_MAC_S, 1, 1)).unwrap();
    assert_eq!(
        cache.heard(CORE_PORT, ip, how, false, t0),
        Decision::Learn(NH_MAC)
    );
    lab.builder.neighbor6(CORE_PORT, NH, NH_MAC);
    lab.snap = lab.builder.build().unwrap();
    let new_mac = EthernetAddress([2, 0, 0, 0, 0xfd, 2]);
    // Each case answers a probe of its own (asked again after the retry time).
    let mut at = t0;
    let mut answer = |cache: &mut NdCache, lab: &mut Lab, f: Vec<u8>| {
        at += Duration::from_secs(31);
        let asked = due(cache, lab, at);
        assert_eq!(
            asked,
            [(CORE_PORT, NH, LC6, Some(NH_MAC))],
            "a unicast probe"
        );
        let (ip, how) = heard(lab, &f).unwrap();
        cache.heard(CORE_PORT, ip, how, false, at)
    };
    // RFC 4861 7.2.5: Override clear and another MAC: the entry is kept.
    let f = advert(NH, Some("02:00:00:00:fd:02"), NH_MAC_S, 1, 0);
    assert_eq!(
        answer(&mut cache, &mut lab, f),
        Decision::Ignored(Ignored::NotOverride)
    );
    assert_eq!(cache.counters().not_override, 1);
    assert_eq!(cache.learned(CORE_PORT, NH), Some(NH_MAC));
    // No target link-layer address: confirms what is held.
    let f = advert(NH, None, NH_MAC_S, 1, 0);
    assert_eq!(answer(&mut cache, &mut lab, f), Decision::Unchanged);
    // Override set and another MAC: replaced.
    let f = advert(NH, Some("02:00:00:00:fd:02"), NH_MAC_S, 1, 1);
    assert_eq!(answer(&mut cache, &mut lab, f), Decision::Learn(new_mac));
    assert_eq!(cache.learned(CORE_PORT, NH), Some(new_mac));
}

#[test]
fn a_solicitation_from_a_next_hop_is_merged() {
    let mut lab = Lab::new();
    let t0 = Instant::now();
    let mut cache = NdCache::new(t0);
    // RFC 4861 7.2.3: the sender of a solicitation for our address, with its source
    // link-layer address option, is learned when it is a next hop we want.
    let ns = |src: Ipv6Addr, mac: &str| {
        pkt(&format!(
            "Ether(dst='33:33:ff:00:00:01', src='{mac}')/IPv6(src='{src}', \
             dst='ff02::1:ff00:1', hlim=255)/ICMPv6ND_NS(tgt=LC6)/\
             ICMPv6NDOptSrcLLAddr(lladdr='{mac}')"
        ))
    };
    let (ip, how) = heard(&mut lab, &ns(NH, NH_MAC_S)).expect("a next hop we want");
    assert_eq!(how, NdHeard::Solicit(NH_MAC));
    assert_eq!(
        cache.heard(CORE_PORT, ip, how, false, t0),
        Decision::Learn(NH_MAC)
    );
    assert_eq!(
        cache.heard(CORE_PORT, ip, how, false, t0),
        Decision::Unchanged
    );
    // Somebody no route goes through: not handed over.
    assert_eq!(
        heard(&mut lab, &ns("2001:db8:100::9".parse().unwrap(), FORGER)),
        None
    );
}

#[test]
fn a_static_neighbour_survives_an_advertisement_with_override() {
    let mut lab = Lab::new();
    let t0 = Instant::now();
    let mut cache = NdCache::new(t0);
    // The static next hop is wanted (a route goes through it), so a worker hands over what
    // it hears of it: the control thread keeps the static entry.
    let (ip, how) = heard(&mut lab, &advert(UP6, Some(FORGER), FORGER, 1, 1)).expect("heard");
    assert_eq!(ip, UP6);
    assert_eq!(
        cache.heard(CORE_PORT, ip, how, true, t0),
        Decision::Ignored(Ignored::Static)
    );
    assert_eq!(cache.counters().static_kept, 1, "read, and kept");
    assert_eq!(cache.learned(CORE_PORT, UP6), None);
    assert!(
        due(&mut cache, &lab, t0).iter().all(|s| s.1 != UP6),
        "never asked for"
    );

    // And the tables: learning over a static entry changes nothing there either.
    let text = r#"
        [[port]]
        name = "inet0"
        device = "1"
        roles = ["internet"]
        addresses = ["203.0.113.1", "2001:db8:100::1"]
        [[port.neighbor]]
        ip = "2001:db8:100::fe"
        mac = "02:00:00:00:bb:01"
        [[route]]
        prefix = "2001:db8:200::/48"
        port = "inet0"
        next_hop = "2001:db8:100::fe"
        [[route]]
        prefix = "2001:db8:201::/48"
        port = "inet0"
        next_hop = "2001:db8:100::fd"
    "#;
    let (doc, cfg) = pipeline_config::ConfigDocument::parse(text, "nd.toml").unwrap();
    let mut st = ControlState::new(doc, cfg, vec![(CORE_PORT, MAC_P1)]).unwrap();
    assert!(st.is_static_neighbor6(CORE_PORT, UP6));
    let forged = EthernetAddress([2, 0, 0, 0, 0x66, 0x66]);
    st.learn6(&[(CORE_PORT, UP6, forged), (CORE_PORT, NH, NH_MAC)])
        .unwrap();
    let snap = std::sync::Arc::clone(st.snapshots().current());
    assert_eq!(
        snap.neighbor6(CORE_PORT, UP6),
        Some(MAC_UPSTREAM),
        "static kept"
    );
    assert_eq!(snap.neighbor6(CORE_PORT, NH), Some(NH_MAC), "learned");
    let n = st.list_neighbors();
    let shown: Vec<(String, bool)> = n
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["ip"].as_str().unwrap().to_owned(),
                v["static"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("2001:db8:100::fd".into(), false),
            ("2001:db8:100::fe".into(), true)
        ],
        "ctl neighbors: the learned next hop, and the static one"
    );
    // A publication of the whole configuration keeps what was learned.
    let before = st.snapshots().current().generation();
    let g = st.apply(&[]).expect("the same configuration");
    assert!(g > before, "published anew");
    let snap = std::sync::Arc::clone(st.snapshots().current());
    assert_eq!(snap.neighbor6(CORE_PORT, NH), Some(NH_MAC), "still learned");
    assert_eq!(snap.neighbor6(CORE_PORT, UP6), Some(MAC_UPSTREAM));
    // Forgetting removes the learned entry, never the static one.
    assert!(st
        .forget6(&[(CORE_PORT, NH), (CORE_PORT, UP6)])
        .unwrap()
        .is_some());
    let snap = std::sync::Arc::clone(st.snapshots().current());
    assert_eq!(snap.neighbor6(CORE_PORT, NH), None);
    assert_eq!(snap.neighbor6(CORE_PORT, UP6), Some(MAC_UPSTREAM));
}

#[test]
fn one_solicitation_a_second_for_a_next_hop_under_a_flood_of_packets_to_it() {
    let mut lab = Lab::new();
    let t0 = Instant::now();
    let mut cache = NdCache::new(t0);
    let flood: Vec<TestBuf> = (0..32)
        .map(|i| {
            TestBuf::new(&pkt(&format!(
                "e1()/IPv6(src='2001:db8:aaaa::1', dst='2001:db8:201::{i:x}', hlim=64)"
            )))
        })
        .collect();
    let mut sent = Vec::new();
    // A tick every 5 ms for 10.5 s, a burst of 32 packets to the next hop between ticks.
    for ms in (0..10_500u64).step_by(5) {
        let mut burst = flood.clone();
        let actions = lab.process(CORE_PORT, &mut burst);
        assert!(actions
            .iter()
            .all(|a| *a == Action::Drop(DropReason::NoNeighbor)));
        for s in due(&mut cache, &lab, t0 + Duration::from_millis(ms)) {
            sent.push((ms, s));
        }
    }
    let at: Vec<u64> = sent.iter().map(|(ms, _)| *ms).collect();
    assert_eq!(
        at,
        (0..=10).map(|s| s * 1000).collect::<Vec<_>>(),
        "one at 0, 1, ..., 10 s (RFC 4861 RETRANS_TIMER)"
    );
    assert!(sent.iter().all(|(_, s)| *s == (CORE_PORT, NH, LC6, None)));
}

#[test]
fn an_unanswered_next_hop_is_counted_and_a_silent_one_forgotten() {
    let mut lab = Lab::new();
    let t0 = Instant::now();
    let mut cache = NdCache::new(t0);
    let wanted = |lab: &Lab| {
        let snap = std::sync::Arc::clone(&lab.snap);
        move |p, ip| snap.wants_neighbor6(p, ip)
    };
    for s in 0..3 {
        assert_eq!(due(&mut cache, &lab, t0 + Duration::from_secs(s)).len(), 1);
    }
    let almost = t0 + NdCache::UNANSWERED - Duration::from_millis(1);
    assert_eq!(cache.expire(almost, wanted(&lab)), Expired::default());
    // Three solicitations, a second apart, unanswered: counted once, and still asked for
    // (a route needs it).
    let late = t0 + NdCache::UNANSWERED;
    let e = cache.expire(late, wanted(&lab));
    assert_eq!(e.unanswered, [(CORE_PORT, NH)]);
    assert!(e.forgotten.is_empty());
    assert_eq!(cache.counters().unanswered, 1);
    assert!(cache
        .expire(late + Duration::from_secs(5), wanted(&lab))
        .unanswered
        .is_empty());
    assert_eq!(cache.counters().unanswered, 1, "once");
    assert_eq!(due(&mut cache, &lab, late).len(), 1, "asked again");

    // Answered, it is learned; 30 s without an answer, it is probed unicast; answering
    // keeps it, and silence for 3 s more forgets it (RFC 4861 7.3.3, MAX_UNICAST_SOLICIT).
    let t1 = late + Duration::from_millis(100);
    let (ip, how) = heard(&mut lab, &advert(NH, Some(NH_MAC_S), NH_MAC_S, 1, 1)).unwrap();
    assert_eq!(
        cache.heard(CORE_PORT, ip, how, false, t1),
        Decision::Learn(NH_MAC)
    );
    lab.builder.neighbor6(CORE_PORT, NH, NH_MAC);
    lab.snap = lab.builder.build().unwrap();
    assert!(due(&mut cache, &lab, t1 + Duration::from_secs(29)).is_empty());
    let probe = t1 + NdCache::REACHABLE;
    assert_eq!(
        due(&mut cache, &lab, probe),
        [(CORE_PORT, NH, LC6, Some(NH_MAC))]
    );
    let (ip, how) = heard(&mut lab, &advert(NH, Some(NH_MAC_S), NH_MAC_S, 1, 1)).unwrap();
    assert_eq!(
        cache.heard(CORE_PORT, ip, how, false, probe),
        Decision::Unchanged
    );
    let silent = probe + NdCache::REACHABLE;
    assert_eq!(due(&mut cache, &lab, silent).len(), 1, "probed again");
    let e = cache.expire(
        silent + NdCache::UNANSWERED - Duration::from_millis(1),
        wanted(&lab),
    );
    assert!(e.forgotten.is_empty(), "still in time");
    let e = cache.expire(silent + NdCache::UNANSWERED, wanted(&lab));
    assert_eq!(e.forgotten, [(CORE_PORT, NH)]);
    assert_eq!(e.unreachable, [(CORE_PORT, NH)]);
    assert_eq!(cache.counters().unreachable, 1);
    assert_eq!(cache.learned(CORE_PORT, NH), None);
    // A next hop no route needs any more is forgotten at once, without a count.
    let mut lab = Lab::new();
    let mut cache = NdCache::new(t0);
    due(&mut cache, &lab, t0);
    let (ip, how) = heard(&mut lab, &advert(NH, Some(NH_MAC_S), NH_MAC_S, 1, 1)).unwrap();
    cache.heard(CORE_PORT, ip, how, false, t0);
    let e = cache.expire(t0, |_, _| false);
    assert_eq!(e.forgotten, [(CORE_PORT, NH)]);
    assert!(e.unreachable.is_empty());
    assert_eq!(cache.held(), (0, 0));
}
