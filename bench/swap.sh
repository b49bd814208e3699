#!/usr/bin/env bash
# Hot-swap benchmark (bench/src/swap.rs): swap latency over 50 swaps (to the
# definitions_update and to the new version answering) and the RSS of the
# server plus its worker processes over 100 more swaps, per isolation mode.
# Usage (from the repository root):
#   bash bench/swap.sh [debounce_ms=100] [both|in-process|process]   (default: both, one after the other)
# bench/run.sh runs it too (debounce 100 ms, both modes), into bench/results/swap.txt.
# Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p nano-server -p swap_v1 -p swap_v2 -p nano-bench
"$target/release/swap-bench" "$target/release/nano-server" \
    "$target/release/libswap_v1.so" "$target/release/libswap_v2.so" 50 100 "${1:-100}" \
    --isolation "${2:-both}"
