"""DPO on verifier-built preference pairs (the paper's DPO ablation, Table 2).

trl's `DPOTrainer` on the pairs of scripts/make_dpo_pairs.py (huatuo_o1.rl.dpo_pairs): each
{prompt, chosen, rejected} becomes a conversational example (the prompt as the one user turn,
chosen and rejected as the assistant turn), so trl applies the policy's chat template as SFT and
RL do. The reference model is the starting policy (trl copies it). Defaults are the paper's:
learning rate 1e-6, beta 1.0, the sigmoid loss, 128 pairs per optimizer step over all processes
(`--global_batch_size 128`), each declared by `MedicalDPOConfig`, so a later trl default cannot
change it. Checkpoints, resume identity, run_args.json and the final policy
folder work as in GRPO (huatuo_o1.rl.common.train_and_save).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from trl import DPOConfig

from huatuo_o1.contract import DPO_CHOSEN, DPO_PROMPT, DPO_REJECTED, load_dataset_records
from huatuo_o1.io import InputError
from huatuo_o1.lock import locked
from huatuo_o1.models import check_model_path, load_pretrained
from huatuo_o1.rl.common import (
    REPORT_TO_HELP,
    WARMUP_RATIO_HELP,
    apply_compat_defaults,
    torch_dtype,
    train_and_save,
)
from huatuo_o1.rl.dpo_args import DPOScriptArguments
from huatuo_o1.rl.options import GLOBAL_BATCH_HELP, apply_global_batch, check_one_rl_step, check_rl_flags
from huatuo_o1.train.checkpoints import resume_point, run_identity

log = logging.getLogger(__name__)

PAPER_DPO = {"learning_rate": 1e-6, "beta": 1.0, "global_batch_size": 128, "loss_type": ["sigmoid"]}


@dataclass
class MedicalDPOConfig(DPOConfig):
    """trl's DPOConfig with the paper's DPO defaults, the original's --warmup_ratio, --global_batch_size."""

    learning_rate: float = field(
        default=PAPER_DPO["learning_rate"], metadata={"help": "Peak learning rate (the paper: 1e-6)."}
    )
    beta: float = field(default=PAPER_DPO["beta"], metadata={"help": "DPO beta (the paper: 1.0)."})
    loss_type: list[str] = field(
        default_factory=lambda: list(PAPER_DPO["loss_type"]),
        metadata={"help": "DPO loss(es): sigmoid (the paper's DPO), hinge, ipo, ... (several are summed)."},
    )
    global_batch_size: int | None = field(
        default=PAPER_DPO["global_batch_size"],
        metadata={"help": GLOBAL_BATCH_HELP + " The paper's DPO: 128 pairs."},
    )
    warmup_ratio: float | None = field(default=None, metadata={"help": WARMUP_RATIO_HELP})
    report_to: None | str | list[str] = field(default="wandb", metadata={"help": REPORT_TO_HELP})

    def __post_init__(self):
        apply_compat_defaults(self)
        apply_global_batch(self)
        super().__post_init__()


def load_pairs(source: str) -> list[dict]:
    """Conversational DPO examples of a pairs file; InputError (one line) naming a bad row."""
    rows = load_dataset_records(source, what="DPO pairs")
    out = []
    for i, r in enumerate(rows, 1):
        missing = [
            k
            for k in (DPO_PROMPT, DPO_CHOSEN, DPO_REJECTED)
            if not isinstance(r.get(k), str) or not r[k].strip()
        ]
        if missing:
            raise InputError(f"{source}: pair {i} lacks field(s) {', '.join(repr(m) for m in missing)}")
        out.append(
            {
                DPO_PROMPT: [{"role": "user", "content": r[DPO_PROMPT]}],
                DPO_CHOSEN: [{"role": "assistant", "content": r[DPO_CHOSEN]}],
                DPO_REJECTED: [{"role": "assistant", "content": r[DPO_REJECTED]}],
            }
        )
    if not out:
        raise InputError(f"{source}: no pairs (run scripts/make_dpo_pairs.py first)")
    return out


