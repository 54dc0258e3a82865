#!/usr/bin/env bash
# The pipeline benchmark: dpdk-testpmd (io forwarding: the I/O ceiling), dpdk-l3fwd (LPM on
# plain IPv4) and backbone (GRE -> GRE and IPIP -> GRE over 1,064 tunnels), then dpdk-l3fwd
# on plain IPv6 (its rte_lpm6) and backbone with IPv6 inside GRE (0x86DD -> GRE), one after
# another on the same virtual devices and the same route tables, then a table of Mpps, the
# ratios to l3fwd (of the same family) and to testpmd, and cycles per packet.
#
#   scripts/bench-pipeline.sh [WORKERS [SECONDS [PAYLOAD]]]
#                                 (defaults: 1 worker, 5 seconds, 64 bytes of inner payload)
#   BENCH_PAGES=huge scripts/bench-pipeline.sh ...      (every program on 2 MiB pages)
#   scripts/bench-pipeline.sh --smoke                   (CI: backbone only, 1 second each,
#                                                        20,000 routes, 256 packets)
#
# PAYLOAD is the inner UDP payload in bytes (18 to 1400): 64 gives 134-byte GRE frames,
# 512 gives 582-byte ones; the same inner packets go to every program.
#
# Pages: by default (BENCH_PAGES=4k) EAL runs with --no-huge (4 KiB pages), and backbone's
# heap (its route and tunnel tables) is on the pages malloc and the THP mode give it. BENCH_PAGES=huge runs
# them as production does: EAL takes its memory (mbufs, l3fwd's rte_lpm tables) from
# hugetlbfs (--in-memory; scripts/setup.sh reserves the pages), and backbone runs under
# GLIBC_TUNABLES=glibc.malloc.hugetlb=1, as dist/backbone.service starts it, so that its
# tables sit on transparent huge pages (THP mode madvise or always). The report says how
# much of backbone's memory was on transparent huge pages.
#
# CPU: by default backbone is built for the portable x86-64 baseline and l3fwd as DPDK's
# pkg-config flags say (-march=corei7, the level Debian's DPDK libraries are built for).
# BENCH_CPU=x86-64-v2|x86-64-v3|x86-64-v4|native builds both for that CPU instead (rustc's
# -C target-cpu, gcc's -march; the DPDK libraries stay as Debian built them), so that the
# two are compared at the same level; the report says which.
#
# BENCH_OUT puts its builds, inputs and results in another folder than out/bench-pipeline.
# BENCH_GRE_TUNNELS (1 to 4096, default 1000) sets how many GRE tunnels send, and as many
# egress tunnels: a larger tunnel table, for what its size costs.
#
# Either way it fails loudly unless each backbone run forwards at least 99% of what it
# receives and drops nothing (its final counters): a benchmark that measures nothing fails.
#
# Devices: a net_pcap source replaying its capture for ever (infinite_rx=1, one capture per
# RX queue) and a net_null sink (no-rx=1). Each program gets lcores 0-WORKERS: the main
# lcore plus WORKERS polling workers, one RX queue per worker on each port. Rates come from
# each program's own port counters, read the same way for all three (DPDK telemetry): the
# packets the sink port transmitted over SECONDS, after forwarding has run for a second.
#
# Routes: the real table (../shared/data/prefixes-v4.txt.gz) less what overlaps the lab's
# own ranges, plus the tunnels' client prefixes: the same prefixes in backbone and in
# l3fwd's rte_lpm. IPv6 the same way from ../shared/data/prefixes-v6.txt.gz (global unicast
# only), in backbone's IPv6 table and l3fwd's rte_lpm6. Packets: BENCH_PACKETS (4096) per
# capture, each to a random address of a random route, PAYLOAD bytes of UDP payload.
#
# l3fwd is built here from Debian's dpdk-doc examples into out/bench-pipeline/ (or BENCH_OUT;
# nothing of it is committed), with two changes to a copy of its source: no RX checksum offload (virtual
# devices have none) and LPM tables large enough for the tables. It needs --parse-ptype (the
# pcap device reports no packet types) and so parses them in software; its LPM mode looks
# IPv4 and IPv6 packets up by their type (--ipv6, given for its IPv6 run, only changes its
# exact-match mode).
#
# Needs root (or sudo) for apt-get the first time; no NIC, and no hugepages unless
# BENCH_PAGES=huge. Safe on a fresh
# machine after scripts/setup.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" = "--smoke" ]; then
  export BENCH_ONLY="backbone-gre backbone-ipip backbone-gre6" BENCH_ROUTES=${BENCH_ROUTES:-20000}
  export BENCH_PACKETS=${BENCH_PACKETS:-256}
  set -- 1 1
