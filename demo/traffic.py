#!/usr/bin/env python3
"""Writes the demo lab's input capture: what three client routers send into their tunnels.

Client routers (the backbone port faces all three):
  acme     GRE, key 100                     198.51.100.10   prefixes 10.1.0.0/16
  globex   GRE, key 200, sequence, checksum 198.51.100.20   prefixes 10.2.0.0/16
  initech  IP-in-IP                         198.51.100.30   prefixes 10.3.0.0/16
The edge router's tunnel endpoint is 192.0.2.1 on port client0 (MAC 02:00:00:00:00:01).

Usage: traffic.py OUT.pcap [COUNT]   (COUNT flows of each kind, default 50)
"""
import sys

from scapy.all import GRE, IP, UDP, TCP, ICMP, Ether, Raw, wrpcap

EDGE_MAC = "02:00:00:00:00:01"
EDGE_IP = "192.0.2.1"
CLIENTS = {
    "acme": dict(ip="198.51.100.10", mac="02:00:00:00:0a:0a", net="10.1", gre=dict(key_present=1, key=100)),
    "globex": dict(ip="198.51.100.20", mac="02:00:00:00:0b:0b", net="10.2",
                   gre=dict(key_present=1, key=200, seqnum_present=1, chksum_present=1)),
    "initech": dict(ip="198.51.100.30", mac="02:00:00:00:0c:0c", net="10.3", gre=None),
}
seq = {"globex": 0}


def from_client(name, inner):
    c = CLIENTS[name]
    outer = Ether(src=c["mac"], dst=EDGE_MAC) / IP(src=c["ip"], dst=EDGE_IP, ttl=64)
    if c["gre"] is None:
        return outer / inner  # IP-in-IP: protocol 4 is set by scapy from the payload
    gre = dict(c["gre"])
    if gre.get("seqnum_present"):
        seq[name] += 1
        gre["seqence_number"] = seq[name]
    return outer / GRE(**gre) / inner


def host(name, i):
    return "%s.%d.%d" % (CLIENTS[name]["net"], 1 + i // 250, 1 + i % 250)


def main():
    out = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    pkts = []
    for i in range(count):
        # acme -> globex, globex -> initech, initech -> acme: each leaves through another tunnel.
        pkts.append(from_client("acme", IP(src=host("acme", i), dst=host("globex", i), ttl=64)
                                / UDP(sport=1000 + i, dport=5001) / Raw(b"acme to globex")))
        pkts.append(from_client("globex", IP(src=host("globex", i), dst=host("initech", i), ttl=64)
                                / TCP(sport=2000 + i, dport=80, flags="S")))
        pkts.append(from_client("initech", IP(src=host("initech", i), dst=host("acme", i), ttl=64)
                                / ICMP(id=i, seq=1) / Raw(b"initech to acme")))
    # Traffic the edge must refuse, one of each, to show the drop counters:
    # acme sending as globex (BCP 38), a GRE packet with the wrong key, TTL 1.
    pkts.append(from_client("acme", IP(src=host("globex", 0), dst=host("initech", 0)) / UDP()))
    bad_key = Ether(src=CLIENTS["acme"]["mac"], dst=EDGE_MAC) / IP(src=CLIENTS["acme"]["ip"], dst=EDGE_IP) \
        / GRE(key_present=1, key=999) / IP(src=host("acme", 0), dst=host("globex", 0)) / UDP()
    pkts.append(bad_key)
    pkts.append(from_client("initech", IP(src=host("initech", 0), dst=host("acme", 0), ttl=1) / UDP()))
    wrpcap(out, pkts)
    print("wrote %d packets to %s" % (len(pkts), out))


if __name__ == "__main__":
    main()
