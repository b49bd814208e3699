#!/usr/bin/env bash
# Creates bench/peer/.venv with the pinned Python SDK (the benchmark peer).
# Idempotent: does nothing when the venv already has the pinned version.
set -euo pipefail

SDK_VERSION=0.2.3
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
PY="$VENV/bin/python"

installed() {
    [ -x "$PY" ] && "$PY" - "$SDK_VERSION" <<'PYEOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
sys.exit(0 if version("nanograph-sdk") == sys.argv[1] else 1)
PYEOF
}

if installed; then
    exit 0
fi

if [ ! -x "$PY" ]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
fi
"$PY" -m pip install --quiet --disable-pip-version-check "nanograph-sdk==$SDK_VERSION"

if ! installed; then
    echo "setup.sh: nanograph-sdk==$SDK_VERSION is not importable from $VENV" >&2
    exit 1
fi
