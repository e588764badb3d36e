#!/usr/bin/env bash
# Issues 8 and 19 in one run: the Ray peer, vLLM's MessageQueue peer and cafex's peer
# benchmark back to back on this machine, then the side-by-side table, the goals and the
# plots.
#   bench/peers/side_by_side.sh [OUT_DIR] [extra ray_peer.py flags...]
# Needs bench/peers/setup.sh (once) and a build (scripts/build). OUT_DIR defaults to
# bench/peers/results/<UTC date-time>; it gets ray.json, mq.json, cafex.json, table.md,
# load.txt. CAFEX_PEERS_SKIP_MQ=1 leaves the MessageQueue peer out.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
py="$root/bench/peers/.venv/bin/python"
peer="$root/build/bench/bench_cafex_peer"
[ -x "$py" ] || { echo "error: no Ray venv; run bench/peers/setup.sh first" >&2; exit 2; }
[ -x "$peer" ] || { echo "error: $peer is missing; run scripts/build first" >&2; exit 2; }
out="${1:-$root/bench/peers/results/$(date -u +%Y%m%dT%H%M%SZ)}"
shift || true
mkdir -p "$out"
{ date -u; nproc; uptime; } > "$out/load.txt"
echo "== Ray peer ($(date -u +%T))"
"$py" "$root/bench/peers/ray_peer.py" --out "$out/ray.json" "$@"
uptime >> "$out/load.txt"
mq_flag=()
if [ "${CAFEX_PEERS_SKIP_MQ:-0}" != 1 ]; then
  echo "== vLLM MessageQueue peer ($(date -u +%T))"
  "$py" "$root/bench/peers/mq_peer.py" --out "$out/mq.json" 2>&1 | grep -v '^W[0-9]\{4\} '
  mq_flag=(--mq "$out/mq.json")
  uptime >> "$out/load.txt"
fi
echo "== cafex peer ($(date -u +%T))"
OPENBLAS_NUM_THREADS=1 "$peer" --out "$out/cafex.json"
uptime >> "$out/load.txt"
echo "== comparison"
set +e
"$py" "$root/bench/peers/compare.py" "$out/ray.json" "$out/cafex.json" "${mq_flag[@]}" \
  --plots "$root/docs/bench" \
  > "$out/table.md"
rc=$?
set -e
cat "$out/table.md"
echo "(compare.py exit $rc: 0 = every goal with data met)"
