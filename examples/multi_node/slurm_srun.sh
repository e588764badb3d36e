#!/usr/bin/env bash
# Slurm recipe: one node agent per allocated node, the driver on the first node.
#
#   salloc -N 3 --gpus-per-node=8 examples/multi_node/slurm_srun.sh --tp 8 --pp 3
#
# The token lives on a shared file system readable only by you; agents listen on each
# node's address (never 0.0.0.0) and are stopped when the job step ends.
set -euo pipefail
CAFEX=${CAFEX:-cafex}
PORT=${CAFEX_PORT:-7100}
TOKEN=${CAFEX_TOKEN_FILE:-$HOME/.cafex/token}
mkdir -p "$(dirname "$TOKEN")"; [ -s "$TOKEN" ] || (umask 077; openssl rand -hex 32 >"$TOKEN")

# One agent per node, in the background for the whole allocation.
srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c \
  "exec $CAFEX node --listen \$(hostname -I | awk '{print \$1}'):$PORT --token-file $TOKEN --devices \${SLURM_GPUS_ON_NODE:-1}" &
agents=$!
trap 'kill $agents 2>/dev/null; wait $agents 2>/dev/null' EXIT

nodes=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | while read -r h; do
  getent ahostsv4 "$h" | awk -v p="$PORT" 'NR==1{print $1":"p}'; done | paste -sd,)
# The driver runs on the first node of the allocation (its agent holds bundle 0).
"$CAFEX" run --nodes "$nodes" --token-file "$TOKEN" --connect-timeout 60 "$@"
