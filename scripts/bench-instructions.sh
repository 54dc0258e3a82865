#!/usr/bin/env bash
# Instructions per forwarded packet, side by side: dpdk-testpmd (io forwarding: the I/O
# alone), dpdk-l3fwd (LPM on plain IPv4) and backbone (GRE -> GRE, IPIP -> GRE), each run
# under valgrind's callgrind on bench-pipeline.sh's devices, captures and configurations.
# Instruction counts are exact and repeat from run to run: where bench-pipeline.sh's Mpps
# move by a percent or two between runs, this shows a change of a few instructions per
# packet, and where they go (the source files and lines backbone spends them in). The count
# covers every thread of the program over the window; the worker's functions make 99% of it
# or more.
#
#   scripts/bench-instructions.sh [SECONDS]   (default 10: seconds of forwarding counted
#                                              per program, at callgrind's speed)
#   scripts/bench-instructions.sh --smoke     (CI: 2 seconds each, the debug build; fails
#                                              unless every program forwarded and counted)
#   scripts/bench-instructions.sh --cycles [SECONDS | --smoke]
#                                             (where the cycles go instead: see below)
#
# Each program starts under callgrind with instrumentation off (tables load at near native
# speed); once its sink port transmits, instrumentation goes on for SECONDS, then the counts
# are dumped. Packets are counted in the same dump: the calls into the sink's PMD (one per
# freed mbuf), checked against the source's (32 per burst). The programs, EAL arguments,
# captures and routes are bench-pipeline.sh's (20,000 routes of the real table: what a
# lookup executes does not depend on the table's size, what it waits for does, and that
# is bench-pipeline.sh's to measure). 64-byte inner payloads; PAYLOAD as bench-pipeline.sh
# takes it is the environment variable BENCH_PAYLOAD here.
#
# --cycles: the same split and the same tables in cycles per packet, measured at full speed:
# each program runs natively on bench-pipeline.sh's full route table (the table's size is
# what the lookups wait for), and once it forwards, perf samples its worker thread
# (cpu-clock, BENCH_PERF_FREQ per second, default 1,000) for SECONDS (default 10). Cycles per
# packet are the worker's CPU time times the clock over the packets, as bench-pipeline.sh
# computes them, counted over SECONDS before the sampling (each sample is a timer interrupt,
# in a VM an exit to the host, after which tables that span thousands of pages find the TLB
# cold: sampling slows l3fwd's 64 MiB rte_lpm most; the report shows both), and each
# sample weighs its share of them;
# a sample in backbone is placed at its source line by addr2line (inlined code where it is
# written, as callgrind does). Where instructions say what the code does, cycles say what
# it waits for: a line that loads a table entry another core's cache or memory holds costs
# more cycles than its instructions. Sampling places a stall at the instruction that waits
# or the one after it. --smoke: 1 second each, 20,000 routes, the debug build.
#
# Needs valgrind (installed here if missing) or, for --cycles, perf (scripts/setup.sh
# installs linux-perf), and what bench-pipeline.sh needs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CYCLES=0
if [ "${1:-}" = "--cycles" ]; then
  CYCLES=1
  shift
fi
SMOKE=0
if [ "${1:-}" = "--smoke" ]; then
  SMOKE=1
  set -- $((2 - CYCLES))
fi
SECONDS_COUNTED=${1:-10}
OUT=$ROOT/out/bench-instructions
# Routes: 20,000 of the real table for instructions (what a lookup executes does not
# depend on the table's size), the whole table for cycles (but in smoke mode).
ROUTES=20000
if [ $CYCLES = 1 ]; then
  OUT=$ROOT/out/bench-cycles
  [ $SMOKE = 1 ] || ROUTES=
fi
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PY=/usr/bin/python3
HELPER=$ROOT/scripts/bench-pipeline.py
say() { printf 'bench-instructions: %s\n' "$*"; }
die() { say "$*"; exit 1; }
[[ $SECONDS_COUNTED =~ ^[0-9]+([.][0-9]+)?$ ]] || die "SECONDS must be a number"

if [ $CYCLES = 1 ]; then
  command -v perf >/dev/null && command -v addr2line >/dev/null ||
    die "perf and addr2line are needed: run scripts/setup.sh (it installs linux-perf)"
elif ! command -v valgrind >/dev/null || ! command -v callgrind_control >/dev/null; then
  say "installing valgrind"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi

if [ $SMOKE = 1 ]; then
  BACKBONE=${BACKBONE:-$TARGET/debug/backbone}
  [ -x "$BACKBONE" ] || (cd "$ROOT" && cargo build --locked -q -p dataplane --bin backbone)
else
  if [ -z "${BACKBONE:-}" ]; then
    say "building backbone (release)"
    (cd "$ROOT" && cargo build --release --locked -q -p dataplane --bin backbone)
    BACKBONE=$TARGET/release/backbone
  fi
fi
[ -x "$BACKBONE" ] || die "$BACKBONE missing"

