#!/usr/bin/env python3
"""Measures runtime updates against a running backbone (started by scripts/bench-updates.sh).

Reports: route updates applied per second through the API (single changes and batches),
the latency from an API call to every worker running the generation that holds it, and
the forwarding rate while updates stream compared with the rate without them.
Usage: bench-updates.py SOCKET [--smoke]   (--smoke: short phases, no forwarding-rate
phase; exits non-zero if it measured nothing)
"""
import json
import socket
import sys
import time

sock_path = sys.argv[1]
smoke = "--smoke" in sys.argv[2:]
phase_s = 0.5 if smoke else 3.0


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


api = Api(sock_path)


def tx_packets():
    c = api.call({"op": "counters"})
    return sum(t["tx_packets"] for t in c["tunnels"])


def rate(seconds, during=None):
    """Forwarded packets per second over `seconds`, running `during()` meanwhile."""
    # Counters are published by the workers every few thousand polls: take a wide window.
    start_n, start_t = tx_packets(), time.monotonic()
    n_changes = 0
    while time.monotonic() - start_t < seconds:
        if during:
            n_changes += during()
        else:
            time.sleep(0.05)
    end_n, end_t = tx_packets(), time.monotonic()
    return (end_n - start_n) / (end_t - start_t), n_changes


def route_op(i, tunnel):
    return {"op": "set_route", "route": {"prefix": "10.%d.%d.0/24" % (100 + (i >> 8) % 50, i & 255), "tunnel": tunnel}}


counter = [0]


def one_batch(size):
    ops = []
    for _ in range(size):
        i = counter[0]
        counter[0] += 1
        ops.append(route_op(i, "acme" if (i // 12800) % 2 else "globex"))
    return api.call({"op": "batch", "ops": ops})["generation"]


def wait_all(gen):
    t0 = time.monotonic()
    while True:
        g = api.call({"op": "generations"})
        if all(w >= gen for w in g["workers"]):
            return time.monotonic() - t0
        time.sleep(0.0002)


results = {}
# Updates per second: single changes, then batches.
for size in (1, 100, 1000):
    n = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < phase_s:
        one_batch(size)
        n += size
    results["updates_per_s_batch_%d" % size] = n / (time.monotonic() - t0)

# Latency from the API call to every worker on the new generation.
lat = []
for _ in range(20 if smoke else 200):
    t0 = time.monotonic()
    g = one_batch(1)
    wait_all(g)
    lat.append(time.monotonic() - t0)
lat.sort()
results["latency_ms_p50"] = lat[len(lat) // 2] * 1e3
results["latency_ms_p99"] = lat[int(len(lat) * 0.99)] * 1e3
results["latency_ms_max"] = lat[-1] * 1e3

# Forwarding rate with and without a stream of updates (batches of 100). Not in --smoke:
# a debug build copies its counters too seldom for short windows.
if not smoke:
    quiet, _ = rate(5.0)
    busy, changes = rate(5.0, during=lambda: (one_batch(100), 100)[1])
    results["forwarding_pps_quiet"] = quiet
    results["forwarding_pps_during_updates"] = busy
    results["updates_during_window"] = changes
    results["forwarding_ratio_during_vs_quiet"] = busy / quiet if quiet else 0.0

for k, v in results.items():
    print("%-36s %14.3f" % (k, v))
if not all(results[k] > 0 for k in ("updates_per_s_batch_1", "latency_ms_p50")):
    raise SystemExit("the API benchmark measured nothing")
