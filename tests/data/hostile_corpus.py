#!/usr/bin/env python3
"""The malformed and hostile packet corpus for tests/tests/hostile_corpus.rs.

Usage: hostile_corpus.py DIR LAB_JSON corpus:N

LAB_JSON is the lab of backbone_tests::e2e (the same one tests/data/e2e_traffic.py
takes). N is the number of random variants of each randomised case: each variant draws
every field except the one under test (addresses inside the right prefixes, ports,
payload size, DSCP, identification, DF, TTL, outer TTL and DSCP) from a fixed seed, so
the corpus is the same on every run. Checksums are valid unless the checksum is the
defect.

Writes DIR/client-in.pcap (what arrives on client0) and DIR/inet-in.pcap (internet0), and
prints the manifest on stdout (its fields are described in tests/src/e2e.rs): one
expected outcome per packet, "fwd" (with the exact inner packet expected out),
"drop:<SPEC reason>", or "punt:<reason>" (ARP with what the handler must do).

The categories (one function each, in this order):
  truncation    frames cut at every header boundary (and one byte either side), raw and
                with the outer length and checksums fixed up so the cut reaches the next
                header's check
  ipv4_fields   outer and inner version, IHL, total length, options, padding
  checksums     outer, inner and GRE checksums wrong (and GRE checksums right where the
                tunnel does not ask for them)
  fragments     outer fragments to us (dropped), inner and transit fragments (forwarded)
  gre_bits      every forbidden GRE bit, every version, every ignored reserved bit,
                protocol types
  gre_keys      wrong, missing and unexpected keys; GRE and IPIP from the wrong routers
  sequence      replays, old numbers, the half-window edge, wrap-around, jumps confirmed
                and not, drops after the check that must not move the state, restarts
  nesting       IPIP in GRE in IPIP (and deeper) addressed to us; nested to others
  outer_spoof   martian and unknown outer sources, wrong local addresses
  inner_spoof   inner sources of other clients, martians, nobody's
  ttl           inner TTL 0, 1, 2, 255; outer TTL 0 and 1; transit TTL
  ecn           CE outer over Not-ECT inner (and the forwarded combinations)
  jumbo         frames and inner packets around and far above the MTUs, multi-segment
                frames (over the 2048-byte mbuf data room)
  arp           storms of requests for our addresses, ARP for addresses not ours,
                malformed ARP, replies, spoofed replies for a static neighbour
  broadcast     broadcast and multicast Ethernet and IPv4 destinations
  icmp_never    drops that would get an ICMP error but are about an ICMP error, a
                non-first fragment, or to broadcast or multicast (none sent), beside
                answered controls
  underlay_icmp ICMP Fragmentation Needed from the underlay: forged (quoting a header none
                of our tunnels sends: wrong local, remote, protocol, key, GRE flags;
                truncated; malformed; an MTU the packet would fit), about a non-tunnel
                packet (any ICMP to us), genuine (the tunnel's MTU comes down: checked at
                the end)
  ipv6_inner    IPv6 in GRE (0x86DD) and in IPv4 (41): broken fixed headers, sources no node
                sends from, extension header chains (random, long, cut short), 41 to GRE
  ethertypes    VLAN, QinQ, IPv6, 802.3 lengths and others

SPEC.md decides where the test plan asks for more (each is said where it applies):
a tunnel is found by (local, remote, protocol, key), not by the port a packet arrives on;
a GRE sequence number more than a small window (1,024) from the last accepted one, ahead or
behind, is accepted only when the next number confirms it (CONFIG.md), and the state moves
only for packets that pass every check of termination; inner protocol 41 to us is punted.
"""
import json
import random
import struct
import sys

from scapy.all import (ARP, ICMP, IP, TCP, UDP, Ether, IPOption, IPv6, IPv6ExtHdrDestOpt,
                       IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, Raw)

import spec_icmp

OUT_DIR, LAB, SCENARIO = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
VARIANTS = int(SCENARIO.split(":")[1])
PORTS, TUNNELS = LAB["ports"], LAB["tunnels"]
CLIENT, INET = "client-in.pcap", "inet-in.pcap"
CAPTURE_PORT = {CLIENT: "client0", INET: "internet0"}
ME = PORTS["client0"]["addr"]             # 192.0.2.1
ME_INET = PORTS["internet0"]["addr"]      # 203.0.113.1
UPSTREAM_MAC = PORTS["internet0"]["upstream_mac"]
MBUF_DATA_ROOM = 2048                      # RTE_MBUF_DEFAULT_BUF_SIZE - headroom

rng = random.Random(0x6b6e6f62)
captures = {CLIENT: [], INET: []}
manifest = []
next_id = [0]
# GRE sequence state of the tunnels that check it, as the router must track it: the next
# number to send, and the last one accepted (None before the first).
seq_next = {n: 1000 for n, t in TUNNELS.items() if t["sequence"]}
seq_last = {n: None for n in seq_next}
# The last number refused for jumping beyond the window (see take_seq).
seq_jump = {n: None for n in seq_next}
SEQ_WINDOW = 1024


# ---------------------------------------------------------------------------------------
# Building blocks.

def new_id():
    next_id[0] += 1
    return next_id[0]


def tag(fid, size=0):
    p = b"flow=%06d;" % fid
    return p + b"." * max(0, size - len(p))


def inet_checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def routed(inner, tos=None):
    """The inner packet as the router sends it on: cut to its total length, TTL - 1,
    ECN as decapsulation sets it (`tos`), header checksum computed from scratch."""
    b = bytearray(bytes(inner))
    ihl = (b[0] & 0x0F) * 4
    b = b[:(b[2] << 8) | b[3]]
    if tos is not None:
        b[1] = tos
    b[8] -= 1
    b[10:12] = b"\0\0"
    b[10:12] = struct.pack("!H", inet_checksum(bytes(b[:ihl])))
    return bytes(b).hex()


def host(tname, r=None):
    """An address inside tunnel `tname`'s client prefix (a /16)."""
    r = r or rng
    return "%s.%d.%d" % (TUNNELS[tname]["net"], r.randrange(0, 256), r.randrange(1, 255))


def inner_udp(fid, src, dst, ttl=None, tos=None, df=None, size=None, flags=None, frag=0,
              options=None, proto_payload=None):
    """A random inner packet carrying the flow id: every field not given is drawn."""
    ttl = rng.randrange(2, 256) if ttl is None else ttl
    tos = (rng.randrange(64) << 2) if tos is None else tos
    if flags is None:
        flags = "DF" if (rng.random() < 0.5 if df is None else df) else 0
    ip = IP(src=src, dst=dst, ttl=ttl, tos=tos, flags=flags, frag=frag,
            id=rng.randrange(0x10000))
    if options is not None:
        ip.options = options
    if proto_payload is not None:
        return IP(bytes(ip / proto_payload))
    kind = rng.randrange(3)
    l4 = (UDP(sport=rng.randrange(1024, 65536), dport=rng.randrange(1, 65536)) if kind == 0
          else TCP(sport=rng.randrange(1024, 65536), dport=443, flags="S",
                   seq=rng.randrange(1 << 32)) if kind == 1
          else ICMP(id=rng.randrange(0x10000), seq=rng.randrange(0x10000)))
    pkt = ip / l4 / Raw(tag(fid, rng.randrange(0, 200)))
    if size is not None:
        head = len(bytes(ip / l4))
        pkt = ip / l4 / Raw(tag(fid, size - head))
        assert len(bytes(pkt)) == size, (len(bytes(pkt)), size)
    return IP(bytes(pkt))


def gre_header(flags, proto=0x0800, key=None, seq=None, csum_field=None):
    """GRE as RFC 2784/2890 lay it out (the length follows C, K and S only)."""
    h = struct.pack("!HH", flags, proto)
    if flags & 0x8000:
        h += struct.pack("!HH", csum_field or 0, 0)
    if flags & 0x2000:
        h += struct.pack("!I", key or 0)
    if flags & 0x1000:
        h += struct.pack("!I", seq or 0)
    return h


def with_gre_checksum(gre_packet):
    """Fill the checksum of a GRE packet that has C set (over header and payload)."""
    b = bytearray(gre_packet)
    b[4:6] = b"\0\0"
    b[4:6] = struct.pack("!H", inet_checksum(bytes(b)))
    return bytes(b)


# Where a packet's journey ends, by its expected outcome: before the GRE sequence check
# (the state is not consulted), or after every check of tunnel termination (the packet
# passes them: the state moves). Drops in between fail termination after the sequence check.
BEFORE_SEQUENCE = {"runt", "oversize_frame", "not_for_us", "unsupported_ethertype", "bad_ipv4",
                   "martian", "outer_fragment", "no_tunnel", "bad_gre", "bad_gre_checksum",
                   "unsupported_inner"}
