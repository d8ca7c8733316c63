#!/usr/bin/env bash
# PPO on NNODES nodes with verl 0.9.1: run this same script on every node (by hand, pdsh, or one
# SLURM task per node). Node 0 starts the Ray head, waits until all nodes have joined, and launches
# training; the other nodes join the head and stay until it stops.
#
#   NNODES=4 NODE_RANK=<0..3> MASTER_ADDR=<node 0's address> bash recipes/verl/run_ppo_multinode.sh [overrides]
#
# Under SLURM, NODE_RANK and NNODES default to SLURM_NODEID and SLURM_NNODES. Every node needs the
# same verl environment and this repository at the same path (the reward file is loaded from it on
# whichever node runs a reward worker), and the models reachable (shared disk or hub cache). For a
# 70B policy: POLICY=<70B SFT model> ROLLOUT_TP=8 OFFLOAD=True MICRO_BATCH=1. With the LLM judge,
# export OPENAI_API_KEY on every node before this script (Ray workers inherit it; never in a config).
set -euo pipefail
NNODES=${NNODES:-${SLURM_NNODES:-4}}
NODE_RANK=${NODE_RANK:-${SLURM_NODEID:-0}}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
RAY_PORT=${RAY_PORT:-6379}
: "${MASTER_ADDR:?set MASTER_ADDR to the address of node 0}"
source "$(dirname "${BASH_SOURCE[0]}")/ppo_args.sh"

if [ "$NODE_RANK" != 0 ]; then
  exec ray start --address="$MASTER_ADDR:$RAY_PORT" --num-gpus="$GPUS_PER_NODE" --block
fi

ray start --head --node-ip-address="$MASTER_ADDR" --port="$RAY_PORT" --num-gpus="$GPUS_PER_NODE"
trap 'ray stop' EXIT
until [ "$(python -c 'import ray; ray.init(address="auto", logging_level="ERROR"); print(sum(n["Alive"] for n in ray.nodes()))')" -ge "$NNODES" ]; do
  echo "waiting for $NNODES nodes to join the Ray cluster at $MASTER_ADDR:$RAY_PORT ..."
  sleep 10
done
RAY_ADDRESS="$MASTER_ADDR:$RAY_PORT" python -m verl.trainer.main_ppo "${PPO_ARGS[@]}" "$@"