def build_dpo_trainer(script_args: DPOScriptArguments, args, model_args):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOTrainer

    policy_path = model_args.model_name_or_path
    if not policy_path:
        raise InputError("--model_name_or_path is required")
    pairs = load_pairs(script_args.dataset_name)  # bad data first, before any model
    check_model_path(policy_path, "policy model")
    check_rl_flags(args, model_args)
    batch_line = apply_global_batch(args)
    if args.process_index == 0:
        log.info(batch_line)
    random.Random(args.seed).shuffle(pairs)
    n_eval = int(len(pairs) * script_args.eval_fraction)
    train, held = pairs[n_eval:], pairs[:n_eval]
    check_one_rl_step(len(train), args, "pairs")  # fewer pairs than one step: refused, exit 2
    remote = {"trust_remote_code": args.trust_remote_code}
    tokenizer = load_pretrained(AutoTokenizer, policy_path, "policy tokenizer", **remote)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    attn = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    policy = load_pretrained(
        AutoModelForCausalLM,
        policy_path,
        "policy model",
        dtype=torch_dtype(model_args.dtype),
        **remote,
        **attn,
    )
    log.info("DPO data: %d train pairs, %d held out", len(train), len(held))
    trainer = DPOTrainer(
        model=policy,
        args=args,
        train_dataset=Dataset.from_list(train),
        eval_dataset=Dataset.from_list(held) if held and args.eval_strategy != "no" else None,
        processing_class=tokenizer,
    )
    check_pairs_kept(len(train), len(trainer.train_dataset), args)
    return trainer


def check_pairs_kept(given: int, kept: int, args) -> None:
    """Say how many train pairs trl dropped, and refuse a run they leave without one optimizer step.

    trl drops, without a word, each pair whose prompt alone fills --max_length (no chosen or
    rejected token would be left). The run then trains on fewer pairs than the file gives, and its
    last optimizer step may be a partial one, which one process and several train differently
    (docs/multi_gpu.md)."""
    if kept == given:
        return
    if args.process_index == 0:
        log.warning(
            "dropped %d of %d train pairs whose prompt alone fills --max_length %s: training on %d",
            given - kept, given, args.max_length, kept,
        )  # fmt: skip
    check_one_rl_step(kept, args, "pairs")


# trl DPOConfig flags that change the trained policy (a larger --max_steps continues a run)
DPO_RESULT_FLAGS = (
    "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "global_batch_size", "beta",
    "loss_type", "label_smoothing", "max_length", "num_train_epochs", "lr_scheduler_type", "warmup_steps",
    "weight_decay", "max_grad_norm", "optim", "seed", "bf16", "fp16",
)  # fmt: skip


def dpo_identity(script_args: DPOScriptArguments, args, model_args) -> dict:
    """What a checkpoint must have been trained from to be resumed by this run."""
    settings = {name: getattr(args, name, None) for name in DPO_RESULT_FLAGS}
    if settings["global_batch_size"]:  # the accumulation follows the GPU count
        settings["gradient_accumulation_steps"] = None
    settings["eval_fraction"] = script_args.eval_fraction
    settings["dtype"] = model_args.dtype
    return run_identity(
        {"model_name_or_path": model_args.model_name_or_path, "dataset_name": script_args.dataset_name},
        settings,
    )


# one run per output folder (lock.py)
@locked("dpo", lambda script_args, args, model_args: args.output_dir)
def train_dpo(script_args: DPOScriptArguments, args, model_args) -> Path:
    identity = dpo_identity(script_args, args, model_args)
    resume_from = resume_point(args.output_dir, script_args.resume, identity, "use another --output_dir")
    trainer = build_dpo_trainer(script_args, args, model_args)  # checks data and flags first
    return train_and_save(trainer, identity, resume_from, script_args, args, model_args)