PASS_TERMINATION = {"fwd", "punt:local_inner"} | {
    "drop:" + r for r in ["no_route", "martian_destination", "hairpin", "tunnel_loop",
                          "no_headroom", "mtu_exceeded", "no_neighbor"]}
# The sequence number of the last tunnel frame built, judged when add() learns its fate.
pending_seq = []


def seq_verdict(tname, seq):
    """What the router makes of `seq` now (CONFIG.md, GRE sequence numbers): "ok" for the
    first number, one at most the window ahead, or the number right after a remembered
    jump; "old" for a replay or one at most the window behind; else "unconfirmed"."""
    last = seq_last[tname]
    if last is None:
        return "ok"
    ahead = (seq - last) & 0xFFFFFFFF
    if ahead == 0 or (-ahead) & 0xFFFFFFFF <= SEQ_WINDOW:
        return "old"
    jump = seq_jump[tname]
    if ahead <= SEQ_WINDOW or (jump is not None and (jump + 1) & 0xFFFFFFFF == seq):
        return "ok"
    return "unconfirmed"


def take_seq(tname, seq=None):
    """A sequence number for a packet of tunnel `tname` (the next one unless given), and
    whether the router accepts it as the state stands. The state moves when add() learns
    that the packet passes every other check of termination."""
    auto = seq is None
    seq = (seq_next[tname] if auto else seq) & 0xFFFFFFFF
    if auto:
        seq_next[tname] = (seq + 1) & 0xFFFFFFFF
    assert not pending_seq, "a tunnel frame was built and never added"
    pending_seq.append((tname, seq))
    return seq, seq_verdict(tname, seq) == "ok"


def settle_seq(expect, events):
    """The outcome of the frame being added, given its sequence number: a number the router
    refuses turns any later outcome into gre_sequence (and the events counted after the
    GRE header into none); an accepted number moves the state only for a packet that
    passes every check, and an unconfirmed jump is remembered only from such a packet."""
    if not pending_seq:
        return expect, events
    tname, seq = pending_seq.pop()
    reason = expect[len("drop:"):] if expect.startswith("drop:") else None
    if reason in BEFORE_SEQUENCE:
        return expect, events
    verdict = seq_verdict(tname, seq)
    # Packets the corpus expects to fail on their sequence carry a good inner packet.
    passes = expect in PASS_TERMINATION or reason == "gre_sequence"
    if verdict == "ok":
        assert reason != "gre_sequence", (tname, seq, "accepted, but expected refused")
        if passes:
            seq_last[tname] = seq
            seq_next[tname] = (seq + 1) & 0xFFFFFFFF
        return expect, events
    if verdict == "unconfirmed" and passes:
        seq_jump[tname] = seq
    return "drop:gre_sequence", [e for e in events if e == "gre_reserved_ignored"]


def outer_ip(tname, **kw):
    t = TUNNELS[tname]
    o = dict(src=t["remote"], dst=t["local"], ttl=rng.randrange(0, 256),
             tos=rng.randrange(64) << 2, id=rng.randrange(0x10000),
             proto=4 if t["mode"] == "ipip" else 47, flags=rng.choice([0, "DF"]))
    o.update(kw)
    return IP(**o)


def tunnel_frame(tname, payload, outer=None, gre_flags=None, key="tunnel", seq="next",
                 proto=0x0800, csum="right", eth_dst=None):
    """What tunnel `tname`'s router sends: Ethernet, outer IPv4, GRE as configured, the
    payload (bytes or a scapy packet). Returns (frame, sequence accepted or None)."""
    t = TUNNELS[tname]
    e = Ether(src=t["mac"], dst=eth_dst or PORTS[t["port"]]["mac"])
    ip = outer_ip(tname, **(outer or {}))
    payload = bytes(payload)
    if t["mode"] == "ipip":
        return e / ip / Raw(payload), None
    k = t["key"] if key == "tunnel" else key
    flags = 0
    if t["checksum"]:
        flags |= 0x8000
    if k is not None:
        flags |= 0x2000
    accepted = None
    s = None
    if t["sequence"] and seq is not None:
        flags |= 0x1000
        s, accepted = take_seq(tname, None if seq == "next" else seq)
    elif seq not in ("next", None):
        flags |= 0x1000
        s = seq
    if gre_flags is not None:
        flags = gre_flags(flags)
    g = gre_header(flags, proto, k, s) + payload
    if flags & 0x8000:
        if csum == "right":
            g = with_gre_checksum(g)
        elif csum is not None:
            g = g[:4] + struct.pack("!H", csum) + g[6:]
    return e / ip / Raw(g), accepted


OURS = {p["addr"] for p in PORTS.values()}


def icmp_for(capture, frame, expect, ingress, icmp_mtu):
    """The ICMP error SPEC.md answers a drop with (see spec_icmp.py), or None: TTL expiry,
    no route, and, with `icmp_mtu`, a packet too big with DF set. Back into the ingress
    tunnel, or natively to the frame's sender. (A blackhole route would be silent: the
    assertion keeps the lab's only one, 10.66.0.0/16, out of the no_route cases.)"""
    kinds = {"drop:ttl_exceeded": spec_icmp.TIME_EXCEEDED,
             "drop:no_route": spec_icmp.NET_UNREACHABLE}
    if expect == "drop:mtu_exceeded" and icmp_mtu is not None:
        kind = spec_icmp.FRAG_NEEDED
    elif expect in kinds:
        kind = kinds[expect]
    else:
        return None
    raw = bytes(frame)
    if ingress is not None:
        packet = spec_icmp.inner_of_frame(raw)
        t = TUNNELS[ingress]
        err = spec_icmp.expect(kind, packet, ingress, t["local"], t["inner_mtu"], OURS,
                               mtu=icmp_mtu or 0)
    else:
        packet = raw[14:]
        port = PORTS[CAPTURE_PORT[capture]]
        err = spec_icmp.expect(kind, packet, "native:" + CAPTURE_PORT[capture], port["addr"],
                               port["mtu"], OURS, mtu=icmp_mtu or 0, mac=Ether(raw).src)
    if err is not None and expect == "drop:no_route":
        assert not err["quote_hex"][32:36] == "0a42", "a blackhole is silent: not covered"
    return err


def add(capture, frame, expect, fid=None, ingress=None, egress=None, inner=None, tos=None,
        events=(), arp=None, icmp_mtu=None, pmtu=None):
    assert (expect == "fwd") == (egress is not None), expect
    expect, events = settle_seq(expect, events)
    if expect != "fwd":
        egress = inner = None
    captures[capture].append(bytes(frame))
    manifest.append(dict(
        id=fid, capture=capture, expect=expect, ingress=ingress, egress=egress,
        inner_hex=routed(inner, tos) if egress else None, events=list(events), arp=arp,
        icmp=icmp_for(capture, frame, expect, ingress, icmp_mtu), pmtu=pmtu))


def capture_of(tname):
    return CLIENT if TUNNELS[tname]["port"] == "client0" else INET


def through(src_t, dst_t, expect, inner_kw=None, events=(), new_tos=None, icmp_mtu=None,
            **frame_kw):
    """A random flow from tunnel `src_t`'s clients to `dst_t`'s (a tunnel name, or an
    address), sent through `src_t`; `expect` "fwd" or a drop reason. `icmp_mtu`: for
    mtu_exceeded, the MTU a Fragmentation Needed carries (given only when DF is set)."""
    fid = new_id()
    kw = dict(inner_kw or {})
    src = kw.pop("src", None) or host(src_t)
    dst = kw.pop("dst", None) or (host(dst_t) if dst_t in TUNNELS else dst_t)
    inner = inner_udp(fid, src, dst, **kw)
    frame, _ = tunnel_frame(src_t, inner, **frame_kw)
    if expect == "fwd":
        add(capture_of(src_t), frame, "fwd", fid, src_t, dst_t, inner, new_tos, events)
    else:
        df = bool(int(inner.flags) & 2)
        add(capture_of(src_t), frame, "drop:" + expect, fid, src_t, events=events,
            icmp_mtu=icmp_mtu if df else None)
    return frame


def good_pair():
    """A random (ingress, egress) pair of tunnels that forwards: not the same tunnel, not
    nonbr (no neighbour), not into edge2 from the core."""
    pairs = [("acme", "bravo"), ("acme", "globex"), ("bravo", "initech"), ("globex", "acme"),
             ("initech", "bravo"), ("edge2", "acme"), ("acme", "edge2"), ("bravo", "acme")]
    return rng.choice(pairs)


def gre_len(tname):
    """The GRE header length tunnel `tname` sends (0 for IPIP)."""
    t = TUNNELS[tname]
    if t["mode"] == "ipip":
        return 0
    return 4 + 4 * (int(t["checksum"]) + int(t["key"] is not None) + int(t["sequence"]))


def variants(n=None):
    return range(VARIANTS if n is None else n)


# ---------------------------------------------------------------------------------------
# The categories.

