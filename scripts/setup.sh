#!/usr/bin/env bash
# Installs what building, running and testing backbone need on Debian 12, and reserves
# hugepages where the machine allows it. Idempotent: run it as often as you like.
# Prints what it did. Needs root (or sudo) for apt and hugepages.
set -euo pipefail

say() { printf 'setup: %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    say "not root and no sudo: cannot install packages"; exit 1
  fi
fi

# Debian packages: DPDK runtime and headers (dpdk has dpdk-dumpcap and dpdk-telemetry.py),
# bindgen's libclang, pkg-config, the packet oracles (tshark, scapy), promtool (in
# prometheus: it checks our metrics), the routing daemons the labs and tests run (FRR, BIRD;
# zebra's FPM feed in tests/tests/fpm.rs), etcd (the policy store; its tests start their
# own) and protoc with its well-known types (the etcd client's build imports
# google/protobuf/descriptor.proto, which is in libprotobuf-dev, only a recommendation of
# protobuf-compiler), valgrind (scripts/bench-instructions.sh counts instructions with its
# callgrind), perf (linux-perf: bench-instructions.sh --cycles samples where the cycles go),
# and tools the tests and labs use.
PKGS=(dpdk dpdk-dev libdpdk-dev pkg-config clang libclang-dev build-essential
      tshark python3 python3-scapy libpcap-dev iproute2 ethtool openvswitch-switch tcpdump socat iputils-ping
      prometheus curl frr frr-pythontools bird2 traceroute etcd-server etcd-client protobuf-compiler
      libprotobuf-dev valgrind linux-perf)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer no without a prompt.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  say "installed ${#missing[@]} packages"
  if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    # Installed for promtool only: the Prometheus server it ships need not run.
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
    say "prometheus: installed for promtool; its server disabled (systemctl enable --now prometheus to use it)"
  fi
  if [[ " ${missing[*]} " == *" frr "* ]] && [ -d /run/systemd/system ]; then
    # Installed for the tests, which start zebra in namespaces of their own: the host's
    # FRR service need not run.
    $SUDO systemctl disable --now frr >/dev/null 2>&1 || true
    say "frr: installed for the tests; its service disabled (systemctl enable --now frr to use it)"
  fi
  if [[ " ${missing[*]} " == *" etcd-server "* ]] && [ -d /run/systemd/system ]; then
    # The tests start etcd members of their own, on their own ports.
    $SUDO systemctl disable --now etcd >/dev/null 2>&1 || true
  fi
else
  say "Debian packages already installed (${#PKGS[@]} checked)"
fi

if ! command -v cargo >/dev/null 2>&1; then
  say "cargo not found: install Rust (rustup, or 'apt-get install cargo' for Debian's) and run again"
  exit 1
fi
say "DPDK $(pkg-config --modversion libdpdk), $(cargo --version)"

# The packet oracle: Debian's scapy lives with Debian's python3.
if /usr/bin/python3 -c 'import scapy' 2>/dev/null; then
  say "scapy available to /usr/bin/python3"
else
  say "scapy missing for /usr/bin/python3"; exit 1
fi

# Hugepages: wanted for real NICs and virtio-user; the tests run without them (--no-huge).
want=${BACKBONE_HUGEPAGES:-1024}
have=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo 0)
if [ "$have" -ge "$want" ]; then
  say "hugepages: $have reserved already"
elif echo "$want" | $SUDO tee /proc/sys/vm/nr_hugepages >/dev/null 2>&1; then
  have=$(cat /proc/sys/vm/nr_hugepages)
  say "hugepages: asked for $want, the kernel gave $have"
else
  say "hugepages: cannot reserve them here (read-only /proc/sys or no permission); the demo and tests run with --no-huge"
fi
if mountpoint -q /dev/hugepages 2>/dev/null; then
  say "hugetlbfs: mounted on /dev/hugepages already"
elif $SUDO mkdir -p /dev/hugepages 2>/dev/null && $SUDO mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null; then
  say "hugetlbfs: mounted on /dev/hugepages"
else
  say "hugetlbfs: cannot mount here; the demo and tests run with --no-huge"
fi
say "done"
