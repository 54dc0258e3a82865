#!/usr/bin/env bash
# The virtio lab: backbone on virtio-user NICs (as in a VM), dpdk-testpmd on the vhost-user
# side. testpmd replays the client routers' traffic (demo/traffic.py) endlessly from a pcap
# into its vhost port; backbone receives it on its virtio NIC, forwards each client's packets
# into another client's tunnel and sends them back; testpmd writes what comes back to a pcap.
# Runs for SECONDS (default 5), then stops both and prints both sides' counters.
# Needs hugepages (scripts/setup.sh reserves them). Usage: scripts/virtio-lab.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${1:-5}
[ "${SKIP_SETUP:-0}" = 1 ] || scripts/setup.sh
cargo build --release --locked -p dataplane --bin backbone
if [ "$(cat /proc/sys/vm/nr_hugepages)" -lt 512 ]; then
  echo "virtio-lab: needs hugepages (vhost-user shares memory with virtio-user); run scripts/setup.sh as root" >&2
  exit 1
fi
out=$root/out/virtio-lab
rm -rf "$out" && mkdir -p "$out"
sock=$out/vhost0.sock
/usr/bin/python3 demo/traffic.py "$out/clients-in.pcap" 100 >/dev/null

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# The appliance: the demo lab's configuration, with its ports swapped for a virtio-user NIC
# (port 0, server side of the socket) and a null sink (port 1, the Internet uplink).
RUST_LOG=${RUST_LOG:-info} target/release/backbone run --config demo/lab.toml --stats "$out/stats.json" \
  --control-socket "$out/control.sock" -- \
  -l 0-1 -m 512 --no-pci --single-file-segments --file-prefix=backbone-virtio --log-level=lib.eal:error \
  "--vdev=net_virtio_user0,path=$sock,server=1,queues=1" --vdev=net_null0,no-rx=1 \
  >"$out/backbone.log" 2>&1 &
bb=$!; pids+=("$bb")
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { cat "$out/backbone.log"; echo "virtio-lab: backbone did not create $sock" >&2; exit 1; }

# testpmd: port 0 replays the pcap, port 1 is the vhost-user end of backbone's virtio NIC;
# io forwarding joins them both ways. A stats period keeps it running without a terminal.
dpdk-testpmd -l 0-1 -m 512 --no-pci --single-file-segments --file-prefix=testpmd-virtio \
  --log-level=lib.eal:error \
  "--vdev=net_pcap0,rx_pcap=$out/clients-in.pcap,tx_pcap=$out/clients-out.pcap,infinite_rx=1" \
  "--vdev=net_vhost0,iface=$sock,client=1,queues=1" \
  -- --forward-mode=io --auto-start --stats-period=1 --nb-cores=1 >"$out/testpmd.log" 2>&1 &
tp=$!; pids+=("$tp")

sleep "$secs"
kill -INT "$tp"; wait "$tp" 2>/dev/null || true
kill -TERM "$bb"; wait "$bb" || { cat "$out/backbone.log"; exit 1; }
pids=()

echo "== testpmd (vhost-user side): port 0 = replayed client traffic, port 1 = backbone's virtio NIC"
grep -A4 -E "Forward statistics for port|Accumulated forward statistics" "$out/testpmd.log" | tail -n 16 || true
echo
echo "== backbone (virtio-user side)"
sed -n '/^port /,$p' "$out/backbone.log"
echo
echo "== packets that came back through the tunnels (first 6, tshark)"
tshark -r "$out/clients-out.pcap" -c 6 -T fields -e ip.src -e ip.dst -e ip.proto -e gre.key 2>/dev/null || true
echo
echo "Logs and captures: $out"
