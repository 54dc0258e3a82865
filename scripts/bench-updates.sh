#!/usr/bin/env bash
# Runtime-update benchmark: starts backbone (release) on the demo lab with an endless pcap
# source, then scripts/bench-updates.py drives the control API and reports updates per
# second, API-to-workers latency, and the forwarding rate with and without updates.
# Then the library-side figures: cargo bench -p backbone-benches --bench updates.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
[ "${SKIP_SETUP:-0}" = 1 ] || scripts/setup.sh
cargo build --release --locked -p dataplane --bin backbone
out=$root/out/bench-updates
rm -rf "$out" && mkdir -p "$out" && cd "$out"
/usr/bin/python3 "$root/demo/traffic.py" clients-in.pcap 100 >/dev/null
/usr/bin/python3 -c 'from scapy.all import wrpcap; wrpcap("internet-in.pcap", [])'
# Routes the benchmark moves: 12,800 /24s, initially to acme.
cp "$root/demo/lab.toml" lab.toml
sed -i 's/rx_pcap=clients-in.pcap,tx_pcap=clients-out.pcap/rx_pcap=clients-in.pcap,infinite_rx=1,tx_pcap=\/dev\/null/' lab.toml
/usr/bin/python3 - <<'PY' >> lab.toml
for i in range(12800):
    print('[[route]]\nprefix = "10.%d.%d.0/24"\ntunnel = "acme"' % (100 + (i >> 8) % 50, i & 255))
PY
RUST_LOG=warn "$root/target/release/backbone" run --config lab.toml --control-socket "$out/api.sock" \
  >backbone.log 2>&1 &
bb=$!
trap 'kill $bb 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S api.sock ] && break; sleep 0.1; done
/usr/bin/python3 "$root/scripts/bench-updates.py" "$out/api.sock"
kill -TERM $bb; wait $bb || true
trap - EXIT
