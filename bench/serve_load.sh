#!/usr/bin/env bash
# Starts cafex-serve on a free loopback port (flags from $SERVE_FLAGS, default "--tp 2":
# the reference model; e.g. SERVE_FLAGS="--model /tmp/cafex-bench-model --tp 1" for a
# checkpoint), runs bench_serve_load (default: 1, 8, 32 and 128 clients), stops the
# service with SIGTERM.
#   bench/serve_load.sh [build dir] [extra bench_serve_load flags...]
set -euo pipefail
build=${1:-build}
shift || true
out=$(mktemp)
# shellcheck disable=SC2086 # SERVE_FLAGS is a list of flags
OPENBLAS_NUM_THREADS=1 "$build/bin/cafex-serve" --listen 127.0.0.1:0 --log-level warn \
  --max-batch 128 ${SERVE_FLAGS:---tp 2} >"$out" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -f "$out"' EXIT
for i in $(seq 1 1200); do
  port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$out")
  [ -n "$port" ] && break
  kill -0 $pid 2>/dev/null || { cat "$out" >&2; echo "cafex-serve exited during start-up" >&2; exit 1; }
  [ $((i % 50)) -eq 0 ] && echo "waiting for cafex-serve ($((i / 10)) s)" >&2
  sleep 0.1
done
[ -n "${port:-}" ] || { echo "cafex-serve did not start within 120 s" >&2; exit 1; }
OPENBLAS_NUM_THREADS=1 "$build/bench/bench_serve_load" --port "$port" --concurrency 1,8,32,128 "$@"
