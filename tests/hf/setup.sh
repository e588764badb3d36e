#!/usr/bin/env bash
# Creates tests/hf/.venv (git-ignored) with torch and transformers from PyPI: what
# tests/hf/make_fixtures.py and the `ctest -L hf` checks need. CI never runs this; it checks
# against the fixtures this venv made (tests/hf/fixtures).
# Usage: tests/hf/setup.sh [python]   (default: python3.11, else python3)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${1:-$(command -v python3.11 || command -v python3)}"
if [ ! -x "$here/.venv/bin/python" ]; then
  "$py" -m venv "$here/.venv"
fi
"$here/.venv/bin/python" -m pip install --quiet --upgrade pip
"$here/.venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
"$here/.venv/bin/python" -c 'import torch, transformers, safetensors, numpy, sys; print("torch", torch.__version__, "transformers", transformers.__version__, "safetensors", safetensors.__version__, "numpy", numpy.__version__, "python", sys.version.split()[0])'
