#!/bin/sh
# Runs every *.json scenario in a folder with `cafex chaos` and prints a summary.
# usage: run_all.sh [FOLDER] [CAFEX]   (defaults: this folder, build/bin/cafex)
# Exit code: 0 when every scenario passed, 1 when any failed, 2 for bad usage or when a
# scenario file is invalid.
dir=${1:-$(dirname "$0")}
cafex=${2:-${CAFEX:-build/bin/cafex}}
if [ ! -d "$dir" ]; then
  echo "error: $dir is not a folder; usage: run_all.sh [FOLDER] [CAFEX]" >&2
  exit 2
fi
if [ ! -x "$cafex" ]; then
  echo "error: $cafex is not an executable; build it (cmake --build build --target cafex_cli)" \
       "or pass its path: run_all.sh FOLDER PATH/TO/cafex" >&2
  exit 2
fi
pass=0; fail=0; bad=0; failed=""
for f in "$dir"/*.json; do
  [ -e "$f" ] || { echo "error: no *.json in $dir" >&2; exit 2; }
  start=$(date +%s%N)
  out=$("$cafex" chaos "$f" 2>&1); rc=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  case $rc in
    0) pass=$((pass + 1)); echo "PASS  ${ms} ms  $f" ;;
    2) bad=$((bad + 1)); failed="$failed $f"; echo "BAD   ${ms} ms  $f"; echo "$out" | sed 's/^/      /' ;;
    *) fail=$((fail + 1)); failed="$failed $f"; echo "FAIL  ${ms} ms  $f"; echo "$out" | sed 's/^/      /' ;;
  esac
done
echo "summary: $pass passed, $fail failed, $bad invalid"
[ $bad -gt 0 ] && exit 2
[ $fail -gt 0 ] && exit 1
exit 0
