#!/usr/bin/env bash
# Runs the pure code's tests under Miri (undefined behaviour, data races, memory leaks): the
# dataplane crate without DPDK (`--no-default-features`: wire, tables and the snapshot
# publisher, pipeline stages, control logic) and pipeline-config. TESTPLAN C3.
#
#   scripts/miri.sh           the default set: 18 minutes on 2 busy cores (not in CI)
#   scripts/miri.sh --all     also the LPM's own tests and the slow ones (hours)
#
# What does not run, and why:
# - the DPDK layer (dataplane/src/dpdk/, ffi/): foreign calls into DPDK, which Miri cannot
#   execute; every test that starts EAL;
# - the LPM's tests and every test that builds a snapshot (lpm::ipv4, tables::snapshot,
#   pipeline::terminate), unless --all: every table is 256 blocks of 256 slots and every builder
#   65,536 rule lists, so each such test takes 5 to 15 minutes under Miri (hours in all). None of
#   that code is unsafe; pipeline::encap and the wire tests cover the per-packet code;
# - control::server: Miri does not implement socket timeouts (SO_RCVTIMEO), which those tests set;
# - the two pacer tests over 100,000 next hops, and pipeline-config's abuse test (thousands of
#   whole-document parses): scale, not new code paths (--all runs them);
# - dataplane's integration tests (they start EAL or scapy).
#
# Isolation is off: proptest reads the working directory for its regression files, and
# pipeline-config's tests read the example configurations. Property tests run 8 cases each
# (PROPTEST_CASES) instead of their usual hundreds.
set -euo pipefail
cd "$(dirname "$0")/.."
all=false
[[ "${1:-}" == "--all" ]] && all=true

if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^miri'; then
  rustup toolchain install nightly --profile minimal --component miri,rust-src
fi
cargo +nightly miri setup
export MIRIFLAGS="-Zmiri-disable-isolation ${MIRIFLAGS:-}"
export PROPTEST_CASES="${PROPTEST_CASES:-8}"

skip=()
if ! $all; then
  skip=(--skip lpm::ipv4 --skip tables::snapshot --skip pipeline::terminate
        --skip control::pacer::tests::a_hundred_thousand
        --skip control::pacer::tests::resolved_next_hops_are_never_asked_for)
fi
echo "== miri: dataplane (no DPDK), library tests"
cargo +nightly miri test -p dataplane --no-default-features --lib --locked -- \
  --skip control::server "${skip[@]}"

echo "== miri: pipeline-config"
if $all; then
  cargo +nightly miri test -p pipeline-config --locked
else
  cargo +nightly miri test -p pipeline-config --locked --lib --test validation --test examples
fi
