#!/usr/bin/env bash
# Two builds side by side, in both isolation modes, interleaved:
#   bash bench/ab.sh <nano-server A> <nano-server B> [rounds] [seconds]
# Each round runs A in-process, A process, B in-process, B process, each a
# fresh server serving simple-text under the load generator, and prints the
# loadgen line. TRANSPORTS (default "ws") lists the load shapes per server:
# ws is the suite's WebSocket shape (4 connections x 16 in flight), http its
# HTTP shape (64 connections x 1); TRANSPORTS="ws http" runs both.
# ISOLATIONS (default "in-process process") lists the modes. Odd rounds run
# A first, even rounds B first: the server that runs second in a pair was
# seen to cost up to 10% more CPU per execution on this 2-core machine, so
# a fixed order biases the ratio. Set
# MAX_CONCURRENT (default: the built-in default) to change the server's
# max_concurrent_executions. Needs target/release/{loadgen,libsimple_text_node.so}
# (bash bench/run.sh builds them; CARGO_TARGET_DIR is honoured).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/stamp.sh
target="${CARGO_TARGET_DIR:-target}"
a=$1 b=$2 rounds=${3:-4} seconds=${4:-5}

one() {
    local bin=$1 isolation=$2 transport=$3 dir port pid
    dir="$(mktemp -d)"
    mkdir -p "$dir/nodes/processing/simple_text_node"
    cp "$target/release/libsimple_text_node.so" "$dir/nodes/processing/simple_text_node/"
    chmod -R go-w "$dir"
    {
        echo 'server_uid = "ab"'
        echo 'port = 0'
        echo "nodes_path = \"$dir/nodes\""
        echo 'auto_watch = false'
        echo "isolation = \"$isolation\""
        if [[ -n "${MAX_CONCURRENT:-}" ]]; then echo "max_concurrent_executions = $MAX_CONCURRENT"; fi
    } > "$dir/config.toml"
    "$bin" --config "$dir/config.toml" > "$dir/log" 2>&1 &
    pid=$!
    for _ in $(seq 200); do grep -q NANOSERVER_READY "$dir/log" && break; sleep 0.05; done
    port="$(grep -o 'local=127.0.0.1:[0-9]*' "$dir/log" | head -1 | cut -d: -f2)"
    if [[ "$transport" == http ]]; then
        "$target/release/loadgen" http "http://127.0.0.1:$port" --connections 64 --in-flight 1 --seconds "$seconds" --pid "$pid"
    else
        "$target/release/loadgen" ws "ws://127.0.0.1:$port/" --seconds "$seconds" --pid "$pid"
    fi
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
}

commit_stamp
echo "A: $a"
echo "B: $b"
transports=${TRANSPORTS:-ws}
echo "max_concurrent_executions: ${MAX_CONCURRENT:-built-in default}; $rounds rounds of $seconds s; transports: $transports"
for round in $(seq "$rounds"); do
    echo "round $round"
    order=("$a" "$b")
    if ((round % 2 == 0)); then order=("$b" "$a"); fi
    for transport in $transports; do
        for isolation in ${ISOLATIONS:-in-process process}; do
            for bin in "${order[@]}"; do
                label=A; [[ "$bin" == "$b" ]] && label=B
                printf '%s %-10s %-4s ' "$label" "$isolation" "$transport"
                one "$bin" "$isolation" "$transport"
            done
        done
    done
done
