"""Train a 2-label medical verifier (label 1 = True) from exported verdicts (docs/data_formats.md §5).

    python train_verifier.py --data_path data/verifier_data.json \
        --model_name_or_path meta-llama/Llama-3.2-3B-Instruct --output_dir ckpts/medical_verifier \
        --num_train_epochs 2 --learning_rate 1e-5 --per_device_train_batch_size 8

Reports held-out accuracy and a threshold sweep (verifier_eval.json next to the model). The
result is a plain HF folder for RL_stage2.py --reward_model_path. Logic: huatuo_o1/rl/verifier_train.py.
"""

from __future__ import annotations

import sys


def parse_args(argv=None):
    from transformers import HfArgumentParser, TrainingArguments

    from huatuo_o1.rl.verifier_train import VerifierScriptArguments
    from huatuo_o1.train.checks import parse_dataclasses

    parser = HfArgumentParser((VerifierScriptArguments, TrainingArguments))
    return tuple(parse_dataclasses(parser, argv))


def main(argv=None) -> int:
    from huatuo_o1.cli import setup_training_logging
    from huatuo_o1.rl.verifier_train import train_verifier

    setup_training_logging()
    script_args, training_args = parse_args(argv)
    report = train_verifier(script_args, training_args)
    summary = {k: v for k, v in report.items() if k != "sweep"}
    print(f"verifier saved to {training_args.output_dir}; held-out: {summary}")
    return 0


if __name__ == "__main__":
    from huatuo_o1.cli import run_main

    run_main(lambda: main(sys.argv[1:]))
