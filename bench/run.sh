#!/usr/bin/env bash
# The benchmark suite, one command from a fresh clone (from the repository
# root): bash bench/run.sh [suite options, e.g. --seconds 10]
# Builds everything in release, creates the Python SDK peer's venv (PyPI),
# runs the criterion ABI micro-benchmark, then the suite, which prints the
# table and writes it to bench/results/suite.txt, then the overload scenario
# (bench/src/overload.rs), written to bench/results/overload.txt, then the
# hot-swap benchmark (bench/src/swap.rs, as bench/swap.sh runs it) in both
# isolation modes, written to bench/results/swap.txt. nano-server runs in
# both modes throughout: --isolation in-process and --isolation process.
#
# --baseline <another nano-server binary> (say, built from an older commit)
# measures that build next to this one, in the suite and in the overload
# scenario. Other options of the overload scenario go in OVERLOAD_ARGS, e.g.
# OVERLOAD_ARGS="--seconds 20 --factor 2" bash bench/run.sh
# Arguments of the swap benchmark go in SWAP_ARGS (default "50 100 100":
# timed swaps, swaps for the RSS, debounce ms; "--isolation process" for
# one mode only).
# Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
# Two commands: `--bins` would skip the plugins' libraries.
cargo build --release -p nano-server -p nano-bench --bins
cargo build --release -p simple_text_node -p complex_math_node -p progress_node -p swap_v1 -p swap_v2
bash bench/peer/setup.sh
cargo bench -p nano-bench --bench abi -- --noplot
"$target/release/suite" --server "$target/release/nano-server" --floor "$target/release/floor" \
    --libs "$target/release" --criterion "$target/criterion" --peer bench/peer/run.sh "$@" \
    | tee bench/results/suite.txt

# The suite's --baseline applies to the overload scenario too.
baseline=()
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        --baseline) baseline=(--baseline "${args[i + 1]-}") ;;
        --baseline=*) baseline=("${args[i]}") ;;
    esac
done
read -ra overload_args <<< "${OVERLOAD_ARGS:-}"
"$target/release/overload" --server "$target/release/nano-server" --libs "$target/release" \
    --peer bench/peer/run.sh "${baseline[@]}" "${overload_args[@]}" \
    | tee bench/results/overload.txt

read -ra swap_args <<< "${SWAP_ARGS:-50 100 100}"
"$target/release/swap-bench" "$target/release/nano-server" \
    "$target/release/libswap_v1.so" "$target/release/libswap_v2.so" "${swap_args[@]}" \
    | tee bench/results/swap.txt
