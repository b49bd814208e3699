#!/usr/bin/env bash
# Runs the benchmark peer (nanograph-sdk) in the foreground: run.sh [port]
# Port: the argument, else env PORT, else 3117. Prints [NANOSERVER_READY] on
# stdout once listening; logs go to stderr. Run setup.sh first.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="$HERE/.venv/bin/python"
if [ ! -x "$PY" ]; then
    echo "run.sh: $HERE/.venv is missing; run $HERE/setup.sh first" >&2
    exit 1
fi
export PORT="${1:-${PORT:-3117}}"
exec "$PY" "$HERE/main.py"
