"""Split stage-1 output into the SFT-search set and the RL set (the paper: 20K / 20K), deterministically.

    python scripts/split_stage1.py --data_path output_data/mcq_verifiable_final_40000.json \
        --sft_size 20000 --rl_size 20000 [--closed_set output_data/mcq_verifiable_final_40000.json \
        --closed_size 4000] [--seed 42]

Writes <data stem>_sft_<N>.json (input of search_for_complex_reasoning_path.py) and
<data stem>_rl_<N>.json (input of RL_stage2.py) beside the input, or --sft_output / --rl_output.
See huatuo_o1/datagen/stage1_split.py for the rules (no overlap, hashed order, closed-set items).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from huatuo_o1.cli import run_main  # noqa: E402
from huatuo_o1.datagen.stage1_split import split  # noqa: E402
from huatuo_o1.io import atomic_write_json, load_records  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_path", required=True, help="Stage-1 merged output (JSON list or JSONL).")
    p.add_argument("--sft_size", type=int, default=20000, help="Items for the SFT search set (paper: 20000).")
    p.add_argument(
        "--rl_size", type=int, default=20000, help="Open-ended items for the RL set (paper: 20000)."
    )
    p.add_argument(
        "--closed_set",
        default=None,
        help="Multiple-choice items (stage-1 input or output) to add to the RL set as closed-set problems.",
    )
    p.add_argument("--closed_size", type=int, default=4000, help="Closed-set items to add (paper: 4000).")
    p.add_argument("--seed", type=int, default=42, help="Seed of the hashed order.")
    p.add_argument("--sft_output", default=None, help="Default: <data stem>_sft_<N>.json beside the input.")
    p.add_argument("--rl_output", default=None, help="Default: <data stem>_rl_<N>.json beside the input.")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    records = load_records(args.data_path, what="stage-1 output")
    closed = load_records(args.closed_set, what="closed-set") if args.closed_set else None
    sft, rl, report = split(records, args.sft_size, args.rl_size, args.seed, closed, args.closed_size)
    src = Path(args.data_path)
    sft_path = Path(args.sft_output or src.with_name(f"{src.stem}_sft_{len(sft)}.json"))
    rl_path = Path(args.rl_output or src.with_name(f"{src.stem}_rl_{len(rl)}.json"))
    atomic_write_json(sft_path, sft)
    atomic_write_json(rl_path, rl)
    report.update(sft_output=str(sft_path), rl_output=str(rl_path))
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    run_main(main)