def truncation():
    # Raw cuts: the headers say more than the frame holds.
    for src_t, dst_t in [("acme", "bravo"), ("globex", "acme"), ("initech", "bravo"),
                         ("edge2", "acme")]:
        fid = new_id()
        inner = inner_udp(fid, host(src_t), host(dst_t))
        frame, _ = tunnel_frame(src_t, inner)
        frame = bytes(frame)
        inner_at = 34 + gre_len(src_t)
        cuts = {0, 1, 6, 12, 13, 14, 15, 33, 34, 35, 37, 38, 39, inner_at - 1, inner_at,
                inner_at + 1, inner_at + 19, inner_at + 20, inner_at + 27, inner_at + 28,
                len(frame) - 1}
        cuts |= {rng.randrange(len(frame)) for _ in variants()}
        for cut in sorted(c for c in cuts if c < len(frame)):
            reason = "runt" if cut < 14 else "bad_ipv4"
            add(capture_of(src_t), Raw(frame[:cut]), "drop:" + reason)

    # Fixed-up cuts: outer total length and checksum match the cut (and the GRE checksum
    # where the tunnel has one), so each cut reaches the check of the header it cuts.
    for src_t in ["acme", "globex", "initech", "bravo"]:
        t = TUNNELS[src_t]
        glen = gre_len(src_t)
        fid = new_id()
        inner = bytes(inner_udp(fid, host(src_t), host("acme" if src_t != "acme" else "bravo")))
        keeps = {0, 1, 3, 4, 5, glen - 1, glen, glen + 1, glen + 19, glen + 20,
                 glen + len(inner) - 1}
        keeps |= {rng.randrange(glen + len(inner)) for _ in variants()}
        for keep in sorted(k for k in keeps if k >= 0):
            seq = None
            if t["mode"] == "gre":
                flags = (0x8000 if t["checksum"] else 0) | \
                        (0x2000 if t["key"] is not None else 0) | \
                        (0x1000 if t["sequence"] else 0)
                whole_gre = keep >= glen
                if t["sequence"]:
                    seq, _ = take_seq(src_t)
                g = (gre_header(flags, 0x0800, t["key"], seq) + inner)[:keep]
                if whole_gre and flags & 0x8000:
                    g = with_gre_checksum(g)
                payload = g
            else:
                payload = inner[:keep]
            ip = outer_ip(src_t)
            frame = Ether(src=t["mac"], dst=PORTS[t["port"]]["mac"]) / ip / Raw(payload)
            if t["mode"] == "gre" and keep < glen:
                add(CLIENT, frame, "drop:bad_gre", ingress=src_t)
            else:
                add(CLIENT, frame, "drop:bad_inner_ipv4", ingress=src_t)
    # A cut that leaves a stale GRE checksum: the checksum fails first.
    fid = new_id()
    inner = bytes(inner_udp(fid, host("globex"), host("acme")))
    seq, _ = take_seq("globex")
    g = with_gre_checksum(gre_header(0xB000, 0x0800, TUNNELS["globex"]["key"], seq) + inner)
    add(CLIENT, Ether(src=TUNNELS["globex"]["mac"], dst=PORTS["client0"]["mac"]) /
        outer_ip("globex") / Raw(g[:-7]), "drop:bad_gre_checksum", ingress="globex")


def ipv4_fields():
    acme = TUNNELS["acme"]
    to_me = dict(src=acme["mac"], dst=PORTS["client0"]["mac"])
    for _ in variants():
        # Outer version other than 4, IHL under 5, total length under the header, over
        # the frame (checksums right).
        fid = new_id()
        inner = inner_udp(fid, host("acme"), host("bravo"))
        g = gre_header(0x2000, 0x0800, acme["key"]) + bytes(inner)
        for bad in [dict(version=rng.choice([0, 1, 2, 3, 5, 6, 7, 15])),
                    dict(ihl=rng.randrange(0, 5)),
                    dict(len=rng.randrange(0, 20)),
                    dict(len=20 + len(g) + rng.randrange(1, 100)),
                    dict(len=0xFFFF)]:
            add(CLIENT, Ether(**to_me) / outer_ip("acme", **bad) / Raw(g), "drop:bad_ipv4",
                fid)
        # IHL longer than the frame: a 20-byte header claiming 60 bytes.
        raw = bytearray(bytes(outer_ip("acme", len=20) / Raw(b"")))
        raw[0] = 0x4F
        raw[10:12] = b"\0\0"
        add(CLIENT, Ether(type=0x0800, **to_me) / Raw(bytes(raw)), "drop:bad_ipv4")
        # Outer options (IHL 6 to 15): accepted.
        n = rng.randrange(1, 11)
        through("acme", "bravo", "fwd",
                outer=dict(options=[IPOption(b"\x01" * (4 * n - 1) + b"\x00")]))
        # Ethernet padding after the outer packet: trimmed, forwarded.
        fid = new_id()
        src_t, dst_t = good_pair()
        inner = inner_udp(fid, host(src_t), host(dst_t))
        frame, _ = tunnel_frame(src_t, inner)
        pad = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        add(capture_of(src_t), Raw(bytes(frame) + pad), "fwd", fid, src_t, dst_t, inner)

        # Inner: version, IHL, total length under the header or beyond the packet.
        for bad in [dict(version=rng.choice([0, 3, 5, 6, 15])), dict(ihl=rng.randrange(0, 5)),
                    dict(len=rng.randrange(0, 20)), dict(len=rng.randrange(200, 0x10000))]:
            fid = new_id()
            inner = IP(src=host("acme"), dst=host("bravo"), **bad) / UDP() / Raw(tag(fid))
            frame, _ = tunnel_frame("acme", inner)
            add(CLIENT, frame, "drop:bad_inner_ipv4", fid, "acme")
        # Inner IHL beyond the inner packet (header shorter than it claims).
        raw = bytearray(bytes(IP(src=host("initech"), dst=host("bravo"))))
        raw[0] = 0x40 | rng.randrange(6, 16)
        frame, _ = tunnel_frame("initech", Raw(bytes(raw)))
        add(CLIENT, frame, "drop:bad_inner_ipv4", ingress="initech")
        # Inner options: forwarded with them.
        n = rng.randrange(1, 11)
        src_t, dst_t = good_pair()
        through(src_t, dst_t, "fwd",
                inner_kw=dict(options=[IPOption(b"\x01" * (4 * n - 1) + b"\x00")]))
        # Bytes after the inner total length (inside the outer packet): trimmed.
        fid = new_id()
        src_t, dst_t = good_pair()
        inner = inner_udp(fid, host(src_t), host(dst_t))
        frame, _ = tunnel_frame(src_t, bytes(inner) + b"J" * rng.randrange(1, 100))
        add(capture_of(src_t), frame, "fwd", fid, src_t, dst_t, inner)


def checksums():
    for _ in variants():
        # Outer header checksum wrong.
        fid = new_id()
        src_t, dst_t = good_pair()
        inner = inner_udp(fid, host(src_t), host(dst_t))
        frame, _ = tunnel_frame(src_t, inner)
        b = bytearray(bytes(frame))
        b[24:26] = struct.pack("!H", (b[24] << 8 | b[25]) ^ rng.randrange(1, 0x10000))
        add(capture_of(src_t), Raw(bytes(b)), "drop:bad_ipv4", fid)
        # Inner header checksum wrong.
        fid = new_id()
        src_t, dst_t = good_pair()
        inner = bytearray(bytes(inner_udp(fid, host(src_t), host(dst_t))))
        inner[10:12] = struct.pack("!H", (inner[10] << 8 | inner[11]) ^ rng.randrange(1, 0x10000))
        frame, _ = tunnel_frame(src_t, bytes(inner))
        add(capture_of(src_t), frame, "drop:bad_inner_ipv4", fid, src_t)
        # GRE checksum present and wrong: on globex (configured), on acme and bravo (not).
        for tname in ["globex", "edge2", "acme", "bravo"]:
            fid = new_id()
            inner = inner_udp(fid, host(tname), host("initech"))
            frame, _ = tunnel_frame(tname, inner, gre_flags=lambda f: f | 0x8000,
                                    csum=rng.randrange(0x10000))
            g = bytes(frame)[34:]
            if inet_checksum(g) != 0:  # a random value may be right by chance
                add(capture_of(tname), frame, "drop:bad_gre_checksum", fid, tname)
        # GRE checksum present and right where the tunnel does not ask for it: accepted.
        through("bravo", "acme", "fwd", gre_flags=lambda f: f | 0x8000)


