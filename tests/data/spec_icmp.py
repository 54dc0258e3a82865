"""SPEC.md's "ICMP errors", written independently of the router for the traffic generators
(e2e_traffic.py, hostile_corpus.py): which dropped packets get an ICMP error, and what it
must hold.

An expectation is a dict the Rust checker (tests/src/e2e.rs) reads: `type`, `code`, `mtu`
(the next-hop MTU of a Fragmentation Needed, else 0), `via` (the ingress tunnel's name, or
"native:<port>" for a packet that arrived natively), `mac` (for "native:", the frame's
sender, to which the error goes), `src` (our address facing the sender), `dst` (the
offending packet's source) and `quote_hex` (what the error quotes: the offending packet as
it arrived, cut so that the ICMP datagram fits 576 bytes and the path back).
"""
import ipaddress
import struct

# RFC 792's error types: no error is ever sent about one (RFC 1812 4.3.2.7).
ERROR_TYPES = {3, 4, 5, 11, 12}
MAX_DATAGRAM = 576
HEADERS = 20 + 8

TIME_EXCEEDED = (11, 0)
NET_UNREACHABLE = (3, 0)
PROHIBITED = (3, 13)
FRAG_NEEDED = (3, 4)


def is_martian_source(a):
    first = a.packed[0]
    return first == 0 or first == 127 or first >= 224


def may_answer(packet, ours):
    """SPEC.md ICMP errors rule 1 for the offending IPv4 packet (bytes, as it arrived)."""
    if len(packet) < 20:
        return False
    ihl = (packet[0] & 0x0F) * 4
    frag = struct.unpack("!H", packet[6:8])[0] & 0x1FFF
    src = ipaddress.ip_address(packet[12:16])
    dst = ipaddress.ip_address(packet[16:20])
    if frag != 0 or dst.is_multicast or str(dst) == "255.255.255.255":
        return False
    if is_martian_source(src) or str(src) in ours:
        return False
    if packet[9] == 1:
        payload = packet[ihl:]
        return len(payload) >= 1 and payload[0] not in ERROR_TYPES
    return True


def expect(kind, packet, via, src, path_mtu, ours, mtu=0, mac=None):
    """The ICMP error `kind` ((type, code)) about `packet` (bytes of the offending IPv4
    packet as it arrived, possibly followed by bytes beyond its total length), sent back
    `via` (a tunnel name or "native:<port>") from our address `src`, over a path that
    carries `path_mtu` bytes of IPv4 (the tunnel's inner MTU, or the port's MTU); None when
    SPEC.md says no error is sent."""
    total = struct.unpack("!H", packet[2:4])[0]
    packet = packet[:total]
    if not may_answer(packet, ours):
        return None
    quote = packet[:min(MAX_DATAGRAM, path_mtu) - HEADERS]
    return dict(type=kind[0], code=kind[1], mtu=mtu, via=via, mac=mac, src=src,
                dst=str(ipaddress.ip_address(packet[12:16])), quote_hex=quote.hex())


def inner_of_frame(frame):
    """The inner IPv4 packet of a tunnel frame (Ethernet, IPv4, then GRE with the options
    its C, K and S flags announce, or IPv4 directly for IP in IP)."""
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    payload = ip[ihl:total]
    if ip[9] == 4:
        return payload
    flags = struct.unpack("!H", payload[0:2])[0]
    glen = 4 + 4 * (bool(flags & 0x8000) + bool(flags & 0x2000) + bool(flags & 0x1000))
    return payload[glen:]
