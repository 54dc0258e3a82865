#!/usr/bin/env python3
"""Input captures and their expected outcomes for tests/tests/appliance_e2e.rs.

Usage: e2e_traffic.py DIR LAB_JSON SCENARIO

LAB_JSON describes the lab the test configured (ports: mac, address; tunnels: mode, local,
remote, key, sequence, checksum, the client router's MAC). SCENARIO is `full` (every drop
reason reachable from the wire, and every kind of forwarding, one worker) or `multi` (many
good flows over two RX captures of the client port, two workers).

Writes DIR/<capture>.pcap for each input capture and prints one JSON object on stdout:
{"captures": {file: port}, "packets": [...]}, one entry per input packet in capture order:
  id        the flow id, also written as b"flow=NNNNNN;" into the packet (when it has room)
  capture   the input capture file
  expect    "fwd", "drop:<SPEC reason>" or "punt:<reason>"
  ingress   the tunnel the packet claims to arrive through (null for native or no tunnel)
  egress    for "fwd": the tunnel name, "native:<port>", or "reflect:<tunnel>" (a client
            router's keepalive, sent back natively to the router)
  inner_hex for "fwd": the exact IPv4 packet expected inside the output (TTL decremented,
            ECN as RFC 6040 decapsulation leaves it, header checksum recomputed here)
  events    non-drop events the packet must count (gre_reserved_ignored, ...)
  icmp      for a drop SPEC.md answers with an ICMP error: what the error must be (see
            spec_icmp.py); null otherwise
  echo      for an echo request to one of our addresses: the reply it must get (`via`,
            `mac`, `src`, `dst` as for icmp; `data_hex`: identifier, sequence and data,
            echoed); null otherwise
"""
import json
import struct
import sys

from scapy.all import (GRE, ICMP, IP, TCP, UDP, ARP, Dot1Q, Ether, IPOption, IPv6, Padding,
                       Raw, wrpcap)

import spec_icmp

OUT_DIR, LAB, SCENARIO = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
PORTS, TUNNELS = LAB["ports"], LAB["tunnels"]

captures = {}  # file -> (port, [frames])
manifest = []
next_id = [0]
gre_seq = {name: 100 for name in TUNNELS}


def new_id():
    next_id[0] += 1
    return next_id[0]


def tag(fid, size=0):
    """The flow id as payload, padded with dots to `size` bytes."""
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
    """The inner IPv4 packet as the router must send it on: cut to its total length, TTL
    minus one, ECN as decapsulation sets it, header checksum computed from scratch."""
    b = bytearray(bytes(inner))
    ihl = (b[0] & 0x0F) * 4
    total = (b[2] << 8) | b[3]
    b = b[:total]
    if tos is not None:
        b[1] = tos
    b[8] -= 1
    b[10:12] = b"\0\0"
    b[10:12] = struct.pack("!H", inet_checksum(bytes(b[:ihl])))
    return bytes(b).hex()


def udp(fid, src, dst, ttl=64, tos=0, df=False, size=None, options=None, flags=None, frag=0,
        ident=None):
    """An inner UDP packet carrying the flow id, `size` bytes of IPv4 in all if given."""
    fl = flags if flags is not None else ("DF" if df else 0)
    ip = IP(src=src, dst=dst, ttl=ttl, tos=tos, flags=fl, frag=frag,
            id=fid & 0xFFFF if ident is None else ident)
    if options is not None:
        ip.options = options
    l4 = UDP(sport=20000 + fid % 40000, dport=5001)
    pkt = ip / l4 / Raw(tag(fid))
    if size is not None:
        head = len(bytes(pkt)) - len(tag(fid))
        pkt = ip / l4 / Raw(tag(fid, size - head))
        assert len(bytes(pkt)) == size, (len(bytes(pkt)), size)
    return IP(bytes(pkt))


def frame_from(tname, payload, outer_tos=0, outer=None, gre=None, eth_dst=None, seq=True):
    """What tunnel `tname`'s client router sends us: Ethernet, outer IPv4, GRE as the
    tunnel is configured (key, the next sequence number, checksum), `payload`.
    `outer` and `gre` override fields; `seq=False` leaves the sequence number out."""
    t = TUNNELS[tname]
    port = PORTS[t["port"]]
    e = Ether(src=t["mac"], dst=eth_dst or port["mac"])
    o = dict(src=t["remote"], dst=t["local"], ttl=64, tos=outer_tos, id=0x4242,
             proto=4 if t["mode"] == "ipip" else 47)
    o.update(outer or {})
    ip = IP(**o)
    if t["mode"] == "ipip":
        return e / ip / payload
    g = dict(proto=0x0800)
    if t["key"] is not None:
        g.update(key_present=1, key=t["key"])
    if t["sequence"] and seq:
        gre_seq[tname] += 1
        g.update(seqnum_present=1, sequence_number=gre_seq[tname])
    if t["checksum"]:
        g.update(chksum_present=1)
    g.update(gre or {})
    return e / ip / GRE(**g) / payload


