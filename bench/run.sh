#!/usr/bin/env bash
# The benchmark suite, one command from a fresh clone (from the repository
# root): bash bench/run.sh [suite options, e.g. --seconds 10]
# Builds everything in release, creates the Python SDK peer's venv (PyPI),
# runs the criterion ABI micro-benchmark, then the suite, which prints the
# table and writes it to bench/results/suite.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p nano-server -p nano-bench --bins \
    -p simple_text_node -p complex_math_node -p progress_node
bash bench/peer/setup.sh
cargo bench -p nano-bench --bench abi -- --noplot
./target/release/suite --server target/release/nano-server --floor target/release/floor \
    --libs target/release --peer bench/peer/run.sh "$@" | tee bench/results/suite.txt
