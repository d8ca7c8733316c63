"""Screen any data file (stage-1, SFT, RL) against the evaluation sets: Med-PaLM 2's rule, 64 shared characters.

    python scripts/decontaminate.py --data_path data/sft.json \
        [--against evaluation/data/eval_data.json[,more.json]] [--fields Question,...]

Writes <data stem>_clean.json (the items that pass, in order) and <data stem>_contaminated.json
(each dropped item with `decontamination_reason`) beside the input, or --output / --dropped_output,
and prints the counts. See huatuo_o1/datagen/decontam.py for the rule and how it is computed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from huatuo_o1.cli import run_main  # noqa: E402
from huatuo_o1.datagen.decontam import QUESTION_FIELDS, EvalIndex, screen  # noqa: E402
from huatuo_o1.io import InputError, atomic_write_json, load_records  # noqa: E402

DEFAULT_AGAINST = Path(__file__).resolve().parents[1] / "evaluation" / "data" / "eval_data.json"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_path", required=True, help="Items to screen (JSON list or JSONL).")
    p.add_argument(
        "--against",
        default=None,
        help="Eval files in the evaluation format, comma-separated (default: evaluation/data/eval_data.json).",
    )
    p.add_argument(
        "--fields",
        default=",".join(QUESTION_FIELDS),
        help="Comma-separated fields holding question text; each present one is screened "
        f"(default: {','.join(QUESTION_FIELDS)}).",
    )
    p.add_argument(
        "--ignore_common",
        type=int,
        default=0,
        help="Ignore windows found in this many or more eval questions (boilerplate; default 0: none).",
    )
    p.add_argument("--output", default=None, help="Default: <data stem>_clean.json beside the input.")
    p.add_argument(
        "--dropped_output", default=None, help="Default: <data stem>_contaminated.json beside the input."
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    files = [f.strip() for f in (args.against or "").split(",") if f.strip()]
    if not files:
        if not DEFAULT_AGAINST.is_file():
            raise InputError(f"no --against given and {DEFAULT_AGAINST} does not exist")
        files = [str(DEFAULT_AGAINST)]
    fields = [f.strip() for f in args.fields.split(",") if f.strip()]
    if not fields:
        raise InputError("--fields names no field")
    if args.ignore_common < 0:
        raise InputError(f"--ignore_common must be 0 or more (got {args.ignore_common})")
    items = load_records(args.data_path, what="data")
    index = EvalIndex.from_files(files, ignore_common=args.ignore_common)
    matches = screen(items, index, fields)
    unscreened = sum(1 for it in items if not any(isinstance(it.get(f), str) for f in fields))
    clean = [it for it, m in zip(items, matches, strict=True) if m is None]
    dropped = [
        {**it, "decontamination_reason": m.reason()}
        for it, m in zip(items, matches, strict=True)
        if m is not None
    ]
    src = Path(args.data_path)
    out = Path(args.output or src.with_name(f"{src.stem}_clean.json"))
    bad = Path(args.dropped_output or src.with_name(f"{src.stem}_contaminated.json"))
    atomic_write_json(out, clean)
    atomic_write_json(bad, dropped)
    report = {
        "items": len(items),
        "clean": len(clean),
        "contaminated": len(dropped),
        "items_without_screened_fields": unscreened,
        "eval_questions": len(index),
        "against": files,
        "fields": fields,
        "output": str(out),
        "dropped_output": str(bad),
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    run_main(main)
