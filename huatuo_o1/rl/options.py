"""What the RL scripts' training flags do beyond trl's own handling (PPO mostly, GRPO where shared).

- Flag checks: batch size, accumulation, learning rate, warmup, seed, `--total_episodes`, the
  attention implementation: one line and exit 2 before anything is loaded (`check_rl_flags`).
- Global batch (`apply_global_batch`): `--global_batch_size` = examples per optimizer step over
  all processes (per device x accumulation x processes); the accumulation is derived from the
  world size. trl's PPO rollout batch is that times `--num_mini_batches` (1 by default), so the
  number of PPO updates for a given `--total_episodes` no longer depends on the GPU count.
- Model dtypes (`model_dtypes`): trl's `--dtype` default is float32, which for an 8B policy + 3B
  value/verifier costs ~90 GB of host RAM per process while loading. When training in bf16 and
  `--dtype` is left at float32, the frozen models (reference policy, verifier) load in bf16; the
  trained ones (policy, value) load in bf16 under DeepSpeed (its optimizer keeps fp32 master
  weights) and in fp32 otherwise (plain AdamW on bf16 weights would lose small updates).
- Gradient checkpointing (`enable_gradient_checkpointing`): the PPO loop never calls the Trainer
  code that turns it on, so it is turned on here for the policy and the value model (rollouts are
  generated in eval mode: huatuo_o1/rl/ppo_trainer.py).
- One optimizer step of data (`check_one_rl_step`): GRPO, RLOO and DPO stop with one line (exit 2)
  before any model is loaded when the training rows cannot fill one step (trl's group sampler
  would yield no batch at all: a run of 0 steps that exits 0 and saves the unchanged policy).
- Flags the PPO loop ignores (`ignored_ppo_flags`): one warning naming those the user changed.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from huatuo_o1.train.checks import check_one_step, check_training_flags
from huatuo_o1.train.multi_gpu import accumulation_for, global_batch_line, world_size

log = logging.getLogger(__name__)

GLOBAL_BATCH_HELP = (
    "Examples per optimizer step over all processes (per device x accumulation x processes). Sets "
    "--gradient_accumulation_steps from the number of processes, so the recipe does not change with "
    "the GPU count. Default: --gradient_accumulation_steps as given."
)

# TrainingArguments flags the PPO loop never reads (it has its own loop, dataloader and evaluation
# by sample generation, as trl 1.12's had).
PPO_IGNORED_FLAGS = (
    "eval_strategy", "eval_steps", "eval_delay", "eval_on_start", "eval_accumulation_steps",
    "dataloader_num_workers", "dataloader_prefetch_factor", "dataloader_persistent_workers",
    "dataloader_pin_memory", "dataloader_drop_last", "max_steps", "load_best_model_at_end",
    "metric_for_best_model", "greater_is_better", "group_by_length", "label_smoothing_factor",
    "neftune_noise_alpha", "auto_find_batch_size", "torch_compile", "prediction_loss_only",
)  # fmt: skip


def is_deepspeed_run(args) -> bool:
    return bool(getattr(args, "deepspeed", None)) or os.environ.get(
        "ACCELERATE_USE_DEEPSPEED", "false"
    ).lower() in ("1", "true")


def check_rl_flags(args, model_args, total_episodes: bool = False) -> None:
    """One-line errors for RL flags that cannot train (InputError, exit 2)."""
    warmup = getattr(args, "warmup_ratio", None)
    check_training_flags(
        batch_size=("--per_device_train_batch_size", args.per_device_train_batch_size),
        accumulation=("--gradient_accumulation_steps", args.gradient_accumulation_steps),
        learning_rate=("--learning_rate", args.learning_rate),
        warmup=("--warmup_ratio" if warmup is not None else "--warmup_steps", warmup or args.warmup_steps),
        seed=("--seed", args.seed),
        positive=[
            ("--global_batch_size", getattr(args, "global_batch_size", None)),
            *([("--total_episodes", args.total_episodes)] if total_episodes else []),
        ],
        attn_implementation=("--attn_implementation", getattr(model_args, "attn_implementation", None)),
    )


def apply_global_batch(args, mini_batches: int = 1) -> str:
    """Derive the accumulation from --global_batch_size (if set); the effective-batch line."""
    processes = world_size()
    if getattr(args, "global_batch_size", None):
        args.gradient_accumulation_steps = accumulation_for(
            args.global_batch_size,
            args.per_device_train_batch_size,
            processes,
            "--per_device_train_batch_size",
        )
    extra = ""
    if mini_batches > 1:
        rollout = (
            args.per_device_train_batch_size * args.gradient_accumulation_steps * processes * mini_batches
        )
        extra = f"{rollout} episodes per PPO update ({mini_batches} mini-batches)"
    return global_batch_line(
        args.per_device_train_batch_size, args.gradient_accumulation_steps, processes, extra
    )


def check_one_rl_step(rows: int, args, what: str = "prompts") -> None:
    """InputError unless `rows` training rows fill one optimizer step of a trl trainer: GRPO/RLOO
    sample `num_generations` completions per prompt and draw whole generation batches
    (`generation_batch_size` completions over all processes); DPO takes one pair per example."""
    check_one_step(
        rows, args.per_device_train_batch_size, args.gradient_accumulation_steps, args.world_size, what,
        per_group=getattr(args, "num_generations", None) or 1,
        completions=getattr(args, "generation_batch_size", None),
    )  # fmt: skip


def model_dtypes(model_dtype, bf16: bool, deepspeed: bool):
    """(dtype of the trained models, dtype of the frozen ones) for from_pretrained."""
    import torch

    if not bf16 or model_dtype not in (None, "float32", torch.float32):
        return model_dtype, model_dtype
    return (torch.bfloat16 if deepspeed else torch.float32), torch.bfloat16


def enable_gradient_checkpointing(models, kwargs: dict | None) -> None:
    """Turn on activation checkpointing (non-reentrant unless told otherwise) on each model."""
    kw = dict(kwargs or {})
    kw.setdefault("use_reentrant", False)
    for m in models:
        m.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)


def ignored_ppo_flags(args) -> list[str]:
    """The flags in PPO_IGNORED_FLAGS whose value differs from the default."""
    defaults = {}
    for f in dataclasses.fields(type(args)):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    changed = []
    for name in PPO_IGNORED_FLAGS:
        if name in defaults and hasattr(args, name):
            value, default = getattr(args, name), defaults[name]
            if str(getattr(value, "value", value)) != str(getattr(default, "value", default)):
                changed.append(f"--{name}")
    return changed
