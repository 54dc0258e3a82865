#!/usr/bin/env bash
# The demo lab: sets up the machine, builds backbone in release mode, generates what three
# client routers send into their tunnels (scapy), runs the edge router on DPDK pcap devices
# until the input is drained, prints its counters, and dissects what it sent (tshark).
#
#   scripts/demo.sh          the replay: stops once the input has been idle for 300 ms
#   scripts/demo.sh live     the same lab as a running appliance: the clients' traffic
#                            replayed endlessly, the control API on the default socket
#                            (/run/backbone/control.sock), metrics on 127.0.0.1:9469, its
#                            telemetry and (with hugepages) dpdk-dumpcap under the file
#                            prefix backbone-demo; Ctrl-C stops it. It runs on a copy of
#                            the configuration, out/demo/lab.toml (ctl save writes there).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
mode=${1:-replay}
case $mode in replay | live) ;; *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;; esac
scripts/setup.sh
cargo build --release --locked -p dataplane --bin backbone
out=$root/out/demo
rm -rf "$out" && mkdir -p "$out" && cd "$out"

echo "== client routers' traffic (demo/traffic.py, scapy)"
/usr/bin/python3 "$root/demo/traffic.py" clients-in.pcap 100
/usr/bin/python3 -c 'from scapy.all import wrpcap; wrpcap("internet-in.pcap", [])'

echo "== backbone check"
"$root/target/release/backbone" check --config "$root/demo/lab.toml" | tail -n 1

if [ "$mode" = live ]; then
  cp "$root/demo/lab.toml" lab.toml
  # Shared configuration and hugepages where there are enough: what dpdk-dumpcap needs.
  # Absolute capture paths: dpdk-dumpcap opens the devices again, from where it runs.
  free=$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages 2>/dev/null || echo 0)
  if [ "$free" -ge 128 ]; then
    mem=(-m 128)
  else
    echo "(only $free free hugepages: running without them; dpdk-dumpcap cannot attach)"
    mem=(--no-huge --no-shconf -m 256)
  fi
  trap 'rm -f /dev/hugepages/backbone-demomap_* 2>/dev/null || true' EXIT
  echo "== backbone run, live (Ctrl-C stops it); in another terminal, from $root:"
  echo "   alias backbone=$root/target/release/backbone; backbone ctl tunnels"
  RUST_LOG=${RUST_LOG:-info} "$root/target/release/backbone" run --config lab.toml \
    --metrics 127.0.0.1:9469 -- \
    "${mem[@]}" --no-pci -l 0-1 --file-prefix=backbone-demo --log-level=lib.eal:error \
    "--vdev=net_pcap0,rx_pcap=$out/clients-in.pcap,infinite_rx=1" \
    "--vdev=net_pcap1,rx_pcap=$out/internet-in.pcap"
  exit 0
fi

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
