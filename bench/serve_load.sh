#!/usr/bin/env bash
# Starts cafex-serve (tp=2, embedded cluster) on a free loopback port, runs
# bench_serve_load for 1, 8 and 32 clients, stops the service with SIGTERM.
#   bench/serve_load.sh [build dir] [extra bench_serve_load flags...]
set -euo pipefail
build=${1:-build}
shift || true
out=$(mktemp)
OPENBLAS_NUM_THREADS=1 "$build/bin/cafex-serve" --listen 127.0.0.1:0 --tp 2 --log-level warn >"$out" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 1 600); do
  port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$out")
  [ -n "$port" ] && break
  kill -0 $pid 2>/dev/null || { echo "cafex-serve exited during start-up" >&2; exit 1; }
  sleep 0.1
done
[ -n "${port:-}" ] || { echo "cafex-serve did not start within 60 s" >&2; exit 1; }
OPENBLAS_NUM_THREADS=1 "$build/bench/bench_serve_load" --port "$port" "$@"
