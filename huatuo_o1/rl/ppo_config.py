"""The PPO training settings of RL_stage2.py: transformers' `TrainingArguments` plus PPO's own fields.

Every field keeps the name, default and meaning it had as trl 1.12's `PPOConfig` (the original
command line; trl 1.13 and later ship no PPO), with our defaults where they differ: stop at the
policy's eos, no hub reward model, `--warmup_ratio` and `--global_batch_size`, wandb when logged in.
`--use_vllm` and its two settings are ours (rollouts through vLLM, huatuo_o1/rl/ppo_vllm.py).

Batch sizes (filled in by the trainer from the flags and the number of processes, as trl did):
local_batch_size = per_device_train_batch_size x gradient_accumulation_steps (rollouts per process
per update); batch_size = that x processes; mini-batches split it `num_mini_batches` ways;
num_total_batches = ceil(total_episodes / batch_size) updates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transformers import TrainingArguments

from huatuo_o1.rl.common import REPORT_TO_HELP, WARMUP_RATIO_HELP, apply_compat_defaults
from huatuo_o1.rl.options import GLOBAL_BATCH_HELP, apply_global_batch, ignored_ppo_flags


@dataclass
class PPOConfig(TrainingArguments):
    """PPO's flags (trl 1.12's PPOConfig, field for field) on top of TrainingArguments."""

    # TrainingArguments fields whose default trl's configs changed
    learning_rate: float = field(default=3e-6, metadata={"help": "The initial learning rate for AdamW."})
    logging_steps: float = field(
        default=10,
        metadata={"help": "Unused by PPO, which logs every update (kept from trl's config)."},
    )
    gradient_checkpointing: bool = field(
        default=True,
        metadata={"help": "Activation checkpointing of the policy and the value model (memory for time)."},
    )
    bf16: bool | None = field(
        default=None,
        metadata={"help": "bf16 mixed precision. Default: on where a GPU is and --fp16 is not set."},
    )
    lr_scheduler_kwargs: dict | str | None = field(
        default=None, metadata={"help": "Extra arguments of the learning-rate scheduler (a JSON dict)."}
    )
    use_liger_kernel: bool = field(default=False, metadata={"help": "Unused by PPO (Liger kernels)."})
    torch_empty_cache_steps: int | None = field(
        default=None, metadata={"help": "Unused by PPO (the device cache is emptied after each phase)."}
    )
    warmup_ratio: float | None = field(default=None, metadata={"help": WARMUP_RATIO_HELP})
    report_to: None | str | list[str] = field(default="wandb", metadata={"help": REPORT_TO_HELP})
    global_batch_size: int | None = field(default=None, metadata={"help": GLOBAL_BATCH_HELP})

    # PPO
    dataset_num_proc: int | None = field(default=None, metadata={"help": "Unused (kept from trl's config)."})
    num_mini_batches: int = field(
        default=1, metadata={"help": "Mini-batches each rollout batch is split into, per PPO epoch."}
    )
    total_episodes: int | None = field(
        default=None,
        metadata={"help": "Rollouts to train on in all. Default: --num_train_epochs x training rows."},
    )
    local_rollout_forward_batch_size: int = field(
        default=64, metadata={"help": "Rows per generation call and per no-grad forward pass in the rollout."}
    )
    num_sample_generations: int = field(
        default=10,
        metadata={"help": "How many times to log sample completions on the held-out rows (0: never)."},
    )
    response_length: int = field(default=53, metadata={"help": "Maximum response length, in tokens."})
    stop_token: str | None = field(
        default="eos",
        metadata={
            "help": "Stop generation at the policy's eos ('eos'), or None: at --stop_token_id if given, "
            "else at no token (every response runs to --response_length)."
        },
    )
    stop_token_id: int | None = field(
        default=None,
        metadata={"help": "Stop generation at this token id (sets --stop_token to None)."},
    )
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature of the rollouts."})
    missing_eos_penalty: float | None = field(
        default=None,
        metadata={
            "help": "Subtracted from the score of a response without eos (a positive value); None: off."
        },
    )
    sft_model_path: str | None = field(default=None, metadata={"help": "Unused (use --model_name_or_path)."})
    world_size: int | None = field(default=None, metadata={"help": "Filled in: the number of processes."})
    num_total_batches: int | None = field(default=None, metadata={"help": "Filled in: PPO updates in all."})
    micro_batch_size: int | None = field(
        default=None, metadata={"help": "Filled in: per_device_train_batch_size x processes."}
    )
    local_batch_size: int | None = field(
        default=None, metadata={"help": "Filled in: rollouts per process per update."}
    )
    batch_size: int | None = field(default=None, metadata={"help": "Filled in: rollouts per update."})
    local_mini_batch_size: int | None = field(
        default=None, metadata={"help": "Filled in: rows per mini-batch per process."}
    )
    mini_batch_size: int | None = field(default=None, metadata={"help": "Filled in: rows per mini-batch."})
    push_to_hub: bool = field(
        default=False, metadata={"help": "Unused (the final policy is a local folder)."}
    )
    reward_model_path: str | None = field(
        default=None, metadata={"help": "Verifier: a 2-label sequence classifier folder or hub name."}
    )
    model_adapter_name: str | None = field(default=None, metadata={"help": "Unused (no PEFT in PPO)."})
    ref_adapter_name: str | None = field(default=None, metadata={"help": "Unused (no PEFT in PPO)."})
    num_ppo_epochs: int = field(default=4, metadata={"help": "PPO epochs over each rollout batch."})
    whiten_rewards: bool = field(
        default=False,
        metadata={"help": "Scale the per-token rewards to unit variance (needs 8+ rows per mini-batch)."},
    )
    kl_coef: float = field(default=0.05, metadata={"help": "Weight of the per-token KL penalty."})
    kl_estimator: Literal["k1", "k3"] = field(
        default="k1",
        metadata={
            "help": "KL estimator (http://joschu.net/blog/kl-approx.html): k1 = log p - log p_ref; k3 = "
            "(r - 1) - log r, r = p_ref / p (unbiased, lower variance)."
        },
    )
    cliprange: float = field(default=0.2, metadata={"help": "Clip range of the policy ratio."})
    vf_coef: float = field(default=0.1, metadata={"help": "Weight of the value loss."})
    cliprange_value: float = field(default=0.2, metadata={"help": "Clip range of the value prediction."})
    gamma: float = field(default=1.0, metadata={"help": "Discount factor."})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda."})
    ds3_gather_for_generation: bool = field(
        default=True,
        metadata={
            "help": "Under ZeRO-3, gather the policy's weights for generation (fast); False generates "
            "from the shards (slow, for a policy larger than one GPU)."
        },
    )
    use_vllm: bool = field(
        default=False,
        metadata={
            "help": "Generate the rollouts with vLLM in this process (colocated; the policy's weights are "
            "loaded into it after each update; needs the vllm package and a GPU)."
        },
    )
    vllm_gpu_memory_utilization: float = field(
        default=0.3, metadata={"help": "Share of the GPU's memory vLLM may take (--use_vllm)."}
    )
    vllm_enable_sleep_mode: bool = field(
        default=True,
        metadata={"help": "Release vLLM's weights and KV cache during each update (--use_vllm)."},
    )

    def __post_init__(self):
        if self.stop_token in ("None", "none", ""):
            self.stop_token = None
        apply_compat_defaults(self)
        self.ignored_flags = ignored_ppo_flags(self)  # before anything fills them in
        self.global_batch_line = apply_global_batch(self, self.num_mini_batches)
        if self.bf16 is None:
            self.bf16 = not self.fp16
        super().__post_init__()


MedicalPPOConfig = PPOConfig  # the name of the trl-based config it replaces
