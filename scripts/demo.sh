#!/usr/bin/env bash
# The demo lab: sets up the machine, builds backbone in release mode, generates what three
# client routers send into their tunnels (scapy), runs the edge router on DPDK pcap devices
# until the input is drained, prints its counters, and dissects what it sent (tshark).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scripts/setup.sh
cargo build --release --locked -p dataplane --bin backbone
out=$root/out/demo
rm -rf "$out" && mkdir -p "$out" && cd "$out"

echo "== client routers' traffic (demo/traffic.py, scapy)"
/usr/bin/python3 "$root/demo/traffic.py" clients-in.pcap 100
/usr/bin/python3 -c 'from scapy.all import wrpcap; wrpcap("internet-in.pcap", [])'

echo "== backbone check"
"$root/target/release/backbone" check --config "$root/demo/lab.toml" | tail -n 1
echo "== backbone run (stops once the input has been idle for 300 ms)"
RUST_LOG=${RUST_LOG:-warn} "$root/target/release/backbone" run --config "$root/demo/lab.toml" \
  --stop-when-idle 300 --stats stats.json --no-control-socket

echo
echo "== what left through the client port (first 9 packets; tshark)"
tshark -r clients-out.pcap -c 9 -T fields -E header=y \
  -e ip.src -e ip.dst -e ip.proto -e gre.key -e gre.sequence_number -e _ws.col.Protocol \
  -e _ws.col.Info 2>/dev/null | sed 's/\t/  /g'
echo
echo "== what left through the Internet port"
tshark -r internet-out.pcap 2>/dev/null | head -n 5 || true
echo
echo "Files in $out: clients-in.pcap (input), clients-out.pcap and internet-out.pcap (output), stats.json"
