#!/usr/bin/env bash
# PPO with verl 0.9.1 on four nodes: run this same script on every node (node 0 starts Ray and trains,
# the others join). POLICY: the 70B SFT model. Any verl override can follow (docs/verl.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
NNODES="${NNODES:-4}" NODE_RANK="${NODE_RANK:-${RANK:?set NODE_RANK (or RANK) to the rank of this node}}" MASTER_ADDR="${MASTER_ADDR:-node0}" \
  POLICY="${POLICY:?set POLICY to the 70B SFT model}" ROLLOUT_TP="${ROLLOUT_TP:-8}" OFFLOAD="${OFFLOAD:-True}" bash recipes/verl/run_ppo_multinode.sh "$@"
