#!/usr/bin/env bash
# Sets up the machine, builds backbone in release mode and runs it on the built-in demo.
# (Until the appliance issue lands, the demo is a smoke run of the DPDK layer.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -p dataplane --bin backbone
exec target/release/backbone smoke --bursts 100000