# l3fwd, the captures and the configurations, as bench-pipeline.sh makes them.
mkdir -p "$OUT"
BENCH_OUT=$OUT BENCH_ROUTES=$ROUTES BENCH_PAGES=4k BENCH_PREPARE_ONLY=1 BENCH_ONLY="l3fwd backbone-gre" \
  BACKBONE=$BACKBONE "$ROOT/scripts/bench-pipeline.sh" 1 1 "${BENCH_PAYLOAD:-64}" >"$OUT.prepare.log" 2>&1 ||
  { tail -20 "$OUT.prepare.log"; die "bench-pipeline.sh could not prepare the inputs"; }
L3FWD=$OUT/l3fwd-build/l3fwd/build/l3fwd-shared
[ -x "$L3FWD" ] || die "l3fwd was not built ($L3FWD)"
rm -f "$OUT"/callgrind-* "$OUT"/perf-*

eal() { # PREFIX CAPTURE
  echo "-l 0-1 --no-huge --no-pci --no-shconf -m 1536 --file-prefix=$1 --log-level=lib.eal:error"
  echo "--vdev=net_pcap0,rx_pcap=$OUT/$2-0.pcap,tx_pcap=/dev/null,tx_pcap=/dev/null,infinite_rx=1"
  echo "--vdev=net_null0,no-rx=1"
}
count() { # NAME PREFIX COMMAND...
  local name=$1 prefix=$2
  shift 2
  say "counting $name"
  if [ $CYCLES = 1 ]; then
    $PY "$HELPER" perf "$name" "$prefix" "$SECONDS_COUNTED" "$OUT" "${BENCH_PERF_FREQ:-1000}" -- "$@"
  else
    $PY "$HELPER" callgrind "$name" "$prefix" "$SECONDS_COUNTED" "$OUT" -- "$@"
  fi
  rm -rf "/var/run/dpdk/$prefix" 2>/dev/null || true
}

tag="bi$$"
# shellcheck disable=SC2046 # eal is word-split on purpose
# (--stats-period: without it testpmd waits for a key, and stdin is not a terminal here.)
count testpmd "$tag-testpmd" dpdk-testpmd $(eal "$tag-testpmd" gre) -- \
  --forward-mode=io --nb-cores=1 --rxq=1 --txq=1 --total-num-mbufs=32768 --stats-period=1000
# shellcheck disable=SC2046
count l3fwd "$tag-l3fwd" "$L3FWD" $(eal "$tag-l3fwd" plain) -- \
  -p 0x3 --config="(0,0,1),(1,0,1)" --lookup=lpm --parse-ptype \
  --rule_ipv4="$OUT/l3fwd-v4.cfg" --rule_ipv6="$OUT/l3fwd-v6.cfg"
for kind in gre ipip; do
  # shellcheck disable=SC2046
  count "backbone-$kind" "$tag-backbone-$kind" "$BACKBONE" run \
    --config "$OUT/backbone-$kind.toml" --no-control-socket -- $(eal "$tag-backbone-$kind" "$kind")
done

$PY - "$OUT" "$BACKBONE" "$ROOT" "$HELPER" "$CYCLES" "$L3FWD" <<'EOF'
import collections, importlib.util, json, shutil, sys
out, binary = sys.argv[1], sys.argv[2]
root, helper = sys.argv[3], sys.argv[4]
cycles = sys.argv[5] == "1"
unit = "cycles" if cycles else "instructions"
binaries = {"testpmd": shutil.which("dpdk-testpmd"), "l3fwd": sys.argv[6],
            "backbone-gre": binary, "backbone-ipip": binary}
# bench-pipeline.py reads callgrind's dumps and perf's samples (it runs the programs).
spec = importlib.util.spec_from_file_location("bench_pipeline", helper)
bench_pipeline = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_pipeline)
if cycles:
    with open("/proc/cpuinfo") as f:
        mhz = next(float(l.split(":")[1]) for l in f if l.startswith("cpu MHz"))
    r, costs, sampled = {}, {}, {}
    for n in binaries:
        m = json.load(open(f"{out}/perf-{n}.json"))
        lines, objects = bench_pipeline.perf_lines(m["data"], binaries[n], 1)
        samples = sum(lines.values()) + sum(objects.values())
        total = m["worker_cpu_s"] * mhz * 1e6
        sampled[n] = m["sampled"]["worker_cpu_s"] * mhz * 1e6 / max(m["sampled"]["packets"], 1)
        if not m["packets"] or not samples or not total:
            raise SystemExit(f"{n}: nothing measured ({m['packets']} packets, {samples} "
                             f"samples, {m['worker_cpu_s']} worker CPU s)")
        if n.startswith("backbone") and not lines:
            raise SystemExit(f"{n}: no sample of {binary} was placed at a source line")
        w = total / samples
        costs[n] = ({k: v * w for k, v in lines.items()}, {k: v * w for k, v in objects.items()})
        r[n] = {"packets": m["packets"], "per_packet": total / m["packets"]}
else:
    r = {n: json.load(open(f"{out}/callgrind-{n}.json")) for n in binaries}
