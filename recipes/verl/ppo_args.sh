# The paper's PPO settings (recipes/paper/ppo_8gpu.sh) as verl 0.9.1 overrides, sourced by
# run_ppo_1node.sh and run_ppo_multinode.sh, which set NNODES and GPUS_PER_NODE first.
# Every name below is a key of verl 0.9.1's ppo_trainer.yaml, or with a `+` one it lacks (our reward
# kwargs, a field of verl's typed critic config); override any of the variables from the
# environment. docs/verl.md, "The recipe's settings", explains each translation and
# "Trainer version" the choice of verl's V1 trainer (the default) or its legacy one (USE_V1=False).
#
# Install (verl's own environment): pip install "verl[vllm,fsdp]==0.9.1" -- the fsdp extra brings
# flash-attn, which verl's critic loader needs whatever the config says (it hard-codes
# attn_implementation="flash_attention_2"; without it the ImportError reads "please install trl").

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
POLICY=${POLICY:-FreedomIntelligence/HuatuoGPT-o1-8B}               # the SFT model (stage 3)
VALUE_MODEL=${VALUE_MODEL:-$POLICY}                                   # critic init; must share the policy's tokenizer
VERIFIER=${VERIFIER:-FreedomIntelligence/medical_o1_verifier_3B}      # 2-label classifier (verifier=classifier)
VERIFIER_KIND=${VERIFIER_KIND:-classifier}                            # classifier | llm | exact
JUDGE_MODEL=${JUDGE_MODEL:-gpt-4o}                                    # the LLM judge (VERIFIER_KIND=llm; key: OPENAI_API_KEY)
JUDGE_API_URL=${JUDGE_API_URL:-}                                      # its OpenAI-compatible URL (empty: OpenAI)
VERIFIER_ON_GPU=${VERIFIER_ON_GPU:-True}                              # classifier served by vLLM on the GPUs (False: CPU in the reward workers)
VERIFIER_TP=${VERIFIER_TP:-1}                                         # its tensor parallel size
DATA_DIR=${DATA_DIR:-$REPO/data/verl}                                 # scripts/export_verl_data.py --output_dir
MAX_PROMPT_LENGTH=${MAX_PROMPT_LENGTH:-1024}                          # >= export_summary.json's longest_prompt_tokens
ROLLOUT_TP=${ROLLOUT_TP:-2}                                           # vLLM tensor parallel size (8 for a 70B)
TRAIN_BATCH=${TRAIN_BATCH:-128}                                       # 8 GPUs x per_device 1 x grad_acc 16
TOTAL_STEPS=${TOTAL_STEPS:-156}                                       # --total_episodes 20000 / 128
MICRO_BATCH=${MICRO_BATCH:-1}                                         # per GPU, for training and log-prob passes (actor, ref, critic)
# Trainer version: verl's V1 trainer (verl 0.9.1's default) or, with USE_V1=False, its deprecated
# legacy one. With the classifier served on the training GPUs (this recipe's default), V1 scores a
# batch after the rollout and sends the reward workers only prompts and responses; our reward
# manager (huatuo_o1/rl/verl_reward_manager.py) looks each prompt's data_source and ground truth up
# in DATA_DIR's parquet files, so V1 needs no GPU of its own for the verifier.
USE_V1=${USE_V1:-True}
REWARD_WORKERS=${REWARD_WORKERS:-8}                                   # reward worker processes (each loads the verifier once)
OFFLOAD=${OFFLOAD:-False}                                             # FSDP parameter/optimizer offload (70B: True)
CRITIC_TOKENS=$((MICRO_BATCH * (MAX_PROMPT_LENGTH + 1300)))           # critic pass size in tokens (prompt + response)
PROJECT=${PROJECT:-huatuo_o1}
RUN_NAME=${RUN_NAME:-ppo_medical_o1_verl}
CKPT_DIR=${CKPT_DIR:-$REPO/ckpts/$RUN_NAME}

