#!/usr/bin/env bash
# ctest's hf.live: runs check_live.py in tests/hf/.venv when tests/hf/setup.sh made it,
# else exits 77 (ctest reports the test as skipped, and says how to enable it).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ ! -x "$here/.venv/bin/python" ]; then
  echo "skipped: no tests/hf/.venv; run tests/hf/setup.sh (torch and transformers from PyPI) to check against transformers live"
  exit 77
fi
exec env OPENBLAS_NUM_THREADS=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error "$here/.venv/bin/python" "$here/check_live.py" --cafex "${CAFEX_BIN:?CAFEX_BIN names the cafex binary}" "$@"