def fragments():
    for _ in variants():
        for frag in [dict(flags="MF"), dict(frag=rng.randrange(1, 8192)),
                     dict(flags="MF", frag=rng.randrange(1, 8192)),
                     dict(flags="DF+MF")]:
            tname = rng.choice(["acme", "globex", "initech", "edge2"])
            fid = new_id()
            inner = inner_udp(fid, host(tname), host("bravo"))
            frame, _ = tunnel_frame(tname, inner, outer=frag)
            add(capture_of(tname), frame, "drop:outer_fragment", fid)
        # ... even with a wrong key (the fragment check comes first), and ICMP to us.
        frame, _ = tunnel_frame("acme", Raw(b"x" * 40), key=rng.randrange(1 << 32),
                                outer=dict(flags="MF"))
        add(CLIENT, frame, "drop:outer_fragment")
        add(CLIENT, Ether(src=TUNNELS["acme"]["mac"], dst=PORTS["client0"]["mac"]) /
            IP(src=TUNNELS["acme"]["remote"], dst=ME, frag=rng.randrange(1, 8192)) / Raw(b"x" * 8),
            "drop:outer_fragment")
        # Inner fragments: the client's traffic, forwarded as they are.
        for frag in [dict(flags="MF"), dict(frag=rng.randrange(1, 8192)),
                     dict(flags="MF", frag=rng.randrange(1, 8192))]:
            src_t, dst_t = good_pair()
            through(src_t, dst_t, "fwd", inner_kw=frag)
        # Transit fragments from the internet into a tunnel: forwarded too.
        fid = new_id()
        inner = inner_udp(fid, "198.18.%d.%d" % (rng.randrange(256), rng.randrange(1, 255)),
                          host("acme"), flags="MF", frag=rng.randrange(0, 8192))
        add(INET, Ether(src=UPSTREAM_MAC, dst=PORTS["internet0"]["mac"]) / inner, "fwd", fid,
            None, "acme", inner)


def gre_bits():
    forbidden = [0x4000, 0x0800, 0x0400, 0x0500, 0x0600, 0x0700, 0x4C00] + list(range(1, 8))
    for bits in forbidden:
        tname = rng.choice(["acme", "bravo", "globex"])
        fid = new_id()
        inner = inner_udp(fid, host(tname), host("initech"))
        frame, _ = tunnel_frame(tname, inner, gre_flags=lambda f, b=bits: f | b)
        add(CLIENT, frame, "drop:bad_gre", fid, tname)
    # Forbidden bits with a wrong key: the header is checked before the tunnel lookup
    # (SPEC.md tunnel termination step 2), so it is bad_gre, not no_tunnel.
    frame, _ = tunnel_frame("acme", Raw(b"x" * 30), key=7, gre_flags=lambda f: f | 0x4000)
    add(CLIENT, frame, "drop:bad_gre")
    # Version 1 with K set (PPTP's enhanced GRE: the key field holds a length and call id).
    for _ in variants():
        frame, _ = tunnel_frame("acme", Raw(b"x" * 30), key=rng.randrange(1 << 32),
                                proto=0x880B, gre_flags=lambda f: f | 0x0001)
        add(CLIENT, frame, "drop:bad_gre")
    # Bits 6-12, one at a time and all together: ignored on receipt, counted.
    combos = [rng.randrange(1, 128) << 3 for _ in variants()]
    for bits in [0x0200, 0x0100, 0x0080, 0x0040, 0x0020, 0x0010, 0x0008, 0x03F8] + combos:
        src_t, dst_t = rng.choice([("acme", "bravo"), ("globex", "initech"), ("bravo", "acme")])
        through(src_t, dst_t, "fwd", gre_flags=lambda f, b=bits: f | b,
                events=["gre_reserved_ignored"])
    # ... and counted also when the packet is dropped later.
    through("acme", "acme", "hairpin", gre_flags=lambda f: f | 0x0010,
            events=["gre_reserved_ignored"])
    # Protocol types other than IPv4 and IPv6; an IPv4 packet labelled IPv6 (RFC 7676's
    # 0x86DD) is a broken IPv6 header.
    for proto in [0x0000, 0x86DD, 0x6558, 0x88BE, 0x880B, 0x0806, 0x8847, 0xFFFF,
                  rng.randrange(0x10000)]:
        if proto == 0x0800:
            continue
        tname = rng.choice(["acme", "bravo", "globex"])
        fid = new_id()
        inner = inner_udp(fid, host(tname), host("initech"))
        frame, _ = tunnel_frame(tname, inner, proto=proto)
        expect = "drop:bad_inner_ipv6" if proto == 0x86DD else "drop:unsupported_inner"
        add(CLIENT, frame, expect, fid, tname)


def gre_keys():
    for _ in variants():
        cases = [
            ("acme", dict(key=rng.choice([0, 1, 99, 101, 300, 500, 900, 0xFFFFFFFF,
                                           rng.randrange(1 << 32)]))),
            ("acme", dict(key=None)),                   # missing
            ("globex", dict(key=None)),
            ("globex", dict(key=100)),                  # acme's key from globex's router
            ("bravo", dict(key=rng.randrange(1 << 32))),  # a key on a keyless tunnel
            ("edge2", dict(key=100)),
        ]
        for tname, kw in cases:
            if kw.get("key") == TUNNELS[tname]["key"]:
                continue
            fid = new_id()
            inner = inner_udp(fid, host(tname), host("initech"))
            frame, _ = tunnel_frame(tname, inner, **kw)
            add(capture_of(tname), frame, "drop:no_tunnel", fid)
        # IPIP from a GRE-only router, GRE from the IPIP-only one.
        fid = new_id()
        inner = inner_udp(fid, host("acme"), host("bravo"))
        add(CLIENT, Ether(src=TUNNELS["acme"]["mac"], dst=PORTS["client0"]["mac"]) /
            outer_ip("acme", proto=4) / inner, "drop:no_tunnel", fid)
        fid = new_id()
        inner = inner_udp(fid, host("initech"), host("bravo"))
        add(CLIENT, Ether(src=TUNNELS["initech"]["mac"], dst=PORTS["client0"]["mac"]) /
            outer_ip("initech", proto=47) / Raw(gre_header(0) + bytes(inner)),
            "drop:no_tunnel", fid)


def sequence():
    def globex(seq, expect_if_ok="fwd"):
        fid = new_id()
        inner = inner_udp(fid, host("globex"), host("acme"))
        before = seq_last["globex"]
        frame, ok = tunnel_frame("globex", inner, seq=seq)
        if ok:
            add(CLIENT, frame, "fwd", fid, "globex", "acme", inner)
        else:
            add(CLIENT, frame, "drop:gre_sequence", fid, "globex")
        return before, ok

    for _ in variants():
        last = seq_next["globex"]
        _, ok = globex(last)
        assert ok
        globex(last)                                   # replay
        globex(last - 1)                               # older
        globex((last - rng.randrange(2, 1 << 31)) & 0xFFFFFFFF)  # much older
        globex(last + rng.randrange(1, 1000))          # a gap: fine
        # Missing S on a tunnel that requires it.
        fid = new_id()
        inner = inner_udp(fid, host("globex"), host("acme"))
        frame, _ = tunnel_frame("globex", inner, seq=None)
        add(CLIENT, frame, "drop:gre_sequence", fid, "globex")
        # S on a tunnel that does not ask for it: ignored.
        through("acme", "bravo", "fwd", seq=rng.randrange(1 << 32))
    # Exactly half the number space ahead: neither later nor earlier (RFC 1982): refused.
    last = seq_last["globex"]
    _, ok = globex((last + (1 << 31)) & 0xFFFFFFFF)
    assert not ok
    # One less, one forged number far ahead: refused, and the sender goes on (the bounded
    # window; SPEC.md's "later than the last accepted" alone would lock it out).
    _, ok = globex((last + (1 << 31) - 1) & 0xFFFFFFFF)
    assert not ok
    _, ok = globex((last + 1) & 0xFFFFFFFF)
    assert ok
    # A gap of the whole window is fine; one more is a jump.
    _, ok = globex((last + 1 + SEQ_WINDOW) & 0xFFFFFFFF)
    assert ok
    # A packet dropped after the sequence check (a spoofed inner source) does not move the
    # window: a good packet with an earlier number is still accepted.
    last = seq_last["globex"]
    fid = new_id()
    frame, ok = tunnel_frame("globex", inner_udp(fid, host("acme"), host("bravo")),
                             seq=(last + 1000) & 0xFFFFFFFF)
    assert ok
    add(CLIENT, frame, "drop:inner_spoofed", fid, "globex")
    _, ok = globex((last + 500) & 0xFFFFFFFF)
    assert ok
    # A jump is remembered only from a packet that passes the other checks: a spoofed one
    # far ahead is a gre_sequence drop, and the good one after it confirms nothing (it is a
    # jump of its own, which the next number confirms).
    far = (last + 500 + (1 << 20)) & 0xFFFFFFFF
    fid = new_id()
    frame, ok = tunnel_frame("globex", inner_udp(fid, host("acme"), host("bravo")), seq=far)
    assert not ok
    add(CLIENT, frame, "drop:inner_spoofed", fid, "globex")
    _, ok = globex((far + 1) & 0xFFFFFFFF)
    assert not ok
    _, ok = globex((far + 2) & 0xFFFFFFFF)
    assert ok
    # A router that restarts its numbering (a reboot) is followed from its second packet.
    _, ok = globex(0x10)
    assert not ok
    _, ok = globex(0x11)
    assert ok
    # The sender skips far ahead: two consecutive numbers, followed from the second; then
    # it climbs (pairs of numbers, steps under 2^31) to the top of the number space and
    # wraps around from 2^32 - 1 to 0.
    while not 0 < ((0xFFFFFFF0 - seq_last["globex"]) & 0xFFFFFFFF) < (1 << 31):
        n = (seq_last["globex"] + (1 << 30)) & 0xFFFFFFFF
        _, ok = globex(n)
        assert not ok
        _, ok = globex((n + 1) & 0xFFFFFFFF)
        assert ok
    # 0xFFFFFFF0 is accepted when within the window of where the climb stopped, else it is
    # a jump and 0xFFFFFFF1 the second of the pair: from there on, all accepted.
    globex(0xFFFFFFF0)
    for n in [0xFFFFFFF1, 0xFFFFFFFE, 0xFFFFFFFF, 0, 1, 2]:
        _, ok = globex(n)
        assert ok, n
    seq_next["globex"] = 3


