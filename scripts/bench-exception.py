#!/usr/bin/python3
"""The exception path's benchmark: how many packets a second the appliance hands to the
host kernel through a tunnel's host interface, how many the host can send through it, and
whether a host flooding its interface slows forwarding.

    scripts/bench-exception.py BACKBONE [SECONDS]    (default 5 s a phase)
    scripts/bench-exception.py BACKBONE --smoke      (CI: 1 s a phase)

Each phase runs the appliance (the binary BACKBONE) in a network namespace of its own, with
a net_pcap source replaying a capture for ever and a net_null sink, and reads its counters
through `backbone ctl --json counters` at the start and the end of the measured interval:

  to-host     the source replays GRE packets from the client router to our link address
              (UDP to 169.254.9.1, inside tunnel t): packets written into bb-t per second,
              and how many the workers could not queue (the host is slower than the wire).
  from-host   a sender in the namespace floods UDP through bb-t to the client router's side
              of the link (169.254.9.0): packets the appliance encapsulated and sent per
              second.
  icmp        the source replays GRE packets whose inner TTL expires at the appliance: the
              Time Exceeded messages it sends back into tunnel t per second, against the
              [icmp] rate limit (1,000 a second by default, burst 50; Linux's own).
  forward     the source replays GRE packets routed from tunnel t into tunnel u (out of the
              sink): forwarded packets per second, alone and then while the host floods
              bb-t as above; the ratio says whether the host slows the workers. The
              flooding sender runs on CPU 0, the main lcore's, as the host's work would on
              a machine that keeps its worker cores for the workers.

It fails unless every phase measured something (a benchmark that measures nothing fails).
Needs root (namespaces, TUN) and scapy.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

LOCAL, REMOTE = "192.0.2.1", "198.51.100.1"
LINK_OURS, LINK_PEER = "169.254.9.1", "169.254.9.0"
SINK_LOCAL, SINK_REMOTE = "192.0.2.129", "198.51.100.129"
PEER_MAC, SINK_MAC = "02:00:00:00:ee:01", "02:00:00:00:ee:02"
PORT_MAC = "02:00:00:00:00:01"
PACKETS = 256


def say(msg):
    print(f"bench-exception: {msg}", flush=True)


def die(msg):
    say(msg)
    sys.exit(1)


def captures(d):
    from scapy.all import Ether, GRE, IP, UDP, Raw, wrpcap

    def gre(inner):
        return (
            Ether(dst=PORT_MAC, src=PEER_MAC)
            / IP(src=REMOTE, dst=LOCAL)
            / GRE(key_present=1, key=7)
            / inner
        )

    payload = Raw(bytes(64))
    to_link = [
        gre(IP(src=LINK_PEER, dst=LINK_OURS) / UDP(sport=40000 + i, dport=9) / payload)
        for i in range(PACKETS)
    ]
    forward = [
        gre(IP(src="10.1.0.%d" % (1 + i % 200), dst="10.2.%d.%d" % (i // 200, 1 + i % 200))
            / UDP(sport=40000, dport=40001) / payload)
        for i in range(PACKETS)
    ]
    expiring = [
        gre(IP(src="10.1.0.%d" % (1 + i % 200), dst="10.2.0.1", ttl=1)
            / UDP(sport=40000, dport=33434 + i % 30) / payload)
        for i in range(PACKETS)
    ]
    wrpcap(os.path.join(d, "expiring.pcap"), expiring)
    wrpcap(os.path.join(d, "to-link.pcap"), to_link)
    wrpcap(os.path.join(d, "forward.pcap"), forward)


def config(d, name, capture):
    prefix = f"bbexc{os.getpid()}{name}"
    # Two TX queues on the source (a pcap device has one per tx_pcap): the worker's, and
    # the control queue that the host's packets leave by. No capture: a silent source.
    source = (f"net_pcap0,rx_pcap={d}/{capture},tx_pcap=/dev/null,tx_pcap=/dev/null,infinite_rx=1"
              if capture else "net_null1,no-rx=1")
    device = "net_pcap0" if capture else "net_null1"
    return f"""
[eal]
args = ["--no-huge", "--no-pci", "--no-shconf", "-m", "512", "-l", "0-1",
        "--file-prefix={prefix}", "--log-level=lib.eal:error",
        "--vdev={source}",
        "--vdev=net_null0,no-rx=1"]

[workers]
lcores = [1]

[[port]]
name = "in"
device = "{device}"
roles = ["client"]
mac = "{PORT_MAC}"
addresses = ["{LOCAL}"]
neighbor = [{{ ip = "{REMOTE}", mac = "{PEER_MAC}" }}]

[[port]]
name = "out"
device = "net_null0"
roles = ["client"]
mac = "02:00:00:00:00:02"
addresses = ["{SINK_LOCAL}"]
neighbor = [{{ ip = "{SINK_REMOTE}", mac = "{SINK_MAC}" }}]

