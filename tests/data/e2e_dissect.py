#!/usr/bin/env python3
"""Dissect what backbone sent, for tests/tests/appliance_e2e.rs: one JSON object per line
per packet of each capture named on the command line.

Fields: file, index, len (frame bytes), eth_dst, eth_src, eth_type; for ARP, `arp` (op,
hwsrc, psrc, pdst); for IPv4, `outer` (the
header fields, `chksum_ok` from scapy rebuilding the header with the checksum deleted);
for GRE, `gre` (every flag field, key, sequence number, reserved1, `chksum_ok` the same
way over the GRE header and payload); `inner_hex`, the IPv4 packet inside the tunnel (or,
for a packet sent natively or a reflected keepalive, the packet itself), with
`inner_chksum_ok`; `flow`, the flow id
found in it (b"flow=NNNNNN;"), or null.
"""
import json
import re
import sys

from scapy.all import ARP, GRE, IP, Ether, rdpcap

FLOW = re.compile(rb"flow=(\d{6});")


def header_checksum_ok(raw):
    """Rebuild an IPv4 header with scapy, the checksum deleted: same checksum?"""
    ip = IP(raw)
    again = ip.copy()
    del again.chksum
    return IP(bytes(again)).chksum == ip.chksum


def ipv4_fields(ip):
    return dict(version=ip.version, ihl=ip.ihl, tos=ip.tos, len=ip.len, id=ip.id,
                df=bool(int(ip.flags) & 2), mf=bool(int(ip.flags) & 1),
                reserved=bool(int(ip.flags) & 4), frag=ip.frag, ttl=ip.ttl, proto=ip.proto,
                src=ip.src, dst=ip.dst, chksum=ip.chksum)


for path in sys.argv[1:]:
    for index, pkt in enumerate(rdpcap(path)):
        raw = bytes(pkt)
        d = dict(file=path.rsplit("/", 1)[-1], index=index, len=len(raw))
        eth = Ether(raw)
        d.update(eth_dst=eth.dst, eth_src=eth.src, eth_type=eth.type)
        if eth.type == 0x0806:
            a = eth[ARP]
            d["arp"] = dict(op=a.op, hwsrc=a.hwsrc, psrc=a.psrc, pdst=a.pdst)
        if eth.type == 0x0800 and len(raw) >= 34:
            l3 = raw[14:]
            ip = IP(l3)
            ihl = ip.ihl * 4
            d["outer"] = ipv4_fields(ip)
            d["outer"]["chksum_ok"] = header_checksum_ok(l3[:ihl])
            payload = l3[ihl:ip.len]
            inner = None
            if ip.proto == 47 and not ip.frag:
                g = GRE(payload)
                glen = 4 + 4 * (g.chksum_present + g.key_present + g.seqnum_present)
                d["gre"] = dict(
                    c=g.chksum_present, r=g.routing_present, k=g.key_present,
                    s=g.seqnum_present, strict=g.strict_route_source,
                    recursion=g.recursion_control, flags=g.flags, version=g.version,
                    proto=g.proto, chksum=g.chksum if g.chksum_present else None,
                    reserved1=g.offset if g.chksum_present else None,
                    key=g.key if g.key_present else None,
                    seq=g.sequence_number if g.seqnum_present else None)
                if g.chksum_present:
                    again = GRE(payload)
                    del again.chksum
                    d["gre"]["chksum_ok"] = GRE(bytes(again)).chksum == g.chksum
                # Protocol type 0 is a client router's keepalive, sent back natively: the
                # packet itself is what was forwarded.
                inner = payload[glen:] if g.proto != 0 else l3[:ip.len]
            elif ip.proto == 4 and not ip.frag:
                inner = payload
            else:
                inner = l3[:ip.len]
            d["inner_hex"] = inner.hex()
            if len(inner) >= 20:
                d["inner_chksum_ok"] = header_checksum_ok(inner[:(inner[0] & 15) * 4])
            m = FLOW.search(inner)
            d["flow"] = int(m.group(1)) if m else None
        print(json.dumps(d))
