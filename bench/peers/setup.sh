#!/usr/bin/env bash
# Creates bench/peers/.venv (git-ignored) and installs the pinned peers: Ray
# (requirements.txt) and vLLM's MessageQueue (requirements-vllm.txt, then vllm itself
# with --no-deps: only its shm_broadcast module is used, see mq_peer.py).
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
"$here/.venv/bin/python" -m pip install --quiet -r "$here/requirements-vllm.txt"
"$here/.venv/bin/python" -m pip install --quiet --no-deps vllm==0.34.0
"$here/.venv/bin/python" -c 'import vllm, torch, zmq; from vllm.distributed.device_communicators.shm_broadcast import MessageQueue; print("vllm", vllm.__version__, "torch", torch.__version__, "pyzmq", zmq.__version__)'
