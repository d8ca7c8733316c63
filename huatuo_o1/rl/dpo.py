"""The DPO command line (RL_stage2_dpo.py): parsing its flags, and main().

    accelerate launch --config_file ./configs/deepspeed_zero3.yaml RL_stage2_dpo.py \\
        --model_name_or_path <SFT model> --dataset_name data/dpo_pairs.jsonl ...

The pairs come from scripts/make_dpo_pairs.py. Defaults follow the paper's DPO ablation:
--learning_rate 1e-6, --beta 1.0, --global_batch_size 128. Every trl `DPOConfig` / `ModelConfig`
flag works too (`--help_all` lists them). The script's own flags are huatuo_o1/rl/dpo_args.py, the
trainer huatuo_o1/rl/dpo_trainer.py; neither imports this module.
"""

from __future__ import annotations

import argparse

from huatuo_o1.cli import dataclass_parser
from huatuo_o1.rl.common import run_policy_training
from huatuo_o1.rl.dpo_args import DPOScriptArguments

EPILOG = (
    "Also every trl DPOConfig / transformers TrainingArguments / trl ModelConfig flag (--learning_rate, "
    "--beta, --max_length, --model_name_or_path, --global_batch_size, ...): --help_all lists them."
)


def make_parser() -> argparse.ArgumentParser:
    """The script's own flags (for --help; parse_args also takes trl's)."""
    return dataclass_parser(__doc__, DPOScriptArguments, epilog=EPILOG)


def make_full_parser():
    """HfArgumentParser over our flags, trl's DPOConfig (with our defaults) and trl's ModelConfig."""
    from transformers import HfArgumentParser
    from trl import ModelConfig

    from huatuo_o1.rl.dpo_trainer import MedicalDPOConfig

    return HfArgumentParser((DPOScriptArguments, MedicalDPOConfig, ModelConfig))


def parse_args(argv: list[str] | None = None):
    """(script_args, training_args, model_args); unknown flags: argparse usage and exit 2."""
    from huatuo_o1.train.checks import parse_dataclasses

    return tuple(parse_dataclasses(make_full_parser(), argv))


def main(argv: list[str] | None = None) -> int:
    def train(*args):
        from huatuo_o1.rl.dpo_trainer import train_dpo

        return train_dpo(*args)

    return run_policy_training(argv, make_parser, make_full_parser, parse_args, train)
