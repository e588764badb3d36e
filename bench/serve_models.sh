#!/usr/bin/env bash
# The serving benchmark, in one run on one machine: cafex-serve on the reference model
# (tp 2) and on a random-weight Llama checkpoint (bench/models/make_random_checkpoint.py,
# 55 M parameters, made once into $SERVE_MODEL_DIR; numpy from PyPI into bench/.venv-serve),
# tp 1 and tp 2; for each, bench_serve_load at 1, 8, 32 and 128 clients, streaming
# (TTFT and TPOT as vLLM's benchmark_serving measures them) and not. Results on stdout
# and in bench/results/serve-<date>.md.
# Needs: scripts/build.   Usage: bench/serve_models.sh [requests per level (256)]
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
out="$root/bench/results/serve-$(date -u +%Y-%m-%d).md"
mkdir -p "$(dirname "$out")"
{
  echo "# cafex-serve load, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
  for setup in "reference tp=2|--tp 2" "llama-55M tp=1|--model $model --tp 1" \
               "llama-55M tp=2|--model $model --tp 2"; do
    label=${setup%%|*}
    flags=${setup#*|}
    for mode in "" "--stream"; do
      echo
      echo "## $label, max_tokens 16${mode:+, streaming}"
      echo
      SERVE_FLAGS="$flags" "$root/bench/serve_load.sh" "$root/build" --requests "$requests" \
        --max-tokens 16 $mode
    done
  done
} | tee "$out"
