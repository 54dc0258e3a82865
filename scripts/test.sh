#!/usr/bin/env bash
# Sets up the machine and runs every check CI runs: format, lints, the whole test suite,
# a compile of the benches, and every benchmark in its short smoke mode.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export RUST_BACKTRACE=1
# Each step prints the seconds since the start, so a slow CI run shows which step grew.
step() { echo "== $* (at ${SECONDS} s)"; }
step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo test"
cargo test --workspace --locked
step "loom: the snapshot publication protocol (TESTPLAN C1)"
scripts/loom.sh
step "fuzz: the seeds and regressions replayed, then each target 10 s from them (scripts/fuzz.sh runs longer)"
cargo fmt --manifest-path fuzz/Cargo.toml --check
cargo test --manifest-path fuzz/Cargo.toml --locked
scripts/fuzz.sh --smoke 10
step "benches compile"
cargo bench --workspace --locked --no-run
# The benchmarks in smoke mode: each must measure something (the figures are not checked).
step "bench smoke: lpm6_vs_dpdk"
cargo bench -p backbone-benches --locked --bench lpm6_vs_dpdk -- --smoke
step "bench smoke: lpm_vs_dpdk"
LPM_BENCH_SMOKE=1 cargo bench -p backbone-benches --locked --bench lpm_vs_dpdk
# criterion's own benches, each benchmark run once (`--test`): they must still run.
step "bench smoke: criterion parse, lpm, pipeline (--test)"
cargo bench -p backbone-benches --locked --bench parse --bench lpm --bench pipeline -- --test
step "bench smoke: bench-pipeline.sh"
BACKBONE=target/debug/backbone scripts/bench-pipeline.sh --smoke
step "bench smoke: bench-instructions.sh (callgrind)"
BACKBONE=target/debug/backbone scripts/bench-instructions.sh --smoke
step "bench smoke: bench-instructions.sh --cycles (perf)"
BACKBONE=target/debug/backbone scripts/bench-instructions.sh --cycles --smoke
step "bench smoke: bench-exception.py"
scripts/bench-exception.py target/debug/backbone --smoke
step "bench smoke: criterion updates"
cargo bench -p backbone-benches --locked --bench updates -- --smoke
step "bench smoke: bench-updates.sh"
SKIP_SETUP=1 scripts/bench-updates.sh --smoke
step "bench smoke: bench-policy.py"
scripts/bench-policy.py --binary target/debug/backbone-policy --smoke
step "all passed"
