"""Stage 2 RL: PPO on verifiable medical problems with a medical-verifier reward.

    accelerate launch --config_file ./configs/deepspeed_zero3.yaml RL_stage2.py \
        --model_name_or_path FreedomIntelligence/HuatuoGPT-o1-8B \
        --reward_model_path FreedomIntelligence/medical_o1_verifier_3B \
        --value_model_path meta-llama/Llama-3.2-3B-Instruct \
        --dataset_name FreedomIntelligence/medical-o1-verifiable-problem ...

All trl `PPOConfig` / `TrainingArguments` flags work (see --help). A rerun of the same command
resumes from the newest complete `<output_dir>/checkpoint-N` (policy, value model, optimizer,
scheduler, RNG, data position) when it was trained from the same model, data and result-changing
flags (huatuo_o1.train.checkpoints); `--resume False` starts over. The logic lives in huatuo_o1/rl/ppo.py (trainer wiring,
reward hook, resume), huatuo_o1/rl/rewards.py and huatuo_o1/rl/data.py.
"""

from __future__ import annotations

import sys


def parse_args(argv=None):
    from transformers import HfArgumentParser
    from trl import ModelConfig

    from huatuo_o1.rl.ppo import MedicalPPOConfig, PPOScriptArguments
    from huatuo_o1.train.checks import parse_dataclasses

    parser = HfArgumentParser((PPOScriptArguments, MedicalPPOConfig, ModelConfig))
    return tuple(parse_dataclasses(parser, argv))


def main(argv=None) -> int:
    from huatuo_o1.cli import setup_training_logging
    from huatuo_o1.rl.ppo import train_ppo

    setup_training_logging()
    script_args, training_args, model_args = parse_args(argv)
    out = train_ppo(script_args, training_args, model_args)
    print(f"final policy saved to {out}")
    return 0


if __name__ == "__main__":
    from huatuo_o1.cli import run_main

    run_main(lambda: main(sys.argv[1:]))
