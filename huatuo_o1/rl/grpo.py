"""The GRPO command line (RL_stage2_grpo.py): parsing its flags, and main().

    accelerate launch --config_file ./configs/deepspeed_zero3.yaml RL_stage2_grpo.py \\
        --model_name_or_path FreedomIntelligence/HuatuoGPT-o1-8B \\
        --reward_model_path FreedomIntelligence/medical_o1_verifier_3B \\
        --dataset_name FreedomIntelligence/medical-o1-verifiable-problem \\
        --num_generations 8 --max_completion_length 1300 --beta 0.03 --use_vllm True ...

Every trl `GRPOConfig` / `ModelConfig` flag works too (`--help_all` lists them). The script's own
flags are huatuo_o1/rl/grpo_args.py, the trainer huatuo_o1/rl/grpo_trainer.py; neither imports this
module.
"""

from __future__ import annotations

import argparse

from huatuo_o1.cli import dataclass_parser
from huatuo_o1.rl.common import run_policy_training
from huatuo_o1.rl.grpo_args import GRPOScriptArguments

EPILOG = (
    "Also every trl GRPOConfig / transformers TrainingArguments / trl ModelConfig flag (--learning_rate, "
    "--num_generations, --max_completion_length, --beta, --use_vllm, --model_name_or_path, ...): "
    "--help_all lists them with their defaults."
)


def make_parser() -> argparse.ArgumentParser:
    """The script's own flags (for --help; parse_args also takes trl's)."""
    return dataclass_parser(__doc__, GRPOScriptArguments, epilog=EPILOG)


def make_full_parser():
    """HfArgumentParser over our flags, trl's GRPOConfig (with our defaults) and trl's ModelConfig."""
    from transformers import HfArgumentParser
    from trl import ModelConfig

    from huatuo_o1.rl.grpo_trainer import MedicalGRPOConfig

    return HfArgumentParser((GRPOScriptArguments, MedicalGRPOConfig, ModelConfig))


def parse_args(argv: list[str] | None = None):
    """(script_args, training_args, model_args); unknown flags: argparse usage and exit 2."""
    from huatuo_o1.train.checks import parse_dataclasses

    return tuple(parse_dataclasses(make_full_parser(), argv))


def main(argv: list[str] | None = None) -> int:
    def train(*args):
        from huatuo_o1.rl.grpo_trainer import train_grpo

        return train_grpo(*args)

    return run_policy_training(argv, make_parser, make_full_parser, parse_args, train)
