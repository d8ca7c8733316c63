"""Stage 2 RL with GRPO (no value model): the PPO script's reward and data, trl's GRPOTrainer.

    accelerate launch --config_file ./configs/deepspeed_zero3.yaml RL_stage2_grpo.py \
        --model_name_or_path FreedomIntelligence/HuatuoGPT-o1-8B \
        --reward_model_path FreedomIntelligence/medical_o1_verifier_3B \
        --dataset_name FreedomIntelligence/medical-o1-verifiable-problem \
        --num_generations 8 --max_completion_length 1300 --beta 0.03 --use_vllm True ...

All trl `GRPOConfig` flags work (see --help); logic in huatuo_o1/rl/grpo.py.
"""

from __future__ import annotations

import sys


def parse_args(argv=None):
    from transformers import HfArgumentParser
    from trl import ModelConfig

    from huatuo_o1.rl.grpo import GRPOScriptArguments, MedicalGRPOConfig
    from huatuo_o1.train.checks import parse_dataclasses

    parser = HfArgumentParser((GRPOScriptArguments, MedicalGRPOConfig, ModelConfig))
    return tuple(parse_dataclasses(parser, argv))


def main(argv=None) -> int:
    from huatuo_o1.cli import setup_training_logging
    from huatuo_o1.rl.grpo import train_grpo

    setup_training_logging()
    script_args, training_args, model_args = parse_args(argv)
    out = train_grpo(script_args, training_args, model_args)
    print(f"final policy saved to {out}")
    return 0


if __name__ == "__main__":
    from huatuo_o1.cli import run_main

    run_main(lambda: main(sys.argv[1:]))
