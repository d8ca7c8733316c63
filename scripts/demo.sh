#!/usr/bin/env bash
# First README command: set up, then run the whole pipeline on the embedded default model, on CPU.
# API stages run as dry runs (request counts + cost estimates, no key needed); SFT, a few PPO steps
# and evaluation run for real on SmolLM2-135M-Instruct. Outputs go to demo_out/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false
# a quiet demo: no weight-loading progress bars, DeepSpeed told it runs on the CPU (instead of its
# "unable to detect" warning), and the libraries' deprecation notices left out of this walkthrough
export HF_HUB_DISABLE_PROGRESS_BARS=1 DS_ACCELERATOR=cpu PYTHONWARNINGS="ignore::FutureWarning,ignore::DeprecationWarning"
PY=.venv/bin/python
MODEL=models/SmolLM2-135M-Instruct
OUT=demo_out
mkdir -p "$OUT"

step() { printf '\n==== %s ====\n' "$*"; }

step "0. embedded default model -> $MODEL"
$PY -m huatuo_o1.models "$MODEL"

step "1. construct verifiable problems (dry run: requests and cost, no network)"
$PY construct_verifiable_medical_problems.py --data_path data/demo_data.json --filter_data --model_name gpt-4o --dry_run

step "2. search for complex reasoning paths (dry run)"
$PY search_for_complex_reasoning_path.py --data_path data/demo_data.json --efficient_search True \
  --max_search_attempts 1 --max_search_depth 2 --model_name gpt-4o --dry_run

step "3a. the default model's answer before SFT"
$PY scripts/show_answer.py --model_path "$MODEL" --max_new_tokens 64

step "3b. SFT of the default model on data/demo_data.json (8 steps on CPU)"
$PY SFT_stage1.py --model_path "$MODEL" --data_path data/demo_data.json --experiment_name demo_sft \
  --output_dir "$OUT/ckpts" --log_dir "$OUT/train_logs" --max_seq_len 1024 --train_bsz_per_gpu 1 \
  --gradient_accumulation_steps 1 --learning_rate 5e-4 --warmup_rates 0 --max_steps 8 \
  --gradient_checkpointing False --report_to none
SFT_MODEL="$OUT/ckpts/demo_sft"

step "3c. the same question after SFT"
$PY scripts/show_answer.py --model_path "$SFT_MODEL" --max_new_tokens 64
step "4. RL (PPO): 2 updates on the SFT model; reward from the exact-match verifier on the demo's short answers (0 malformed / 0.1 wrong / 1 right)"
# 256 tokens: room for the SFT model to reach its '## Final Response' (at 64 every response was cut: reward 0)
OMP_NUM_THREADS=1 $PY RL_stage2.py --model_name_or_path "$SFT_MODEL" --verifier exact \
  --dataset_name data/demo_data.json --output_dir "$OUT/ppo" --run_name ppo_demo --response_length 256 \
  --temperature 0.5 --local_rollout_forward_batch_size 4 --per_device_train_batch_size 2 \
  --gradient_accumulation_steps 2 --num_ppo_epochs 1 --num_mini_batches 1 --total_episodes 8 --kl_coef 0.03 \
  --learning_rate 5e-7 --save_strategy no --num_sample_generations 0 --report_to none --logging_steps 1
RL_MODEL="$OUT/ppo/ppo_demo"
step "5. evaluation of the RL policy with the in-process backend (per-source table at the end)"
$PY evaluation/eval.py --model_name "$RL_MODEL" --eval_file evaluation/data/eval_sample.json --backend hf \
  --max_new_tokens 48 --batch_size 32 --seed 0 --output_dir "$OUT/eval"

printf '\nDemo finished. Outputs: %s/ (checkpoints in %s/ckpts and %s/ppo, evaluation results in %s/eval)\n' \
  "$OUT" "$OUT" "$OUT" "$OUT"
printf 'Training curves (PNG): %s/ckpts/demo_sft/plots/ (loss, learning rate, token accuracy), %s/ppo/plots/ (reward, correct and well-formed shares, KL, response length)\n' \
  "$OUT" "$OUT"
