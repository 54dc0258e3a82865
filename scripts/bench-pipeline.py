#!/usr/bin/python3
"""Helper of scripts/bench-pipeline.sh (run it through that script).

  gen OUTDIR TABLE WORKERS PACKETS TABLE6 [PAYLOAD]
                                     route tables, backbone configs, input pcaps (PAYLOAD:
                                     inner UDP payload bytes, 64 by default)
  measure PREFIX SECONDS OUT_PORT [PID]   Mpps from a running DPDK app's own port counters
  report OUTDIR GHZ WORKERS          the table
  verify OUTDIR NAME...              fail unless each backbone run forwarded >= 99%, no drops
                                     (its final port counters)
  callgrind NAME PREFIX SECONDS OUTDIR -- CMD...
                                     instructions per forwarded packet of CMD (a DPDK app
                                     whose EAL runs with --file-prefix=PREFIX) under valgrind's
                                     callgrind; scripts/bench-instructions.sh runs it
  perf NAME PREFIX SECONDS OUTDIR FREQ -- CMD...
                                     CMD natively, its workers sampled by perf (cpu-clock),
                                     for scripts/bench-instructions.sh --cycles

The counters are read over DPDK telemetry (/ethdev/stats), the same way for every app:
wait until the sink port transmits, let it run WARMUP seconds, then count the sink port's
transmitted packets over SECONDS on the monotonic clock. With PID, also the CPU time the
app's EAL worker threads (rte-worker-N) got meanwhile (/proc/PID/task/*/schedstat): on a
shared machine a busy-polling worker does not get its core to itself, and packets per
worker CPU-second is what the code does per core. And how much of its memory sat on
transparent huge pages (AnonHugePages of /proc/PID/smaps_rollup), which BENCH_PAGES=huge
asks for.
"""

import gzip
import ipaddress
import json
import os
import random
import socket
import sys
import time

# Address ranges the lab uses for itself; no route of the table may overlap them.
RESERVED = [ipaddress.ip_network(n) for n in
            ("100.64.0.0/10", "172.16.0.0/12", "198.18.0.0/15", "192.0.2.0/24",
             # IPv6: the sending tunnels' client prefixes and their link6 addresses.
             "2001:db8::/32", "fd00::/8")]
GLOBAL6 = ipaddress.ip_network("2000::/3")
# GRE sending tunnels, and as many egress ones (BENCH_GRE_TUNNELS: at most 4096, the client
# prefixes' range).
_gre = os.environ.get("BENCH_GRE_TUNNELS") or "1000"
GRE_TUNNELS = int(_gre) if _gre.isdigit() else 0
if not 1 <= GRE_TUNNELS <= 4096:
    raise SystemExit(f"BENCH_GRE_TUNNELS={_gre}: expected a number from 1 to 4096")
IPIP_TUNNELS = 64
LOCAL = "192.0.2.1"
LOCAL_OUT = "192.0.2.129"
UNDERLAY_IN = "192.0.2.100"
UNDERLAY = "192.0.2.254"
IN_MAC = "02:00:00:00:00:01"
OUT_MAC = "02:00:00:00:00:02"
UNDERLAY_MAC = "02:00:00:00:fe:01"
SENDER_MAC = "02:00:00:00:aa:01"
PAYLOAD = 64  # inner UDP payload bytes, unless gen is given another
WARMUP = 1.0


def gre_remote(i):
    return str(ipaddress.ip_address("198.18.0.1") + i)


def ipip_remote(i):
    return str(ipaddress.ip_address("198.19.0.1") + i)


def gre_egress(i):
    """The far end of egress tunnel i (another client router)."""
    return str(ipaddress.ip_address("198.18.128.1") + i)


def gre_client(i):
    return ipaddress.ip_network(f"172.{16 + (i >> 8)}.{i & 255}.0/24")


def ipip_client(i):
    return ipaddress.ip_network(f"100.64.{i}.0/24")


def gre_client6(i):
    return ipaddress.ip_network(f"2001:db8:{i:x}::/48")


def gre_link6(i):
    return f"fd00:{i:x}::1/127"


def load_table(path, limit=None):
    """The real table less what overlaps the reserved ranges, deduplicated, in file order;
    the first `limit` routes of it when given."""
    seen, out = set(), []
    with gzip.open(path, "rt") as f:
        for line in f:
            p = ipaddress.ip_network(line.split()[0])
            if p in seen or any(p.version == r.version and p.overlaps(r) for r in RESERVED):
                continue
            # IPv6: global unicast only (the pipeline drops link-local, multicast and the
            # other special destinations as martian).
            if p.version == 6 and not p.subnet_of(GLOBAL6):
                continue
            seen.add(p)
            out.append(p)
            if limit is not None and len(out) >= limit:
                break
    return out


