#!/usr/bin/env bash
# Sets up the machine and runs every check CI runs: format, lints, the whole test suite,
# and a compile of the benches.
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
echo "== fuzz smoke (fuzz/: each target 10 s from its seeds and regressions; scripts/fuzz.sh runs longer)"
cargo fmt --manifest-path fuzz/Cargo.toml --check
scripts/fuzz.sh --smoke 10
echo "== benches compile"
cargo bench --workspace --locked --no-run