def nesting():
    acme, initech = TUNNELS["acme"], TUNNELS["initech"]
    for _ in variants():
        # IPIP (initech) carrying GRE to us carrying IPIP to us.
        fid = new_id()
        deepest = inner_udp(fid, host("bravo"), host("acme"))
        gre_in = IP(src=host("initech"), dst=ME, proto=47) / Raw(
            gre_header(0x2000, 0x0800, acme["key"]) +
            bytes(IP(src=acme["remote"], dst=ME, proto=4) / deepest))
        frame, _ = tunnel_frame("initech", IP(bytes(gre_in)))
        add(CLIENT, frame, "drop:nested_tunnel", fid, "initech")
        # GRE in GRE, IPIP in GRE, to each of our addresses; inner sources of anybody (the
        # nesting check comes before the source check).
        for proto, dst in [(47, ME), (4, ME), (47, ME_INET), (4, ME_INET)]:
            fid = new_id()
            body = (gre_header(0) if proto == 47 else b"") + bytes(
                inner_udp(fid, host("acme"), host("bravo")))
            mid = IP(src=rng.choice([host("acme"), host("bravo"), "8.8.8.8"]), dst=dst,
                     proto=proto) / Raw(body)
            tname = rng.choice(["acme", "globex", "initech"])
            frame, _ = tunnel_frame(tname, IP(bytes(mid)))
            add(CLIENT, frame, "drop:nested_tunnel", fid, tname)
    # Deep nesting: every level addressed to us; only the first is looked at.
    for depth in [2, 8, 40]:
        fid = new_id()
        pkt = bytes(inner_udp(fid, host("acme"), host("bravo")))
        for level in range(depth):
            if level % 2:
                pkt = bytes(IP(src=initech["remote"], dst=ME, proto=4) / Raw(pkt))
            else:
                pkt = bytes(IP(src=acme["remote"], dst=ME, proto=47) /
                            Raw(gre_header(0x2000, 0x0800, acme["key"]) + pkt))
        frame, _ = tunnel_frame("acme", IP(pkt))
        add(CLIENT, frame, "drop:nested_tunnel", fid, "acme")
    # Inner protocol 41 (IPv6 in IPv4) to us: a tunnel protocol we terminate, so nested.
    fid = new_id()
    inner = IP(src=host("acme"), dst=ME, proto=41) / IPv6() / Raw(tag(fid))
    frame, _ = tunnel_frame("acme", inner)
    add(CLIENT, frame, "drop:nested_tunnel", fid, "acme")
    # Nested, but to another client's host: just a packet to route, never decapsulated.
    for proto in [47, 4]:
        fid = new_id()
        body = (gre_header(0x2000, 0x0800, 100) if proto == 47 else b"") + bytes(
            inner_udp(fid, "10.77.0.1", ME))
        inner = IP(src=host("acme"), dst=host("bravo"), proto=proto, ttl=64) / Raw(body)
        inner = IP(bytes(inner))
        frame, _ = tunnel_frame("acme", inner)
        add(CLIENT, frame, "fwd", fid, "acme", "bravo", inner)


def outer_spoof():
    acme = TUNNELS["acme"]
    for _ in variants():
        for src in ["0.0.0.0", "0.%d.%d.%d" % tuple(rng.randrange(256) for _ in range(3)),
                    "127.0.0.1", "127.%d.%d.%d" % tuple(rng.randrange(256) for _ in range(3)),
                    "224.0.0.%d" % rng.randrange(256),
                    "%d.1.2.3" % rng.randrange(224, 256), "255.255.255.255"]:
            tname = rng.choice(["acme", "globex", "initech", "edge2"])
            fid = new_id()
            inner = inner_udp(fid, host(tname), host("bravo"))
            frame, _ = tunnel_frame(tname, inner, outer=dict(src=src))
            add(capture_of(tname), frame, "drop:martian", fid)
        # Unknown routers, other tunnels' routers, our own addresses as outer sources; a
        # tunnel's router to our address that is not its tunnel's local.
        for tname, outer in [
                ("acme", dict(src="198.51.100.%d" % rng.randrange(100, 255))),
                ("acme", dict(src=TUNNELS["bravo"]["remote"])),
                ("acme", dict(src=TUNNELS["edge2"]["remote"])),
                ("acme", dict(src=ME)), ("acme", dict(src=ME_INET)),
                ("acme", dict(dst=ME_INET)),
                ("initech", dict(src="198.51.100.%d" % rng.randrange(100, 255))),
                ("initech", dict(dst=ME_INET)),
                ("edge2", dict(src="203.0.113.%d" % rng.randrange(60, 250)))]:
            fid = new_id()
            inner = inner_udp(fid, host(tname), host("bravo"))
            frame, _ = tunnel_frame(tname, inner, outer=outer)
            add(capture_of(tname), frame, "drop:no_tunnel", fid)
        # Not our address at all: no transit on the client port.
        for dst in ["192.0.2.2", "192.0.2.255", "198.51.100.1"]:
            fid = new_id()
            inner = inner_udp(fid, host("acme"), host("bravo"))
            frame, _ = tunnel_frame("acme", inner, outer=dict(dst=dst))
            add(CLIENT, frame, "drop:not_for_us", fid)
    # A tunnel is found by (local, remote, protocol, key) and accepted only on its own port
    # (the test plan's AUTH-6): acme's router "arriving" from the internet port, edge2's
    # from the client port, are nobody's tunnel.
    for _ in variants():
        fid = new_id()
        inner = inner_udp(fid, host("acme"), host("bravo"))
        frame, _ = tunnel_frame("acme", inner, eth_dst=PORTS["internet0"]["mac"])
        add(INET, frame, "drop:no_tunnel", fid)
        fid = new_id()
        inner = inner_udp(fid, host("edge2"), host("bravo"))
        frame, _ = tunnel_frame("edge2", inner, eth_dst=PORTS["client0"]["mac"])
        add(CLIENT, frame, "drop:no_tunnel", fid)


def inner_spoof():
    others = {"acme": ["bravo", "globex", "initech", "nonbr", "edge2"],
              "globex": ["acme", "bravo", "initech", "edge2"],
              "initech": ["acme", "globex", "nonbr"],
              "edge2": ["acme", "bravo", "initech"],
              "bravo": ["acme", "globex", "edge2"]}
    martians = ["0.0.0.0", "127.0.0.1", "224.0.0.5", "240.0.0.1", "255.255.255.255",
                "169.254.1.1", "8.8.8.8", "10.8.0.1", "10.66.0.1"]
    for _ in variants():
        for src_t, victims in others.items():
            dst_t = "initech" if src_t != "initech" else "bravo"
            through(src_t, dst_t, "inner_spoofed", inner_kw=dict(src=host(rng.choice(victims))))
            through(src_t, dst_t, "inner_spoofed", inner_kw=dict(src=rng.choice(martians)))
        # Another client's router (outside its extra sources) as the inner source.
        through("bravo", "acme", "inner_spoofed",
                inner_kw=dict(src=TUNNELS["globex"]["remote"]))
    # acme's extra source prefix: allowed.
    through("acme", "bravo", "fwd", inner_kw=dict(src="192.168.10.%d" % rng.randrange(1, 255)))


