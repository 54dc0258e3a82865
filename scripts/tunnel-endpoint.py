#!/usr/bin/env python3
"""A client router's tunnel endpoint in user space, for the labs: GRE (RFC 2784, RFC 2890
key) or IP-in-IP (RFC 2003).

The lab's kernel has no gre or ipip module, so this bridges a TUN device and a raw IPv4
socket of the tunnel's protocol:

  TUN -> inner IPv4 packet -> [GRE header] -> sendto(raw socket, remote): the kernel adds
         the outer IPv4 header
  raw socket (from remote) -> outer header, [GRE header] checked and stripped -> TUN

The namespace's kernel routes into the TUN device and forwards what comes out of it: with
this, it is a client router with a tunnel (routing daemons in the namespace see the TUN
device as the tunnel interface). GRE packets with checksum, routing or sequence bits, with
another key or another protocol type are ignored (counted). Only the Python standard
library is used. SIGSTOP of this process is the lab's way of cutting the tunnel.

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
PROTO = {"gre": 47, "ipip": 4}
GRE_K = 0x2000
ETH_P_IP = 0x0800


def main() -> int:
    if len(sys.argv) not in (5, 6) or sys.argv[2] not in PROTO:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    name, mode, local, remote = sys.argv[1:5]
    key = int(sys.argv[5]) if len(sys.argv) == 6 else None
    if key is not None and mode != "gre":
        print("a key is for GRE only", file=sys.stderr)
        return 2
    gre_header = b""
    if mode == "gre":
        flags = GRE_K if key is not None else 0
        gre_header = struct.pack("!HH", flags, ETH_P_IP)
        if key is not None:
            gre_header += struct.pack("!I", key)
    tun = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, PROTO[mode])
    # A large receive buffer: when it is full, the kernel does not count the raw socket as
    # a receiver and answers the packet with ICMP protocol unreachable (Linux 6.x).
    try:
        raw.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
    except OSError:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
    raw.bind((local, 0))
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
            return body
        if len(body) < 4:
            return None
        flags, proto = struct.unpack("!HH", body[:4])
        # Version 0, no checksum, routing or sequence bits; K exactly as configured.
        if flags & ~GRE_K or proto != ETH_P_IP or bool(flags & GRE_K) != (key is not None):
            return None
        if key is None:
            return body[4:]
        if len(body) < 8 or struct.unpack("!I", body[4:8])[0] != key:
            return None
        return body[8:]

    while True:
        ready, _, _ = select.select([tun, raw], [], [])
        if tun in ready:
            pkt = os.read(tun, 65535)
            if pkt and pkt[0] >> 4 == 4:  # IPv4 only: the tunnel carries nothing else
                raw.sendto(gre_header + pkt, (remote, 0))
                stats["encap"] += 1
            else:
                stats["ignored"] += 1
        if raw in ready:
            inner = inner_of(raw.recv(65535))
            if inner and inner[0] >> 4 == 4:
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