def vdev_args(out, workers, pcap):
    """EAL --vdev arguments: a net_pcap source with one replayed file per queue, a net_null sink."""
    files = ",".join(f"rx_pcap={out}/{pcap}-{q}.pcap" for q in range(workers))
    return [f"--vdev=net_pcap0,{files},infinite_rx=1", "--vdev=net_null0,no-rx=1"]


def gen(out, table_path, workers, packets, table6_path, payload_len=PAYLOAD):
    from scapy.all import GRE, IP, IPv6, UDP, Ether, Raw, wrpcap  # noqa: import here, slow

    rnd = random.Random(6)
    limit = int(os.environ["BENCH_ROUTES"]) if os.environ.get("BENCH_ROUTES") else None
    routes = load_table(table_path, limit)
    routes6 = load_table(table6_path, limit)
    # Every route into a random egress GRE tunnel.
    target = [rnd.randrange(GRE_TUNNELS) for _ in routes]
    target6 = [rnd.randrange(GRE_TUNNELS) for _ in routes6]

    # l3fwd: the same prefixes (the routes and the tunnels' client prefixes) to port 1.
    with open(f"{out}/l3fwd-v4.cfg", "w") as f:
        for p in routes:
            f.write(f"R{p} 1\n")
        for i in range(GRE_TUNNELS):
            f.write(f"R{gre_client(i)} 1\n")
        for i in range(IPIP_TUNNELS):
            f.write(f"R{ipip_client(i)} 1\n")
    with open(f"{out}/l3fwd-v6.cfg", "w") as f:
        for p in routes6:
            f.write(f"R{p} 1\n")
        for i in range(GRE_TUNNELS):
            f.write(f"R{gre_client6(i)} 1\n")

    # backbone: port 0 the source, port 1 the sink; every tunnel leaves through port 1.
    # gre6: the GRE configuration with IPv6 inside: the sending tunnels have IPv6 client
    # prefixes and a link6 each, and the IPv6 table is routed (the IPv4 one left out).
    for pcap in ("gre", "ipip", "gre6"):
        lines = ["[eal]", "args = ["]
        eal = ["--no-huge", "--no-pci", "--no-shconf", "-m", "1024", "-l", f"0-{workers}",
               f"--file-prefix=bench-backbone-{pcap}-{os.getpid()}", "--log-level=lib.eal:error"]
        eal += vdev_args(out, workers, pcap)
        lines += [f"  {json.dumps(a)}," for a in eal]
        lines += ["]", "", "[workers]", f"lcores = {list(range(1, workers + 1))}", ""]
        # The senders' tunnels arrive on "in" (a tunnel's packets are accepted only on its
        # own port); the routes lead into egress tunnels on "out". Both sides have their
        # underlay next hop resolved statically: nothing waits on ARP.
        lines += ["[[port]]", 'name = "in"', 'device = "0"', 'roles = ["client"]',
                  f'mac = "{IN_MAC}"', f'addresses = ["{LOCAL}"]', f"rx_queues = {workers}",
                  f"tx_queues = {workers}",
                  "  [[port.neighbor]]", f'  ip = "{UNDERLAY_IN}"', f'  mac = "{SENDER_MAC}"', ""]
        lines += ["[[port]]", 'name = "out"', 'device = "1"', 'roles = ["core"]',
                  f'mac = "{OUT_MAC}"', f'addresses = ["{LOCAL_OUT}"]', f"rx_queues = {workers}",
                  f"tx_queues = {workers}",
                  "  [[port.neighbor]]", f'  ip = "{UNDERLAY}"', f'  mac = "{UNDERLAY_MAC}"', ""]
        for i in range(GRE_TUNNELS):
            prefixes = f'prefixes = ["{gre_client(i)}"]'
            if pcap == "gre6":
                prefixes = (f'prefixes = ["{gre_client(i)}", "{gre_client6(i)}"]\n'
                            f'link6 = "{gre_link6(i)}"')
            lines += ["[[tunnel]]", f'name = "from-gre{i}"', 'mode = "gre"', f'local = "{LOCAL}"',
                      f'remote = "{gre_remote(i)}"', f"key = {1000 + i}", 'port = "in"',
                      f'next_hop = "{UNDERLAY_IN}"', prefixes, ""]
            lines += ["[[tunnel]]", f'name = "gre{i}"', 'mode = "gre"', f'local = "{LOCAL_OUT}"',
                      f'remote = "{gre_egress(i)}"', f"key = {1000 + i}", 'port = "out"',
                      f'next_hop = "{UNDERLAY}"', ""]
        for i in range(IPIP_TUNNELS):
            lines += ["[[tunnel]]", f'name = "from-ipip{i}"', 'mode = "ipip"',
                      f'local = "{LOCAL}"', f'remote = "{ipip_remote(i)}"', 'port = "in"',
                      f'next_hop = "{UNDERLAY_IN}"', f'prefixes = ["{ipip_client(i)}"]', ""]
        for p, t in (zip(routes6, target6) if pcap == "gre6" else zip(routes, target)):
            lines.append(f'[[route]]\nprefix = "{p}"\ntunnel = "gre{t}"')
        with open(f"{out}/backbone-{pcap}.toml", "w") as f:
            f.write("\n".join(lines) + "\n")
        if pcap == "gre6":
            continue
        # The same with busy polling: adaptive (the default) must cost nothing at full load.
        busy = [line + '\npoll = "busy"' if line.startswith("lcores = ") else line
                for line in lines]
        with open(f"{out}/backbone-{pcap}-busy.toml", "w") as f:
            f.write("\n".join(busy) + "\n")

    # Traffic: per packet a random route (and a random address in it) and a random source
    # tunnel other than the route's; the same inner packets in all three captures.
    def host(net):
        return str(net.network_address + rnd.randrange(net.num_addresses))

    per_queue = max(1, packets // workers)
    for q in range(workers):
        gre, ipip, plain, gre6, plain6 = [], [], [], [], []
        for _ in range(per_queue):
            r = rnd.randrange(len(routes))
            dst = host(routes[r])
            src_gre = rnd.randrange(GRE_TUNNELS)
            src_ipip = rnd.randrange(IPIP_TUNNELS)
            payload = Raw(bytes(i & 0xff for i in range(payload_len)))

            def inner(src):
                return IP(src=src, dst=dst, ttl=64, flags="DF", id=2) / \
                    UDP(sport=40000, dport=9) / payload

            gre_src = host(gre_client(src_gre))

            gre.append(Ether(src=SENDER_MAC, dst=IN_MAC) /
                       IP(src=gre_remote(src_gre), dst=LOCAL, ttl=60, flags="DF", id=1) /
                       GRE(key_present=1, key=1000 + src_gre, proto=0x0800) /
                       inner(gre_src))
            ipip.append(Ether(src=SENDER_MAC, dst=IN_MAC) /
                        IP(src=ipip_remote(src_ipip), dst=LOCAL, ttl=60, flags="DF", id=1,
                           proto=4) /
                        inner(host(ipip_client(src_ipip))))
            plain.append(Ether(src=SENDER_MAC, dst=IN_MAC) / inner(gre_src))
            # IPv6 inside GRE (protocol type 0x86DD, RFC 7676), from the same sending tunnel
            # to a random address of a random IPv6 route; the same packet plain for l3fwd.
            dst6 = host(routes6[rnd.randrange(len(routes6))])
            inner6 = IPv6(src=host(gre_client6(src_gre)), dst=dst6, hlim=64) / \
                UDP(sport=40000, dport=9) / payload
            gre6.append(Ether(src=SENDER_MAC, dst=IN_MAC) /
                        IP(src=gre_remote(src_gre), dst=LOCAL, ttl=60, flags="DF", id=1) /
                        GRE(key_present=1, key=1000 + src_gre, proto=0x86DD) / inner6)
            plain6.append(Ether(src=SENDER_MAC, dst=IN_MAC) / inner6)
        wrpcap(f"{out}/gre6-{q}.pcap", gre6)
        wrpcap(f"{out}/plain6-{q}.pcap", plain6)
        wrpcap(f"{out}/gre-{q}.pcap", gre)
        wrpcap(f"{out}/ipip-{q}.pcap", ipip)
        wrpcap(f"{out}/plain-{q}.pcap", plain)
    sizes = (len(gre[0]), len(ipip[0]), len(plain[0]), len(gre6[0]), len(plain6[0]))
    with open(f"{out}/gen.json", "w") as f:
        json.dump({"routes": len(routes) + GRE_TUNNELS + IPIP_TUNNELS,
                   "table_routes": len(routes), "gre_tunnels": GRE_TUNNELS,
                   "routes6": len(routes6) + GRE_TUNNELS, "table_routes6": len(routes6),
                   "ipip_tunnels": IPIP_TUNNELS, "packets": per_queue * workers,
                   "payload": payload_len,
                   "frame_bytes": {"gre": sizes[0], "ipip": sizes[1], "plain": sizes[2],
                                   "gre6": sizes[3], "plain6": sizes[4]}}, f)
    print(f"generated: {len(routes)} table routes + {GRE_TUNNELS + IPIP_TUNNELS} tunnel "
          f"prefixes, {len(routes6)} IPv6 table routes + {GRE_TUNNELS} tunnel prefixes, "
          f"{per_queue * workers} packets per capture (frames: GRE {sizes[0]} B, "
          f"IPIP {sizes[1]} B, plain {sizes[2]} B, IPv6 in GRE {sizes[3]} B, "
          f"plain IPv6 {sizes[4]} B)")


class Telemetry:
    def __init__(self, prefix, timeout):
        dirs = [f"/var/run/dpdk/{prefix}"]
        if os.environ.get("XDG_RUNTIME_DIR"):
            dirs.append(f"{os.environ['XDG_RUNTIME_DIR']}/dpdk/{prefix}")
        dirs.append(f"/tmp/dpdk/{prefix}")
        deadline = time.monotonic() + timeout
        while True:
            for d in dirs:
                try:
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                    s.connect(f"{d}/dpdk_telemetry.v2")
                    s.recv(4096)
                    self.s = s
                    return
                except OSError:
                    s.close()
            if time.monotonic() > deadline:
                raise SystemExit(f"no DPDK telemetry socket for {prefix} after {timeout} s")
            time.sleep(0.2)

    def stats(self, port):
        self.s.send(f"/ethdev/stats,{port}".encode())
        reply = json.loads(self.s.recv(65536).decode())
        return reply.get("/ethdev/stats")


def worker_tids(pid):
    """The thread ids of the process's EAL worker threads (rte-worker-N)."""
    tids = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().startswith("rte-worker"):
                    tids.append(tid)
        except OSError:
            pass
    return tids


def worker_cpu_ns(pid):
    """CPU time (ns) the process's EAL worker threads (rte-worker-N) have run so far."""
    total = 0
    for tid in worker_tids(pid):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def anon_huge_kib(pid):
    """The process's anonymous memory on transparent huge pages, in KiB (None unknown)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def measure(prefix, seconds, out_port, pid=None, timeout=300.0):
    tel = Telemetry(prefix, timeout)
    deadline = time.monotonic() + timeout
    while True:
        st = tel.stats(out_port)
        if st and st["opackets"] > 0:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"{prefix}: port {out_port} sent nothing in {timeout} s")
        time.sleep(0.2)
    time.sleep(WARMUP)
    cpu0 = worker_cpu_ns(pid) if pid else 0
    t0 = time.monotonic()
    a, a_in = tel.stats(out_port), tel.stats(0)
    time.sleep(seconds)
    t1 = time.monotonic()
    b, b_in = tel.stats(out_port), tel.stats(0)
    cpu1 = worker_cpu_ns(pid) if pid else 0
    dt = t1 - t0  # each read follows its timestamp at once (well under a millisecond)
    tx = b["opackets"] - a["opackets"]
    rx = b_in["ipackets"] - a_in["ipackets"]
    cpu = (cpu1 - cpu0) / 1e9
    print(json.dumps({"seconds": dt, "tx": tx, "rx": rx, "mpps": tx / dt / 1e6,
                      "rx_mpps": rx / dt / 1e6, "worker_cpu_s": cpu,
                      "mpps_per_cpu": tx / cpu / 1e6 if cpu > 0 else None,
                      "thp_kib": anon_huge_kib(pid) if pid else None}))


def report(out, ghz, workers):
    gen_info = json.load(open(f"{out}/gen.json"))
    rows = []
    for name, label in (("testpmd", "dpdk-testpmd io (GRE frames)"),
                        ("l3fwd", "dpdk-l3fwd LPM (plain IPv4)"),
                        ("backbone-gre", "backbone GRE -> GRE"),
                        ("backbone-gre-busy", "backbone GRE -> GRE, busy poll"),
                        ("backbone-ipip", "backbone IPIP -> GRE"),
                        ("l3fwd6", "dpdk-l3fwd LPM (plain IPv6)"),
                        ("backbone-gre6", "backbone IPv6 in GRE -> GRE")):
        try:
            rows.append((name, label, json.load(open(f"{out}/{name}.json"))))
        except (OSError, ValueError):
            rows.append((name, label, None))
    def per_core(r):
        return r["mpps_per_cpu"] if r and r.get("mpps_per_cpu") else (r and r["mpps"] / workers)

    res = {n: r for n, _, r in rows}
    l3 = per_core(res.get("l3fwd"))
    l3_6 = per_core(res.get("l3fwd6"))
    io = per_core(res.get("testpmd"))
    print(f"\n=== pipeline: {workers} worker(s), {gen_info['routes']} routes "
          f"({gen_info['table_routes']} from the real table + tunnel prefixes), "
          f"{gen_info['gre_tunnels']} GRE + {gen_info['ipip_tunnels']} IPIP tunnels, "
          f"{gen_info['packets']} distinct packets replayed; IPv6: "
          f"{gen_info.get('routes6', 0)} routes; CPU {ghz:.3f} GHz ===")
    frames = gen_info["frame_bytes"]
    pages = os.environ.get("BENCH_PAGES", "4k")
    thp = [f"{n} {r['thp_kib'] / 1024:.0f} MiB" for n, _, r in rows
           if n.startswith("backbone") and r and r.get("thp_kib") is not None]
    print(f"inner payload {gen_info.get('payload', PAYLOAD)} B: frames GRE {frames['gre']} B, "
          f"IPIP {frames['ipip']} B, plain {frames['plain']} B, IPv6 in GRE "
          f"{frames['gre6']} B, plain IPv6 {frames['plain6']} B")
    print("pages: " + ("2 MiB (EAL on hugetlbfs; backbone's heap on transparent huge pages"
                       if pages == "huge" else "4 KiB for EAL (--no-huge; backbone's heap as "
                       "malloc and the THP mode give it") +
          (f"; on THP: {', '.join(thp)})" if thp else ")"))
    cpu = os.environ.get("BENCH_CPU") or ""
    print("built for: " + (f"{cpu} (backbone -C target-cpu={cpu}, l3fwd -march={cpu})" if cpu
                           else "backbone x86-64 (rustc's default), l3fwd -march=corei7 "
                           "(DPDK's pkg-config flags)"))
    print(f"{'':30} {'Mpps':>7} {'worker CPU':>11} {'Mpps/core':>10} {'/ l3fwd':>8} "
          f"{'/ testpmd':>10} {'cycles/pkt':>11}")
    for name, label, r in rows:
        if r is None:
            only = os.environ.get("BENCH_ONLY", "").split()
            print(f"{label:30} {'skipped' if only and name not in only else 'failed':>7}")
            continue
        mpps, pc = r["mpps"], per_core(r)
        share = r["worker_cpu_s"] / (r["seconds"] * workers) if r.get("worker_cpu_s") else None
        cyc = ghz * 1e3 / pc if pc else float("inf")
        # IPv6 rows against l3fwd's IPv6 run, the others against its IPv4 run.
        ref = l3_6 if name in ("l3fwd6", "backbone-gre6") else l3
        print(f"{label:30} {mpps:7.2f} {f'{share:.0%}' if share else '-':>11} {pc:10.2f} "
              f"{pc / ref if ref else 0:8.2f} {pc / io if io else 0:10.2f} {cyc:11.0f}")
    print("Mpps: packets the sink (net_null) port sent per second (DPDK telemetry, measured "
          "interval).\n/ l3fwd: against l3fwd's IPv4 run, the IPv6 rows against its IPv6 "
          "run.\nworker CPU: share of the worker cores the EAL workers got (a shared "
          "machine takes some);\nMpps/core: packets per worker CPU-second; the ratios and "
          "cycles/pkt (worker CPU time x clock / packets) use it.")


def verify(out, names):
    """Fail loudly unless each backbone run forwarded what it received: at least 99% of the
    packets its source port received left by the sink, and its final counters hold no drop
    at all (a benchmark that forwards nothing measures nothing). The counts are the final
    ones the program wrote at exit (its ports' counters over the whole run): the measured
    interval's two telemetry reads per port are not simultaneous, and on a loaded machine
    the gap between them alone can look like a loss of several percent."""
    bad = []
    for name in names:
        try:
            m = json.load(open(f"{out}/{name}.json"))
        except (OSError, ValueError):
            bad.append(f"{name}: no measurement")
            continue
        try:
            stats = json.load(open(f"{out}/{name}-stats.json"))
        except (OSError, ValueError):
            bad.append(f"{name}: no final counters ({name}-stats.json)")
            continue
        ports = {p.get("port_id"): p for p in stats.get("ports", [])}
        rx = ports.get(0, {}).get("rx_packets", 0)
        tx = ports.get(1, {}).get("tx_packets", 0)
        if m["tx"] == 0 or rx == 0 or tx < 0.99 * rx:
            bad.append(f"{name}: forwarded {tx} of {rx} received "
                       f"({tx / max(rx, 1):.1%}; 99% required)")
        if os.environ.get("BENCH_PAGES") == "huge" and m.get("thp_kib") is None:
            bad.append(f"{name}: BENCH_PAGES=huge, and its transparent huge pages could not "
                       "be read (/proc/PID/smaps_rollup)")
        elif os.environ.get("BENCH_PAGES") == "huge" and m["thp_kib"] == 0:
            bad.append(f"{name}: BENCH_PAGES=huge, but none of its memory was on "
                       "transparent huge pages")
        drops = {k: v for k, v in stats["drops"].items() if v}
        if drops:
            bad.append(f"{name}: dropped {drops}")
        print(f"{name}: forwarded {tx} of {rx} received ({tx / max(rx, 1):.2%}; in the "
              f"measured interval {m['tx']} of {m['rx']}), {sum(drops.values())} drops")
    if bad:
        raise SystemExit("bench-pipeline: FAILED: " + "; ".join(bad))


def callgrind_names():
    """A resolver of callgrind's compressed names: `name(kind, value)` for the value of an
    `ob=`/`cob=` ("ob"), `fl=`/`fi=`/`fe=`/`cfi=`/`cfl=` ("fl") or `fn=`/`cfn=` ("fn")
    line. "(id) name" defines an id, "(id)" reuses it, a bare name has no id; each kind has
    its own ids."""
    names = {"ob": {}, "fl": {}, "fn": {}}

    def name(kind, value):
        value = value.strip()
        if value.startswith("("):
            ident, _, rest = value.partition(")")
            if rest.strip():
                names[kind][ident] = rest.strip()
            return names[kind].get(ident, ident)
        return value

    return name


def callgrind_calls(path):
    """Instructions in a callgrind dump, and the calls into each function, by (object,
    function): {(object path, function name): calls}."""
    name = callgrind_names()
    total = None
    calls = {}
    ob = cob = cfn = None

    with open(path) as f:
        for line in f:
            if line.startswith("ob="):
                ob = name("ob", line[3:])
            elif line.startswith("cob="):
                cob = name("ob", line[4:])
            elif line.startswith("cfn="):
                cfn = name("fn", line[4:])
            elif line.startswith("fn="):
                name("fn", line[3:])
                cob = None
            elif line.startswith("calls="):
                n = int(line[6:].split()[0])
                key = (cob or ob, cfn)
                calls[key] = calls.get(key, 0) + n
                cob = None
            elif line.startswith(("summary:", "totals:")) and total is None:
                total = int(line.split()[1])
    return total, calls


def forwarding(p, name, prefix, log, deadline):
    """Wait until process P (a DPDK app whose EAL runs with --file-prefix=PREFIX) has its
    telemetry socket up and its sink port (1) transmitting; its telemetry. Fails by NAME,
    pointing at its LOG, if it exits or DEADLINE (monotonic) passes first."""
    while True:
        try:
            tel = Telemetry(prefix, 2)
            break
        except SystemExit:
            if p.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name}: no telemetry socket (log: {log})")
    while True:
        st = tel.stats(1)
        if st and st["opackets"] > 0:
            return tel
        if p.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{name}: sent nothing (log: {log})")
        time.sleep(0.2)


def stop(p):
    """Stop a DPDK app as an operator would (SIGINT), killing it if it does not exit."""
    import signal
    import subprocess
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def perf(name, prefix, seconds, outdir, freq, cmd):
    """Run CMD natively; once its sink port (1) transmits and WARMUP seconds have passed,
    count for SECONDS the packets its sink sends and the CPU time its EAL worker threads
    run, then sample those threads with perf (cpu-clock, FREQ per second) for SECONDS more,
    counting the same; stop it. Writes perf-NAME.data and perf-NAME.json. Two windows, since
    sampling slows what it samples: each sample is a timer interrupt, in a VM an exit to the
    host, after which a program whose tables span thousands of pages finds its TLB cold."""
    import signal
    import subprocess
    data = f"{outdir}/perf-{name}.data"
    log = f"{outdir}/perf-{name}.log"
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=open(log, "w"),
                         stderr=subprocess.STDOUT)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        tel = forwarding(p, name, prefix, log, time.monotonic() + 600)
        time.sleep(WARMUP)
        tids = worker_tids(p.pid)
        if not tids:
            raise SystemExit(f"{name}: no EAL worker thread (rte-worker-N) to sample")
        a, cpu0 = tel.stats(1), worker_cpu_ns(p.pid)
        time.sleep(seconds)
        b, cpu1 = tel.stats(1), worker_cpu_ns(p.pid)
        plain = {"packets": b["opackets"] - a["opackets"], "worker_cpu_s": (cpu1 - cpu0) / 1e9}
        a, cpu0 = b, cpu1
        r = subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(freq),
                            "-t", ",".join(tids), "-o", data, "--", "sleep", str(seconds)],
                           capture_output=True, text=True, timeout=seconds + 120)
        b, cpu1 = tel.stats(1), worker_cpu_ns(p.pid)
        if r.returncode != 0:
            raise SystemExit(f"{name}: perf record failed: {r.stderr.strip()}")
    finally:
        stop(p)
    sampled = {"packets": b["opackets"] - a["opackets"], "worker_cpu_s": (cpu1 - cpu0) / 1e9}
    json.dump({**plain, "sampled": sampled, "data": data},
              open(f"{outdir}/perf-{name}.json", "w"))
    print(f"{name}: {plain['packets']} packets in {plain['worker_cpu_s']:.2f} worker CPU s, "
          f"{sampled['packets']} in {sampled['worker_cpu_s']:.2f} while sampled")


def perf_lines(path, binary, cycles_per_sample):
    """The samples of a perf.data file (perf()'s), as callgrind_lines() counts instructions
    and in the same two counters, each sample weighing CYCLES_PER_SAMPLE: by (source file,
    line) for the code of BINARY with line information, where addr2line places the sampled
    instruction (inlined code at the line it is written), and by object for the rest (the
    DPDK libraries, the C library, the kernel, and BINARY's code without lines)."""
    import re
    import subprocess
    script = subprocess.run(["perf", "script", "-i", path, "-F", "ip,dso",
                             "--show-mmap-events"], capture_output=True, text=True,
                            check=True).stdout
    real = os.path.realpath(binary)
    # Where the binary's code was mapped: [start(len) @ file offset ...]: r-xp path.
    maps = []
    mmap = re.compile(r"PERF_RECORD_MMAP2? .*\[0x([0-9a-f]+)\(0x([0-9a-f]+)\) @ "
                      r"(?:0x)?([0-9a-f]+)[^\]]*\]: r-xp (\S+)")
    samples = {}
    for line in script.splitlines():
        m = mmap.search(line)
        if m:
            if os.path.realpath(m.group(4)) == real:
                maps.append(tuple(int(m.group(i), 16) for i in (1, 2, 3)))
            continue
        f = line.split()
        if len(f) == 2 and f[1].startswith("("):
            key = (int(f[0], 16), f[1].strip("()"))
            samples[key] = samples.get(key, 0) + 1
    # File offset to the address addr2line reads: per LOAD segment, its vaddr - offset.
    segs = []
    for line in subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        f = line.split()
        if f and f[0] == "LOAD":
            off, vaddr, size = int(f[1], 16), int(f[2], 16), int(f[4], 16)
            segs.append((off, off + size, vaddr - off))

    def vaddr(ip):
        for start, length, pgoff in maps:
            if start <= ip < start + length:
                off = ip - start + pgoff
                for lo, hi, delta in segs:
                    if lo <= off < hi:
                        return off + delta
        return None

    own = {ip: vaddr(ip) for ip, dso in samples if os.path.realpath(dso) == real}
    where = {}
    addrs = sorted({v for v in own.values() if v is not None})
    if addrs:
        out = subprocess.run(["addr2line", "-e", binary], input="\n".join(map(hex, addrs)),
                             capture_output=True, text=True, check=True).stdout.splitlines()
        if len(out) != len(addrs):
            raise SystemExit(f"addr2line gave {len(out)} lines for {len(addrs)} addresses")
        for a, loc in zip(addrs, out):
            file, _, line = loc.split(" (")[0].rpartition(":")
            where[a] = (file, int(line)) if file != "??" and line.isdigit() else None
    lines, objects = {}, {}
    for (ip, dso), n in samples.items():
        loc = where.get(own.get(ip)) if ip in own else None
        if loc:
            lines[loc] = lines.get(loc, 0) + n * cycles_per_sample
        else:
            obj = dso.rsplit("/", 1)[-1]
            objects[obj] = objects.get(obj, 0) + n * cycles_per_sample
    return lines, objects


def callgrind(name, prefix, seconds, outdir, cmd):
    """Run CMD under callgrind with instrumentation off (it starts and loads its tables at
    a fraction of native speed, not fifty times slower); once its sink port (1) transmits,
    switch instrumentation on, let it forward SECONDS, dump, stop it. Packets: the calls into
    the sink's PMD (net_null frees each transmitted mbuf through a call of its own), checked
    against the source's (net_pcap returns full bursts of 32 in infinite_rx mode: calls x 32
    must agree within 1%), both counted in the same dump as the instructions."""
    import signal
    import subprocess
    out = f"{outdir}/callgrind-{name}"
    for f in os.listdir(outdir):
        if f.startswith(f"callgrind-{name}."):
            os.remove(f"{outdir}/{f}")
    log = open(f"{outdir}/callgrind-{name}.log", "w")
    p = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                          f"--callgrind-out-file={out}.%p"] + cmd,
                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    # A SIGTERM (a CI timeout, say) goes through the `finally` below too: no valgrind left
    # polling.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        deadline = time.monotonic() + 600
        forwarding(p, name, prefix, f"{outdir}/callgrind-{name}.log", deadline)
        # callgrind_control exits 0 whatever happened: what it prints says.
        subprocess.run(["callgrind_control", "-i", "on", str(p.pid)], capture_output=True,
                       timeout=120)
        while True:
            status = subprocess.run(["callgrind_control", "-s", str(p.pid)],
                                    capture_output=True, text=True, timeout=120).stdout
            if "Basic blocks:" in status:
                break
            if p.poll() is not None or time.monotonic() > deadline or "not detected" in status:
                raise SystemExit(f"{name}: instrumentation never went on ({status.strip()})")
            time.sleep(0.2)
        time.sleep(seconds)
        # Dump, and wait until the dump is written in full.
        dump = f"{out}.{p.pid}.1"
        subprocess.run(["callgrind_control", "-d", str(p.pid)], capture_output=True,
                       timeout=120)
        deadline = time.monotonic() + 120
        while not os.path.exists(dump):
            if p.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name}: callgrind wrote no dump ({dump})")
            time.sleep(0.2)
        # Written in full once its last line, the totals, is there.
        while True:
            with open(dump) as f:
                if "\ntotals:" in f.read():
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: the dump {dump} stays incomplete")
            time.sleep(0.2)
    finally:
        stop(p)
    total, calls = callgrind_calls(dump)

    def most_calls(lib):
        return max((n for (ob, _), n in calls.items() if ob and lib in ob), default=0)

    tx = most_calls("librte_net_null")
    rx = most_calls("librte_net_pcap") * 32
    if not total or tx == 0 or abs(rx - tx) > 0.01 * tx:
        raise SystemExit(f"{name}: cannot count packets ({total} instructions, {tx} calls into "
                         f"net_null, {rx // 32} bursts from net_pcap)")
    json.dump({"instructions": total, "packets": tx, "per_packet": total / tx,
               "dump": dump}, open(f"{outdir}/callgrind-{name}.json", "w"))
    print(f"{name}: {total} instructions over {tx} packets: {total / tx:.1f} per packet")



def callgrind_lines(path):
    """Self instructions in a callgrind dump (positions: line), as two counters: by (source
    file, line) for code with line information, and by object (its file name) for code
    without (the DPDK libraries and drivers). Code inlined into a function is counted in the
    file and at the line it is written: callgrind switches files for it (fi=, fe=). A call's
    line carries the callee's inclusive cost, which the callee's own lines count: skipped."""
    name = callgrind_names()
    kinds = {"ob": "ob", "cob": "ob", "fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl",
             "cfl": "fl", "fn": "fn", "cfn": "fn"}
    lines, objects = {}, {}
    obj, fl, cur, last, skip = "?", "???", "???", 0, False
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not line:
                continue
            if line[0].isdigit() or line[0] in "+-*":
                pos, _, rest = line.partition(" ")
                last = last if pos == "*" else last + int(pos) if pos[0] in "+-" else int(pos)
                if skip:
                    skip = False
                elif rest:
                    n = int(rest.split()[0])
                    if cur == "???":
                        objects[obj] = objects.get(obj, 0) + n
                    else:
                        lines[(cur, last)] = lines.get((cur, last), 0) + n
                continue
            key, _, val = line.partition("=")
            if key not in kinds:
                skip = skip or key == "calls"
                continue
            resolved = name(kinds[key], val)
            if key == "ob":
                obj = resolved.rsplit("/", 1)[-1]
            elif key == "fl":
                fl = cur = resolved
            elif key in ("fi", "fe"):
                cur = resolved
            elif key == "fn":
                cur = fl
    return lines, objects

if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "gen":
        gen(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6],
            int(sys.argv[7]) if len(sys.argv) > 7 else PAYLOAD)
    elif cmd == "measure":
        measure(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]),
                int(sys.argv[5]) if len(sys.argv) > 5 else None)
    elif cmd == "report":
        report(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "verify":
        verify(sys.argv[2], sys.argv[3:])
    elif cmd == "perf" and len(sys.argv) > 8 and sys.argv[7] == "--":
        perf(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5], int(sys.argv[6]),
             sys.argv[8:])
    elif cmd == "callgrind" and len(sys.argv) > 7 and sys.argv[6] == "--":
        callgrind(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5], sys.argv[7:])
    else:
        sys.exit(__doc__)