[[tunnel]]
name = "t"
mode = "gre"
local = "{LOCAL}"
remote = "{REMOTE}"
key = 7
port = "in"
prefixes = ["10.1.0.0/16"]
link = "{LINK_OURS}/31"

[[tunnel]]
name = "u"
mode = "gre"
local = "{SINK_LOCAL}"
remote = "{SINK_REMOTE}"
port = "out"
prefixes = ["10.2.0.0/16"]
"""


class Appliance:
    def __init__(self, binary, d, name, capture):
        self.binary, self.d, self.name = binary, d, name
        self.ns = f"bbexc{os.getpid()}{name}"
        self.sock = os.path.join(d, f"{name}.sock")
        cfg = os.path.join(d, f"{name}.toml")
        with open(cfg, "w") as f:
            f.write(config(d, name, capture))
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        subprocess.run(["ip", "netns", "exec", self.ns, "ip", "link", "set", "lo", "up"], check=True)
        self.log = open(os.path.join(d, f"{name}.log"), "w")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, binary, "run", "--config", cfg,
             "--control-socket", self.sock, "--stats", os.path.join(d, f"{name}-stats.json")],
            stdout=self.log, stderr=subprocess.STDOUT,
            env=dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn")),
        )
        self.wait(lambda: self.iface_up(), "bb-t with its address", 30)

    def iface_up(self):
        if self.proc.poll() is not None:
            die(f"{self.name}: the appliance exited: see {self.log.name}")
        out = subprocess.run(["ip", "netns", "exec", self.ns, "ip", "-o", "-4", "addr", "show",
                              "dev", "bb-t"], capture_output=True, text=True)
        return out.returncode == 0 and LINK_OURS in out.stdout and os.path.exists(self.sock)

    @staticmethod
    def wait(cond, what, secs):
        end = time.monotonic() + secs
        while not cond():
            if time.monotonic() > end:
                die(f"timed out after {secs} s waiting for {what}")
            time.sleep(0.05)

    def counters(self):
        out = subprocess.run(["ip", "netns", "exec", self.ns, self.binary, "ctl",
                              f"--socket={self.sock}", "--json", "counters"],
                             capture_output=True, text=True)
        if out.returncode != 0:
            die(f"{self.name}: ctl counters: {out.stderr}")
        return json.loads(out.stdout)

    def fresh_counters(self):
        """The counters from a copy the worker made after this call: the workers publish
        theirs every few thousand polls, so a plain read may be older than the interval
        measured, and a difference of two such reads miscounts a short interval."""
        seen = self.counters()["workers"][0]["copies"]
        deadline = time.monotonic() + 10
        while True:
            c = self.counters()
            if c["workers"][0]["copies"] > seen:
                return c
            if time.monotonic() > deadline:
                die(f"{self.name}: the worker made no copy of its counters in 10 s")
            time.sleep(0.001)  # polling for the copy, bounded by the deadline

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        subprocess.run(["ip", "netns", "del", self.ns])


def flood(ns, stop, secs):
    """A sender in namespace `ns`: UDP to the client router's side of the link, through
    bb-t, as fast as one Python process sends, until the file `stop` exists (or `secs`
    seconds pass: a bound, should the caller die)."""
    code = f"""
import os, socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
end = time.monotonic() + {secs}
data = bytes(64)
n = 0
while time.monotonic() < end and not os.path.exists("{stop}"):
    for _ in range(256):
        try:
            s.sendto(data, ("{LINK_PEER}", 9))
            n += 1
        except OSError:
            pass
