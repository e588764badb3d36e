#!/usr/bin/env bash
# ctest's serve.openai_client and serve.schemathesis: cafex-serve (reference model, tp=1,
# an API key) on 127.0.0.1, checked by the official OpenAI Python client
# (check_openai.py) or by schemathesis against its /openapi.json. The venv
# (tests/serve/.venv, from requirements.txt on PyPI) is made on first use, under a lock;
# without PyPI it exits 77 (ctest: skipped) and says so.
#   tests/serve/run.sh openai|schemathesis     (CAFEX_SERVE names the binary)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
what="${1:?usage: run.sh openai|schemathesis}"
serve="${CAFEX_SERVE:?CAFEX_SERVE names the cafex-serve binary}"
venv="$here/.venv"

(
  flock -w 600 9 || { echo "error: waited 10 min for another run making $venv" >&2; exit 1; }
  if [ ! -x "$venv/bin/st" ] || [ ! -f "$venv/.complete" ] \
     || ! cmp -s "$here/requirements.txt" "$venv/.complete"; then
    echo "making $venv (openai, schemathesis from PyPI) ..."
    rm -rf "$venv"
    python3 -m venv "$venv"
    if ! timeout 600 "$venv/bin/pip" install -q --disable-pip-version-check \
         -r "$here/requirements.txt"; then
      rm -rf "$venv"
      echo "skipped: could not install tests/serve/requirements.txt from PyPI"
      exit 77
    fi
    cp "$here/requirements.txt" "$venv/.complete"
  fi
) 9>"$here/.venv.lock"

log=$(mktemp)
key="test-key-$$"
"$serve" --listen 127.0.0.1:0 --tp 1 --log-level warn --api-key "$key" \
  --served-model-name cafex-test --max-tokens-limit 16 --max-queued 64 >"$log" 2>&1 &
pid=$!
cleanup() {
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT
port=""
for i in $(seq 600); do
  port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "error: cafex-serve exited" >&2; exit 1; }
  [ $((i % 50)) -eq 0 ] && echo "waiting for cafex-serve to listen ($((i / 10)) s)"
  sleep 0.1
done
[ -n "$port" ] || { cat "$log" >&2; echo "error: cafex-serve did not listen in 60 s" >&2; exit 1; }

status=0
case "$what" in
  openai)
    "$venv/bin/python" "$here/check_openai.py" --port "$port" --api-key "$key" \
      --model cafex-test || status=$?
    ;;
  schemathesis)
    # Every operation of /openapi.json, valid and invalid inputs, every check: no 5xx;
    # statuses, content types, headers and bodies as documented; invalid data refused;
    # 405 with Allow; the key enforced. (positive_data_acceptance is left out: cross-field
    # rules such as prompt + max_tokens <= the length limit, min_tokens <= max_tokens or
    # best_of == n have no OpenAPI form, and their 400s are right.)
    "$venv/bin/st" run "http://127.0.0.1:$port/openapi.json" \
      --header "Authorization: Bearer $key" \
      --checks all --exclude-checks positive_data_acceptance \
      --max-examples 200 --request-timeout 30 --seed 1 --no-color || status=$?
    ;;
  *) echo "usage: run.sh openai|schemathesis" >&2; exit 2 ;;
esac
if ! kill -0 "$pid" 2>/dev/null; then
  cat "$log" >&2
  echo "error: cafex-serve died during the run" >&2
  exit 1
fi
exit "$status"
