#!/usr/bin/env python3
"""A client router's tunnel endpoint in user space, for the labs: GRE (RFC 2784, RFC 2890
key) or IP-in-IP (RFC 2003), carrying IPv4 and IPv6 (GRE protocol type 0x86DD, RFC 7676;
IPv6-in-IPv4, protocol 41, RFC 4213).

The lab's kernel has no gre, ipip or sit module, so this bridges a TUN device and raw IPv4
sockets of the tunnel's protocols:

  TUN -> inner IPv4 or IPv6 packet -> [GRE header] -> sendto(raw socket, remote): the
         kernel adds the outer IPv4 header (protocol 47; or 4 for IPv4, 41 for IPv6)
  raw socket (from remote) -> outer header, [GRE header] checked and stripped -> TUN

A TUN device carries both families: the kernel tells them apart by the version nibble. The
namespace's kernel routes into the TUN device and forwards what comes out of it: with this,
it is a client router with a tunnel (routing daemons in the namespace see the TUN device as
the tunnel interface). GRE packets with checksum, routing or sequence bits, with another key
or another protocol type, and inner packets whose version does not match their GRE protocol
type or outer protocol, are ignored (counted). Only the Python standard library is used.
SIGSTOP of this process is the lab's way of cutting the tunnel.

Usage: tunnel-endpoint.py TUN_NAME gre|ipip LOCAL REMOTE [KEY]
"""

import fcntl
import os
import select
import signal
import socket
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
SO_RCVBUFFORCE = 33
IPPROTO_GRE = 47
IPPROTO_IPIP = 4
IPPROTO_IPV6 = 41
GRE_K = 0x2000
# Inner IP version -> GRE protocol type, and -> outer protocol of IP-in-IP.
GRE_PROTO = {4: 0x0800, 6: 0x86DD}
IPIP_PROTO = {4: IPPROTO_IPIP, 6: IPPROTO_IPV6}


def raw_socket(proto: int, local: str) -> socket.socket:
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
    # A large receive buffer: when it is full, the kernel does not count the raw socket as
    # a receiver and answers the packet with ICMP protocol unreachable (Linux 6.x).
    try:
        raw.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
    except OSError:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
    raw.bind((local, 0))
    return raw


def main() -> int:
    if len(sys.argv) not in (5, 6) or sys.argv[2] not in ("gre", "ipip"):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    name, mode, local, remote = sys.argv[1:5]
    key = int(sys.argv[5]) if len(sys.argv) == 6 else None
    if key is not None and mode != "gre":
        print("a key is for GRE only", file=sys.stderr)
        return 2
    # Per inner version: the socket it leaves on and the header put before it.
    headers = {}
    if mode == "gre":
        gre = raw_socket(IPPROTO_GRE, local)
        for version, ptype in GRE_PROTO.items():
            h = struct.pack("!HH", GRE_K if key is not None else 0, ptype)
            if key is not None:
                h += struct.pack("!I", key)
            headers[version] = (gre, h)
    else:
        for version, proto in IPIP_PROTO.items():
            headers[version] = (raw_socket(proto, local), b"")
    sockets = {s for s, _ in headers.values()}
    tun = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    remote_b = socket.inet_aton(remote)
    stats = {"encap": 0, "decap": 0, "ignored": 0}

    def report(*_):
        print(
            f"{mode} {name}: {stats['encap']} encapsulated, {stats['decap']} decapsulated, "
            f"{stats['ignored']} ignored",
            flush=True,
        )
        sys.exit(0)

    signal.signal(signal.SIGTERM, report)
    signal.signal(signal.SIGINT, report)
    print(f"{mode} {name}: {local} <-> {remote} key {key} ready", flush=True)

    def inner_of(outer: bytes):
        ihl = (outer[0] & 0x0F) * 4
        if len(outer) <= ihl or outer[12:16] != remote_b:
            return None
        body = outer[ihl:]
        if mode == "ipip":
            # Protocol 4 carries IPv4, 41 IPv6.
            return body if IPIP_PROTO.get(body[0] >> 4) == outer[9] else None
        if len(body) < 4:
            return None
        flags, proto = struct.unpack("!HH", body[:4])
        # Version 0, no checksum, routing or sequence bits; K exactly as configured.
        if flags & ~GRE_K or bool(flags & GRE_K) != (key is not None):
            return None
        n = 4
        if key is not None:
            if len(body) < 8 or struct.unpack("!I", body[4:8])[0] != key:
                return None
            n = 8
        inner = body[n:]
        # The protocol type names the inner packet's version.
        return inner if inner and GRE_PROTO.get(inner[0] >> 4) == proto else None

    while True:
        ready, _, _ = select.select([tun, *sockets], [], [])
        if tun in ready:
            pkt = os.read(tun, 65535)
            out = headers.get(pkt[0] >> 4) if pkt else None
            if out:
                sock, header = out
                sock.sendto(header + pkt, (remote, 0))
                stats["encap"] += 1
            else:
                stats["ignored"] += 1
        for sock in sockets:
            if sock not in ready:
                continue
            inner = inner_of(sock.recv(65535))
            if inner:
                try:
                    os.write(tun, inner)
                    stats["decap"] += 1
                except OSError:
                    # The TUN device is not up yet (EIO): the packet is lost, as on a
                    # link that is down.
                    stats["ignored"] += 1
            else:
                stats["ignored"] += 1


if __name__ == "__main__":
    sys.exit(main())
