#!/usr/bin/env bash
# Python SDK nodes: the same node.py files (bench/peer, the SDK's own
# project) served by nanograph-sdk 0.2.3 and by nano-server, interleaved,
# same machine, same load generator (WebSocket, 4 connections x 16 in flight,
# `simple-text`), both workloads: reused instance ids (one per connection)
# and fresh ones (a new instanceId per execution, where the SDK keeps a
# logger per id). Prints one loadgen line per run and the median ratios.
#   bash bench/python.sh [rounds] [seconds]
# Needs: target/release/{nano-server,loadgen} (cargo build --release -p
# nano-server -p nano-bench --bins) and bench/peer/.venv (bench/peer/setup.sh).
# nano-server runs the nodes with the peer venv's interpreter (python3 first
# on PATH), so both servers import the real nanograph_sdk package.
# PY_WORKERS (default 1) sets nano-server's [python] workers, where supported;
# NANO_BIN picks another nano-server binary.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/stamp.sh
target="${CARGO_TARGET_DIR:-target}"
rounds=${1:-5} seconds=${2:-10}
bash bench/peer/setup.sh
venv="$(pwd)/bench/peer/.venv"
bin="$(realpath "${NANO_BIN:-$target/release/nano-server}")"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_ready() {
    local log=$1
    for _ in $(seq 600); do grep -q NANOSERVER_READY "$log" && return 0; sleep 0.05; done
    cat "$log" >&2
    echo "server never became ready" >&2
    return 1
}

load() {
    local port=$1 pid=$2 workload=$3 extra=()
    if [[ "$workload" == fresh ]]; then extra=(--fresh-instances); fi
    "$target/release/loadgen" ws "ws://127.0.0.1:$port/" --seconds "$seconds" --pid "$pid" "${extra[@]}"
}

sdk() {
    local workload=$1 port log pid
    port="$(free_port)"
    log="$(mktemp)"
    NANOSDK_LOG_LEVEL=warn PORT="$port" "$venv/bin/python" bench/peer/main.py > "$log" 2>&1 &
    pid=$!
    wait_ready "$log"
    echo "sdk         $workload $(load "$port" "$pid" "$workload")"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    rm -f "$log"
}

nano() {
    local workload=$1 dir port log pid
    dir="$(mktemp -d)"
    cp -r bench/peer/nanoserver.json bench/peer/compat.py bench/peer/nodes "$dir/"
    if [[ -n "${PY_WORKERS:-}" ]]; then
        python3 - "$dir/nanoserver.json" "$PY_WORKERS" <<'PY'
import json, sys
path, workers = sys.argv[1], int(sys.argv[2])
doc = json.load(open(path))
doc.setdefault("python", {})["workers"] = workers
json.dump(doc, open(path, "w"))
PY
    fi
    chmod -R go-w "$dir"
    port="$(free_port)"
    log="$dir/log"
    (cd "$dir" && PATH="$venv/bin:$PATH" PORT="$port" RUST_LOG=warn \
        exec "$bin" --config nanoserver.json) > "$log" 2>&1 &
    pid=$!
    wait_ready "$log"
    echo "nano-server $workload $(load "$port" "$pid" "$workload")"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
}

commit_stamp
echo "machine: $(nproc) cores; $rounds rounds of $seconds s; python: $("$venv/bin/python" --version)"
for round in $(seq "$rounds"); do
    echo "round $round"
    for workload in reused fresh; do
        # Alternate which server runs first, as bench/ab.sh does.
        if ((round % 2)); then sdk "$workload"; nano "$workload"; else nano "$workload"; sdk "$workload"; fi
    done
done
