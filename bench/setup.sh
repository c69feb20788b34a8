#!/usr/bin/env bash
# Installs what bench/run.sh needs, idempotently (each step is skipped when already done):
#   Debian packages nginx and valgrind; LiteLLM (pinned, with its Python dependencies pinned by
#   litellm-constraints.txt) into bench/.venv; Portkey gateway (pinned by portkey/package.json
#   and package-lock.json) into bench/portkey/node_modules; and builds the load client.
# Causeway and mock-provider themselves are built by run.sh (they share the workspace target dir).
set -euo pipefail
cd "$(dirname "$0")"

LITELLM_VERSION=1.100.5
BENCH_TARGET_DIR="${CAUSEWAY_BENCH_TARGET_DIR:-$HOME/.cache/causeway-bench-target}"

missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v valgrind >/dev/null || missing+=(valgrind)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('litellm') != '$LITELLM_VERSION')" 2>/dev/null; then
  echo "setup: LiteLLM $LITELLM_VERSION into bench/.venv (a few minutes, once)"
  python3 -m venv .venv
  .venv/bin/pip install -q -c litellm-constraints.txt "litellm[proxy]==$LITELLM_VERSION"
fi

if [ ! -f portkey/node_modules/@portkey-ai/gateway/build/start-server.js ] \
   || [ portkey/package-lock.json -nt portkey/node_modules/.package-lock.json ]; then
  echo "setup: Portkey gateway into bench/portkey (npm ci)"
  (cd portkey && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "setup: building the load client (bench/loadgen)"
CARGO_TARGET_DIR="$BENCH_TARGET_DIR" cargo build --release --quiet --manifest-path loadgen/Cargo.toml
