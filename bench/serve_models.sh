#!/usr/bin/env bash
# The serving benchmark, in one run on one machine: cafex-serve on the reference model
# (tp 2) and on a random-weight Llama checkpoint (bench/models/make_random_checkpoint.py,
# 55 M parameters, made once into $SERVE_MODEL_DIR; numpy from PyPI into bench/.venv-serve),
# tp 1 and tp 2; for each, bench_serve_load at 1, 8, 32 and 128 clients, streaming
# (TTFT and TPOT as vLLM's benchmark_serving measures them) and not. Results on stdout
# and in bench/results/serve-<date>.md.
# With LARGE=1, also the 0.55 B shape of bench/models/make_model.py (random weights of
# the same shape, into $SERVE_LARGE_MODEL_DIR; 2.2 GB) at tp 1 and 2, 128 requests a level.
# Needs: scripts/build.   Usage: [LARGE=1] bench/serve_models.sh [requests per level (256)]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
requests="${1:-256}"
model="${SERVE_MODEL_DIR:-/tmp/cafex-serve-model}"
venv="$root/bench/.venv-serve"
[ -x "$root/build/bench/bench_serve_load" ] || { echo "error: run scripts/build first" >&2; exit 2; }
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check numpy
fi
"$venv/bin/python" "$root/bench/models/make_random_checkpoint.py" --out "$model"
large="${SERVE_LARGE_MODEL_DIR:-/tmp/cafex-serve-model-0.5b}"
setups=("reference tp=2|--tp 2|$requests" "llama-55M tp=1|--model $model --tp 1|$requests"
        "llama-55M tp=2|--model $model --tp 2|$requests")
if [ "${LARGE:-0}" = 1 ]; then
  "$venv/bin/python" "$root/bench/models/make_random_checkpoint.py" --out "$large" \
    --hidden 1280 --layers 20 --heads 20 --kv-heads 4 --intermediate 5120 --vocab 32000
  setups+=("llama-0.55B tp=1|--model $large --tp 1|128" "llama-0.55B tp=2|--model $large --tp 2|128")
fi
suffix=""
[ "${LARGE:-0}" = 1 ] && suffix="-large"
out="$root/bench/results/serve-$(date -u +%Y-%m-%d)$suffix.md"
mkdir -p "$(dirname "$out")"
{
  echo "# cafex-serve load, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
  for setup in "${setups[@]}"; do
    IFS='|' read -r label flags n <<<"$setup"
    for mode in "" "--stream"; do
      echo
      echo "## $label, max_tokens 16${mode:+, streaming}"
      echo
      SERVE_FLAGS="$flags" "$root/bench/serve_load.sh" "$root/build" --requests "$n" \
        --max-tokens 16 $mode
    done
  done
} | tee "$out"
