#!/usr/bin/env bash
# End-to-end check: the official `openai` and `anthropic` Python SDKs through Causeway against
# mock-provider. Creates/reuses e2e/.venv, builds the binaries only if they are missing, runs
# e2e/sdk_check.py with pytest and exits non-zero on any failure. Extra args go to pytest
# (e.g. `./e2e/run.sh -k anthropic -x`).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/causeway-target}"
export CAUSEWAY_BIN="${CAUSEWAY_BIN:-$TARGET_DIR/debug/causeway}"
export MOCK_PROVIDER_BIN="${MOCK_PROVIDER_BIN:-$TARGET_DIR/debug/mock-provider}"
PYTHON="${PYTHON:-python3}"
VENV="$HERE/.venv"
export PIP_DISABLE_PIP_VERSION_CHECK=1
started=$(date +%s)

if [[ ! -x "$CAUSEWAY_BIN" || ! -x "$MOCK_PROVIDER_BIN" ]]; then
    echo "building causeway and mock-provider (debug, $TARGET_DIR)..."
    if ! (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build -q -p causeway -p mock-provider); then
        echo "error: cargo build failed" >&2
        exit 1
    fi
    for bin in "$CAUSEWAY_BIN" "$MOCK_PROVIDER_BIN"; do
        if [[ ! -x "$bin" ]]; then
            echo "error: $bin still missing after the build (check CAUSEWAY_BIN / MOCK_PROVIDER_BIN)" >&2
            exit 1
        fi
    done
fi

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "error: $PYTHON is $("$PYTHON" -V 2>&1); the pinned SDKs need Python 3.10+ (set PYTHON=...)" >&2
    exit 1
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "creating venv at $VENV..."
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
        # Debian/Ubuntu without python3-venv: fall back to virtualenv from PyPI.
        rm -rf "$VENV"
        echo "python3 -m venv unavailable; using virtualenv from PyPI..."
        "$PYTHON" -m pip install -q --user virtualenv
        "$PYTHON" -m virtualenv -q "$VENV"
    fi
fi

echo "installing SDKs..."
"$VENV/bin/python" -m pip install -q -r "$HERE/requirements.txt"

echo "running SDK checks ($("$VENV/bin/python" -c 'import openai, anthropic; print(f"openai {openai.__version__}, anthropic {anthropic.__version__}")'))..."
status=0
"$VENV/bin/python" -m pytest -c "$HERE/pytest.ini" --rootdir "$HERE" "$HERE/sdk_check.py" "$@" || status=$?

echo "SDK checks $([[ $status -eq 0 ]] && echo passed || echo FAILED) in $(( $(date +%s) - started ))s"
exit "$status"
