#!/usr/bin/env bash
# What logs and traces cost. The same WebSocket load (bench/src/loadgen.rs:
# 4 connections, 16 executions in flight each, simple-text) against three
# servers, in rounds that interleave them so drift hits all alike:
#   base  a baseline nano-server binary (--baseline, e.g. a build from before
#         OpenTelemetry existed), traces off;
#   off   this build, traces off (no OTEL_* variable): must cost nothing;
#   otlp  this build exporting a span per execution over OTLP/HTTP
#         (http/protobuf) to a collector that accepts everything (a Python
#         sink on this machine).
# Each in both isolation modes. Reports executions/s and the server's CPU per
# execution (server and workers, from /proc), medians over the rounds, and
# the ratios off/base and otlp/off.
# Usage (from the repository root):
#   bash bench/telemetry.sh --baseline <nano-server binary> [rounds=5] [seconds=8]
# Writes bench/results/telemetry.txt. Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"

[[ "${1:-}" == --baseline && -x "${2:-}" ]] || {
    echo "usage: bash bench/telemetry.sh --baseline <nano-server binary> [rounds] [seconds]" >&2
    exit 2
}
baseline_bin="$(realpath "$2")"
rounds="${3:-5}"
seconds="${4:-8}"

cargo build --release -p nano-server -p nano-bench --bins
cargo build --release -p simple_text_node -p complex_math_node -p progress_node

tmp="$(mktemp -d)"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
log() { printf '%s\n' "$*" >&2; }

cp "$baseline_bin" "$tmp/nano-server-base"
cp "$target/release/nano-server" "$tmp/nano-server"
cp "$target/release/loadgen" "$tmp/loadgen"
mkdir -p "$tmp/nodes/processing/simple_text_node" "$tmp/nodes/processing/complex_math_node" "$tmp/nodes/utility/progress_node"
cp "$target/release/libsimple_text_node.so" "$tmp/nodes/processing/simple_text_node/"
cp "$target/release/libcomplex_math_node.so" "$tmp/nodes/processing/complex_math_node/"
cp "$target/release/libprogress_node.so" "$tmp/nodes/utility/progress_node/"

# The sink collector: 200 to every POST, counting the bytes it got.
cat >"$tmp/sink.py" <<'PY'
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
print(server.server_address[1], flush=True)
server.serve_forever()
PY
python3 "$tmp/sink.py" >"$tmp/sink.port" &
pids+=($!)
for _ in $(seq 1 100); do [[ -s "$tmp/sink.port" ]] && break; sleep 0.1; done
sink="http://127.0.0.1:$(cat "$tmp/sink.port")"

# shellcheck source=bench/stamp.sh
source bench/stamp.sh

# One measurement: variant, isolation -> "executions/s cpu_us"
measure() {
    local variant="$1" mode="$2" bin="$tmp/nano-server" out="$tmp/server.out" pid line i
    [[ "$variant" == base ]] && bin="$tmp/nano-server-base"
    cat >"$tmp/config.toml" <<EOF
server_uid = "bench"
port = 0
nodes_path = "$tmp/nodes"
auto_watch = false
isolation = "$mode"
EOF
    rm -f "$out"
    if [[ "$variant" == otlp ]]; then
        OTEL_EXPORTER_OTLP_ENDPOINT="$sink" OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf RUST_LOG=warn \
            "$bin" --config "$tmp/config.toml" </dev/null >"$out" 2>"$tmp/server.err" &
    else
        env -u OTEL_EXPORTER_OTLP_ENDPOINT -u OTEL_EXPORTER_OTLP_TRACES_ENDPOINT RUST_LOG=warn \
            "$bin" --config "$tmp/config.toml" </dev/null >"$out" 2>"$tmp/server.err" &
    fi
    pid=$!
    for ((i = 0; i < 600; i++)); do
        grep -q '^\[NANOSERVER_READY\]' "$out" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || { log "server ($variant, $mode) exited: $(cat "$tmp/server.err")"; exit 1; }
        sleep 0.1
    done
    local url
    url="$(grep -o 'http://[^ ]*' "$out" | head -n1)"
    url="ws://${url#http://}"
    line="$("$tmp/loadgen" ws "${url%/}/" --seconds "$seconds" --warmup 2 --pid "$pid")"
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    # "N executions/s, ..., server CPU X µs/execution..."
    local rate cpu errors
    rate="$(sed -E 's/^([0-9.]+) executions\/s.*/\1/' <<<"$line")"
    cpu="$(sed -E 's/.*server CPU ([0-9.]+) µs\/execution.*/\1/' <<<"$line")"
    errors="$(sed -E 's/.* ([0-9]+) errors.*/\1/' <<<"$line")"
    [[ "$errors" == 0 ]] || { log "$variant $mode: $line"; exit 1; }
    echo "$rate $cpu"
}

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

report="$tmp/report.txt"
say() { printf '%s\n' "$*" | tee -a "$report"; }
say "$(commit_stamp)"
say "baseline: $baseline_bin"
say "machine: $(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)); loadgen, the server (and its workers) and, for otlp, the sink collector share them; load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
say "load: loadgen ws, 4 connections x 16 in flight, simple-text, ${seconds} s after a 2 s warm-up; $rounds rounds, variants interleaved (base, off, otlp) in each; medians"
say "caveats: a 2-core VM shared by the client and the server; CPU per execution (server + workers, from /proc) is steadier than executions/s"
for mode in in-process process; do
    declare -A rates=() cpus=()
    for ((round = 1; round <= rounds; round++)); do
        for variant in base off otlp; do
            read -r rate cpu < <(measure "$variant" "$mode")
            rates[$variant]+="$rate "
            cpus[$variant]+="$cpu "
            log "$mode round $round $variant: $rate/s, $cpu µs/execution"
        done
    done
    say ""
    say "== isolation: $mode"
    for variant in base off otlp; do
        # shellcheck disable=SC2086
        say "$variant: $(median ${rates[$variant]}) executions/s, $(median ${cpus[$variant]}) µs CPU/execution (rounds: ${rates[$variant]}/s; ${cpus[$variant]}µs)"
    done
    # shellcheck disable=SC2086
    {
        say "off/base: throughput $(ratio "$(median ${rates[off]})" "$(median ${rates[base]})"), CPU $(ratio "$(median ${cpus[off]})" "$(median ${cpus[base]})")"
        say "otlp/off: throughput $(ratio "$(median ${rates[otlp]})" "$(median ${rates[off]})"), CPU $(ratio "$(median ${cpus[otlp]})" "$(median ${cpus[off]})")"
    }
    unset rates cpus
done
cp "$report" bench/results/telemetry.txt
log "written to bench/results/telemetry.txt"
