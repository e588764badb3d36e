#!/usr/bin/env bash
# Runs cafex across three "hosts" on this machine (network namespaces, needs root), or
# across real hosts given on the command line.
#
#   examples/multi_node/run_namespaces.sh [--tp 2] [--pp 1]            # namespaces
#   examples/multi_node/run_namespaces.sh --hosts user@h1,user@h2 ...   # real hosts (ssh)
#
# Each host runs `cafex node` with a shared token; the driver runs on the first host,
# beside its agent (the driver's node must hold a bundle). Everything started here is
# stopped on exit, also on Ctrl-C.
set -euo pipefail

CAFEX=${CAFEX:-$(cd "$(dirname "$0")/../.." && pwd)/build/bin/cafex}
TP=2 PP=1 HOSTS="" PORT=7100 DEVICES=2 STRATEGY=spread
while [ $# -gt 0 ]; do
  case "$1" in
    --tp) TP=$2; shift 2 ;;
    --pp) PP=$2; shift 2 ;;
    --hosts) HOSTS=$2; shift 2 ;;
    --devices) DEVICES=$2; shift 2 ;;
    --strategy) STRATEGY=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "error: unknown argument '$1'; see --help" >&2; exit 2 ;;
  esac
done
[ -x "$CAFEX" ] || { echo "error: $CAFEX is not built; run cmake --build build first (or set CAFEX)" >&2; exit 2; }

work=$(mktemp -d /tmp/cafex-multi-XXXXXX)
token=$work/token
openssl rand -hex 32 > "$token"; chmod 600 "$token"
prefix="cfxex$$"
pids=()
namespaces=()

cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  for ns in "${namespaces[@]:-}"; do [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

wait_for_line() {  # file, deadline in seconds
  for _ in $(seq 1 $(( $2 * 10 ))); do grep -q listening "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "error: node agent did not start; see ${1%.out}.err" >&2; return 1
}

if [ -z "$HOSTS" ]; then
  [ "$(id -u)" -eq 0 ] || { echo "error: namespaces need root; run with sudo or pass --hosts" >&2; exit 2; }
  sw=${prefix}sw; ip netns add "$sw"; namespaces+=("$sw")
  ip -n "$sw" link add br0 type bridge; ip -n "$sw" link set br0 up
  nodes=""
  for i in 1 2 3; do
    ns=${prefix}h$i; ip netns add "$ns"; namespaces+=("$ns")
    ip -n "$sw" link add p$i type veth peer name eth0 netns "$ns"
    ip -n "$sw" link set p$i master br0 up
    ip -n "$ns" addr add 10.213.1.$i/24 dev eth0
    ip -n "$ns" link set eth0 up; ip -n "$ns" link set lo up
    ip netns exec "$ns" "$CAFEX" node --listen 10.213.1.$i:$PORT --devices "$DEVICES" \
      --token-file "$token" >"$work/agent$i.out" 2>"$work/agent$i.err" &
    pids+=($!)
    wait_for_line "$work/agent$i.out" 10
    nodes+="${nodes:+,}10.213.1.$i:$PORT"
  done
  ip netns exec ${prefix}h1 "$CAFEX" run --nodes "$nodes" --token-file "$token" \
    --tp "$TP" --pp "$PP" --strategy "$STRATEGY" --report-workers
else
  # Real hosts: cafex must be installed at the same path on each; the token is copied.
  IFS=, read -ra hosts <<<"$HOSTS"
  nodes=""
  for h in "${hosts[@]}"; do
    ip=$(ssh "$h" hostname -I | awk '{print $1}')
    scp -q "$token" "$h:$token"
    ssh "$h" "$CAFEX" node --listen "$ip:$PORT" --devices "$DEVICES" --token-file "$token" \
      >"$work/$h.out" 2>"$work/$h.err" &
    pids+=($!)
    wait_for_line "$work/$h.out" 20
    nodes+="${nodes:+,}$ip:$PORT"
  done
  ssh "${hosts[0]}" "$CAFEX" run --nodes "$nodes" --token-file "$token" --tp "$TP" --pp "$PP" --strategy "$STRATEGY" \
    --report-workers
  for h in "${hosts[@]}"; do ssh "$h" rm -f "$token"; done
fi
