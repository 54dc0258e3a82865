#!/usr/bin/env bash
# Model-checks the snapshot publication protocol (dataplane/src/tables/publish.rs) with loom:
# one publisher and two readers over two publications, every interleaving within
# LOOM_MAX_PREEMPTIONS (default 3). TESTPLAN C1.
#
# Builds into target/loom (its own RUSTFLAGS would otherwise rebuild target/debug).
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg loom ${RUSTFLAGS:-}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/loom"
# Optimised (the model runs many times faster) without the release profile's fat LTO.
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
exec cargo test -p dataplane --no-default-features --lib --release --locked \
  tables::publish::loom_model -- --test-threads=1 "$@"
