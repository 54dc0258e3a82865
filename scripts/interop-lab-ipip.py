#!/usr/bin/env python3
"""A minimal IP-in-IP (RFC 2003) client router endpoint in user space, for the interop lab.

The lab's kernel has no ipip module and Open vSwitch has no IPIP port, so this bridges a TUN
device and a raw IPv4 socket of protocol 4:

  TUN  -> inner IPv4 packet -> sendto(raw socket, remote): the kernel adds the outer header
  raw socket (protocol 4, from remote) -> strip the outer header -> TUN

The kernel of the namespace routes the client's traffic into the TUN device and forwards
what comes out of it, so together they are a client router with an IP-in-IP tunnel.
Only the Python standard library is used.

Usage: interop-lab-ipip.py TUN_NAME LOCAL REMOTE
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
IPPROTO_IPIP = 4
SO_RCVBUFFORCE = 33


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    name, local, remote = sys.argv[1], sys.argv[2], sys.argv[3]
    tun = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_IPIP)
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
            f"ipip {name}: {stats['encap']} encapsulated, {stats['decap']} decapsulated, "
            f"{stats['ignored']} ignored",
            flush=True,
        )
        sys.exit(0)

    signal.signal(signal.SIGTERM, report)
    signal.signal(signal.SIGINT, report)
    print(f"ipip {name}: {local} <-> {remote} ready", flush=True)
    while True:
        ready, _, _ = select.select([tun, raw], [], [])
        if tun in ready:
            pkt = os.read(tun, 65535)
            if pkt and pkt[0] >> 4 == 4:  # IPv4 only: the tunnel carries nothing else
                raw.sendto(pkt, (remote, 0))
                stats["encap"] += 1
            else:
                stats["ignored"] += 1
        if raw in ready:
            outer = raw.recv(65535)
            ihl = (outer[0] & 0x0F) * 4
            if len(outer) > ihl and outer[12:16] == remote_b and outer[ihl] >> 4 == 4:
                os.write(tun, outer[ihl:])
                stats["decap"] += 1
            else:
                stats["ignored"] += 1


if __name__ == "__main__":
    sys.exit(main())