def ttl():
    for _ in variants():
        for t in [0, 1]:
            src_t, dst_t = good_pair()
            through(src_t, dst_t, "ttl_exceeded", inner_kw=dict(ttl=t))
            fid = new_id()
            inner = inner_udp(fid, "198.18.%d.%d" % (rng.randrange(256), rng.randrange(1, 255)),
                              host("acme"), ttl=t)
            add(INET, Ether(src=UPSTREAM_MAC, dst=PORTS["internet0"]["mac"]) / inner,
                "drop:ttl_exceeded", fid)
        for t in [2, 255]:
            src_t, dst_t = good_pair()
            through(src_t, dst_t, "fwd", inner_kw=dict(ttl=t))
        # Outer TTL 0 and 1: the packet is for us, only the inner TTL counts.
        for t in [0, 1]:
            src_t, dst_t = good_pair()
            through(src_t, dst_t, "fwd", outer=dict(ttl=t))
        fid = new_id()
        inner = inner_udp(fid, "198.18.0.%d" % rng.randrange(1, 255), host("bravo"), ttl=2)
        add(INET, Ether(src=UPSTREAM_MAC, dst=PORTS["internet0"]["mac"]) / inner, "fwd", fid,
            None, "bravo", inner)


def ecn():
    for _ in variants():
        for tname in ["acme", "globex", "initech", "edge2"]:
            dst_t = "bravo" if tname != "bravo" else "acme"
            through(tname, dst_t, "ecn_ce_not_ect", inner_kw=dict(tos=rng.randrange(64) << 2),
                    outer=dict(tos=(rng.randrange(64) << 2) | 3))
        # ... before the TTL check.
        through("acme", "bravo", "ecn_ce_not_ect", inner_kw=dict(tos=0, ttl=1),
                outer=dict(tos=3))
        # CE over ECT: CE forwarded; ECT over Not-ECT: forwarded, counted.
        dscp = rng.randrange(64) << 2
        inner_ect = rng.choice([1, 2])
        through("acme", "bravo", "fwd", inner_kw=dict(tos=dscp | inner_ect),
                outer=dict(tos=3), new_tos=dscp | 3, events=["ecn_ce_propagated"])
        through("globex", "initech", "fwd", inner_kw=dict(tos=dscp),
                outer=dict(tos=rng.choice([1, 2])), events=["ecn_suspicious"])


def jumbo():
    # Inner packets around the egress MTUs (bravo: port MTU 1500, GRE 4 bytes; initech:
    # tunnel MTU 1000, IPIP).
    # Too big with DF: answered with Fragmentation Needed and the MTU that fits.
    for size, expect in [(1476, "fwd"), (1477, "mtu_exceeded"), (1600, "mtu_exceeded"),
                         (8000, "mtu_exceeded")]:
        for df in [True, False]:
            if expect == "fwd":
                through("acme", "bravo", "fwd", inner_kw=dict(size=size, df=df))
            elif size + 14 + 20 + 8 + 14 <= MBUF_DATA_ROOM:
                through("acme", "bravo", expect, inner_kw=dict(size=size, df=df),
                        icmp_mtu=1476)
    for size, expect in [(980, "fwd"), (981, "mtu_exceeded"), (1480, "mtu_exceeded")]:
        through("acme", "initech", expect, inner_kw=dict(size=size, df=True), icmp_mtu=980)
    # Transit into acme (GRE with key: 28 bytes) from internet0: above internet0's own MTU
    # (1400) on the way in is no reason to drop; above client0's 1500 on the way out is.
    for size, expect in [(1472, "fwd"), (1473, "mtu_exceeded"), (1990, "mtu_exceeded")]:
        fid = new_id()
        inner = inner_udp(fid, "198.18.1.%d" % rng.randrange(1, 255), host("acme"), size=size)
        frame = Ether(src=UPSTREAM_MAC, dst=PORTS["internet0"]["mac"]) / inner
        if expect == "fwd":
            add(INET, frame, "fwd", fid, None, "acme", inner)
        else:
            df = bool(int(inner.flags) & 2)
            add(INET, frame, "drop:" + expect, fid, icmp_mtu=1472 if df else None)
    # Frames over the mbuf data room arrive as chains (net_pcap; a NIC without scatter
    # drops them itself): the packet path reads one segment, so they are dropped as
    # oversize_frame before anything is read; so is a frame whose IPv4 packet ends within
    # the first segment with Ethernet padding running into a second.
    for size in [2100, 4000, 9000, 16000]:
        fid = new_id()
        inner = inner_udp(fid, host("acme"), host("bravo"), size=size)
        frame, _ = tunnel_frame("acme", inner)
        add(CLIENT, frame, "drop:oversize_frame", fid)
    for size in [MBUF_DATA_ROOM - 14, 100]:
        fid = new_id()
        inner = inner_udp(fid, "198.18.2.1", "172.16.5.%d" % rng.randrange(1, 255), size=size)
        add(INET, Ether(src=UPSTREAM_MAC, dst=PORTS["internet0"]["mac"]) / inner /
            Raw(b"\0" * 3000), "drop:oversize_frame", fid)


def arp_case(capture, frame, expect, reply=False, learned=False, sender=None):
    """An ARP frame; `expect` "punt:arp" (the handler sees it) or a drop reason."""
    arp = None
    if expect == "punt:arp":
        a = frame[ARP] if ARP in frame else None
        arp = dict(reply=reply, learned=learned, port=CAPTURE_PORT[capture],
                   mac=a.hwsrc if a else "", ip=a.psrc if a else "",
                   target=a.pdst if a else "")
    add(capture, frame, expect, arp=arp)


def arp():
    me, inet = PORTS["client0"], PORTS["internet0"]
    bcast = "ff:ff:ff:ff:ff:ff"

    def mac():
        return "02:%02x:%02x:%02x:%02x:%02x" % tuple(rng.randrange(256) for _ in range(5))

    def stranger():
        return "198.51.100.%d" % rng.randrange(100, 255)

    # A storm of requests for our address from strangers: each answered, nobody learned
    # (they are no next hop of ours).
    for _ in range(200 * max(1, VARIANTS)):
        m = mac()
        arp_case(CLIENT, Ether(src=m, dst=rng.choice([bcast, me["mac"]])) /
                 ARP(op=1, hwsrc=m, psrc=stranger(), pdst=me["addr"]), "punt:arp", reply=True)
    for _ in variants():
        # Our internet address, asked on the internet port.
        m = mac()
        arp_case(INET, Ether(src=m, dst=bcast) /
                 ARP(op=1, hwsrc=m, psrc="203.0.113.%d" % rng.randrange(60, 250),
                     pdst=inet["addr"]), "punt:arp", reply=True)
        # A next hop of ours asking, from the MAC we know: answered, nothing new.
        acme = TUNNELS["acme"]
        arp_case(CLIENT, Ether(src=acme["mac"], dst=bcast) /
                 ARP(op=1, hwsrc=acme["mac"], psrc=acme["remote"], pdst=me["addr"]),
                 "punt:arp", reply=True)
        # ... from another MAC (spoofing a static neighbour): answered and handed to the
        # control thread, where the static entry wins (acme's traffic keeps its MAC).
        m = mac()
        arp_case(CLIENT, Ether(src=m, dst=bcast) /
                 ARP(op=1, hwsrc=m, psrc=acme["remote"], pdst=me["addr"]),
                 "punt:arp", reply=True, learned=True)
        m = mac()
        arp_case(CLIENT, Ether(src=m, dst=me["mac"]) /
                 ARP(op=2, hwsrc=m, psrc=TUNNELS["bravo"]["remote"], hwdst=me["mac"],
                     pdst=me["addr"]), "punt:arp", learned=True)
        # Replies from strangers: nothing to learn.
        m = mac()
        arp_case(CLIENT, Ether(src=m, dst=me["mac"]) /
                 ARP(op=2, hwsrc=m, psrc=stranger(), hwdst=me["mac"], pdst=me["addr"]),
                 "punt:arp")
        # Requests for addresses that are not ours (on this port): ignored.
        for target in ["192.0.2.2", "192.0.2.%d" % rng.randrange(3, 255), inet["addr"],
                       "0.0.0.0", "255.255.255.255", stranger()]:
            m = mac()
            arp_case(CLIENT, Ether(src=m, dst=bcast) /
                     ARP(op=1, hwsrc=m, psrc=stranger(), pdst=target), "punt:arp")
        # Gratuitous ARP, probes (sender 0.0.0.0), multicast senders, other operations,
        # other hardware and protocol types and lengths, truncated: ignored.
        m, ip = mac(), stranger()
        arp_case(CLIENT, Ether(src=m, dst=bcast) / ARP(op=1, hwsrc=m, psrc=ip, pdst=ip),
                 "punt:arp")
        arp_case(CLIENT, Ether(src=m, dst=bcast) /
                 ARP(op=1, hwsrc=m, psrc="0.0.0.0", pdst=me["addr"]), "punt:arp")
        mm = "01:00:5e:00:00:%02x" % rng.randrange(256)
        arp_case(CLIENT, Ether(src=m, dst=bcast) /
                 ARP(op=1, hwsrc=mm, psrc=ip, pdst=me["addr"]), "punt:arp")
        arp_case(CLIENT, Ether(src=m, dst=bcast) /
                 ARP(op=rng.choice([0, 3, 4, 8, 0xFFFF]), hwsrc=m, psrc=ip, pdst=me["addr"]),
                 "punt:arp")
        raw = bytes(ARP(op=1, hwsrc=m, psrc=ip, pdst=me["addr"]))
        # Hardware type, protocol type, hardware length, protocol length patched.
        for at, value in [(0, b"\x00\x06"), (2, b"\x86\xdd"), (4, b"\x08"), (5, b"\x10")]:
            arp_case(CLIENT, Ether(src=m, dst=bcast, type=0x0806) /
                     Raw(raw[:at] + value + raw[at + len(value):]), "punt:arp")
        arp_case(CLIENT, Ether(src=m, dst=bcast, type=0x0806) /
                 Raw(raw[:rng.randrange(0, 28)]), "punt:arp")
        # To another unicast MAC, or a multicast one: not for us.
        arp_case(CLIENT, Ether(src=m, dst=mac()) / ARP(op=1, hwsrc=m, psrc=ip, pdst=me["addr"]),
                 "drop:not_for_us")
        arp_case(CLIENT, Ether(src=m, dst="01:00:5e:00:00:01") /
                 ARP(op=1, hwsrc=m, psrc=ip, pdst=me["addr"]), "drop:not_for_us")