fi
WORKERS=${1:-1}
SECONDS_MEASURED=${2:-5}
PAYLOAD=${3:-64}
PAGES=${BENCH_PAGES:-4k}
PACKETS=${BENCH_PACKETS:-4096}
TABLE=${BENCH_TABLE:-$ROOT/../shared/data/prefixes-v4.txt.gz}
TABLE6=${BENCH_TABLE6:-$ROOT/../shared/data/prefixes-v6.txt.gz}
OUT=${BENCH_OUT:-$ROOT/out/bench-pipeline}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
HELPER=$ROOT/scripts/bench-pipeline.py
PY=/usr/bin/python3

say() { printf 'bench-pipeline: %s\n' "$*"; }
die() { say "$*"; exit 1; }

[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "WORKERS must be a positive integer, not '$WORKERS'"
[[ $SECONDS_MEASURED =~ ^[0-9]+([.][0-9]+)?$ ]] || die "SECONDS must be a number"
if ! [[ $PAYLOAD =~ ^[0-9]+$ ]] || (( PAYLOAD < 18 || PAYLOAD > 1400 )); then
  die "PAYLOAD must be a number of bytes from 18 to 1400, not '$PAYLOAD'"
fi
case $PAGES in
  4k) ;;
  huge)
    thp=$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || true)
    [[ $thp == *"[always]"* || $thp == *"[madvise]"* ]] ||
      die "BENCH_PAGES=huge: transparent huge pages are '${thp:-absent}' (need madvise or always)"
    free_pages=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
    [ "$(awk '/^Hugepagesize:/ {print $2}' /proc/meminfo)" = 2048 ] ||
      die "BENCH_PAGES=huge: the default huge page size is not 2 MiB"
    (( ${free_pages:-0} >= 768 )) || die "BENCH_PAGES=huge: ${free_pages:-0} free 2 MiB pages, 768 needed (scripts/setup.sh reserves 1024)"
    grep -qs " /dev/hugepages hugetlbfs " /proc/mounts || die "BENCH_PAGES=huge: no hugetlbfs on /dev/hugepages (scripts/setup.sh mounts it)"
    ;;
  *) die "BENCH_PAGES must be 4k or huge, not '$PAGES'" ;;
esac
CPU=${BENCH_CPU:-}
case $CPU in
  "" | x86-64-v2 | x86-64-v3 | x86-64-v4 | native) ;;
  *) die "BENCH_CPU must be x86-64-v2, x86-64-v3, x86-64-v4 or native, not '$CPU'" ;;
esac
cores=$(nproc)
if (( WORKERS + 1 > cores )); then
  die "$WORKERS worker(s) need $((WORKERS + 1)) cores (a main lcore and one per worker); this machine has $cores"
fi
[ -r "$TABLE" ] || die "route table $TABLE not found (set BENCH_TABLE)"
[ -r "$TABLE6" ] || die "IPv6 route table $TABLE6 not found (set BENCH_TABLE6)"

# Packages: testpmd (dpdk), the l3fwd sources (dpdk-doc), compilers, scapy.
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
missing=()
wants() { [ -z "${BENCH_ONLY:-}" ] || [[ " $BENCH_ONLY " == *" $1 "* ]]; }
pkgs=(dpdk libdpdk-dev pkg-config build-essential python3-scapy)
if wants l3fwd || wants l3fwd6; then pkgs+=(dpdk-doc); fi
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v dpdk-testpmd >/dev/null || die "dpdk-testpmd not found (package dpdk)"
mkdir -p "$OUT"

# backbone, release build (or the binary BACKBONE names: CI's smoke run takes the debug
# build the tests made, whose figures mean nothing but which must still forward).
if [ -n "${BACKBONE:-}" ]; then
  say "using $BACKBONE"
elif [ -n "$CPU" ]; then
  say "building backbone (release, -C target-cpu=$CPU)"
  (cd "$ROOT" && RUSTFLAGS="-C target-cpu=$CPU" CARGO_TARGET_DIR=$TARGET/cpu-$CPU \
    cargo build --release --locked -q -p dataplane --bin backbone)
  BACKBONE=$TARGET/cpu-$CPU/release/backbone
else
  say "building backbone (release)"
  (cd "$ROOT" && cargo build --release --locked -q -p dataplane --bin backbone)
  BACKBONE=$TARGET/release/backbone
fi
[ -x "$BACKBONE" ] || die "$BACKBONE missing"

