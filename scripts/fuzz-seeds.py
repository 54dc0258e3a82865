#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets into fuzz/seeds/<target>/.

Usage: scripts/fuzz-seeds.py [TARGET...]   (Debian's /usr/bin/python3, which has scapy)
       (all targets unless some are named; pipeline_outer6 is the only one that can be
       written alone)

The packets are real ones: those tests/data/e2e_traffic.py writes for the end-to-end test
(every forwarding path and every drop reason reachable from the wire) and those
tests/data/hostile_corpus.py writes for the hostile corpus test (one variant of each
case), generated for the lab of fuzz/lab.toml, which is those tests' lab. From them:

  wire_headers      frames of every kind, plus ARP frames
  pipeline_packet   one frame per (expected outcome, tunnel) of the end-to-end traffic and
                    one per category of the hostile corpus, behind the control byte (bit 0:
                    the port; see fuzz/src/lib.rs), and one with a small headroom
  pipeline_burst    the captures cut into bursts (control byte, 16-bit length, frame)
  pipeline_fast     the same bursts
  pipeline_outer6   for the lab of fuzz/lab-outer6.toml (tunnels with IPv6 endpoints): GRE
                    over IPv6 and IP in IPv6 of each tunnel, both inner families, and what
                    is answered (hop limit, MTU) or refused (an outer fragment, an extension header chain, a truncated
                    frame, a wrong key, a spoofed inner source, the wrong port)
  config_parse      the repository's configuration files and a few broken ones
  control_request   one request line per control API operation, good and bad
  fpm_frames        zebra's FPM frames, written here from linux/rtnetlink.h's structures
                    (not by the decoder's own encoder): updates, multipath, blackholes,
                    routes out of the port, refused ones, a cut frame, a lost stream

The output is deterministic (fixed names, no timestamps): rerunning the script changes
nothing unless a generator changed. Seeds are small, a few dozen files per target; what
the fuzzer finds goes to fuzz/corpus/ (not committed).
"""
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")
CAPTURES = {"client-in.pcap": "client0", "inet-in.pcap": "internet0"}


def lab_json(lab):
    """The lab description e2e_traffic.py takes, from fuzz/lab.toml."""
    ports, tunnels = {}, {}
    index = {p["name"]: p for p in lab["port"]}

    def neighbor(port, ip):
        for n in index[port].get("neighbor", []):
            if n["ip"] == ip:
                return n["mac"]
        return None

    for p in lab["port"]:
        ports[p["name"]] = dict(mac=p["mac"], addr=p["addresses"][0], mtu=p.get("mtu", 1500),
                                upstream_mac=neighbor(p["name"], "203.0.113.254"))
    for t in lab["tunnel"]:
        gre = t["mode"] == "gre"
        opts = (t.get("key") is not None) + t.get("sequence", False) + t.get("checksum", False)
        headers = 20 + (4 + 4 * opts if gre else 0)
        tunnels[t["name"]] = dict(
            mode=t["mode"], local=t["local"], remote=t["remote"], port=t["port"],
            key=t.get("key"), sequence=t.get("sequence", False),
            checksum=t.get("checksum", False),
            mac=neighbor(t["port"], t["remote"]) or "02:00:00:00:99:99",
            net=".".join(t["prefixes"][0].split(".")[:2]),
            inner_mtu=t.get("mtu", ports[t["port"]]["mtu"]) - headers)
    return dict(ports=ports, tunnels=tunnels, captures=CAPTURES)


def read_pcap(path):
    """The frames of a classic pcap file, byte for byte (scapy would rebuild them)."""
    with open(path, "rb") as f:
        data = f.read()
    endian = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    frames, at = [], 24
    while at < len(data):
        incl = struct.unpack(endian + "I", data[at + 8:at + 12])[0]
        frames.append(data[at + 16:at + 16 + incl])
        at += 16 + incl
    return frames


def generate(lab, script="e2e_traffic.py", scenario="full"):
    """Run a test's generator; return [(port index, frame, manifest entry)]."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, os.path.join(ROOT, "tests", "data", script), tmp,
             json.dumps(lab_json(lab)), scenario],
            check=True, capture_output=True, text=True).stdout
        manifest = json.loads(out)["packets"]
        port_index = {p["name"]: i for i, p in enumerate(lab["port"])}
        frames = {cap: read_pcap(os.path.join(tmp, cap)) for cap in CAPTURES}
    taken = {cap: 0 for cap in CAPTURES}
    result = []
    for m in manifest:
        cap = m["capture"]
        result.append((port_index[CAPTURES[cap]], frames[cap][taken[cap]], m))
        taken[cap] += 1
    return result