io = r["testpmd"]["per_packet"]
own_l3 = r["l3fwd"]["per_packet"] - io
how = f"perf cpu-clock samples, CPU {mhz / 1000:.3f} GHz" if cycles else "valgrind callgrind"
print(f"\n=== {unit} per packet ({how}); {binary} ===")
if cycles:
    print("cycles per packet unsampled, and while sampled: " +
          ", ".join(f"{n} {r[n]['per_packet']:.0f} / {sampled[n]:.0f}" for n in r))
print(f"{'':28} {'per packet':>11} {'over testpmd io':>16} {'/ l3fwd':>8}")
for name, label in (("testpmd", "dpdk-testpmd io"), ("l3fwd", "dpdk-l3fwd LPM"),
                    ("backbone-gre", "backbone GRE -> GRE"),
                    ("backbone-ipip", "backbone IPIP -> GRE")):
    pp = r[name]["per_packet"]
    if name == "testpmd":
        print(f"{label:28} {pp:11.1f} {'-':>16} {'-':>8}")
        continue
    own = pp - io
    print(f"{label:28} {pp:11.1f} {own:16.1f} {own / own_l3 if own_l3 > 0 else 0:8.1f}")
print("over testpmd io: the program's own work, testpmd's I/O on the same devices taken away "
      "(testpmd receives\nthe GRE frames, as backbone GRE -> GRE does; IPIP frames are 8 "
      "bytes shorter and l3fwd's plain ones 28,\nand net_pcap copies a shorter frame in a "
      f"few fewer {unit});\n/ l3fwd: that, against l3fwd's own work.")
NO_LINES = "(no line information) "


def short(f):
    """A source file as the report names it: ours from the repository's root, Rust's
    library from library/, the rest as they are."""
    if f.startswith(root + "/"):
        return f[len(root) + 1:]
    if "/library/" in f:
        return "rust: " + f.split("/library/", 1)[1]
    return f


def split(cost):
    """Instructions (or cycles) by whose code ran them: DPDK's libraries and drivers, the C
    library (the drivers' thread-local lookups; with perf, the kernel's few samples too), and
    the program's own code (everything else: for testpmd and l3fwd, built without line
    information, their own binary)."""
    lines, objects = cost
    dpdk = sum(v for o, v in objects.items() if o.startswith("librte_"))
    libc = sum(v for o, v in objects.items()
               if o.startswith(("libc.so", "ld-linux", "libm.so", "[")))
    libc += sum(v for (f, _), v in lines.items() if f.startswith("./") or "/sysdeps/" in f)
    return dpdk, libc, sum(lines.values()) + sum(objects.values()) - dpdk - libc


if not cycles:
    costs = {}
    for name in r:
        costs[name] = bench_pipeline.callgrind_lines(r[name]["dump"])
        total = sum(costs[name][0].values()) + sum(costs[name][1].values())
        # The parse must account for the dump's every instruction (its "summary:" line).
        if abs(total - r[name]["instructions"]) > r[name]["instructions"] * 0.001:
            raise SystemExit(f"{name}: the lines add up to {total} instructions, the dump "
                             f"says {r[name]['instructions']}: {r[name]['dump']} was not "
                             f"read right")
print("\nper packet, by whose code ran them (the same drivers in each program: net_pcap "
      f"copies each frame in,\nso it costs a few {unit} less for shorter frames):")
print(f"{'':28} {'DPDK libs':>10} {'C library':>10} {'own code':>9} {'/ l3fwd own':>12}")
l3_own = split(costs["l3fwd"])[2] / r["l3fwd"]["packets"]
for name, label in (("testpmd", "dpdk-testpmd io"), ("l3fwd", "dpdk-l3fwd LPM"),
                    ("backbone-gre", "backbone GRE -> GRE"),
                    ("backbone-ipip", "backbone IPIP -> GRE")):
    d, c, o = (x / r[name]["packets"] for x in split(costs[name]))
    ratio = f"{o / l3_own:12.1f}" if l3_own > 0 else f"{'-':>12}"
    print(f"{label:28} {d:10.1f} {c:10.1f} {o:9.1f} {ratio}")

for name in ("backbone-gre", "backbone-ipip"):
    m = r[name]
    lines, objects = costs[name]
    files = collections.Counter({NO_LINES + o: v for o, v in objects.items()})
    for (f, _), v in lines.items():
        files[short(f)] += v
    print(f"\n{name}: where the {unit} go, per packet, by the source file they are "
          f"written in (inlined code counted where it is written)")
    for f, v in files.most_common(16):
        print(f"  {v / m['packets']:8.1f}  {f}")
    print(f"{name}: the costliest source lines (per packet)")
    by_line = collections.Counter()
    for (f, n), v in lines.items():
        if n:
            by_line[f"{short(f)}:{n}"] += v
    for where, v in by_line.most_common(12):
        print(f"  {v / m['packets']:8.1f}  {where}")
EOF
say "dumps and logs in $OUT"
