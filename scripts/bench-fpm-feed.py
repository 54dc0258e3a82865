#!/usr/bin/env python3
"""zebra's full table through the running appliance's FPM listener, while it forwards.

Run by scripts/bench-updates.sh inside the appliance's network namespace (where its host
interfaces bb-<tunnel> are, and where it listens for FPM on 127.0.0.1:2620). Writes the
routes of TABLE (the first N of it, less what overlaps the lab) as zebra's dplane_fpm_nl
does: one frame per route, an RTM_NEWROUTE out of bb-acme, bb-globex or bb-initech, the
netlink parts in this host's byte order, written from linux/rtnetlink.h's structures here
(not by the appliance's encoder). Then it reports:

  fpm_full_feed_routes            routes sent
  fpm_converge_s                  from the first byte sent to every route in the tables
                                  and every worker on the generation that holds the last
  fpm_routes_per_s
  fpm_publications                publications the feed took
  fpm_move_ms_p50/p99/max         one route moved by an update frame (a removal and an
                                  addition), from the write to every worker on it
  forwarding_pps_quiet            tunnels' packets a second before the feed
  forwarding_pps_during_feed      ... while it arrives
  dropped_share_quiet             of the packets received, the share dropped before the feed
  dropped_share_during_feed       ... and while it arrives: the demo's capture, replayed,
                                  holds the same share of packets the router must refuse,
                                  so the two must agree (within 0.5 points): the feed cost
                                  the prefixes it did not touch nothing
  no_route_drops_during_feed      packets dropped as no_route meanwhile (must be 0)

Usage: bench-fpm-feed.py SOCKET TABLE N [--smoke]. Exits non-zero if it measured nothing or
the feed did not converge.
"""
import gzip
import ipaddress
import json
import socket
import struct
import sys
import time

sock_path, table_path, wanted = sys.argv[1], sys.argv[2], int(sys.argv[3])
smoke = "--smoke" in sys.argv[4:]

RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTA_DST, RTA_OIF = 1, 4
# Nothing of the lab: its tunnels' prefixes and remotes, our addresses, 10/8.
LAB = [ipaddress.ip_network(n) for n in
       ("10.0.0.0/8", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]


class Api:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.f = self.s.makefile("rw")

    def call(self, req):
        self.f.write(json.dumps(req) + "\n")
        self.f.flush()
        r = json.loads(self.f.readline())
        if not r.get("ok"):
            raise SystemExit("API refused %s: %s" % (req.get("op"), r.get("error")))
        return r


def rtattr(kind, value):
    data = struct.pack("=HH", 4 + len(value), kind) + value
    return data + b"\0" * (-len(data) % 4)


def route(kind, net, ifindex):
    attrs = rtattr(RTA_DST, net.network_address.packed)
    if ifindex:
        attrs += rtattr(RTA_OIF, struct.pack("=I", ifindex))
    # rtmsg: AF_INET, length, no source, tos 0, main table, BGP (186), scope 0, unicast.
    body = struct.pack("=BBBBBBBBI", 2, net.prefixlen, 0, 0, 254, 186, 0, 1, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def frame(*messages):
    payload = b"".join(messages)
    return struct.pack(">BBH", 1, 1, 4 + len(payload)) + payload


def ifindex(name):
    with open("/sys/class/net/%s/ifindex" % name) as f:
        return int(f.read())


api = Api(sock_path)


def counters():
    return api.call({"op": "counters"})


def tunnel_tx(c):
    return sum(t["tx_packets"] for t in c["tunnels"])


def rx(c):
    return sum(p["rx_packets"] for p in c["ports"])


def dropped(c):
    return sum(c["drops"].values()) + sum(p["tx_dropped"] for p in c["ports"])


def share(a, b):
    return (dropped(b) - dropped(a)) / max(1, rx(b) - rx(a))


def workers_at(generation, deadline):
    """Wait until every worker runs `generation`; False at the deadline."""
    while time.monotonic() < deadline:
        g = api.call({"op": "generations"})
        if all(w >= generation for w in g["workers"]):
            return True
        time.sleep(0.0005)
    return False


def counters_from(generation):
    """Counters every worker copied at `generation` or later."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        c = counters()
        if all(w and w["generation"] >= generation for w in c["workers"]):
            return c
        time.sleep(0.01)
    raise SystemExit("the workers' counters never reached generation %d" % generation)


hops = [ifindex(n) for n in ("bb-acme", "bb-globex", "bb-initech")]
nets, seen = [], set()
with gzip.open(table_path, "rt") as f:
    for line in f:
        net = ipaddress.ip_network(line.split()[0])
        # The table lists one prefix twice; zebra sends each once.
        if net in seen or any(net.overlaps(x) for x in LAB):
            continue
        seen.add(net)
        nets.append(net)
        if len(nets) == wanted:
            break
feed = b"".join(frame(route(RTM_NEWROUTE, net, hops[i % 3])) for i, net in enumerate(nets))

results = {}
def copies(c):
    return min(w["copies"] if w else 0 for w in c["workers"])


# Forwarding before the feed: at least quiet_s, and two fresh copies of every worker's
# counters (a debug build copies them seldom).
quiet_s = 0.5 if smoke else 3.0
c0 = counters_from(api.call({"op": "generations"})["generation"])
t0 = time.monotonic()
while True:
    time.sleep(0.05)
    c1 = counters()
    if time.monotonic() - t0 >= quiet_s and copies(c1) >= copies(c0) + 2:
        break
    if time.monotonic() - t0 > 120:
        raise SystemExit("the workers' counters were not copied again")
results["forwarding_pps_quiet"] = (tunnel_tx(c1) - tunnel_tx(c0)) / (time.monotonic() - t0)
results["dropped_share_quiet"] = share(c0, c1)

# The feed.
before = c1
fpm_before = before["fpm"]
zebra = socket.create_connection(("127.0.0.1", 2620))
start = time.monotonic()
zebra.sendall(feed)
deadline = start + (120 if smoke else 300)
while True:
    f = counters()["fpm"]
    if f["frames"] - fpm_before["frames"] >= len(nets):
        break
    if time.monotonic() > deadline:
        raise SystemExit("the feed did not arrive: %s" % f)
    time.sleep(0.01)
newest = api.call({"op": "generations"})["generation"]
if not workers_at(newest, deadline):
    raise SystemExit("the workers did not reach generation %d" % newest)
converged = time.monotonic() - start
after = counters_from(newest)
f = after["fpm"]
if f["routes"] < len(nets) or f["frames_refused"] != fpm_before["frames_refused"]:
    raise SystemExit("the feed was not installed whole: %s" % f)
results["fpm_full_feed_routes"] = len(nets)
results["fpm_converge_s"] = converged
results["fpm_routes_per_s"] = len(nets) / converged
results["fpm_publications"] = f["publications"] - fpm_before["publications"]
results["forwarding_pps_during_feed"] = (tunnel_tx(after) - tunnel_tx(before)) / (
    time.monotonic() - start)
results["dropped_share_during_feed"] = share(before, after)
results["no_route_drops_during_feed"] = after["drops"]["no_route"] - before["drops"]["no_route"]

# One route moved at a time: the write to every worker on the new generation.
lat = []
for i in range(50 if smoke else 300):
    net = nets[(i * 7919) % len(nets)]
    g = api.call({"op": "generations"})["generation"]
    t = time.monotonic()
    zebra.sendall(frame(route(RTM_DELROUTE, net, 0), route(RTM_NEWROUTE, net, hops[(i + 1) % 3])))
    while api.call({"op": "generations"})["generation"] <= g:
        if time.monotonic() - t > 10:
            raise SystemExit("a move was not published")
    workers_at(g + 1, t + 10)
    lat.append(time.monotonic() - t)
lat.sort()
results["fpm_move_ms_p50"] = lat[len(lat) // 2] * 1e3
results["fpm_move_ms_p99"] = lat[int(len(lat) * 0.99)] * 1e3
results["fpm_move_ms_max"] = lat[-1] * 1e3
zebra.close()

for k, v in results.items():
    print("%-36s %14.3f" % (k, v))
if results["fpm_converge_s"] <= 0 or results["forwarding_pps_quiet"] <= 0 or not lat:
    raise SystemExit("the FPM benchmark measured nothing")
if results["no_route_drops_during_feed"] != 0:
    raise SystemExit("packets were dropped as no_route during the feed")
if abs(results["dropped_share_during_feed"] - results["dropped_share_quiet"]) > 0.005:
    raise SystemExit("more packets dropped during the feed than before it")
