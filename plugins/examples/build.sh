#!/usr/bin/env bash
# Rebuilds the example plugin modules (<name>/<name>.wasm) from their AssemblyScript sources with
# the pinned compiler from package-lock.json. Commit the .wasm files: the Rust test suite loads
# them and does not need npm.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x node_modules/.bin/asc ]; then
  npm ci --no-audit --no-fund
fi
npm run build
ls -l ./*/*.wasm
