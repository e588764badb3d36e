#!/usr/bin/env bash
# The model benchmark, every peer in one run on one machine: a random-weight Llama of
# 0.55 B parameters (make_model.py; made once into $MODEL_DIR, never committed), then
# bench_model (cafex, tp 1 and 2; one OpenBLAS thread per rank) and peers.py (HF
# transformers and llama.cpp on the same weights, 1 and 2 threads), each in its own
# process, each loading its weights from the page cache. Results: bench/results/models-<date>.json and a table on stdout.
# Needs: scripts/build, and tests/hf/setup.sh then bench/models/setup.sh (the venv).
# Usage: bench/models/run.sh [decode steps (32)]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
py="$root/tests/hf/.venv/bin/python"
model="${MODEL_DIR:-/tmp/cafex-bench-model}"
steps="${1:-32}"
if [ ! -x "$py" ]; then
  echo "error: no tests/hf/.venv; run tests/hf/setup.sh and bench/models/setup.sh" >&2
  exit 2
fi
if [ ! -x "$root/build/bench/bench_model" ]; then
  echo "error: build/bench/bench_model is missing; run scripts/build" >&2
  exit 2
fi
"$py" "$root/bench/models/make_model.py" --out "$model"
out="$root/bench/results/models-$(date -u +%Y-%m-%d).json"
mkdir -p "$(dirname "$out")"
: >"$out.tmp"
run() { # label, command...
  echo "== $1" >&2
  # Every peer loads from the page cache: read its files right before it runs (this VM's
  # kernel reclaims cold page cache on its own).
  cat "$model/hf/model.safetensors" "$model/model-f32.gguf" >/dev/null
  "${@:2}" | tail -1 | "$py" -c "import json,sys; d=json.load(sys.stdin); d['label']='$1'; print(json.dumps(d))" >>"$out.tmp"
}
export OPENBLAS_NUM_THREADS=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error
common=(--decode-steps "$steps")
# A discarded run first: on a VM whose host reclaims the guest's free memory (this one's
# does), the first process to touch a few GiB again pays the host's page faults (seen: a
# 5-7 s start-up, then 1.2 s), which would land on whichever peer runs first.
echo "== warm-up (discarded)" >&2
"$root/build/bench/bench_model" --model "$model/hf" --tp 1 --decode-steps 1 --prompt-len 4 --batches 1 >/dev/null
run "cafex tp=1" "$root/build/bench/bench_model" --model "$model/hf" --tp 1 "${common[@]}"
run "cafex tp=2" "$root/build/bench/bench_model" --model "$model/hf" --tp 2 "${common[@]}"
for t in 1 2; do
  run "transformers ${t}t" "$py" "$root/bench/models/peers.py" --peer transformers --model "$model" --threads "$t" "${common[@]}"
  run "llama.cpp ${t}t" "$py" "$root/bench/models/peers.py" --peer llamacpp --model "$model" --threads "$t" "${common[@]}"
done
"$py" - "$out.tmp" "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
json.dump(rows, open(sys.argv[2], "w"), indent=1)
print(f"{'peer':<18}{'load s':>8}{'peak RSS MiB/rank':>19}{'prefill tok/s':>15}{'decode b1':>11}{'decode b8':>11}")
for r in rows:
    if "ranks" in r:
        load, rss = r["start_s"], max(x["peak_rss_mib"] for x in r["ranks"])
    else:
        load, rss = r["load_s"], r["peak_rss_mib"]
    d = r["decode"]
    print(f"{r['label']:<18}{load:>8.2f}{rss:>19.0f}{r['prefill_tokens_per_s']:>15.1f}"
          f"{d['1']['tokens_per_s']:>11.2f}{d['8']['tokens_per_s']:>11.2f}")
PY
rm -f "$out.tmp"
echo "results: $out" >&2
