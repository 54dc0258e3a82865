#!/usr/bin/env bash
# Sets up the machine and runs every check CI runs: format, lints, the whole test suite,
# a compile of the benches, and every benchmark in its short smoke mode.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export RUST_BACKTRACE=1
echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
echo "== loom: the snapshot publication protocol (TESTPLAN C1)"
scripts/loom.sh
echo "== fuzz: the seeds and regressions replayed, then each target 10 s from them (scripts/fuzz.sh runs longer)"
cargo fmt --manifest-path fuzz/Cargo.toml --check
cargo test --manifest-path fuzz/Cargo.toml --locked
scripts/fuzz.sh --smoke 10
echo "== benches compile"
cargo bench --workspace --locked --no-run
echo "== benchmarks in smoke mode: each must measure something (the figures are not checked)"
cargo bench -p backbone-benches --locked --bench lpm6_vs_dpdk -- --smoke
LPM_BENCH_SMOKE=1 cargo bench -p backbone-benches --locked --bench lpm_vs_dpdk
# criterion's own benches, each benchmark run once (`--test`): they must still run.
cargo bench -p backbone-benches --locked --bench parse --bench lpm --bench pipeline -- --test
BACKBONE=target/debug/backbone scripts/bench-pipeline.sh --smoke
BACKBONE=target/debug/backbone scripts/bench-instructions.sh --smoke
BACKBONE=target/debug/backbone scripts/bench-instructions.sh --cycles --smoke
scripts/bench-exception.py target/debug/backbone --smoke
cargo bench -p backbone-benches --locked --bench updates -- --smoke
SKIP_SETUP=1 scripts/bench-updates.sh --smoke
scripts/bench-policy.py --binary target/debug/backbone-policy --smoke