def arp_frames(lab):
    from scapy.all import ARP, Ether
    me = lab["port"][0]
    peer = "02:00:00:00:0a:0a"
    return [
        ("arp-request-ours", Ether(src=peer, dst="ff:ff:ff:ff:ff:ff") /
         ARP(op=1, hwsrc=peer, psrc="198.51.100.10", pdst=me["addresses"][0])),
        ("arp-request-other", Ether(src=peer, dst="ff:ff:ff:ff:ff:ff") /
         ARP(op=1, hwsrc=peer, psrc="198.51.100.10", pdst="192.0.2.99")),
        ("arp-reply-ours", Ether(src=peer, dst=me["mac"]) /
         ARP(op=2, hwsrc=peer, psrc="198.51.100.99", hwdst=me["mac"],
             pdst=me["addresses"][0])),
    ]


def reset(target):
    d = os.path.join(SEEDS, target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def write(d, name, data):
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def name_of(m):
    what = m["expect"].replace(":", "-")
    if (m.get("egress") or "").startswith("reflect:"):
        what += "-keepalive"
    via = m.get("ingress") or "native"
    return "%s-%s" % (what, via)


def packets(lab, generated, hostile):
    arps = [(n, bytes(f)) for n, f in arp_frames(lab)]
    # One frame per (outcome, ingress tunnel), in generator order.
    chosen, seen = [], set()
    for port, frame, m in generated:
        key = name_of(m)
        if key not in seen:
            seen.add(key)
            chosen.append((key, port, frame))

    d = reset("wire_headers")
    for key, _, frame in chosen[:30]:
        write(d, key, frame)
    for n, f in arps:
        write(d, n, f)

    # One hostile frame per category (its first), for both.
    extra, seen = [], set()
    for port, frame, m in hostile:
        if m["category"] not in seen:
            seen.add(m["category"])
            key = "hostile-%s-%s" % (m["category"], m["expect"].replace(":", "-"))
            extra.append((key, port, frame))
    for key, _, frame in extra:
        write(d, key, frame)

    d = reset("pipeline_packet")
    for key, port, frame in chosen + extra:
        write(d, key, bytes([port]) + frame)
    for n, f in arps:
        write(d, n, bytes([0]) + f)
    # A small headroom (bit 7, headroom (c >> 1) & 0x3f): no_headroom is reachable only so,
    # and only where decapsulation frees less than encapsulation needs: transit from the
    # internet (14 bytes freed) into a GRE tunnel with a key (42 needed).
    for key, port, frame in chosen:
        if key == "fwd-native":
            write(d, "small-headroom-" + key, bytes([0x80 | (20 << 1) | port]) + frame)

    ipv6_seeds(d)
    nd_seeds(d)

    d = reset("pipeline_burst")
    by_port = {}
    for port, frame, _ in generated:
        by_port.setdefault(port, []).append(frame)
    for port, frames in sorted(by_port.items()):
        for i in range(0, len(frames), 32):
            burst = b"".join(bytes([port]) + struct.pack("!H", len(f)) + f
                             for f in frames[i:i + 32])
            write(d, "port%d-burst%02d" % (port, i // 32), burst)
    mixed = b"".join(bytes([0x40 | p]) + struct.pack("!H", len(f)) + f
                     for p, f, _ in generated[:: max(1, len(generated) // 24)])
    write(d, "mixed-ports", mixed)
    # pipeline_fast reads the same bursts.
    fast = reset("pipeline_fast")
    for name in os.listdir(d):
        shutil.copy(os.path.join(d, name), fast)


def nd_seeds(d):
    """Neighbor Discovery on port client0 (02:00:00:00:00:01, link-local
    fe80::ff:fe00:1, RFC 4291 appendix A): a solicitation answered, a DAD probe answered,
    one from beyond a router (hop limit 254) and an advertisement."""
    from scapy.all import (Ether, IPv6, ICMPv6ND_NS, ICMPv6ND_NA, ICMPv6NDOptSrcLLAddr,
                           ICMPv6NDOptDstLLAddr)
    me, ll, peer = "02:00:00:00:00:01", "fe80::ff:fe00:1", "02:00:00:00:0a:0a"
    group = Ether(dst="33:33:ff:00:00:01", src=peer)
    frames = [
        ("punt-nd-solicit", group / IPv6(src="fe80::a", dst="ff02::1:ff00:1", hlim=255)
         / ICMPv6ND_NS(tgt=ll) / ICMPv6NDOptSrcLLAddr(lladdr=peer)),
        ("punt-nd-dad", group / IPv6(src="::", dst="ff02::1:ff00:1", hlim=255)
         / ICMPv6ND_NS(tgt=ll)),
        ("punt-nd-hop-limit-254", group / IPv6(src="fe80::a", dst="ff02::1:ff00:1", hlim=254)
         / ICMPv6ND_NS(tgt=ll) / ICMPv6NDOptSrcLLAddr(lladdr=peer)),
        ("punt-nd-advert", Ether(dst=me, src=peer) / IPv6(src="fe80::a", dst=ll, hlim=255)
         / ICMPv6ND_NA(R=0, S=1, O=1, tgt="fe80::a") / ICMPv6NDOptDstLLAddr(lladdr=peer)),
    ]
    for name, f in frames:
        write(d, name, bytes([0]) + bytes(f))


def ipv6_seeds(d):
    """IPv6 inside the lab's tunnels (acme: GRE key 100, 2001:db8:1::/48, link6 fd00:1::1;
    umbrella: IPIP, protocol 41, 2001:db8:6::/48, link6 fd00:6::1), one per outcome,
    extension header chains among them (RFC 8200: passed untouched, never walked)."""
    from scapy.all import (Ether, IP, IPv6, GRE, UDP, Raw, ICMPv6EchoRequest,
                           IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrFragment,
                           IPv6ExtHdrDestOpt)

    def acme(inner):
        return (Ether(dst="02:00:00:00:00:01", src="02:00:00:00:0a:0a")
                / IP(src="198.51.100.10", dst="192.0.2.1")
                / GRE(key_present=1, key=100, proto=0x86DD) / inner)

    def umbrella(inner):
        return (Ether(dst="02:00:00:00:00:01", src="02:00:00:00:0e:0e")
                / IP(src="198.51.100.60", dst="192.0.2.1", proto=41) / inner)

    def v6(src="2001:db8:1::5", dst="2001:db8:6::9", **kw):
        return IPv6(src=src, dst=dst, **kw)

    udp = UDP(sport=40000, dport=40001) / Raw(b"ipv6 seed")
    chain = (IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting() / IPv6ExtHdrFragment()
             / IPv6ExtHdrDestOpt())
    long_chain = IPv6ExtHdrDestOpt()
    for _ in range(63):
        long_chain = long_chain / IPv6ExtHdrDestOpt()
    seeds = {
        "fwd-ipv6-acme": acme(v6() / udp),
        "fwd-ipv6-umbrella": umbrella(v6("2001:db8:6::9", "2001:db8:1::5") / udp),
        "fwd-ipv6-ext-chain-acme": acme(v6() / chain / udp),
        "fwd-ipv6-long-ext-chain-umbrella":
            umbrella(v6("2001:db8:6::9", "2001:db8:1::5") / long_chain / udp),
        "fwd-ipv6-truncated-ext-chain-acme": acme(v6() / IPv6ExtHdrHopByHop(len=200)),
        "fwd-ipv6-route-to-edge2-acme": acme(v6(dst="2001:db8:9::1") / udp),
        "drop-bad_inner_ipv6-ipv4-inside-acme":
            acme(Raw(bytes(IP(src="10.1.0.5", dst="10.4.0.9")))),
        "drop-bad_inner_ipv6-plen-umbrella":
            umbrella(Raw(bytes(v6("2001:db8:6::9", "2001:db8:1::5", plen=99) / udp))),
        "drop-inner_spoofed-ipv6-acme": acme(v6(src="2001:db8:6::5") / udp),
        "drop-ttl_exceeded-ipv6-acme": acme(v6(hlim=1) / udp),
        "drop-no_route-ipv6-acme": acme(v6(dst="2001:db8:99::1") / udp),
        "drop-no_route-ipv6-prohibit-acme": acme(v6(dst="2001:db8:71::1") / udp),
        # umbrella's inner MTU is 1,480, acme's 1,472 (GRE with a key): Packet Too Big.
        "drop-mtu_exceeded-ipv6-umbrella":
            umbrella(v6("2001:db8:6::9", "2001:db8:1::5") / UDP(sport=1, dport=2)
                     / Raw(b"m" * (1480 - 48))),
        "drop-martian_destination-ipv6-acme": acme(v6(dst="ff02::1") / udp),
        "drop-hairpin-ipv6-acme": acme(v6(dst="2001:db8:1::9") / udp),
        "drop-tunnel_loop-ipv6-acme": acme(v6(src="fd00:1::1") / udp),
        "drop-nested_tunnel-ipv6-acme": acme(v6("fd00:1::", "fd00:1::1", nh=47) / Raw(b"x" * 8)),
        "punt-local_inner-ipv6-acme": acme(v6("fd00:1::", "fd00:1::1") / ICMPv6EchoRequest()),
    }
    for name, frame in seeds.items():
        write(d, name, bytes([0]) + bytes(frame))


def outer6_seeds():
    """The lab of fuzz/lab-outer6.toml: on port 0 g6 (GRE over IPv6), k6 (GRE over IPv6
    with key 600, sequence numbers and checksum), i6 (IP in IPv6), all from 2001:db8:a::1;
    on port 1 v4 (GRE over IPv4, key 4). Control byte: the port."""
    from scapy.all import (Ether, IP, IPv6, GRE, UDP, Raw, IPv6ExtHdrHopByHop,
                           IPv6ExtHdrDestOpt, IPv6ExtHdrFragment)
    d = reset("pipeline_outer6")
    p0, p1 = "02:00:00:00:00:01", "02:00:00:00:01:01"
    l6, l4 = "2001:db8:a::1", "203.0.113.1"
    remote = {"g6": "2001:db8:b::10", "k6": "2001:db8:b::20", "i6": "2001:db8:b::30"}
    udp = UDP(sport=40000, dport=40001) / Raw(b"outer6 seed")

    def six(t, inner, nh=None, ext=None):
        outer = IPv6(src=remote[t], dst=l6, hlim=64)
        if nh is not None:
            outer.nh = nh
        head = Ether(dst=p0, src="02:00:00:00:bb:99") / outer
        if ext is not None:
            head = head / ext
        return head / inner

    def gre6(t, inner, proto=0x0800, **kw):
        if t == "k6":
            kw = dict(dict(chksum_present=1, key_present=1, key=600, seqnum_present=1,
                           sequence_number=1), **kw)
        return GRE(proto=proto, **kw) / inner

    def v4(inner, proto=0x0800, key=4):
        return (Ether(dst=p1, src="02:00:00:00:cc:04") / IP(src="203.0.113.4", dst=l4)
                / GRE(key_present=1, key=key, proto=proto) / inner)

    ip4 = lambda s, d: IP(src=s, dst=d, ttl=64) / udp
    ip6 = lambda s, d: IPv6(src=s, dst=d, hlim=64) / udp
    good_k6 = six("k6", gre6("k6", ip4("10.2.0.5", "10.1.0.7")))
    seeds = {
        "fwd-g6-ipv4": (0, six("g6", gre6("g6", ip4("10.1.0.5", "10.4.0.7")))),
        "fwd-g6-ipv6": (0, six("g6", gre6("g6", ip6("2001:db8:1::5", "2001:db8:3::7"),
                                          0x86DD))),
        "fwd-k6-ipv4": (0, good_k6),
        "fwd-k6-ipv6": (0, six("k6", gre6("k6", ip6("2001:db8:2::5", "2001:db8:4::7"),
                                          0x86DD))),
        "fwd-i6-ipv4": (0, six("i6", ip4("10.3.0.5", "10.2.0.7"), nh=4)),
        "fwd-i6-ipv6": (0, six("i6", ip6("2001:db8:3::5", "2001:db8:1::7"), nh=41)),
        "fwd-v4-ipv4": (1, v4(ip4("10.4.0.5", "10.3.0.7"))),
        "fwd-v4-ipv6": (1, v4(ip6("2001:db8:4::5", "2001:db8:2::7"), 0x86DD)),
        "fwd-v4-keepalive": (1, v4(IP(src=l4, dst="203.0.113.4") / GRE(key_present=1, key=4))),
        # Inner 1,345 bytes: one more than k6's inner MTU (1,400 - 40 - 16).
        "reply-mtu-v4-to-k6": (1, v4(IP(src="10.4.0.5", dst="10.2.0.7", flags="DF") / UDP()
                                    / Raw(b"m" * (1345 - 28)))),
        # Hop limit 1: ICMPv6 Time Exceeded back into i6, and into k6 (RFC 4443 3.3).
        "reply-ttl-i6-ipv6": (0, six("i6", IPv6(src="2001:db8:3::5", dst="2001:db8:1::7",
                                                hlim=1) / udp, nh=41)),
        "reply-ttl-k6-ipv4": (0, six("k6", gre6("k6", IP(src="10.2.0.5", dst="10.1.0.7",
                                                          ttl=1) / udp))),
        "drop-fragment-g6": (0, six("g6", gre6("g6", ip4("10.1.0.5", "10.4.0.7")),
                                    ext=IPv6ExtHdrFragment(m=1, id=7))),
        "drop-ext-chain-i6": (0, six("i6", ip4("10.3.0.5", "10.2.0.7"),
                                     ext=IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt(nh=4))),
        "drop-truncated-k6": (0, Raw(bytes(good_k6)[:70])),
        "drop-wrong-key-k6": (0, six("k6", gre6("k6", ip4("10.2.0.5", "10.1.0.7"), key=601))),
        "drop-spoofed-g6": (0, six("g6", gre6("g6", ip4("10.2.0.5", "10.4.0.7")))),
        "drop-wrong-port-g6": (1, six("g6", gre6("g6", ip4("10.1.0.5", "10.4.0.7")))),
    }
    for name, (port, frame) in seeds.items():
        write(d, name, bytes([port]) + bytes(frame))


BROKEN_CONFIGS = {
    "bad-syntax.toml": "[[port]\nname = \"p\"\n",
    "bad-type.toml": "[[port]]\nname = 3\ndevice = \"0\"\nroles = [\"client\"]\n"
                     "addresses = [\"192.0.2.1\"]\n",
    "unknown-field.toml": "[[port]]\nname = \"p\"\ndevice = \"0\"\nroles = [\"client\"]\n"
                          "addresses = [\"192.0.2.1\"]\ncolour = \"blue\"\n",
    "duplicate-tunnel-key.toml": None,  # filled from the lab below
    "tunnel-through-tunnel.toml": None,
    "overlapping-sources.toml": None,
}


def configs(lab_text):
    d = reset("config_parse")
    for path in ["fuzz/lab.toml", "demo/lab.toml", "pipeline-config/examples/lab.toml",
                 "pipeline-config/examples/minimal.toml"]:
        with open(os.path.join(ROOT, path), "rb") as f:
            write(d, path.replace("/", "-"), f.read())
    broken = dict(BROKEN_CONFIGS)
    broken["duplicate-tunnel-key.toml"] = lab_text.replace('remote = "198.51.100.20"',
                                                           'remote = "198.51.100.10"\nkey = 100')
    broken["tunnel-through-tunnel.toml"] = lab_text + (
        '\n[[route]]\nprefix = "198.51.100.10/32"\ntunnel = "bravo"\n')
    broken["overlapping-sources.toml"] = lab_text.replace('prefixes = ["10.2.0.0/16"]',
                                                          'prefixes = ["10.1.2.0/24"]')
    for name, text in broken.items():
        write(d, name, text.encode())


REQUESTS = [
    ("list-tunnels", {"op": "list_tunnels"}),
    ("list-routes", {"op": "list_routes"}),
    ("list-neighbors", {"op": "list_neighbors"}),
    ("counters", {"op": "counters"}),
    ("generations", {"op": "generations"}),
    ("lookup", {"op": "lookup", "dst": "10.8.1.1"}),
    ("lookup-bad", {"op": "lookup", "dst": "10.8.1"}),
    ("add-tunnel", {"op": "add_tunnel", "tunnel": {
        "name": "hooli", "mode": "gre", "local": "192.0.2.1", "remote": "198.51.100.60",
        "port": "client0", "key": 600, "sequence": True, "checksum": True,
        "prefixes": ["10.6.0.0/16"], "next_hop": "198.51.100.10"}}),
    ("add-tunnel-dup", {"op": "add_tunnel", "tunnel": {
        "name": "dup", "mode": "gre", "local": "192.0.2.1", "remote": "198.51.100.10",
        "port": "client0", "key": 100, "prefixes": ["10.60.0.0/16"]}}),
    ("add-tunnel-ipip-key", {"op": "add_tunnel", "tunnel": {
        "name": "x", "mode": "ipip", "local": "192.0.2.1", "remote": "198.51.100.61",
        "port": "client0", "key": 1, "prefixes": ["10.61.0.0/16"]}}),
    ("remove-tunnel", {"op": "remove_tunnel", "name": "nonbr"}),
    ("remove-tunnel-routed", {"op": "remove_tunnel", "name": "edge2"}),
    ("set-route", {"op": "set_route", "route": {"prefix": "10.100.0.0/16", "tunnel": "acme"}}),
    ("set-route-native", {"op": "add_route", "route": {
        "prefix": "0.0.0.0/0", "port": "internet0", "next_hop": "203.0.113.254"}}),
    ("set-route-host-bits", {"op": "set_route", "route": {
        "prefix": "10.100.0.1/16", "tunnel": "acme"}}),
    ("set-route-loop", {"op": "set_route", "route": {
        "prefix": "198.51.100.10/32", "tunnel": "bravo"}}),
    ("remove-route", {"op": "remove_route", "prefix": "10.66.0.0/16"}),
    ("set-neighbor", {"op": "set_neighbor", "port": "client0", "ip": "198.51.100.99",
                      "mac": "02:00:00:00:99:99"}),
    ("set-neighbor-bad-mac", {"op": "set_neighbor", "port": "client0", "ip": "198.51.100.99",
                              "mac": "02:00:00:00:99"}),
    ("remove-neighbor", {"op": "remove_neighbor", "port": "internet0", "ip": "203.0.113.50"}),
    ("apply-config-same", {"op": "apply_config", "path": "same"}),
    ("apply-config-routes", {"op": "apply_config", "path": "routes"}),
    ("apply-config-ports", {"op": "apply_config", "path": "ports"}),
    ("apply-config-bad", {"op": "apply_config", "path": "bad"}),
    ("batch", {"op": "batch", "ops": [
        {"op": "remove_route", "prefix": "10.8.0.0/16"},
        {"op": "set_route", "route": {"prefix": "10.8.0.0/16", "tunnel": "acme"}}]}),
    ("batch-half-bad", {"op": "batch", "ops": [
        {"op": "remove_route", "prefix": "10.8.0.0/16"},
        {"op": "remove_tunnel", "name": "nobody"}]}),
    ("batch-no-ops", {"op": "batch"}),
    ("unknown-op", {"op": "reboot"}),
    ("no-op", {"tunnel": "acme"}),
]


def requests():
    d = reset("control_request")
    for name, req in REQUESTS:
        write(d, name, (json.dumps(req) + "\n").encode())
    write(d, "not-an-object", b'[1, "two", null]\n')
    write(d, "truncated", b'{"op": "set_route", "route": {"prefix": "10.1')


# rtnetlink, as zebra's dplane_fpm_nl writes it: the netlink parts in the host's byte order
# (little-endian on the hosts backbone runs on), the FPM header big-endian. The fuzz target
# names interfaces 1-6 bb-acme, bb-bravo, bb-globex, bb-initech, bb-nonbr, bb-edge2, 7
# bb-internet0 (a host interface in that target) and 8 eth0 (not the dataplane's).
RTM_NEWROUTE, RTM_DELROUTE, RTM_NEWNEXTHOP = 24, 25, 104
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_MULTIPATH, RTA_TABLE, RTA_NH_ID = 1, 4, 5, 6, 9, 15, 30
RTN_UNICAST, RTN_BLACKHOLE, RTN_UNREACHABLE, RTN_PROHIBIT = 1, 6, 7, 8
RTPROT_KERNEL, RTPROT_BGP, RTPROT_ZSTATIC = 2, 186, 196


def rtattr(kind, value):
    data = struct.pack("<HH", 4 + len(value), kind) + value
    return data + b"\0" * (-len(data) % 4)


def ip4(a):
    return bytes(int(x) for x in a.split("."))


def rtmsg(kind, prefix, rtype=RTN_UNICAST, proto=RTPROT_BGP, oif=None, gw=None,
          hops=None, family=2, table=254, extra=b""):
    addr, length = prefix.split("/")
    attrs = rtattr(RTA_DST, ip4(addr)) if family == 2 else rtattr(RTA_DST, bytes(16))
    if oif is not None:
        attrs += rtattr(RTA_OIF, struct.pack("<I", oif))
    if gw is not None:
        attrs += rtattr(RTA_GATEWAY, ip4(gw))
    if hops:
        mp = b""
        for ifindex, hop_gw in hops:
            nh_attrs = rtattr(RTA_GATEWAY, ip4(hop_gw)) if hop_gw else b""
            mp += struct.pack("<HBBi", 8 + len(nh_attrs), 0, 0, ifindex) + nh_attrs
        attrs += rtattr(RTA_MULTIPATH, mp)
    attrs += rtattr(RTA_TABLE, struct.pack("<I", table)) + extra
    body = struct.pack("<BBBBBBBBI", family, int(length), 0, 0, min(table, 252) if table > 255 else table,
                       proto, 0, rtype, 0) + attrs
    return struct.pack("<IHHII", 16 + len(body), kind, 0, 1, 0) + body


def fpm_frame(*messages, version=1, kind=1):
    payload = b"".join(messages)
    return struct.pack(">BBH", version, kind, 4 + len(payload)) + payload


def fpm():
    d = reset("fpm_frames")
    seeds = {
        "add-into-tunnel": fpm_frame(rtmsg(RTM_NEWROUTE, "10.20.0.0/16", oif=1)),
        "update-delete-and-add": fpm_frame(rtmsg(RTM_DELROUTE, "10.20.0.0/16"),
                                           rtmsg(RTM_NEWROUTE, "10.20.0.0/16", oif=3)),
        "native-via-gateway": fpm_frame(rtmsg(RTM_NEWROUTE, "8.8.8.0/24", oif=7,
                                              gw="203.0.113.254", proto=RTPROT_ZSTATIC)),
        "default-multipath": fpm_frame(rtmsg(RTM_NEWROUTE, "0.0.0.0/0", hops=[
            (7, "203.0.113.254"), (7, "203.0.113.50")])),
        "blackhole": fpm_frame(rtmsg(RTM_NEWROUTE, "10.66.0.0/16", rtype=RTN_BLACKHOLE)),
        "unreachable-prohibit": fpm_frame(
            rtmsg(RTM_NEWROUTE, "10.67.0.0/16", rtype=RTN_UNREACHABLE),
            rtmsg(RTM_NEWROUTE, "10.68.0.0/16", rtype=RTN_PROHIBIT)),
        "connected-host-routes": fpm_frame(
            rtmsg(RTM_NEWROUTE, "203.0.113.0/24", oif=7, proto=RTPROT_KERNEL),
            rtmsg(RTM_NEWROUTE, "192.168.1.0/24", oif=8, proto=RTPROT_KERNEL)),
        "ipv6-and-vrf-ignored": fpm_frame(rtmsg(RTM_NEWROUTE, "2001:db8::/32", family=10),
                                          rtmsg(RTM_NEWROUTE, "10.21.0.0/16", oif=1, table=1000)),
        "shadowed-by-a-tunnel-prefix": fpm_frame(rtmsg(RTM_NEWROUTE, "10.1.0.0/16", oif=2)),
        "remote-into-a-tunnel": fpm_frame(rtmsg(RTM_NEWROUTE, "198.51.100.0/24", oif=1)),
        "unknown-interface": fpm_frame(rtmsg(RTM_NEWROUTE, "10.22.0.0/16", oif=8, gw="192.168.1.1")),
        "gateway-ours": fpm_frame(rtmsg(RTM_NEWROUTE, "10.23.0.0/16", oif=7, gw="203.0.113.1")),
        "next-hop-group": fpm_frame(struct.pack("<IHHII", 24, RTM_NEWNEXTHOP, 0, 0, 0) + bytes(8)),
        "next-hop-id": fpm_frame(rtmsg(RTM_NEWROUTE, "10.24.0.0/16",
                                       extra=rtattr(RTA_NH_ID, struct.pack("<I", 7)))),
        "bad-message-length": fpm_frame(rtmsg(RTM_NEWROUTE, "10.25.0.0/16", oif=1)[:20]),
        "not-netlink": fpm_frame(b"\x08\x01", kind=2),
        "bad-version": fpm_frame(rtmsg(RTM_NEWROUTE, "10.26.0.0/16", oif=1), version=2),
    }
    stream = b"".join([seeds["add-into-tunnel"], seeds["update-delete-and-add"],
                       seeds["native-via-gateway"], seeds["unknown-interface"],
                       fpm_frame(rtmsg(RTM_DELROUTE, "10.20.0.0/16")),
                       fpm_frame(rtmsg(RTM_DELROUTE, "10.99.0.0/16"))])
    seeds["stream"] = stream
    seeds["stream-cut"] = stream[:-7]
    for name, data in seeds.items():
        write(d, name, data)


def main():
    if sys.argv[1:] == ["pipeline_outer6"]:
        outer6_seeds()
        return
    with open(os.path.join(ROOT, "fuzz", "lab.toml"), "rb") as f:
        lab_text = f.read().decode()
    lab = tomllib.loads(lab_text)
    generated = generate(lab)
    hostile = generate(lab, "hostile_corpus.py", "corpus:1")
    packets(lab, generated, hostile)
    configs(lab_text)
    requests()
    fpm()
    outer6_seeds()
    for target in sorted(os.listdir(SEEDS)):
        files = os.listdir(os.path.join(SEEDS, target))
        size = sum(os.path.getsize(os.path.join(SEEDS, target, f)) for f in files)
        digest = hashlib.sha256()
        for f in sorted(files):
            with open(os.path.join(SEEDS, target, f), "rb") as fh:
                digest.update(f.encode() + fh.read())
        print("%-16s %3d seeds, %6d bytes, sha256 %s" % (target, len(files), size,
                                                         digest.hexdigest()[:16]))


if __name__ == "__main__":
    main()
