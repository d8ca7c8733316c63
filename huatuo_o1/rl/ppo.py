"""The PPO command line (RL_stage2.py): its own flags, parsing, and main().

    accelerate launch --config_file ./configs/deepspeed_zero3.yaml RL_stage2.py \\
        --model_name_or_path FreedomIntelligence/HuatuoGPT-o1-8B \\
        --reward_model_path FreedomIntelligence/medical_o1_verifier_3B \\
        --value_model_path meta-llama/Llama-3.2-3B-Instruct \\
        --dataset_name FreedomIntelligence/medical-o1-verifiable-problem ...

Every PPO setting (huatuo_o1/rl/ppo_config.py: trl 1.12's `PPOConfig` fields, on transformers'
`TrainingArguments`) and trl's `ModelConfig` flag works too (`--help_all` lists them). The algorithm
is huatuo_o1/rl/ppo_core.py, the trainer huatuo_o1/rl/ppo_trainer.py; this module imports neither
(nor any training library) until it trains, so `--help` is instant.
"""

from __future__ import annotations

import argparse

from huatuo_o1.cli import dataclass_parser
from huatuo_o1.rl.common import run_policy_training
from huatuo_o1.rl.ppo_args import PPOScriptArguments

EPILOG = (
    "Also every PPO setting (trl 1.12's PPOConfig fields) / transformers TrainingArguments / trl "
    "ModelConfig flag (--learning_rate, --total_episodes, --kl_coef, --response_length, --model_name_or_path, --reward_model_path, "
    "--global_batch_size, ...): --help_all lists them with their defaults."
)


def make_parser() -> argparse.ArgumentParser:
    """The script's own flags (for --help; parse_args also takes trl's)."""
    return dataclass_parser(__doc__, PPOScriptArguments, epilog=EPILOG)


def make_full_parser():
    """HfArgumentParser over our flags, the PPO settings and trl's ModelConfig."""
    from transformers import HfArgumentParser
    from trl import ModelConfig

    from huatuo_o1.rl.ppo_config import PPOConfig

    return HfArgumentParser((PPOScriptArguments, PPOConfig, ModelConfig))


def parse_args(argv: list[str] | None = None):
    """(script_args, training_args, model_args); unknown flags: argparse usage and exit 2."""
    from huatuo_o1.train.checks import parse_dataclasses

    return tuple(parse_dataclasses(make_full_parser(), argv))


def main(argv: list[str] | None = None) -> int:
    def train(*args):
        from huatuo_o1.rl.ppo_trainer import train_ppo

        return train_ppo(*args)

    return run_policy_training(argv, make_parser, make_full_parser, parse_args, train)
