"""RLOO with the PPO/GRPO medical-verifier reward (the paper's RLOO ablation, Table 2).

RLOO (trl `RLOOTrainer`) samples k = `num_generations` responses per prompt and uses the mean
reward of the other k - 1 as each one's baseline, so it needs no value model. Everything else is
GRPO's (huatuo_o1.rl.grpo_trainer): the same data loading, pad choice, vLLM sizing and the same
reward function object (`MedicalRewardFunc`, the exact rule PPO uses, `--sft_target` included).

Defaults are the paper's: PPO's reward and hyperparameters with k = 2, i.e. learning rate 5e-7,
KL coefficient (`--beta`) 0.03, 128 completions per optimizer step over all processes
(`--global_batch_size 128`: the accumulation follows the GPU count), clip 0.2 (`--epsilon`). Each is
declared by `MedicalRLOOConfig`, so a later trl default cannot change it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from trl import RLOOConfig

from huatuo_o1.lock import locked
from huatuo_o1.rl.common import (
    REPORT_TO_HELP,
    WARMUP_RATIO_HELP,
    apply_compat_defaults,
    train_and_save,
)
from huatuo_o1.rl.grpo_trainer import build_group_trainer, group_identity
from huatuo_o1.rl.options import GLOBAL_BATCH_HELP, apply_global_batch
from huatuo_o1.rl.rloo_args import RLOOScriptArguments
from huatuo_o1.train.checkpoints import resume_point

log = logging.getLogger(__name__)

PAPER_RLOO = {
    "learning_rate": 5e-7,
    "beta": 0.03,
    "num_generations": 2,
    "global_batch_size": 128,
    "epsilon": 0.2,
}


@dataclass
class MedicalRLOOConfig(RLOOConfig):
    """trl's RLOOConfig with the paper's RLOO defaults, the original's --warmup_ratio, --global_batch_size."""

    learning_rate: float = field(
        default=PAPER_RLOO["learning_rate"], metadata={"help": "Peak learning rate (PPO's, as the paper)."}
    )
    beta: float = field(default=PAPER_RLOO["beta"], metadata={"help": "KL coefficient (PPO's 0.03)."})
    epsilon: float = field(
        default=PAPER_RLOO["epsilon"],
        metadata={"help": "Ratio clip, PPO's 0.2 (the upper one too unless --epsilon_high)."},
    )
    num_generations: int | None = field(
        default=PAPER_RLOO["num_generations"], metadata={"help": "k: samples per prompt (the paper: 2)."}
    )
    global_batch_size: int | None = field(
        default=PAPER_RLOO["global_batch_size"],
        metadata={"help": GLOBAL_BATCH_HELP + " The paper's RLOO: 128 (PPO's batch)."},
    )
    warmup_ratio: float | None = field(default=None, metadata={"help": WARMUP_RATIO_HELP})
    report_to: None | str | list[str] = field(default="wandb", metadata={"help": REPORT_TO_HELP})

    def __post_init__(self):
        apply_compat_defaults(self)
        apply_global_batch(self)  # before trl derives the generation batch from the accumulation
        super().__post_init__()


def build_rloo_trainer(script_args: RLOOScriptArguments, args, model_args):
    from trl import RLOOTrainer

    return build_group_trainer(RLOOTrainer, script_args, args, model_args)


# trl RLOOConfig flags that change the trained policy (a larger --max_steps continues a run)
RLOO_RESULT_FLAGS = (
    "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "global_batch_size",
    "num_generations", "max_completion_length", "temperature", "top_p", "beta", "epsilon", "num_iterations",
    "normalize_advantages", "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm", "optim",
    "seed", "bf16", "fp16",
)  # fmt: skip


def rloo_identity(script_args: RLOOScriptArguments, args, model_args) -> dict:
    """What a checkpoint must have been trained from to be resumed by this run (as GRPO's)."""
    return group_identity(RLOO_RESULT_FLAGS, script_args, args, model_args)


# one run per output folder (lock.py)
@locked("rloo", lambda script_args, args, model_args: args.output_dir)
def train_rloo(script_args: RLOOScriptArguments, args, model_args) -> Path:
    identity = rloo_identity(script_args, args, model_args)
    resume_from = resume_point(args.output_dir, script_args.resume, identity, "use another --output_dir")
    trainer = build_rloo_trainer(script_args, args, model_args)  # checks flags first
    return train_and_save(trainer, identity, resume_from, script_args, args, model_args)