print(n)
"""
    # On the main lcore's CPU, as the host's work would be on a machine whose worker cores
    # are kept for the workers (isolcpus): this machine has few cores to spare.
    return subprocess.Popen(["ip", "netns", "exec", ns, "taskset", "-c", "0",
                             "/usr/bin/python3", "-c", code],
                            stdout=subprocess.PIPE, text=True)


def flooding_start(app, d, secs):
    """Start the host's flood and wait until the appliance sends what it reads (a loaded
    machine may take seconds to start a Python process); returns the flood and its stop
    file."""
    stop = os.path.join(d, f"stop-{app.name}")
    f = flood(app.ns, stop, secs + 60)
    deadline = time.monotonic() + 30
    while app.counters()["host"]["from_host_sent"] == 0:
        if time.monotonic() > deadline or f.poll() is not None:
            die(f"the host's flood never reached the appliance ({app.name})")
        time.sleep(0.05)  # polling the counters, bounded by the deadline
    return f, stop


def sink_tx(c):
    # The device's own count (the control thread reads it four times a second): the
    # workers publish theirs only every few thousand polls.
    return next(p["hw_tx_packets"] for p in c["ports"] if p["name"] == "out")


def main():
    if len(sys.argv) < 2:
        die(__doc__)
    binary = os.path.abspath(sys.argv[1])
    smoke = len(sys.argv) > 2 and sys.argv[2] == "--smoke"
    secs = 1.0 if smoke else float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    results = {}
    keep = os.environ.get("BENCH_KEEP")
    with tempfile.TemporaryDirectory(prefix="bench-exception-") as tmp:
        d = tempfile.mkdtemp(prefix="bench-exception-", dir=keep) if keep else tmp
        captures(d)

        app = Appliance(binary, d, "tohost", "to-link.pcap")
        try:
            time.sleep(0.5)
            a = app.counters()
            t0 = time.monotonic()
            time.sleep(secs)
            b = app.counters()
            dt = time.monotonic() - t0
            results["to_host_pps"] = (b["host"]["to_host"] - a["host"]["to_host"]) / dt
            results["to_host_queue_full_pps"] = (b["host"]["queue_full"] - a["host"]["queue_full"]) / dt
        finally:
            app.stop()

        app = Appliance(binary, d, "fromhost", None)
        try:
            f, stop = flooding_start(app, d, secs)
            a = app.counters()
            t0 = time.monotonic()
            time.sleep(secs)  # the interval measured
            b = app.counters()
            dt = time.monotonic() - t0
            open(stop, "w").close()
            sent = int(f.communicate(timeout=30)[0] or 0)
            results["from_host_pps"] = (b["host"]["from_host_sent"] - a["host"]["from_host_sent"]) / dt
            results["from_host_read_pps"] = (b["host"]["from_host"] - a["host"]["from_host"]) / dt
            results["from_host_dropped"] = b["host"]["from_host_dropped"] + b["host"]["from_host_tx_failed"]
            results["flood_sent"] = sent
            results["from_host_counters"] = b["host"]
        finally:
            app.stop()

        app = Appliance(binary, d, "icmp", "expiring.pcap")
        try:
            time.sleep(0.5)
            a = app.fresh_counters()
            t0 = time.monotonic()
            time.sleep(secs)
            b = app.fresh_counters()
            dt = time.monotonic() - t0
            results["icmp_sent_pps"] = (b["icmp_sent"]["time_exceeded"] - a["icmp_sent"]["time_exceeded"]) / dt
            results["icmp_limited_pps"] = (b["icmp_rate_limited"] - a["icmp_rate_limited"]) / dt
        finally:
            app.stop()

        for flooding in (False, True):
            name = "forwardflood" if flooding else "forward"
            app = Appliance(binary, d, name, "forward.pcap")
            try:
                if flooding:
                    f, stop = flooding_start(app, d, secs)
                else:
                    time.sleep(0.5)  # the source's replay under way
                a = app.counters()
                t0 = time.monotonic()
                time.sleep(secs)
                b = app.counters()
                dt = time.monotonic() - t0
                results[f"{name}_pps"] = (sink_tx(b) - sink_tx(a)) / dt
                if flooding:
                    results["forwardflood_host_pps"] = (b["host"]["from_host_sent"] - a["host"]["from_host_sent"]) / dt
                    open(stop, "w").close()
                    f.communicate(timeout=30)
            finally:
                app.stop()

    print()
    print(f"exception path ({secs:g} s a phase, one worker, {os.cpu_count()} cores)")
    print(f"  to the host (bb-t):        {results['to_host_pps']:>12,.0f} packets/s "
          f"(queue full: {results['to_host_queue_full_pps']:,.0f}/s)")
    print(f"  from the host (bb-t):      {results['from_host_pps']:>12,.0f} packets/s sent "
          f"(read {results['from_host_read_pps']:,.0f}/s, dropped {results['from_host_dropped']})")
    print(f"  ICMP time exceeded sent:   {results['icmp_sent_pps']:>12,.0f} messages/s "
          f"(limit 1,000/s; refused by it: {results['icmp_limited_pps']:,.0f}/s)")
    print(f"  forwarding alone:          {results['forward_pps']:>12,.0f} packets/s")
    print(f"  forwarding, host flooding: {results['forwardflood_pps']:>12,.0f} packets/s "
          f"({results['forwardflood_pps'] / max(results['forward_pps'], 1):.2f}x; the host sent "
          f"{results['forwardflood_host_pps']:,.0f}/s meanwhile)")
    out = os.environ.get("BENCH_JSON")
    if out:
        with open(out, "w") as f:
            json.dump(results, f, indent=2)
    for k in ("to_host_pps", "from_host_pps", "icmp_sent_pps", "icmp_limited_pps",
              "forward_pps", "forwardflood_pps", "forwardflood_host_pps"):
        if results[k] <= 0:
            die(f"{k} measured nothing: {results}")


if __name__ == "__main__":
    main()
