"""The RLOO command line (RL_stage2_rloo.py): parsing its flags (the GRPO script's), and main().

    accelerate launch --config_file ./configs/deepspeed_zero3.yaml RL_stage2_rloo.py \\
        --model_name_or_path <SFT model> \\
        --reward_model_path FreedomIntelligence/medical_o1_verifier_3B \\
        --dataset_name FreedomIntelligence/medical-o1-verifiable-problem \\
        --max_completion_length 1300 ...

Defaults follow the paper's RLOO ablation (PPO's settings, k = 2): --num_generations 2,
--learning_rate 5e-7, --beta 0.03, --global_batch_size 128. Every trl `RLOOConfig` / `ModelConfig`
flag works too (`--help_all` lists them). The script's own flags are huatuo_o1/rl/rloo_args.py,
the trainer huatuo_o1/rl/rloo_trainer.py; neither imports this module.
"""

from __future__ import annotations

import argparse

from huatuo_o1.cli import dataclass_parser
from huatuo_o1.rl.common import run_policy_training
from huatuo_o1.rl.rloo_args import RLOOScriptArguments

EPILOG = (
    "Also every trl RLOOConfig / transformers TrainingArguments / trl ModelConfig flag (--learning_rate, "
    "--num_generations, --max_completion_length, --beta, --use_vllm, --model_name_or_path, "
    "--global_batch_size, ...): --help_all lists them with their defaults."
)


def make_parser() -> argparse.ArgumentParser:
    """The script's own flags (for --help; parse_args also takes trl's)."""
    return dataclass_parser(__doc__, RLOOScriptArguments, epilog=EPILOG)


def make_full_parser():
    """HfArgumentParser over our flags, trl's RLOOConfig (with our defaults) and trl's ModelConfig."""
    from transformers import HfArgumentParser
    from trl import ModelConfig

    from huatuo_o1.rl.rloo_trainer import MedicalRLOOConfig

    return HfArgumentParser((RLOOScriptArguments, MedicalRLOOConfig, ModelConfig))


def parse_args(argv: list[str] | None = None):
    """(script_args, training_args, model_args); unknown flags: argparse usage and exit 2."""
    from huatuo_o1.train.checks import parse_dataclasses

    return tuple(parse_dataclasses(make_full_parser(), argv))


def main(argv: list[str] | None = None) -> int:
    def train(*args):
        from huatuo_o1.rl.rloo_trainer import train_rloo

        return train_rloo(*args)

    return run_policy_training(argv, make_parser, make_full_parser, parse_args, train)
