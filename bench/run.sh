#!/usr/bin/env bash
# The benchmark suite of issue 5: Causeway side by side with nginx, LiteLLM and Portkey on
# loopback, against mock-provider. Writes bench/RESULTS.md (its own sections only).
#
#   bench/run.sh            full suite (under 15 minutes)
#   bench/run.sh --quick    short runs (under 3 minutes): for development, numbers indicative only
#   bench/run.sh --only causeway,nginx    a subset (RESULTS.md is then left alone)
#   bench/run.sh --no-build ...           use the causeway and mock-provider binaries already
#                                         built (while another build is in progress)
#
# Never part of CI. See bench/README.md for what each number means and the method's limits.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET_DIR="${CAUSEWAY_TARGET_DIR:-$HOME/.cache/causeway-target}"
export CAUSEWAY_TARGET_DIR="$TARGET_DIR"

build=1
args=()
for a in "$@"; do
  if [ "$a" = "--no-build" ]; then build=0; else args+=("$a"); fi
done

bench/setup.sh
if [ "$build" = 1 ]; then
  echo "build: causeway, mock-provider and the WASM hook bench (release; waits if another build holds the target dir)"
  CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --quiet -p causeway -p mock-provider
  CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --quiet -p causeway-plugins --example wasm_hook_bench
else
  for b in causeway mock-provider; do
    [ -x "$TARGET_DIR/release/$b" ] || { echo "--no-build: $TARGET_DIR/release/$b is missing" >&2; exit 1; }
  done
  echo "build: skipped (--no-build), using $TARGET_DIR/release/{causeway,mock-provider}"
fi

# 1,024 streams through a gateway need two sockets each, plus the load client's.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# bench.py starts every server in its own process group, records the group ids in
# bench/.work/pids and stops them itself; on Ctrl-C or SIGTERM this script tells bench.py to stop
# (it then cleans up), and on exit it ends any group still listed, in case bench.py was killed.
pids_file=bench/.work/pids
py=""
cleanup() {
  if [ -n "$py" ] && kill -0 "$py" 2>/dev/null; then
    kill -TERM "$py" 2>/dev/null || true
    wait "$py" 2>/dev/null || true
  fi
  if [ -f "$pids_file" ]; then
    while read -r pid; do
      kill -TERM -- "-$pid" 2>/dev/null || true
    done < "$pids_file"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

python3 bench/bench.py --command "bench/run.sh $*" "${args[@]}" &
py=$!
wait "$py"
