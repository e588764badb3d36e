#!/usr/bin/env bash
# Adds the model benchmark's peers (llama.cpp through llama-cpp-python, the gguf writer)
# to tests/hf/.venv, which tests/hf/setup.sh makes with torch and transformers.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
[ -x "$root/tests/hf/.venv/bin/python" ] || "$root/tests/hf/setup.sh"
MAKEFLAGS="-j$(nproc)" "$root/tests/hf/.venv/bin/python" -m pip install --quiet -r "$root/bench/models/requirements.txt"
"$root/tests/hf/.venv/bin/python" -c 'import llama_cpp, gguf; print("llama-cpp-python", llama_cpp.__version__)'