# l3fwd from the examples, patched copy, built once per DPDK version.
EXAMPLES=/usr/share/dpdk/examples
L3=$OUT/l3fwd-build
L3FWD=$L3/l3fwd/build/l3fwd-shared
if wants l3fwd || wants l3fwd6; then
stamp="$(pkg-config --modversion libdpdk) $(stat -c %Y "$EXAMPLES/l3fwd/main.c") $(sha1sum "$0" | cut -c1-12) ${CPU:-default}"
if [ ! -x "$L3FWD" ] || [ "$(cat "$L3/stamp" 2>/dev/null)" != "$stamp" ]; then
  say "building dpdk-l3fwd from $EXAMPLES/l3fwd"
  rm -rf "$L3"
  mkdir -p "$L3"
  cp -r "$EXAMPLES/l3fwd" "$EXAMPLES/common" "$L3/"
  # Virtual devices offer no RX checksum offload: l3fwd would refuse to configure them.
  sed -i 's/\.offloads = RTE_ETH_RX_OFFLOAD_CHECKSUM,/.offloads = 0, \/* bench-pipeline.sh: no offload on vdevs *\//' "$L3/l3fwd/main.c"
  # Room for the whole table (the example holds 1024 routes and 256 groups).
  sed -i -e 's/^#define IPV4_L3FWD_LPM_MAX_RULES .*/#define IPV4_L3FWD_LPM_MAX_RULES (1 << 20)/' \
         -e 's/^#define IPV4_L3FWD_LPM_NUMBER_TBL8S .*/#define IPV4_L3FWD_LPM_NUMBER_TBL8S (1 << 16)/' \
         -e 's/^#define IPV6_L3FWD_LPM_MAX_RULES .*/#define IPV6_L3FWD_LPM_MAX_RULES (1 << 18)/' \
         "$L3/l3fwd/l3fwd_lpm.c"
  # (rte_lpm6 keeps its 65,536 groups: the IPv6 table needs 38,997.)
  # BENCH_CPU: after pkg-config's -march=corei7, so that it wins.
  if [ -n "$CPU" ]; then
    sed -i "s/^CFLAGS += -DALLOW_EXPERIMENTAL_API\$/&\nCFLAGS += -march=$CPU/" "$L3/l3fwd/Makefile"
    grep -q "^CFLAGS += -march=$CPU\$" "$L3/l3fwd/Makefile" || die "l3fwd: the -march patch did not apply"
  fi
  grep -q "bench-pipeline.sh: no offload" "$L3/l3fwd/main.c" || die "l3fwd: the checksum-offload patch did not apply"
  grep -q "IPV4_L3FWD_LPM_MAX_RULES (1 << 20)" "$L3/l3fwd/l3fwd_lpm.c" || die "l3fwd: the LPM-size patch did not apply"
  grep -q "IPV6_L3FWD_LPM_MAX_RULES (1 << 18)" "$L3/l3fwd/l3fwd_lpm.c" || die "l3fwd: the LPM6-size patch did not apply"
  make -s -C "$L3/l3fwd" -j"$cores" shared >"$L3/build.log" 2>&1 || { tail -20 "$L3/build.log"; die "l3fwd build failed"; }
  echo "$stamp" >"$L3/stamp"
fi
fi