PPO_ARGS=(
  algorithm.adv_estimator=gae
  algorithm.gamma=1.0
  algorithm.lam=0.95
  algorithm.use_kl_in_reward=True
  algorithm.kl_penalty=kl
  algorithm.kl_ctrl.type=fixed
  algorithm.kl_ctrl.kl_coef=0.03
  data.train_files="$DATA_DIR/train.parquet"
  data.val_files="$DATA_DIR/val.parquet"
  data.prompt_key=prompt
  data.train_batch_size="$TRAIN_BATCH"
  data.max_prompt_length="$MAX_PROMPT_LENGTH"
  data.max_response_length=1300
  data.filter_overlong_prompts=True
  data.truncation=error
  actor_rollout_ref.model.path="$POLICY"
  actor_rollout_ref.model.enable_gradient_checkpointing=True
  actor_rollout_ref.model.use_remove_padding=True
  actor_rollout_ref.actor.optim.lr=5e-7
  actor_rollout_ref.actor.optim.lr_warmup_steps_ratio=0.05
  actor_rollout_ref.actor.ppo_epochs=3
  actor_rollout_ref.actor.ppo_mini_batch_size="$TRAIN_BATCH"
  actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu="$MICRO_BATCH"
  actor_rollout_ref.actor.clip_ratio_low=0.2                    # the policy loss reads these two (not clip_ratio)
  actor_rollout_ref.actor.clip_ratio_high=0.2
  actor_rollout_ref.actor.use_kl_loss=False
  actor_rollout_ref.actor.entropy_coeff=0
  actor_rollout_ref.actor.fsdp_config.param_offload="$OFFLOAD"
  actor_rollout_ref.actor.fsdp_config.optimizer_offload="$OFFLOAD"
  actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu="$MICRO_BATCH"
  actor_rollout_ref.ref.fsdp_config.param_offload="$OFFLOAD"
  actor_rollout_ref.rollout.name=vllm
  actor_rollout_ref.rollout.temperature=0.5
  actor_rollout_ref.rollout.n=1
  actor_rollout_ref.rollout.tensor_model_parallel_size="$ROLLOUT_TP"
  actor_rollout_ref.rollout.gpu_memory_utilization=0.5
  actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu="$MICRO_BATCH"
  critic.model.path="$VALUE_MODEL"
  critic.model.enable_gradient_checkpointing=True
  critic.model.use_remove_padding=True
  critic.optim.lr=5e-7
  critic.optim.lr_warmup_steps_ratio=0.05
  critic.ppo_micro_batch_size_per_gpu="$MICRO_BATCH"
  critic.ppo_max_token_len_per_gpu="$CRITIC_TOKENS"              # verl's critic engine batches by tokens:
  +critic.ppo_infer_max_token_len_per_gpu="$CRITIC_TOKENS"       # MICRO_BATCH full-length sequences per pass
  critic.cliprange_value=0.2
  critic.fsdp.param_offload="$OFFLOAD"
  critic.fsdp.optimizer_offload="$OFFLOAD"
  reward.num_workers="$REWARD_WORKERS"
  reward.reward_manager.source=importlib                        # verl's naive manager + the dataset-field lookup
  reward.reward_manager.name=DatasetFieldsRewardManager
  reward.reward_manager.module.path="$REPO/huatuo_o1/rl/verl_reward_manager.py"
  reward.custom_reward_function.path="$REPO/huatuo_o1/rl/verl_reward.py"
  reward.custom_reward_function.name=compute_score
  +reward.custom_reward_function.reward_kwargs.verifier="$VERIFIER_KIND"
  +reward.custom_reward_function.reward_kwargs.reward_model_path="$VERIFIER"
  +reward.custom_reward_function.reward_kwargs.reward_threshold=0.4
  trainer.use_v1="$USE_V1"
  trainer.project_name="$PROJECT"
  trainer.experiment_name="$RUN_NAME"
  trainer.logger='["console","wandb"]'
  trainer.default_local_dir="$CKPT_DIR"
  trainer.resume_mode=auto
  trainer.total_training_steps="$TOTAL_STEPS"
  trainer.save_freq=20
  trainer.test_freq=20
  trainer.val_before_train=True
  trainer.nnodes="$NNODES"
  trainer.n_gpus_per_node="$GPUS_PER_NODE"
)

if [ "$VERIFIER_KIND" = llm ]; then
  PPO_ARGS+=(+reward.custom_reward_function.reward_kwargs.judge_model="$JUDGE_MODEL")
  if [ -n "$JUDGE_API_URL" ]; then
    PPO_ARGS+=(+reward.custom_reward_function.reward_kwargs.judge_api_url="$JUDGE_API_URL")
  fi
fi

# The classifier on GPUs: verl serves reward.reward_model.model_path with vLLM (colocated with the
# actor, woken up only while rewards are computed) and passes its router's address to our
# compute_score, which sends it the verifier's exact input ids (huatuo_o1/rl/verl_reward.py).
if [ "$VERIFIER_KIND" = classifier ] && [ "$VERIFIER_ON_GPU" = True ]; then
  PPO_ARGS+=(
    reward.reward_model.enable=True
    reward.reward_model.model_path="$VERIFIER"
    reward.reward_model.rollout.name=vllm
    reward.reward_model.rollout.tensor_model_parallel_size="$VERIFIER_TP"
    reward.reward_model.rollout.gpu_memory_utilization=0.3
    reward.reward_model.rollout.max_model_len=4096             # the verifier reads at most 4,000 tokens
  )
fi
