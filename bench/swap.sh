#!/usr/bin/env bash
# Hot-swap benchmark: swap latency (50 swaps) and RSS growth (100 swaps).
# Usage: bench/swap.sh [debounce_ms]   (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p nano-server -p swap_v1 -p swap_v2 -p nano-bench
./target/release/swap-bench ./target/release/nano-server \
    ./target/release/libswap_v1.so ./target/release/libswap_v2.so 50 100 "${1:-100}"
