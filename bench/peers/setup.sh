#!/usr/bin/env bash
# Creates bench/peers/.venv (git-ignored) and installs the pinned Ray peer requirements.
# Usage: bench/peers/setup.sh [python]   (default: python3.11, else python3)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${1:-$(command -v python3.11 || command -v python3)}"
if [ ! -x "$here/.venv/bin/python" ]; then
  "$py" -m venv "$here/.venv"
fi
"$here/.venv/bin/python" -m pip install --quiet --upgrade pip
"$here/.venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
"$here/.venv/bin/python" -c 'import ray, numpy, psutil, matplotlib, sys; print("ray", ray.__version__, "numpy", numpy.__version__, "psutil", psutil.__version__, "matplotlib", matplotlib.__version__, "python", sys.version.split()[0])'