def add(capture, frame, expect, fid=None, ingress=None, egress=None, inner=None, tos=None,
        events=(), icmp=None, echo=None, pmtu=None):
    port = capture_port(capture)
    captures.setdefault(capture, (port, []))[1].append(frame)
    assert (expect == "fwd") == (egress is not None)
    manifest.append(dict(
        id=fid, capture=capture, expect=expect, ingress=ingress, egress=egress,
        inner_hex=routed(inner, tos) if egress else None, events=list(events), icmp=icmp,
        echo=echo, pmtu=pmtu))


OURS = {p["addr"] for p in PORTS.values()}
# The drops SPEC.md answers with an ICMP error (Fragmentation Needed needs the MTU, so the
# caller gives it).
ICMP_KINDS = {"drop:ttl_exceeded": spec_icmp.TIME_EXCEEDED,
              "drop:no_route": spec_icmp.NET_UNREACHABLE}


def icmp_back(expect, packet, ingress=None, capture=None, mac=None, mtu=None):
    """The ICMP error a drop deserves: back into `ingress`, or natively out of the port of
    `capture` to `mac`. `mtu` for mtu_exceeded (only with DF: the caller decides)."""
    if expect == "drop:mtu_exceeded":
        if mtu is None:
            return None
        kind = spec_icmp.FRAG_NEEDED
    elif expect in ICMP_KINDS:
        kind = ICMP_KINDS[expect]
    else:
        return None
    if ingress is not None:
        t = TUNNELS[ingress]
        return spec_icmp.expect(kind, packet, ingress, t["local"], t["inner_mtu"], OURS,
                                mtu=mtu or 0)
    port = PORTS[capture_port(capture)]
    return spec_icmp.expect(kind, packet, "native:" + capture_port(capture), port["addr"],
                            port["mtu"], OURS, mtu=mtu or 0, mac=mac)


def capture_port(capture):
    return LAB["captures"][capture]