# Inputs: tables, backbone configurations, captures.
gen_stamp="$WORKERS $PACKETS $PAYLOAD ${BENCH_ROUTES:-all} ${BENCH_GRE_TUNNELS:-1000} $(stat -c %Y "$TABLE" "$TABLE6" | tr '\n' ' ')$(sha1sum "$HELPER" | cut -c1-12)"
if [ "$(cat "$OUT/gen.stamp" 2>/dev/null)" != "$gen_stamp" ]; then
  say "generating routes, configurations and captures (scapy)"
  rm -f "$OUT"/*.pcap "$OUT"/gen.json
  $PY "$HELPER" gen "$OUT" "$TABLE" "$WORKERS" "$PACKETS" "$TABLE6" "$PAYLOAD"
  echo "$gen_stamp" >"$OUT/gen.stamp"
fi

# BENCH_PREPARE_ONLY=1: packages, l3fwd and the inputs only (scripts/bench-instructions.sh
# runs the programs itself).
if [ "${BENCH_PREPARE_ONLY:-0}" = 1 ]; then
  say "prepared in $OUT (BENCH_PREPARE_ONLY=1: nothing run)"
  exit 0
fi

# EAL arguments shared by all three programs; the captures differ.
# The source has one TX queue per lcore (nothing is sent to it; l3fwd wants a queue per lcore).
eal_args() { # PREFIX CAPTURE
  local files="" q
  for ((q = 0; q < WORKERS; q++)); do files+="rx_pcap=$OUT/$2-$q.pcap,"; done
  for ((q = 0; q <= WORKERS; q++)); do files+="tx_pcap=/dev/null,"; done
  local memory="--no-huge --no-shconf"
  [ "$PAGES" = huge ] && memory="--in-memory"
  echo "-l 0-$WORKERS $memory --no-pci -m 1536 --file-prefix=$1 --log-level=lib.eal:error"
  echo "--vdev=net_pcap0,${files}infinite_rx=1 --vdev=net_null0,no-rx=1"
}

PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# run NAME PREFIX COMMAND...: start it, measure the sink port (1), stop it with SIGINT.
# BENCH_ONLY="l3fwd backbone-gre" runs only those.
run() {
  local name=$1 prefix=$2 pid i
  shift 2
  if [ -n "${BENCH_ONLY:-}" ] && [[ " $BENCH_ONLY " != *" $name "* ]]; then return 0; fi
  say "running $name"
  rm -f "$OUT/$name.json"
  # l3fwd prints a line per route: keep the log readable.
  "$@" > >(grep -v '^LPM: Adding route' >"$OUT/$name.log") 2>&1 &
  pid=$!
  PIDS+=("$pid")
  if ! $PY "$HELPER" measure "$prefix" "$SECONDS_MEASURED" 1 "$pid" >"$OUT/$name.json.tmp"; then
    say "$name: no measurement (log: $OUT/$name.log)"
    tail -5 "$OUT/$name.log" || true
  else
    mv "$OUT/$name.json.tmp" "$OUT/$name.json"
  fi
  kill -INT "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
  PIDS=()
  rm -rf "/var/run/dpdk/$prefix" 2>/dev/null || true
}

# Results of earlier runs go: a row this run skips must not show an old figure.
rm -f "$OUT"/testpmd.json "$OUT"/l3fwd.json "$OUT"/l3fwd6.json "$OUT"/backbone-*.json
tag="bp$$"
# shellcheck disable=SC2046 # eal_args is word-split on purpose
run testpmd "$tag-testpmd" dpdk-testpmd $(eal_args "$tag-testpmd" gre) -- \
  --forward-mode=io --nb-cores="$WORKERS" --rxq="$WORKERS" --txq="$WORKERS" \
  --total-num-mbufs=32768 --stats-period=1000

l3cfg=""
for ((q = 0; q < WORKERS; q++)); do l3cfg+="(0,$q,$((q + 1))),(1,$q,$((q + 1))),"; done
# shellcheck disable=SC2046
run l3fwd "$tag-l3fwd" "$L3FWD" $(eal_args "$tag-l3fwd" plain) -- \
  -p 0x3 --config="${l3cfg%,}" --lookup=lpm --parse-ptype \
  --rule_ipv4="$OUT/l3fwd-v4.cfg" --rule_ipv6="$OUT/l3fwd-v6.cfg"

# On 2 MiB pages backbone runs as its systemd unit starts it: malloc on transparent huge pages.
backbone_env=()
[ "$PAGES" = huge ] && backbone_env=(env GLIBC_TUNABLES=glibc.malloc.hugetlb=1)

# backbone-gre-busy: the same as backbone-gre with [workers] poll = "busy" (the default,
# adaptive polling, must not cost Mpps at full load).
for run_name in gre gre-busy ipip gre6; do
  kind=${run_name%-busy}
  # shellcheck disable=SC2046
  run "backbone-$run_name" "$tag-backbone-$run_name" "${backbone_env[@]}" "$BACKBONE" run \
    --config "$OUT/backbone-$run_name.toml" --stats "$OUT/backbone-$run_name-stats.json" \
    --no-control-socket -- $(eal_args "$tag-backbone-$run_name" "$kind")
done

# IPv6: l3fwd's LPM on plain IPv6 (rte_lpm6), against backbone-gre6 above.
# shellcheck disable=SC2046
run l3fwd6 "$tag-l3fwd6" "$L3FWD" $(eal_args "$tag-l3fwd6" plain6) -- \
  -p 0x3 --config="${l3cfg%,}" --lookup=lpm --parse-ptype --ipv6 \
  --rule_ipv4="$OUT/l3fwd-v4.cfg" --rule_ipv6="$OUT/l3fwd-v6.cfg"

# The workers' clock (perf has no cycle counter in most VMs): cycles per packet = worker
# CPU time x clock / packets.
mhz=$(awk -F: '/^cpu MHz/ {print $2; exit}' /proc/cpuinfo)
ghz=$(awk -v m="${mhz:-0}" 'BEGIN {printf "%.3f", m / 1000}')
BENCH_CPU=$CPU BENCH_PAGES=$PAGES $PY "$HELPER" report "$OUT" "$ghz" "$WORKERS" | tee "$OUT/report.txt"
say "logs, counters and captures in $OUT"
verified=()
for n in backbone-gre backbone-gre-busy backbone-ipip backbone-gre6; do
  if [ -z "${BENCH_ONLY:-}" ] || [[ " $BENCH_ONLY " == *" $n "* ]]; then verified+=("$n"); fi
done
BENCH_PAGES=$PAGES $PY "$HELPER" verify "$OUT" "${verified[@]}"
