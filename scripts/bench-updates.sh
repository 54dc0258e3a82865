#!/usr/bin/env bash
# Runtime-update benchmark through the binary: backbone forwards the demo lab's traffic (an
# endless pcap source) while
#   1. scripts/bench-updates.py drives the control API: route updates a second (single
#      changes and batches), API-to-every-worker latency, forwarding with and without
#      updates;
#   2. scripts/bench-fpm-feed.py plays zebra: the real table (565k routes) over FPM, one
#      frame per route, then single moves: convergence time, publications, move latency,
#      forwarding and drops during the feed (the prefixes it does not touch lose nothing),
#      and the appliance's memory before and after.
# The library side (control-thread time per change, median and p99) is
# `cargo bench -p backbone-benches --bench updates`.
#
#   scripts/bench-updates.sh            release build, the whole real table
#   scripts/bench-updates.sh --smoke    CI: the debug build, 20,000 routes, short phases;
#                                       fails if it measures nothing
#
# The appliance runs in a network namespace of its own (its host interfaces bb-<tunnel>,
# which zebra's routes name, live there): needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
smoke=0
[ "${1:-}" = "--smoke" ] && smoke=1
say() { printf 'bench-updates: %s\n' "$*"; }
[ "$(id -u)" -eq 0 ] || { say "needs root (a network namespace, TUN interfaces)"; exit 1; }
[ "${SKIP_SETUP:-0}" = 1 ] || scripts/setup.sh
table=${BENCH_TABLE:-$root/../shared/data/prefixes-v4.txt.gz}
[ -r "$table" ] || { say "route table $table not found (set BENCH_TABLE)"; exit 1; }
if [ $smoke = 1 ]; then
  cargo build --locked -p dataplane --bin backbone
  bin=$root/target/debug/backbone routes=20000 smoke_flag=--smoke
else
  cargo build --release --locked -p dataplane --bin backbone
  bin=$root/target/release/backbone routes=1000000 smoke_flag=
fi
out=$root/out/bench-updates
rm -rf "$out" && mkdir -p "$out" && cd "$out"
/usr/bin/python3 "$root/demo/traffic.py" clients-in.pcap 100 >/dev/null
/usr/bin/python3 -c 'from scapy.all import wrpcap; wrpcap("internet-in.pcap", [])' 2>/dev/null
# The demo lab, its source endless, its tunnels with links (host interfaces), FPM on.
cp "$root/demo/lab.toml" lab.toml
sed -i 's/rx_pcap=clients-in.pcap,tx_pcap=clients-out.pcap/rx_pcap=clients-in.pcap,infinite_rx=1,tx_pcap=\/dev\/null/' lab.toml
sed -i 's/tx_pcap=internet-out.pcap/tx_pcap=\/dev\/null/' lab.toml
sed -i 's/--file-prefix=backbone-demo/--file-prefix=backbone-bench-updates/' lab.toml
sed -i 's|^prefixes = \["10.1.0.0/16"\]|&\nlink = "169.254.10.1/31"|; s|^prefixes = \["10.2.0.0/16"\]|&\nlink = "169.254.20.1/31"|; s|^prefixes = \["10.3.0.0/16"\]|&\nlink = "169.254.30.1/31"|' lab.toml
printf '\n[fpm]\nlisten = "127.0.0.1:2620"\n' >> lab.toml
# Routes the API benchmark moves: 12,800 /24s, initially to acme.
/usr/bin/python3 - <<'PY' >> lab.toml
for i in range(12800):
    print('[[route]]\nprefix = "10.%d.%d.0/24"\ntunnel = "acme"' % (100 + (i >> 8) % 50, i & 255))
PY
ns=bbbench-$$
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
bb=
cleanup() {
  [ -n "$bb" ] && kill "$bb" 2>/dev/null && wait "$bb" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
RUST_LOG=warn ip netns exec "$ns" "$bin" run --config lab.toml --control-socket "$out/api.sock" \
  >backbone.log 2>&1 &
bb=$!
for _ in $(seq 300); do
  "$bin" ctl --socket "$out/api.sock" status >/dev/null 2>&1 && break
  sleep 0.1
done
"$bin" ctl --socket "$out/api.sock" status >/dev/null || { cat backbone.log; exit 1; }
rss() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$bb/status"; }
say "API (the control socket, while forwarding)"
/usr/bin/python3 "$root/scripts/bench-updates.py" "$out/api.sock" $smoke_flag
rss_before=$(rss)
say "FPM (zebra's table over TCP, while forwarding; appliance at ${rss_before} MiB)"
ip netns exec "$ns" /usr/bin/python3 "$root/scripts/bench-fpm-feed.py" "$out/api.sock" \
  "$table" "$routes" $smoke_flag
rss_after=$(rss)
printf '%-36s %14s\n' appliance_rss_mib_before_feed "$rss_before" appliance_rss_mib_after_feed "$rss_after"
kill -TERM "$bb"; wait "$bb" || true
bb=
