#!/usr/bin/env bash
# GPU check: the multi-GPU code paths on ONE GPU, in at most ~8 minutes, with the embedded
# SmolLM2-135M-Instruct (no download). Run it on a GPU node after `bash scripts/setup.sh` (or in any
# environment holding the wheels below):
#
#   bash scripts/gpu_check.sh            # outputs in demo_out/gpu_check/ (git-ignored), summary at the end
#
#   1. SFT, bf16, DeepSpeed ZeRO-3, 300 optimizer steps: tokens/s and MFU (scripts/gpu_mfu.py)
#   2. verifier: train_verifier.py for 40 steps on verdicts made from data/demo_data.json
#   3. PPO: 2 updates under ZeRO-3 with that classifier verifier as the reward
#   4. GRPO: 2 steps under ZeRO-3 with the same verifier
#   5. evaluation of the PPO policy with the in-process hf backend on the 32-item sample
#
# Python wheels needed beyond torch (a CUDA build) and transformers: accelerate, deepspeed, trl,
# datasets, safetensors, tokenizers, wandb, tqdm, matplotlib, gguf (the embedded model), openai (imported
# by the shared code) -- all pinned in requirements.txt; flash-attn is optional (sdpa otherwise).
# DeepSpeed needs no compiled op here (torch's AdamW, no offload), so no CUDA toolkit is needed.
# Each step has its own time limit; a failing step stops the check with its log's tail.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-demo_out/gpu_check}
MODEL=models/SmolLM2-135M-Instruct
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false
LAUNCH=("$PY" -m accelerate.commands.launch --config_file configs/deepspeed_zero3.yaml --num_processes 1
        --mixed_precision bf16)
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
START=$SECONDS

"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'error: no CUDA GPU visible to torch')"
"$PY" -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__, '| CUDA', torch.version.cuda)" \
  | tee -a "$SUMMARY"

run() {  # run <name> <time limit s> <command...>: time it, keep its log, stop with the log's tail on failure
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS log="$OUT/$name.log"
  printf '\n==== %s (limit %ss) ====\n' "$name" "$limit"
  if ! timeout "$limit" "$@" > "$log" 2>&1; then
    tail -n 40 "$log"
    echo "FAILED: $name (log: $log)" | tee -a "$SUMMARY"
    exit 1
  fi
  echo "ok: $name in $((SECONDS - t0)) s" | tee -a "$SUMMARY"
}

run "0_default_model" 120 "$PY" -m huatuo_o1.models "$MODEL"

run "1_sft_zero3_bf16" 180 "${LAUNCH[@]}" SFT_stage1.py --model_path "$MODEL" --data_path data/demo_data.json \
  --experiment_name sft --output_dir "$OUT/ckpts" --log_dir "$OUT/logs" --max_seq_len 2048 \
  --train_bsz_per_gpu 8 --gradient_accumulation_steps 1 --learning_rate 1e-5 --n_epochs 1000 --max_steps 300 \
  --save_steps 300 --logging_steps 10 --gradient_checkpointing False --bf16 True --report_to none --resume False
"$PY" scripts/gpu_mfu.py "$OUT/ckpts/sft" | tee -a "$SUMMARY"

"$PY" - "$OUT/verifier_data.json" <<'EOF'
import json, sys
rows = json.load(open("data/demo_data.json", encoding="utf-8"))
answers = [r["Ground-True Answer"] for r in rows]
out = []
for i, a in enumerate(answers):
    for ans, label in ((a, True), (answers[(i + 1) % len(answers)], False)):
        out.append({"response": f"## Thinking\nReasoning.\n## Final Response\nThe answer is {ans}.", "reference": a, "label": label})
json.dump(out * 4, open(sys.argv[1], "w", encoding="utf-8"))
EOF
run "2_verifier_zero3" 120 "${LAUNCH[@]}" train_verifier.py --data_path "$OUT/verifier_data.json" \
  --model_name_or_path "$MODEL" --output_dir "$OUT/verifier" --max_steps 40 --per_device_train_batch_size 8 \
  --learning_rate 5e-5 --bf16 True --report_to none --save_strategy no --resume False

run "3_ppo_zero3" 150 "${LAUNCH[@]}" RL_stage2.py --model_name_or_path "$OUT/ckpts/sft" \
  --reward_model_path "$OUT/verifier" --dataset_name data/demo_data.json --output_dir "$OUT/ppo" --run_name final \
  --response_length 256 --per_device_train_batch_size 4 --gradient_accumulation_steps 2 \
  --local_rollout_forward_batch_size 8 --total_episodes 16 --num_ppo_epochs 1 --num_sample_generations 0 \
  --learning_rate 5e-7 --bf16 True --gradient_checkpointing True --save_strategy steps --save_steps 1 \
  --report_to none --logging_steps 1 --resume False
grep -o "'reward/mean': '[^']*'\|'reward/correct': '[^']*'\|'objective/kl': '[^']*'" "$OUT/3_ppo_zero3.log" \
  | tail -n 3 | tr '\n' ' ' | sed 's/^/PPO last update: /' | tee -a "$SUMMARY"; echo | tee -a "$SUMMARY"

run "4_grpo_zero3" 120 "${LAUNCH[@]}" RL_stage2_grpo.py --model_name_or_path "$OUT/ckpts/sft" \
  --reward_model_path "$OUT/verifier" --dataset_name data/demo_data.json --output_dir "$OUT/grpo" --run_name final \
  --per_device_train_batch_size 8 --num_generations 4 --max_completion_length 256 --max_steps 2 \
  --bf16 True --report_to none --logging_steps 1 --save_strategy no --resume False

SAMPLE=evaluation/data/eval_sample.json
run "5_eval_hf" 90 "$PY" evaluation/eval.py --model_name "$OUT/ppo/final" --eval_file "$SAMPLE" --backend hf \
  --max_new_tokens 256 --batch_size 32 --seed 0 --output_dir "$OUT/eval"
tail -n 12 "$OUT/5_eval_hf.log"

echo "total: $((SECONDS - START)) s (budget 480 s)" | tee -a "$SUMMARY"
printf '\nSummary (%s):\n' "$SUMMARY"
cat "$SUMMARY"
