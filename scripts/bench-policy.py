#!/usr/bin/env python3
"""The central policy at scale, simulated: a policy of CLIENTS clients on EDGES edges
(every fifth client on two edges, primary and backup) is validated, written to etcd in
one transaction and picked up by one dry-run edge agent per edge (each computes its
edge's part, as it would for an appliance, and reports under its lease); then one new
client is applied and picked up. Prints the times and writes them to
out/bench-policy/results.json.

    scripts/bench-policy.py [--clients 1000] [--edges 10] [--binary PATH] [--smoke]

--smoke: 200 clients on 10 edges, for CI (the debug build); it fails when it measures
nothing (an agent that never reports the revision). etcd is a member of its own on
free loopback ports, in a scratch directory, stopped at the end, as are the agents.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def policy_text(clients, edges, extra=0):
    """The policy: edges e00.., clients c0000.. (every fifth dual-homed)."""
    out = ["[backbone]", "asn = 4200000000", ""]
    for e in range(edges):
        out += [
            "[[edge]]",
            f'name = "e{e:02}"',
            f'core_address = "10.255.{e // 250}.{e % 250 + 1}"',
            'core_port = "core0"',
            f'tunnel_endpoint = "192.0.{2 + e // 250}.{e % 250 + 1}"',
            'client_port = "client0"',
            f'control_socket = "/run/backbone/e{e:02}.sock"',
            "",
        ]
    for i in range(clients + extra):
        hi, lo = i >> 8, i & 255
        out += [
            "[[client]]",
            f'name = "c{i:04}"',
            'mode = "gre"',
            f"key = {i}",
            f'remote = "198.18.{hi}.{lo}"',
            f"asn = {64512 + i % 1000}",
            f'prefixes = ["10.{hi}.{lo}.0/24"]',
            "  [[client.placement]]",
            f'  edge = "e{i % edges:02}"',
            '  role = "primary"',
            f'  link = "169.254.{i >> 7}.{(i & 127) * 2 + 1}/31"',
        ]
        if i % 5 == 0 and edges > 1:
            out += [
                "  [[client.placement]]",
                f'  edge = "e{(i + 1) % edges:02}"',
                '  role = "backup"',
                f'  link = "169.254.{i >> 7}.{(i & 127) * 2 + 1}/31"',
            ]
        out.append("")
    return "\n".join(out)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--edges", type=int, default=10)
    ap.add_argument("--binary", help="backbone-policy (default: target/release, else target/debug)")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the agents")
    a = ap.parse_args()
    if a.smoke:
        a.clients, a.edges = 200, 10
    binary = a.binary
    if not binary:
        for profile in ("release", "debug"):
            p = os.path.join(ROOT, "target", profile, "backbone-policy")
            if os.path.exists(p):
                binary = p
                break
    if not binary or not os.path.exists(binary):
        sys.exit("no backbone-policy binary: cargo build -p backbone-policy (or --binary PATH)")
    if shutil.which("etcd") is None:
        sys.exit("no etcd: scripts/setup.sh installs etcd-server")

    out_dir = os.path.join(ROOT, "out", "bench-policy")
    os.makedirs(out_dir, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="bench-policy-")
    cport, pport = free_port(), free_port()
    url = f"http://127.0.0.1:{cport}"
    procs = []
    results = {"clients": a.clients, "edges": a.edges, "binary": binary}
    try:
        etcd = subprocess.Popen(
            ["etcd", "--name=bench", f"--data-dir={scratch}/etcd", f"--listen-client-urls={url}",
             f"--advertise-client-urls={url}", f"--listen-peer-urls=http://127.0.0.1:{pport}",
             f"--initial-advertise-peer-urls=http://127.0.0.1:{pport}",
             f"--initial-cluster=bench=http://127.0.0.1:{pport}"],
            stdout=subprocess.DEVNULL, stderr=open(f"{scratch}/etcd.log", "w"))
        procs.append(etcd)
        env = dict(os.environ, ETCDCTL_API="3")
        deadline = time.monotonic() + 30
        while run(["etcdctl", f"--endpoints={url}", "--dial-timeout=1s", "endpoint", "health"], env=env).returncode:
            if time.monotonic() > deadline:
                sys.exit("etcd did not come up: " + open(f"{scratch}/etcd.log").read()[-2000:])
            time.sleep(0.05)  # polling etcd's health, bounded by the deadline

        doc = os.path.join(scratch, "policy.toml")
        with open(doc, "w") as f:
            f.write(policy_text(a.clients, a.edges))
        results["document_bytes"] = os.path.getsize(doc)

        t = time.monotonic()
        r = run([binary, "check", doc])
        results["check_s"] = time.monotonic() - t
        if r.returncode:
            sys.exit("check failed: " + r.stdout + r.stderr)

        for e in range(a.edges):
            procs.append(subprocess.Popen(
                [binary, "agent", "--edge", f"e{e:02}", "--dry-run", "--etcd", url, "--resync-ms", "1000"],
                stdout=subprocess.DEVNULL, stderr=open(f"{scratch}/agent-e{e:02}.log", "w"),
                env=dict(os.environ, RUST_LOG="warn")))

        def revision():
            r = run(["etcdctl", f"--endpoints={url}", "get", "-w", "json", "/backbone/policy/document"], env=env)
            return json.loads(r.stdout)["kvs"][0]["mod_revision"]

        def picked_up(want, start):
            """Seconds from start until every agent reports revision `want`."""
            seen = {}
            deadline = time.monotonic() + a.timeout
            while len(seen) < a.edges:
                r = run([binary, "status", "--json", "--etcd", url])
                now = time.monotonic()
                for line in r.stdout.splitlines():
                    v = json.loads(line)
                    if v.get("revision") == want and v["edge"] not in seen:
                        seen[v["edge"]] = (now - start, v["tunnels"], v["routes"])
                if now > deadline:
                    sys.exit(f"only {len(seen)} of {a.edges} agents reported revision {want} "
                             f"within {a.timeout} s")
                time.sleep(0.05)  # polling the reports, bounded by the deadline
            return seen

        t = time.monotonic()
        r = run([binary, "apply", doc, "--etcd", url])
        results["apply_s"] = time.monotonic() - t
        if r.returncode:
            sys.exit("apply failed: " + r.stdout + r.stderr)
        seen = picked_up(revision(), t)
        results["pickup_all_s"] = max(s for s, _, _ in seen.values())
        results["parts"] = {e: {"tunnels": n, "routes": m} for e, (_, n, m) in sorted(seen.items())}

        with open(doc, "w") as f:
            f.write(policy_text(a.clients, a.edges, extra=1))
        t = time.monotonic()
        r = run([binary, "apply", doc, "--etcd", url])
        if r.returncode:
            sys.exit("apply of one more client failed: " + r.stdout + r.stderr)
        seen = picked_up(revision(), t)
        results["one_client_pickup_all_s"] = max(s for s, _, _ in seen.values())
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(scratch, ignore_errors=True)

    tunnels = sum(p["tunnels"] for p in results["parts"].values())
    if not results.get("pickup_all_s") or tunnels == 0:
        sys.exit("measured nothing")
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"policy: {a.clients} clients on {a.edges} edges, {results['document_bytes']} bytes, "
          f"{tunnels} tunnels in all ({os.path.basename(os.path.dirname(binary))} build)")
    print(f"  check (validate, every edge's part against the appliance's rules): {results['check_s']:.3f} s")
    print(f"  apply (validate, one etcd transaction):                           {results['apply_s']:.3f} s")
    print(f"  apply to every agent's report of the revision:                    {results['pickup_all_s']:.3f} s")
    print(f"  one new client, apply to every agent's report:                    {results['one_client_pickup_all_s']:.3f} s")


if __name__ == "__main__":
    main()
