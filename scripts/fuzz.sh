#!/usr/bin/env bash
# Runs each fuzz target (fuzz/, cargo-fuzz, libFuzzer, release build with debug assertions,
# so integer overflow panics too) for a bounded time, one after the other.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     SECONDS per target (default 60); all targets
#                                             unless some are named
#   FUZZ_SANITIZER=address scripts/fuzz.sh    with AddressSanitizer (default: none)
#   scripts/fuzz.sh --smoke [SECONDS [TARGET...]]
#                                             what CI runs (scripts/test.sh): a debug build
#                                             with plain cargo on the stable toolchain (the
#                                             instrumentation flags cargo-fuzz passes, no
#                                             cargo-fuzz, no nightly features), then SECONDS
#                                             (default 10) per target (all unless some are
#                                             named) from the seeds and the regressions,
#                                             into a throwaway corpus
#
# No sanitizer by default: the code under test is safe Rust (dataplane without its DPDK
# layer has no unsafe code at all), where ASan finds nothing that a panic does not, and
# costs a factor of ten in executions (pipeline_packet: 8,000/s without, 800/s with).
#
# Each target starts from its committed seeds (fuzz/seeds/<target>, written by
# scripts/fuzz-seeds.py) and the corpus earlier runs grew (fuzz/corpus/<target>, not
# committed). Logs go to out/fuzz/<target>.log, a summary (time, executions, coverage,
# corpus, crashes) to out/fuzz/summary.txt and stdout. A crash stops that target: libFuzzer
# writes the input to fuzz/artifacts/<target>/; minimise it (cargo fuzz tmin), fix the bug,
# and commit the input under fuzz/regressions/<target>/ so `cargo test` in fuzz/ replays it.
# Exits non-zero if any target failed.
#
# cargo-fuzz needs nightly features: RUSTC_BOOTSTRAP=1 unlocks them on the stable toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
all=(wire_headers pipeline_packet pipeline_burst pipeline_fast pipeline_outer6 config_parse control_request fpm_frames)

if [ "${1:-}" = "--smoke" ]; then
  seconds=${2:-10}
  shift $(($# < 2 ? $# : 2))
  targets=("$@")
  [ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
  host=$(rustc -vV | sed -n 's/^host: //p')
  # cargo-fuzz's instrumentation (libFuzzer's coverage feedback). --target keeps these
  # flags off build scripts and proc macros.
  export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares"
  cargo build --manifest-path fuzz/Cargo.toml --locked --bins --target "$host" \
    --target-dir fuzz/target/smoke
  corpus=$(mktemp -d)
  trap 'rm -rf "$corpus"' EXIT
  for t in "${targets[@]}"; do
    dirs=("fuzz/seeds/$t")
    if [ -d "fuzz/regressions/$t" ]; then dirs+=("fuzz/regressions/$t"); fi
    mkdir -p "$corpus/$t"
    log="$corpus/$t.log"
    if ! "fuzz/target/smoke/$host/debug/$t" -max_total_time="$seconds" -timeout=30 \
        -rss_limit_mb=2048 -artifact_prefix="$corpus/" "$corpus/$t" "${dirs[@]}" \
        >"$log" 2>&1; then
      cat "$log"
      echo "fuzz smoke: $t failed; the input is in $corpus (kept)" >&2
      trap - EXIT
      exit 1
    fi
    grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | sed "s/^/$t: /" || true
  done
  exit 0
fi

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
# -O: release; -a: debug assertions (overflow checks) on.
build_flags=(-O -a -s "${FUZZ_SANITIZER:-none}")
echo "== building the fuzz targets"
(cd fuzz && cargo fuzz build "${build_flags[@]}")

mkdir -p out/fuzz
summary=out/fuzz/summary.txt
printf '%-16s %8s %12s %8s %8s %8s  %s\n' target seconds executions cov ft corpus result \
  | tee "$summary"
failed=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  log="out/fuzz/$t.log"
  rc=0
  # An input is a hang after 10 s (inputs take microseconds; a busy shared machine has
  # stalled a run for 2 s); with ASan the quarantine needs more than 512 MB of RSS.
  (cd fuzz && cargo fuzz run "${build_flags[@]}" "$t" "corpus/$t" "seeds/$t" -- \
     -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1) \
     >"$log" 2>&1 || rc=$?
  # The final stats, or failing them (a log cut short) the last status line.
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  time_s=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  result=ok
  if [ "$rc" -ne 0 ]; then
    result="FAILED (rc $rc: a crash, hang or build error; see $log and fuzz/artifacts/$t/)"
    failed=1
  fi
  printf '%-16s %8s %12s %8s %8s %8s  %s\n' "$t" "${time_s:-?}" "${execs:-?}" "${cov:-?}" \
    "${ft:-?}" "$corpus" "$result" | tee -a "$summary"
done
exit "$failed"
