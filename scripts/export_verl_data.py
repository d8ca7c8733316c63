"""Write verl's RL parquet files (train.parquet, val.parquet) from our verifiable problems.

    python scripts/export_verl_data.py --data_path FreedomIntelligence/medical-o1-verifiable-problem \
        --tokenizer FreedomIntelligence/HuatuoGPT-o1-8B --output_dir data/verl

Same rows, prompts and split as RL_stage2.py with the same --seed / --eval_fraction /
--max_eval_samples / --max_prompt_length. The logic lives in huatuo_o1/rl/verl_data.py; the reward
verl calls is huatuo_o1/rl/verl_reward.py; launch recipes are in recipes/verl/.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from huatuo_o1.cli import run_main  # noqa: E402

DATA_FLAGS = ("eval_fraction", "max_eval_samples", "max_prompt_length")  # RL_stage2.py's, same declaration


def parse_args(argv=None) -> argparse.Namespace:
    from huatuo_o1.cli import add_dataclass_args
    from huatuo_o1.rl.common import RLScriptArguments
    from huatuo_o1.rl.verl_data import DATA_SOURCE

    rl = {f.name: f for f in dataclasses.fields(RLScriptArguments)}
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_path", "--dataset_name", required=True, help=rl["dataset_name"].metadata["help"])
    p.add_argument(
        "--tokenizer", required=True, help="The policy (its tokenizer builds and measures prompts)."
    )
    p.add_argument(
        "--output_dir", required=True, help="Folder for train.parquet, val.parquet, export_summary.json."
    )
    p.add_argument("--seed", type=int, default=42, help="Split seed (RL_stage2.py's --seed).")
    add_dataclass_args(p, RLScriptArguments, exclude=[n for n in rl if n not in DATA_FLAGS])
    p.add_argument("--data_source", default=DATA_SOURCE, help="verl's data_source column (its metrics key).")
    return p.parse_args(argv)


def main(argv=None) -> int:
    import logging

    from huatuo_o1.rl.verl_data import export_verl_data

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    summary = export_verl_data(
        args.data_path,
        args.tokenizer,
        args.output_dir,
        seed=args.seed,
        eval_fraction=args.eval_fraction,
        max_eval_samples=args.max_eval_samples,
        max_prompt_length=args.max_prompt_length,
        data_source=args.data_source,
    )
    print("\n".join(summary.lines()))
    return 0


if __name__ == "__main__":
    run_main(lambda: main(sys.argv[1:]))