def host(tname, i):
    net = TUNNELS[tname]["net"]
    return "%s.%d.%d" % (net, 1 + i // 200, 1 + i % 200)


def through(capture, src_t, dst, expect, i=0, egress=None, tos=0, outer_tos=0, new_tos=None,
            events=(), src=None, icmp=True, mtu=None, **inner_kw):
    """One UDP flow from `src_t`'s client network through its tunnel toward `dst`.
    `icmp=False`: a drop SPEC.md answers silently although its reason could have an ICMP
    error (a blackhole route); `mtu`: the next-hop MTU of an mtu_exceeded drop with DF."""
    fid = new_id()
    inner = udp(fid, src or host(src_t, i), dst, tos=tos, **inner_kw)
    frame = frame_from(src_t, inner, outer_tos=outer_tos)
    err = icmp_back(expect, bytes(inner), ingress=src_t, mtu=mtu) if icmp else None
    add(capture, frame, expect, fid, ingress=src_t, egress=egress, inner=inner, tos=new_tos,
        events=events, icmp=err)


def full():
    c, n = "client-in.pcap", "inet-in.pcap"
    inet = PORTS["internet0"]
    upstream = inet["upstream_mac"]

    # ---- Forwarded: every kind of path, and the policies each tunnel applies. ----
    # acme (GRE key) -> bravo (keyless GRE: TTL inherit, DSCP fixed, DF copy)
    for i, (tos, ttl, df) in enumerate([(0xB8, 64, True), (0x02, 9, False), (0x00, 2, True)]):
        through(c, "acme", host("bravo", i), "fwd", i, egress="bravo", tos=tos, ttl=ttl, df=df)
    # bravo -> globex (key, sequence, checksum, TTL 200, DSCP copy), also TCP
    for i, tos in enumerate([0x00, 0x28, 0x29]):
        through(c, "bravo", host("globex", i), "fwd", i, egress="globex", tos=tos, df=i == 0)
    fid = new_id()
    inner = IP(src=host("bravo", 7), dst=host("globex", 7), ttl=50, tos=0x10) / \
        TCP(sport=4000, dport=80, flags="S") / Raw(tag(fid))
    add(c, frame_from("bravo", inner), "fwd", fid, "bravo", "globex", inner)
    # globex (arrives with sequence numbers and checksum) -> initech (IPIP, DSCP fixed, DF copy)
    for i, (tos, df) in enumerate([(0x00, True), (0x61, False), (0xFE, True)]):
        through(c, "globex", host("initech", i), "fwd", i, egress="initech", tos=tos, df=df)
    # initech (IPIP) -> acme, also ICMP
    for i in range(3):
        through(c, "initech", host("acme", i), "fwd", i, egress="acme", tos=0x20 * i)
    fid = new_id()
    inner = IP(src=host("initech", 9), dst=host("acme", 9), ttl=33) / ICMP(id=9, seq=1) / \
        Raw(tag(fid))
    add(c, frame_from("initech", inner), "fwd", fid, "initech", "acme", inner)
    # acme -> another edge router across the core (a route into the edge2 tunnel)
    for i in range(2):
        through(c, "acme", "10.8.0.%d" % (i + 1), "fwd", i, egress="edge2", tos=0x48)
    # edge2 (core port) -> acme
    for i in range(2):
        through(n, "edge2", host("acme", 20 + i), "fwd", i, egress="acme", ttl=40)
    # acme -> native internet, and to another client's router address (native, not a loop)
    for i in range(2):
        through(c, "acme", "172.16.0.%d" % (i + 1), "fwd", i, egress="native:internet0",
                tos=0x88)
    through(c, "acme", TUNNELS["bravo"]["remote"], "fwd", 3, egress="native:internet0")
    # Native transit from the internet port into a client tunnel (a fragment too: transit
    # fragments are not ours to reassemble).
    for i, kw in enumerate([dict(ttl=30), dict(ttl=200, tos=0x03), dict(flags="MF"),
                            dict(frag=100)]):
        fid = new_id()
        inner = udp(fid, "198.18.0.%d" % (i + 7), host("acme", 30 + i), **kw)
        add(n, Ether(src=upstream, dst=inet["mac"]) / inner, "fwd", fid, None, "acme", inner)
    # ... and back out natively where the route says so, even the port it came in on.
    fid = new_id()
    inner = udp(fid, "198.18.0.20", "172.16.9.9", ttl=12)
    add(n, Ether(src=upstream, dst=inet["mac"]) / inner, "fwd", fid, None, "native:internet0",
        inner)
    # Client routers' GRE keepalives (Cisco `keepalive 10 3`): the inner packet goes from
    # our endpoint back to the router, protocol 47, GRE protocol type 0. Sent back natively
    # to the router (SPEC.md tunnel termination step 5), whatever the routes say.
    for tname in ["acme", "globex"]:
        t = TUNNELS[tname]
        fid = new_id()
        inner = IP(src=t["local"], dst=t["remote"], ttl=255, id=0) / GRE(proto=0) / \
            Raw(tag(fid))
        add(c, frame_from(tname, inner), "fwd", fid, tname, "reflect:" + tname, inner,
            events=["keepalives_reflected"])
    # An extra source prefix of acme's.
    through(c, "acme", host("bravo", 10), "fwd", 10, egress="bravo", src="192.168.10.5")
    # ECN on decapsulation (RFC 6040 section 4.2, Figure 4): (outer, inner) -> inner. Outer
    # ECT(1) over inner ECT(0) gives ECT(1): the RFC, where SPEC.md leaves the inner as it is.
    ecn_cases = [(3, 2, 3, "ecn_ce_propagated"), (3, 1, 3, "ecn_ce_propagated"), (3, 3, 3, None),
                 (1, 2, 1, None), (2, 0, 0, "ecn_suspicious"), (1, 0, 0, "ecn_suspicious"),
                 (0, 3, 3, None), (2, 1, 1, None), (2, 2, 2, None), (0, 1, 1, None)]
    for i, (o, inn, want, ev) in enumerate(ecn_cases):
        through(c, "acme", host("globex", 40 + i), "fwd", i, egress="globex",
                tos=0xA0 | inn, outer_tos=0x28 | o, new_tos=0xA0 | want,
                events=[ev] if ev else [])
    # GRE bits 6-12 are ignored on receipt (and counted); C set on a tunnel that does not
    # ask for checksums: verified and accepted.
    for i, gre in enumerate([dict(flags=0x1F), dict(recursion_control=3),
                             dict(chksum_present=1)]):
        fid = new_id()
        inner = udp(fid, host("acme", 50 + i), host("bravo", 50 + i))
        ev = [] if "chksum_present" in gre else ["gre_reserved_ignored"]
        add(c, frame_from("acme", inner, gre=gre), "fwd", fid, "acme", "bravo", inner,
            events=ev)
    # Ethernet padding after a short IPIP packet; bytes inside the outer packet after the
    # inner total length; an inner header with options; an outer header with options; outer
    # TTL 1 (the packet is for us: only the inner TTL counts).
    fid = new_id()
    inner = IP(src=host("initech", 60), dst=host("acme", 60)) / UDP(sport=1, dport=2) / \
        Raw(b"flow=%06d;" % fid)
    add(c, frame_from("initech", inner) / Padding(b"\xaa" * 24), "fwd", fid, "initech", "acme",
        inner)
    # The same after a GRE checksum: it covers the GRE packet, not the Ethernet padding.
    fid = new_id()
    inner = IP(src=host("globex", 60), dst=host("acme", 60)) / UDP(sport=1, dport=2) / \
        Raw(b"flow=%06d;" % fid)
    add(c, frame_from("globex", inner) / Padding(b"\x5a" * 7), "fwd", fid, "globex", "acme",
        inner)
    fid = new_id()
    inner = udp(fid, host("acme", 61), host("bravo", 61))
    add(c, frame_from("acme", Raw(bytes(inner) + b"JUNKJUNKJUNK")), "fwd", fid, "acme",
        "bravo", inner)
    fid = new_id()
    inner = udp(fid, host("acme", 62), host("globex", 62),
                options=[IPOption(b"\x01\x01\x01\x00")])
    add(c, frame_from("acme", inner), "fwd", fid, "acme", "globex", inner)
    fid = new_id()
    inner = udp(fid, host("acme", 63), host("globex", 63))
    add(c, frame_from("acme", inner, outer=dict(options=[IPOption(b"\x01\x01\x01\x00")])),
        "fwd", fid, "acme", "globex", inner)
    fid = new_id()
    inner = udp(fid, host("acme", 64), host("globex", 64))
    add(c, frame_from("acme", inner, outer=dict(ttl=1)), "fwd", fid, "acme", "globex", inner)
    # Exactly the MTU: initech's tunnel mtu 1000 (IPIP: 980 inner), internet0's port mtu 1400
    # natively and for edge2 (GRE with key and checksum: 1368 inner).
    through(c, "acme", host("initech", 70), "fwd", 70, egress="initech", size=980, df=True)
    through(c, "acme", "172.16.1.1", "fwd", 71, egress="native:internet0", size=1400, df=True)
    through(c, "acme", "10.8.1.1", "fwd", 72, egress="edge2", size=1368, df=True)
    # S set on a tunnel that does not ask for sequence numbers: nothing to check, accepted.
    fid = new_id()
    inner = udp(fid, host("acme", 73), host("bravo", 73))
    add(c, frame_from("acme", inner, gre=dict(seqnum_present=1, sequence_number=7)), "fwd", fid,
        "acme", "bravo", inner)
    # A tunnel packet inside, not addressed to us: just a packet to route.
    fid = new_id()
    inner = IP(src=host("acme", 74), dst=host("bravo", 74)) / GRE(key_present=1, key=1) / \
        udp(fid, "10.77.0.1", "10.78.0.1")
    add(c, frame_from("acme", inner), "fwd", fid, "acme", "bravo", inner)
    # RFC 1624: the incrementally updated inner checksum is the one computed from scratch,
    # also where that is 0x0000 (a careless one's complement update gives 0xFFFF, -0).
    fid = new_id()
    head = bytearray(bytes(udp(fid, host("acme", 75), host("globex", 75), ident=0))[:20])
    head[8] -= 1
    head[10:12] = b"\0\0"
    for ident in range(0x10000):
        head[4:6] = struct.pack("!H", ident)
        if inet_checksum(bytes(head)) == 0:
            break
    else:
        raise AssertionError("no identification gives checksum 0")
    inner = udp(fid, host("acme", 75), host("globex", 75), ident=ident)
    assert routed(inner)[20:24] == "0000"
    add(c, frame_from("acme", inner), "fwd", fid, "acme", "globex", inner)

    # ---- Punted to the control path (not drops). ----
    fid = new_id()
    add(c, Ether(src=TUNNELS["acme"]["mac"], dst=PORTS["client0"]["mac"]) /
        IP(src=TUNNELS["acme"]["remote"], dst=PORTS["client0"]["addr"]) /
        UDP(sport=179, dport=179) / Raw(tag(fid)), "punt:local", fid)
    # Echo requests to our addresses: answered (SPEC.md ICMP errors, rule 5), back to the
    # frame's sender, or into the tunnel the request came through.
    fid = new_id()
    ping = ICMP(type=8, id=fid & 0xFFFF, seq=1) / Raw(tag(fid))
    add(c, Ether(src=TUNNELS["acme"]["mac"], dst=PORTS["client0"]["mac"]) /
        IP(src=TUNNELS["acme"]["remote"], dst=PORTS["client0"]["addr"]) / ping,
        "punt:local", fid, echo=dict(via="native:client0", mac=TUNNELS["acme"]["mac"],
                                     src=PORTS["client0"]["addr"],
                                     dst=TUNNELS["acme"]["remote"],
                                     data_hex=bytes(ping)[4:].hex()))
    fid = new_id()
    ping = ICMP(type=8, id=fid & 0xFFFF, seq=2) / Raw(tag(fid))
    inner = IP(src=host("globex", 81), dst=PORTS["internet0"]["addr"]) / ping
    add(c, frame_from("globex", inner), "punt:local_inner", fid, "globex",
        echo=dict(via="globex", mac=None, src=PORTS["internet0"]["addr"],
                  dst=host("globex", 81), data_hex=bytes(ping)[4:].hex()))
    through(c, "acme", PORTS["client0"]["addr"], "punt:local_inner", 80)

    # ---- Dropped, one reason after another, in SPEC.md's order. ----
    acme = TUNNELS["acme"]
    me = PORTS["client0"]
    to_me = dict(src=acme["mac"], dst=me["mac"])

    def drop(reason, frame, ingress=None, fid=None, capture=c):
        # Native packets (no ingress tunnel) are answered natively to the frame's sender.
        err = None
        if ingress is None and IP in frame:
            err = icmp_back("drop:" + reason, bytes(frame[IP]), capture=capture,
                            mac=frame[Ether].src)
        add(capture, frame, "drop:" + reason, fid, ingress, icmp=err)

    def acme_inner(i):
        fid = new_id()
        return fid, udp(fid, host("acme", 100 + i), host("bravo", 100 + i))

    # runt: shorter than an Ethernet header
    drop("runt", Raw(b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00"))
    drop("runt", Raw(b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x0a\x0a\x08"))
    # oversize_frame: longer than one receive buffer (net_pcap hands it over as a chain)
    fid = new_id()
    big = udp(fid, host("acme", 99), host("bravo", 99)) / Raw(b"\x5a" * 3000)
    drop("oversize_frame", frame_from("acme", big), fid=fid)
    # not_for_us: another MAC; broadcast IPv4; ARP to another unicast MAC; not our IP on a
    # port without transit
    fid, inner = acme_inner(0)
    drop("not_for_us", frame_from("acme", inner, eth_dst="02:00:00:00:00:99"), fid=fid)
    fid, inner = acme_inner(1)
    drop("not_for_us", frame_from("acme", inner, eth_dst="ff:ff:ff:ff:ff:ff"), fid=fid)
    fid, inner = acme_inner(1)
    drop("not_for_us", frame_from("acme", inner, eth_dst="01:00:5e:00:00:01"), fid=fid)
    drop("not_for_us", Ether(src=acme["mac"], dst="02:00:00:00:00:99") /
         ARP(op=1, hwsrc=acme["mac"], psrc=acme["remote"], pdst=me["addr"]))
    fid = new_id()
    drop("not_for_us", Ether(**to_me) / udp(fid, acme["remote"], "10.2.0.1"), fid=fid)
    # IPv6 not for us on a port without transit, as IPv4
    drop("not_for_us", Ether(**to_me) / IPv6(src="2001:db8::1", dst="2001:db8::2") /
         UDP() / Raw(b"flow"))
    # unsupported_ethertype: an 802.1Q tag, something else
    fid, inner = acme_inner(2)
    drop("unsupported_ethertype", Ether(**to_me) / Dot1Q(vlan=10) /
         frame_from("acme", inner)[IP], fid=fid)
    drop("unsupported_ethertype", Ether(type=0x88B5, **to_me) / Raw(b"\0" * 46))
    # bad_ipv4: checksum, version, IHL, total length beyond the frame, total length under
    # the header, a frame too short for a header
    for bad in [dict(chksum=0x1234), dict(version=5), dict(ihl=4), dict(len=400), dict(len=19)]:
        fid, inner = acme_inner(3)
        drop("bad_ipv4", frame_from("acme", inner, outer=bad), fid=fid)
    drop("bad_ipv4", Ether(type=0x0800, **to_me))
    drop("bad_ipv4", Ether(type=0x0800, **to_me) / Raw(bytes(IP(src=acme["remote"], dst=me["addr"]))[:12]))
    # martian outer sources
    for src in ["0.1.2.3", "127.0.0.1", "224.0.0.5", "240.0.0.1", "255.255.255.255"]:
        fid, inner = acme_inner(4)
        drop("martian", frame_from("acme", inner, outer=dict(src=src)), fid=fid)
    # outer_fragment: MF, then an offset
    fid, inner = acme_inner(5)
    drop("outer_fragment", frame_from("acme", inner, outer=dict(flags="MF")), fid=fid)
    fid, inner = acme_inner(6)
    drop("outer_fragment", frame_from("acme", inner, outer=dict(frag=185)), fid=fid)
    fid = new_id()
    drop("outer_fragment", Ether(**to_me) / IP(src=acme["remote"], dst=me["addr"], flags="MF") /
         ICMP() / Raw(tag(fid)), fid=fid)
    # no_tunnel: a wrong key, no key on a keyed tunnel, a key on a keyless one, IPIP from a
    # GRE router, an unknown (spoofed) outer source, our other address as the outer destination
    for gre, outer in [(dict(key=999), None), (dict(key_present=0), None),
                       (dict(key_present=1, key=100), dict(src=TUNNELS["bravo"]["remote"])),
                       (dict(), dict(src="198.51.100.77")),
                       (dict(), dict(dst=PORTS["internet0"]["addr"]))]:
        fid, inner = acme_inner(7)
        drop("no_tunnel", frame_from("acme", inner, gre=gre, outer=outer), fid=fid)
    fid, inner = acme_inner(8)
    drop("no_tunnel", Ether(**to_me) / IP(src=acme["remote"], dst=me["addr"]) / inner, fid=fid)
    # bad_gre: RFC 2784 layout (header length from C, K and S only), acme's key in place.
    # Version 1; R; strict source route; recursion bit 5; a header shorter than its flags say.
    for flags in [0x2001, 0x6000, 0x2800, 0x2400]:
        fid, inner = acme_inner(9)
        gre = struct.pack("!HHI", flags, 0x0800, acme["key"]) + bytes(inner)
        drop("bad_gre", Ether(**to_me) / IP(src=acme["remote"], dst=me["addr"], proto=47) /
             Raw(gre), "acme", fid)
    drop("bad_gre", Ether(**to_me) / IP(src=acme["remote"], dst=me["addr"], proto=47) /
         Raw(struct.pack("!HH", 0x2000, 0x0800)), "acme")
    # bad_inner_ipv6: IPv6 inside GRE from the loopback address (RFC 4291 2.5.3);
    # unsupported_inner: Ethernet inside GRE
    drop("bad_inner_ipv6", frame_from("acme", IPv6() / UDP() / Raw(b"x" * 8),
                                      gre=dict(proto=0x86DD)), "acme")
    fid, inner = acme_inner(10)
    drop("unsupported_inner", frame_from("acme", Ether(src=acme["mac"], dst=me["mac"]) / inner,
                                         gre=dict(proto=0x6558)),
         "acme", fid)
    # bad_gre_checksum: globex's (sequence and checksum) and acme's (C set, not configured)
    fid = new_id()
    inner = udp(fid, host("globex", 110), host("bravo", 110))
    drop("bad_gre_checksum", frame_from("globex", inner, gre=dict(chksum=0xBEEF)), "globex",
         fid)
    fid, inner = acme_inner(11)
    drop("bad_gre_checksum", frame_from("acme", inner, gre=dict(chksum_present=1,
                                                                chksum=0xBEEF)), "acme", fid)
    # gre_sequence: missing, replayed, older. The packet before is accepted: its number is
    # the last one.
    through(c, "globex", host("bravo", 111), "fwd", 111, egress="bravo")
    last = gre_seq["globex"]
    for gre in [dict(seqnum_present=0), dict(seqnum_present=1, sequence_number=last),
                dict(seqnum_present=1, sequence_number=last - 3)]:
        fid = new_id()
        inner = udp(fid, host("globex", 112), host("bravo", 112))
        drop("gre_sequence", frame_from("globex", inner, gre=gre, seq=False), "globex", fid)
    # bad_inner_ipv4: checksum, version, IHL, total length beyond the packet, under the
    # header, an inner packet shorter than a header
    for bad in [dict(chksum=0x1234), dict(version=6), dict(ihl=4), dict(len=300), dict(len=12)]:
        fid = new_id()
        inner = IP(src=host("acme", 120), dst=host("bravo", 120), **bad) / UDP() / Raw(tag(fid))
        drop("bad_inner_ipv4", frame_from("acme", inner), "acme", fid)
    drop("bad_inner_ipv4", frame_from("initech", Raw(bytes(IP(src=host("initech", 1)))[:16])),
         "initech")
    # nested_tunnel: GRE and IPIP inside, addressed to our endpoints
    fid = new_id()
    drop("nested_tunnel", frame_from("acme", IP(src=host("acme", 130), dst=me["addr"]) /
                                     GRE(key_present=1, key=100) / udp(fid, "10.1.9.9",
                                                                         "10.2.9.9")),
         "acme", fid)
    fid = new_id()
    drop("nested_tunnel", frame_from("initech", IP(src=host("initech", 131),
                                                   dst=PORTS["internet0"]["addr"]) /
                                     udp(fid, "10.4.9.9", "10.2.9.9")), "initech", fid)
    # inner_spoofed: another client's source, nobody's source, our address, over IPIP, over
    # the core
    through(c, "acme", host("bravo", 145), "drop:inner_spoofed", src=me["addr"])
    through(c, "acme", host("bravo", 140), "drop:inner_spoofed", src=host("bravo", 141))
    through(c, "acme", host("bravo", 142), "drop:inner_spoofed", src="8.8.8.8")
    through(c, "initech", host("bravo", 143), "drop:inner_spoofed", src=host("acme", 143))
    through(n, "edge2", host("bravo", 144), "drop:inner_spoofed", src=host("acme", 144))
    # ecn_ce_not_ect: outer CE over inner Not-ECT
    through(c, "acme", host("bravo", 150), "drop:ecn_ce_not_ect", outer_tos=0x03, tos=0x00)
    through(c, "globex", host("bravo", 151), "drop:ecn_ce_not_ect", outer_tos=0xBB, tos=0xB8)
    # ttl_exceeded: inner TTL 1 and 0, a transit packet with TTL 1
    through(c, "acme", host("bravo", 160), "drop:ttl_exceeded", ttl=1)
    through(c, "initech", host("bravo", 161), "drop:ttl_exceeded", ttl=0)
    fid = new_id()
    drop("ttl_exceeded", Ether(src=upstream, dst=inet["mac"]) /
         udp(fid, "198.18.1.1", host("acme", 162), ttl=1), fid=fid, capture=n)
    # no_route: nothing matches (no default route), a blackhole route, from transit
    through(c, "acme", "8.8.8.8", "drop:no_route")
    through(c, "acme", "10.66.1.1", "drop:no_route", icmp=False)  # blackhole: silent
    fid = new_id()
    drop("no_route", Ether(src=upstream, dst=inet["mac"]) / udp(fid, "198.18.1.2", "9.9.9.9"),
         fid=fid, capture=n)
    # martian_destination: multicast, limited broadcast, loopback; from a tunnel and from
    # transit (RFC 1812 5.3.7: never forwarded, whatever the routes)
    through(c, "acme", "224.0.0.251", "drop:martian_destination")
    through(c, "initech", "255.255.255.255", "drop:martian_destination")
    fid = new_id()
    drop("martian_destination", Ether(src=upstream, dst=inet["mac"]) /
         udp(fid, "198.18.1.3", "127.0.0.1"), fid=fid, capture=n)
    # hairpin: back into the tunnel it came from
    through(c, "acme", host("acme", 170), "drop:hairpin")
    through(c, "globex", host("globex", 171), "drop:hairpin")
    through(c, "initech", host("initech", 172), "drop:hairpin")
    # tunnel_loop: to the ingress tunnel's remote (routed natively), from the egress tunnel's
    # remote (one of acme's extra sources), and in transit from one of our addresses and from
    # the egress tunnel's remote. (To the egress tunnel's remote cannot be configured: no
    # tunnel's remote may be routed into a tunnel.)
    through(c, "acme", acme["remote"], "drop:tunnel_loop")
    through(c, "acme", host("bravo", 181), "drop:tunnel_loop", src=TUNNELS["bravo"]["remote"])
    for src in [me["addr"], acme["remote"]]:
        fid = new_id()
        drop("tunnel_loop", Ether(src=upstream, dst=inet["mac"]) /
             udp(fid, src, host("acme", 180)), fid=fid, capture=n)
    # mtu_exceeded: one byte over initech's tunnel mtu with DF, well over without DF (no
    # fragmentation yet), one byte over internet0's port mtu natively
    # (with DF, answered with Fragmentation Needed and the MTU that would have fitted)
    through(c, "acme", host("initech", 190), "drop:mtu_exceeded", size=981, df=True, mtu=980)
    through(c, "acme", host("initech", 191), "drop:mtu_exceeded", size=1200, df=False)
    through(c, "acme", "172.16.1.2", "drop:mtu_exceeded", size=1401, df=True, mtu=1400)
    through(c, "acme", "10.8.1.2", "drop:mtu_exceeded", size=1369, df=True, mtu=1368)
    # no_neighbor: the nonbr tunnel's next hop has no static neighbour, and nobody answers ARP
    through(c, "acme", "10.5.0.1", "drop:no_neighbor")
    through(c, "globex", "10.5.0.2", "drop:no_neighbor")
    # no_headroom cannot be reached from the wire: every mbuf has 128 bytes of headroom and
    # the largest encapsulation needs 14 + 20 + 16.

    # ---- ICMP Fragmentation Needed from the underlay about our own tunnel packets. ----
    def ours(tname, total=1400, key="tunnel"):
        """An outer packet as tunnel `tname` sends it (no GRE sequence numbers or checksum
        here), `total` bytes long: what an underlay router quotes; `key` to get it wrong."""
        t = TUNNELS[tname]
        k = t["key"] if key == "tunnel" else key
        head = IP(src=t["local"], dst=t["remote"], flags="DF")
        if t["mode"] == "gre":
            head = head / (GRE(key_present=1, key=k) if k is not None else GRE())
        inner = IP(src=host("acme", 1), dst=host("bravo", 1)) / UDP()
        return bytes(head / inner / Raw(b"\0" * (total - len(head / inner))))

    def frag_needed(quote, mtu, cut=548, **icmp):
        return (Ether(src="02:00:00:00:77:77", dst=me["mac"]) /
                IP(src="198.51.100.254", dst=me["addr"]) /
                ICMP(type=3, code=4, nexthopmtu=mtu, **icmp) / Raw(quote[:cut]))

    # Forged: quoting a header none of our tunnels sends (acme's with the wrong key), a
    # quote too short to show one, a wrong ICMP checksum, an MTU the packet would fit.
    add(c, frag_needed(ours("acme", key=101), 1300), "drop:pmtu_not_ours")
    add(c, frag_needed(ours("bravo"), 1300, cut=24), "drop:pmtu_truncated")
    add(c, frag_needed(ours("bravo"), 1300, chksum=0x1234), "drop:pmtu_malformed")
    add(c, frag_needed(ours("bravo"), 1400), "drop:pmtu_not_smaller")
    # About a packet that is no tunnel's: any ICMP to us (punted; no host interface here).
    add(c, frag_needed(bytes(IP(src=me["addr"], dst="198.51.100.254", flags="DF") / UDP() /
                             Raw(b"x" * 1372)), 1300), "punt:local", events=["pmtu_not_tunnel"])
    # Genuine, but above bravo's MTU already: nothing to lower.
    add(c, frag_needed(ours("bravo", total=1600), 1550), "punt:pmtu",
        events=["pmtu_not_lower"])
    # Genuine: nonbr (key 500: 28 bytes of headers) down to its floor, 576 inside.
    add(c, frag_needed(ours("nonbr"), 300), "punt:pmtu", pmtu=dict(tunnel="nonbr", mtu=604))


def multi(count):
    """Good flows only, spread over two captures of the client port."""
    kinds = [("acme", "bravo"), ("bravo", "globex"), ("initech", "acme"), ("bravo", "initech"),
             ("acme", None)]
    for cap in ["client-a.pcap", "client-b.pcap"]:
        for i in range(count):
            src, dst = kinds[i % len(kinds)]
            if dst is None:
                through(cap, src, "172.16.%d.%d" % (i // 200, 1 + i % 200), "fwd", i,
                        egress="native:internet0", tos=i % 256)
            else:
                through(cap, src, host(dst, i), "fwd", i, egress=dst, tos=i % 256,
                        df=i % 2 == 0, ttl=2 + i % 250)


if SCENARIO == "full":
    full()
elif SCENARIO.startswith("multi"):
    multi(int(SCENARIO.split(":")[1]))
else:
    raise SystemExit("unknown scenario " + SCENARIO)

for cap in LAB["captures"]:
    frames = captures.get(cap, (None, []))[1]
    wrpcap("%s/%s" % (OUT_DIR, cap), frames, linktype=1)
json.dump(dict(packets=manifest), sys.stdout)