def broadcast():
    acme = TUNNELS["acme"]
    for _ in variants():
        # Tunnel packets to broadcast and multicast MACs: not for us.
        for dst in ["ff:ff:ff:ff:ff:ff", "01:00:5e:%02x:%02x:%02x" % (
                rng.randrange(128), rng.randrange(256), rng.randrange(256)),
                    "33:33:00:00:00:01", "01:80:c2:00:00:00"]:
            fid = new_id()
            inner = inner_udp(fid, host("acme"), host("bravo"))
            frame, _ = tunnel_frame("acme", inner, eth_dst=dst)
            add(CLIENT, frame, "drop:not_for_us", fid)
        # IPv4 broadcast and multicast destinations to our MAC: not ours; no transit on the
        # client port; on the internet port and inside a tunnel, never forwarded
        # (martian_destination, RFC 1812 5.3.7), whatever the routes. A subnet's directed
        # broadcast looks like unicast from here: no route for it.
        for dst, reason in [("255.255.255.255", "martian_destination"),
                            ("224.0.0.5", "martian_destination"),
                            ("239.255.255.250", "martian_destination"),
                            ("%d.%d.%d.%d" % (rng.randrange(240, 256), rng.randrange(256),
                                              rng.randrange(256), rng.randrange(256)),
                             "martian_destination"),
                            ("127.0.0.%d" % rng.randrange(1, 255), "martian_destination"),
                            ("0.%d.0.1" % rng.randrange(256), "martian_destination"),
                            ("192.0.2.255", "no_route")]:
            fid = new_id()
            pkt = inner_udp(fid, acme["remote"], dst)
            add(CLIENT, Ether(src=acme["mac"], dst=PORTS["client0"]["mac"]) / pkt,
                "drop:not_for_us", fid)
            fid = new_id()
            pkt = inner_udp(fid, "198.18.3.%d" % rng.randrange(1, 255), dst)
            add(INET, Ether(src=UPSTREAM_MAC, dst=PORTS["internet0"]["mac"]) / pkt,
                "drop:" + reason, fid)
            # ... and as the inner destination of a tunnel packet.
            src_t = rng.choice(["acme", "globex", "initech"])
            through(src_t, dst, reason)


def icmp_never():
    """SPEC.md ICMP errors rule 1: drops that would deserve an ICMP error but are about an
    ICMP error, a non-first fragment, or a broadcast or multicast destination get none
    (spec_icmp.may_answer decides, apart from the router); the answered controls beside
    them differ only in the field under test."""
    def case(src_t, dst, expect, icmp_type=None, icmp_mtu=None, size=40, **kw):
        fid = new_id()
        body = None
        if icmp_type is not None:
            body = ICMP(type=icmp_type[0], code=icmp_type[1]) / Raw(tag(fid, size))
        inner = inner_udp(fid, host(src_t), host(dst) if dst in TUNNELS else dst,
                          proto_payload=body, **kw)
        frame, _ = tunnel_frame(src_t, inner)
        df = bool(int(inner.flags) & 2)
        add(capture_of(src_t), frame, "drop:" + expect, fid, src_t,
            icmp_mtu=icmp_mtu if df else None)

    for _ in variants():
        # TTL 1, the packet an ICMP error of each type (and an echo request: answered).
        for t in [(3, 1), (3, 4), (4, 0), (5, 1), (11, 0), (12, 0), (8, 0)]:
            src_t, dst_t = good_pair()
            case(src_t, dst_t, "ttl_exceeded", t, ttl=1)
        # TTL 1, a non-first fragment (none), a first one (answered).
        for frag in [dict(frag=rng.randrange(1, 8192)), dict(flags="MF")]:
            src_t, dst_t = good_pair()
            case(src_t, dst_t, "ttl_exceeded", ttl=1, **frag)
        # TTL 1 to broadcast and multicast: the TTL check comes first; no error either way.
        for dst in ["255.255.255.255", "224.0.0.%d" % rng.randrange(1, 255),
                    "239.%d.0.1" % rng.randrange(256)]:
            case(rng.choice(["acme", "globex", "initech"]), dst, "ttl_exceeded", ttl=1)
        # Too big with DF (acme to bravo: 1476 inside), and no route: about an ICMP error,
        # nothing; about an echo request, the error.
        for t in [(3, 0), (11, 0), (8, 0)]:
            case("acme", "bravo", "mtu_exceeded", t, icmp_mtu=1476, size=1477 - 28, df=True)
            case("acme", "198.18.7.%d" % rng.randrange(1, 255), "no_route", t)


ROUTER_MAC = "02:00:00:00:77:77"   # an underlay router between us and the client routers
ROUTER_IP = "198.51.100.254"


def sent_by_us(tname, total=1400, key="tunnel", flags=None, gre_proto=None, **ip):
    """An outer packet as tunnel `tname` sends it, `total` bytes long: what an underlay
    router quotes in a Fragmentation Needed. `key`, `flags` and `gre_proto` get the GRE
    fields wrong, `ip` the outer IPv4 ones."""
    t = TUNNELS[tname]
    o = dict(src=t["local"], dst=t["remote"], flags="DF", ttl=64, id=rng.randrange(0x10000),
             proto=4 if t["mode"] == "ipip" else 47)
    o.update(ip)
    if t["mode"] == "ipip" and (key, flags, gre_proto) == ("tunnel", None, None):
        head = b""
    else:
        k = t["key"] if key == "tunnel" else key
        f = 0x8000 * t["checksum"] + 0x1000 * t["sequence"] + (0x2000 if k is not None else 0)
        head = gre_header(f if flags is None else flags,
                          0x0800 if gre_proto is None else gre_proto, k,
                          rng.randrange(1 << 32) if t["sequence"] else None,
                          csum_field=rng.randrange(0x10000) if t["checksum"] else None)
    inner = inner_udp(new_id(), "10.1.0.%d" % rng.randrange(1, 255),
                      "10.2.0.%d" % rng.randrange(1, 255), size=total - 20 - len(head))
    return bytes(IP(**o) / Raw(head + bytes(inner)))


def frag_needed(port, quote, mtu, cut=548, dst=None, chksum=None):
    """ICMP Fragmentation Needed from the underlay router, arriving on `port`."""
    icmp = ICMP(type=3, code=4, nexthopmtu=mtu)
    if chksum is not None:
        icmp.chksum = chksum
    return (Ether(src=ROUTER_MAC, dst=PORTS[port]["mac"]) /
            IP(src=ROUTER_IP, dst=dst or PORTS[port]["addr"]) / icmp / Raw(quote[:cut]))


