#!/usr/bin/env python3
"""The central policy at scale, simulated: a policy of CLIENTS clients on EDGES edges
(every fifth client on two edges, primary and backup) is validated, written to etcd in
one transaction and picked up by one dry-run edge agent per edge (each computes its
edge's part, as it would for an appliance, and reports under its lease); then one new
client is applied and picked up. `backbone-policy apply --wait` times each: it returns
once every edge's agent reports the revision. Prints the times and writes them to
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

        def apply_wait():
            """`apply --wait`: seconds for the whole command, and from the write to the
            last edge's report of the revision, with each edge's part."""
            t = time.monotonic()
            r = run([binary, "apply", doc, "--etcd", url, "--wait", str(a.timeout)])
            total = time.monotonic() - t
            if r.returncode:
                sys.exit("apply --wait failed: " + r.stdout + r.stderr)
            times = [float(l.split(" after ")[1].split()[0]) for l in r.stdout.splitlines() if " runs revision " in l]
            if len(times) != a.edges:
                sys.exit(f"{len(times)} of {a.edges} edges reported: " + r.stdout)
            return total, max(times)

        results["apply_to_all_s"], results["write_to_all_s"] = apply_wait()
        reports = run([binary, "status", "--json", "--etcd", url]).stdout.splitlines()
        results["parts"] = {v["edge"]: {"tunnels": v["tunnels"], "routes": v["routes"]}
                            for v in map(json.loads, reports)}

        with open(doc, "w") as f:
            f.write(policy_text(a.clients, a.edges, extra=1))
        results["one_client_apply_to_all_s"], results["one_client_write_to_all_s"] = apply_wait()
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
    if not results.get("one_client_write_to_all_s") or tunnels == 0 or len(results["parts"]) != a.edges:
        sys.exit("measured nothing")
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"policy: {a.clients} clients on {a.edges} edges, {results['document_bytes']} bytes, "
          f"{tunnels} tunnels in all ({os.path.basename(os.path.dirname(binary))} build)")
    print(f"  check (validate, every edge's part against the appliance's rules): {results['check_s']:.3f} s")
    print(f"  apply --wait (validate, one transaction, every edge reports it):  {results['apply_to_all_s']:.3f} s")
    print(f"    of which from the write to the last edge's report:              {results['write_to_all_s']:.3f} s")
    print(f"  one new client: apply --wait (validate, write, every edge):       {results['one_client_apply_to_all_s']:.3f} s")
    print(f"    of which from the write to the last edge's report:              {results['one_client_write_to_all_s']:.3f} s")


if __name__ == "__main__":
    main()
