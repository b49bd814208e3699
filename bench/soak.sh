#!/usr/bin/env bash
# Soak test: N seconds (default 600) of mixed load with hot swaps, malformed
# frames, stops and clients leaving mid-execution; fails if any accepted
# execution of a client that stayed did not get exactly one right final status.
# Usage: bench/soak.sh [seconds]   (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p nano-server -p nano-bench -p simple_text_node -p progress_node -p test_plugin -p swap_v1 -p swap_v2
./target/release/soak ./target/release/nano-server "${1:-600}" ./target/release