def underlay_icmp():
    """ICMP Fragmentation Needed from the underlay about our own tunnel packets (SPEC.md
    "ICMP errors", RFC 1191): genuine ones lower the tunnel's MTU (to at least 576 inside);
    forged ones, quoting a header none of our tunnels sends, change nothing and are counted
    by name; one about a packet that is no tunnel's is handled as any ICMP to us."""
    for _ in variants():
        t = rng.choice(["acme", "bravo", "globex", "initech"])
        other = "bravo" if t != "bravo" else "acme"
        n = rng.randrange(576, 1300)
        for quote, reason in [
            (sent_by_us(t, src=ME_INET), "not_ours"),                     # wrong local
            (sent_by_us(t, dst="198.51.100.%d" % rng.randrange(100, 200)), "not_ours"),
            (sent_by_us(t, dst=TUNNELS[other]["remote"]), "not_ours"),   # another's remote
            (sent_by_us(t, proto=4 if TUNNELS[t]["mode"] == "gre" else 47), "not_ours"),
            (sent_by_us("acme", key=rng.randrange(101, 1 << 32)), "not_ours"),  # wrong key
            (sent_by_us("acme", key=None), "not_ours"),                   # key missing
            (sent_by_us("bravo", key=rng.randrange(1 << 32)), "not_ours"),  # key unasked
            (sent_by_us("globex", flags=0x2000), "not_ours"),             # flags differ
            (sent_by_us("bravo", flags=0x0001), "not_ours"),              # GRE version 1
            (sent_by_us("bravo", gre_proto=0x6558), "not_ours"),          # not IP inside
            (sent_by_us(t, options=[IPOption(b"\x01\x01\x01\x00")]), "not_ours"),
            (sent_by_us(t)[:rng.randrange(0, 20)], "truncated"),
            (sent_by_us(t)[:20 + rng.randrange(0, 8)], "truncated"),
            (sent_by_us("globex")[:28 + rng.randrange(0, 4)], "truncated"),  # key not seen
            (sent_by_us(t, version=rng.choice([0, 5, 6, 15])), "malformed"),
            (sent_by_us(t, total=n), "not_smaller"),                      # it would fit
        ]:
            add(CLIENT, frag_needed("client0", quote, n if reason == "not_smaller"
                                    else rng.randrange(0, 1400)), "drop:pmtu_" + reason)
        add(CLIENT, frag_needed("client0", sent_by_us(t), n, chksum=rng.randrange(0x10000)),
            "drop:pmtu_malformed")
        # To another of our addresses than the quoted source; on the wrong port.
        add(CLIENT, frag_needed("client0", sent_by_us(t), n, dst=ME_INET),
            "drop:pmtu_not_ours")
        add(INET, frag_needed("internet0", sent_by_us(t), n, dst=ME),
            "drop:pmtu_not_ours")
        add(CLIENT, frag_needed("client0", sent_by_us("edge2"), n, dst=ME_INET),
            "drop:pmtu_not_ours")
        # About a packet that is no tunnel's (the host's own): any ICMP to us (no host
        # interface in this lab: punted and freed).
        host_pkt = bytes(IP(src=ME, dst=ROUTER_IP, flags="DF") / UDP() / Raw(b"x" * 1400))
        add(CLIENT, frag_needed("client0", host_pkt, n), "punt:local",
            events=["pmtu_not_tunnel"])
        # Genuine, but above bravo's MTU already (a quote of 1600 bytes, next hop 1550):
        # nothing to lower.
        add(CLIENT, frag_needed("client0", sent_by_us("bravo", total=1600), 1550),
            "punt:pmtu", events=["pmtu_not_lower"])
    # Genuine: globex (key, sequence, checksum: the whole GRE header quoted), nonbr below
    # its floor (576 + 28), edge2 on the internet port. No packet of the corpus into these
    # tunnels is larger than what they are lowered to, whenever the control thread
    # publishes it; the test compares their MTUs at the end.
    add(CLIENT, frag_needed("client0", sent_by_us("globex"), 1200), "punt:pmtu",
        pmtu=dict(tunnel="globex", mtu=1200))
    add(CLIENT, frag_needed("client0", sent_by_us("nonbr"), 100), "punt:pmtu",
        pmtu=dict(tunnel="nonbr", mtu=576 + 28))
    add(INET, frag_needed("internet0", sent_by_us("edge2"), 1000), "punt:pmtu",
        pmtu=dict(tunnel="edge2", mtu=1000))


def ipv6_inner():
    """IPv6 inside the tunnels (GRE protocol type 0x86DD, protocol 41 on the IPIP tunnel).
    The lab's tunnels accept no IPv6 source, so everything is dropped: a broken fixed header
    (cut short, another version, a payload length past the packet, a source no node sends
    from) as bad_inner_ipv6; a good one as inner_spoofed, whatever chain of extension
    headers follows it (long, random, cut short: the appliance never walks it, RFC 8200
    section 4); protocol 41 between a GRE tunnel's endpoints as no_tunnel."""
    def v6(**kw):
        src = kw.pop("src", "2001:db8:%x::%x" % (rng.randrange(1, 0xffff), rng.randrange(1, 0xffff)))
        return IPv6(src=src, dst=kw.pop("dst", "2001:db8:1::1"), hlim=rng.randrange(256), **kw)

    def frame(tname, inner):
        if TUNNELS[tname]["mode"] == "ipip":
            return tunnel_frame(tname, inner, outer=dict(proto=41))[0]
        return tunnel_frame(tname, inner, proto=0x86DD)[0]

    kinds = [IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrFragment, IPv6ExtHdrDestOpt]
    for _ in variants():
        for tname in ["acme", "bravo", "initech"]:
            cap = capture_of(tname)
            good = bytes(v6() / UDP(sport=rng.randrange(1, 0x10000), dport=9)
                         / Raw(b"x" * rng.randrange(0, 64)))
            add(cap, frame(tname, good[:rng.randrange(0, 40)]), "drop:bad_inner_ipv6",
                ingress=tname)
            b = bytearray(good)
            b[0] = (rng.choice([0, 4, 5, 7, 15]) << 4) | (b[0] & 0x0F)
            add(cap, frame(tname, bytes(b)), "drop:bad_inner_ipv6", ingress=tname)
            b = bytearray(good)
            struct.pack_into("!H", b, 4, len(good) - 40 + rng.randrange(1, 2000))
            add(cap, frame(tname, bytes(b)), "drop:bad_inner_ipv6", ingress=tname)
            for src in ["::", "::1", "ff02::1", "ff0e::%x" % rng.randrange(1, 0xffff)]:
                add(cap, frame(tname, v6(src=src) / UDP()), "drop:bad_inner_ipv6",
                    ingress=tname)
            # Chains: random kinds and lengths, up to 64 headers, then UDP, GRE or nothing.
            chain = rng.choice(kinds)()
            for _ in range(rng.randrange(0, 64)):
                chain = chain / rng.choice(kinds)()
            tail = rng.choice([UDP() / Raw(b"y" * 8), Raw(bytes(rng.randrange(256)
                                                               for _ in range(24)))])
            add(cap, frame(tname, v6() / chain / tail), "drop:inner_spoofed", ingress=tname)
            # A chain whose lengths run past the packet, and random bytes after the header.
            add(cap, frame(tname, v6() / IPv6ExtHdrHopByHop(len=rng.randrange(1, 256))),
                "drop:inner_spoofed", ingress=tname)
            add(cap, frame(tname, bytes(v6(nh=rng.randrange(256), plen=32))
                           + bytes(rng.randrange(256) for _ in range(32))),
                "drop:inner_spoofed", ingress=tname)
    # Protocol 41 between the endpoints of GRE tunnels: no IPIP tunnel there.
    for tname in ["acme", "bravo"]:
        t = TUNNELS[tname]
        add(capture_of(tname), Ether(src=t["mac"], dst=PORTS[t["port"]]["mac"])
            / IP(src=t["remote"], dst=t["local"], proto=41) / v6() / UDP(),
            "drop:no_tunnel")


def ethertypes():
    me = PORTS["client0"]["mac"]
    m = TUNNELS["acme"]["mac"]
    inner = bytes(tunnel_frame("acme", Raw(b"x" * 40))[0])[14:]
    for etype, body in [(0x8100, struct.pack("!HH", 10, 0x0800) + inner),
                        (0x88A8, struct.pack("!HHHH", 10, 0x8100, 20, 0x0800) + inner),
                        (0x8847, b"\0" * 46), (0x88CC, b"\0" * 46), (0x0000, b"\0" * 46),
                        (0x05DC, b"\0" * 46), (0x0600, b"\0" * 46), (0xFFFF, b"\0" * 46)]:
        add(CLIENT, Ether(src=m, dst=me, type=etype) / Raw(body), "drop:unsupported_ethertype")
    # IPv6 is handled: to an address that is not ours, on a port without transit.
    add(CLIENT, Ether(src=m, dst=me) / IPv6() / UDP() / Raw(b"x" * 20), "drop:not_for_us")


for category in [truncation, ipv4_fields, checksums, fragments, gre_bits, gre_keys,
                 sequence, nesting, outer_spoof, inner_spoof, ttl, ecn, jumbo, arp, broadcast,
                 icmp_never, underlay_icmp, ipv6_inner, ethertypes]:
    start = len(manifest)
    category()
    for m in manifest[start:]:
        m["category"] = category.__name__

def write_pcap(path, frames):
    """Classic pcap, Ethernet, one record per frame (even an empty one), stamps 0, 1, ...
    microseconds: the same bytes on every run."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, frame in enumerate(frames):
            f.write(struct.pack("<IIII", i // 1000000, i % 1000000, len(frame), len(frame)))
            f.write(frame)


for cap, frames in captures.items():
    write_pcap("%s/%s" % (OUT_DIR, cap), frames)
json.dump(dict(packets=manifest), sys.stdout)
