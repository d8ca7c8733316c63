"""Splitting stage-1 output into the SFT-search set and the RL set, as the paper did (20K / 20K).

In plain words:
  - Usable items are the kept ones (status "kept", or no status) with a non-empty open-ended question
    and ground-truth answer. Items whose open-ended question (after whitespace normalisation) repeats
    an earlier one are left out, so the same problem can never land in both sets.
  - The order is a hash of `--seed` and the normalised question: the same input gives the same split
    whatever the file order, and adding items later moves few of the others.
  - The first `sft_size` go to the SFT-search set, the next `rl_size` to the RL set. With fewer usable
    items than both sizes, the items are shared in the sizes' proportion (said in the report).
  - Closed-set items (the paper's 4K unconverted questions) can be added to the RL set: a multiple-
    choice item becomes the problem "question + its options as `A. text` lines" with the correct
    option's text as the ground truth. Only unconverted questions are used: an item whose question is
    one that stage 1 converted (any usable item's source or open-ended question, placed or not) or
    that stage 1 dropped for contamination is left out; they are chosen by the same hashed order.
    The stage-1 output itself can serve as the closed-set file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from huatuo_o1.contract import GROUND_TRUTH as GT
from huatuo_o1.contract import OPEN_QUESTION as OPEN_Q
from huatuo_o1.datagen.decontam import normalize
from huatuo_o1.io import InputError, check_distinct_paths, json_bytes, load_records, write_file_set
from huatuo_o1.prompts import format_options


def _rank(seed: int, text: str) -> str:
    return hashlib.sha256(f"{seed}\0{normalize(text)}".encode()).hexdigest()


def usable(records: list[dict]) -> tuple[list[dict], int]:
    """The kept records with a question and answer, first of each normalised question; and how many
    repeats were left out."""
    seen: set[str] = set()
    out, repeats = [], 0
    for r in records:
        if r.get("status", "kept") != "kept":
            continue
        q, a = r.get(OPEN_Q), r.get(GT)
        if not isinstance(q, str) or not q.strip() or a in (None, "") or not str(a).strip():
            continue
        key = normalize(q)
        if key in seen:
            repeats += 1
            continue
        seen.add(key)
        out.append(r)
    return out, repeats


def closed_set_problem(item: dict) -> dict | None:
    """A multiple-choice item as an RL problem: question + options, the correct option's text as the
    ground truth; None when the item lacks what that needs."""
    q, options = item.get("question"), item.get("options")
    if not isinstance(q, str) or not q.strip() or not isinstance(options, dict) or not options:
        return None
    letter = item.get("answer_idx")
    answer = options.get(letter) if letter not in (None, "") else item.get("answer")
    if answer in (None, "") or not str(answer).strip():
        return None
    problem = {k: v for k, v in item.items() if k not in (OPEN_Q, GT, "status", "drop_step", "drop_reason")}
    problem[OPEN_Q] = f"{q.strip()}\n{format_options(options)}"
    problem[GT] = str(answer).strip()
    problem["problem_type"] = "closed_set"
    return problem


def split(
    records: list[dict],
    sft_size: int = 20000,
    rl_size: int = 20000,
    seed: int = 42,
    closed: list[dict] | None = None,
    closed_size: int = 0,
) -> tuple[list[dict], list[dict], dict]:
    """(SFT-search set, RL set, report)."""
    if sft_size < 0 or rl_size < 0 or closed_size < 0:
        raise InputError("the set sizes must be 0 or more")
    pool, repeats = usable(records)
    pool.sort(key=lambda r: _rank(seed, r[OPEN_Q]))
    n_sft, n_rl = sft_size, rl_size
    note = None
    if len(pool) < sft_size + rl_size:
        total = sft_size + rl_size
        n_sft = round(len(pool) * sft_size / total) if total else 0
        n_rl = len(pool) - n_sft
        note = f"only {len(pool)} usable items for {sft_size} + {rl_size}: shared {n_sft} / {n_rl}"
    sft = pool[:n_sft]
    rl = pool[n_sft : n_sft + n_rl]
    for r in rl:
        r.setdefault("problem_type", "open_ended")
    report = {
        "records": len(records),
        "usable": len(pool),
        "repeated_questions_left_out": repeats,
        "sft": len(sft),
        "rl_open_ended": len(rl),
        "rl_closed_set": 0,
        "unused": len(pool) - len(sft) - len(rl),
        "seed": seed,
    }
    if note:
        report["note"] = note
    if closed and closed_size:
        taken = {normalize(r.get("question", "")) for r in pool} | {normalize(r[OPEN_Q]) for r in pool}
        candidates, skipped = [], {"contaminated": 0, "already_used": 0, "incomplete": 0}
        seen: set[str] = set()
        for item in closed:
            if item.get("drop_step") == "decontamination":
                skipped["contaminated"] += 1
                continue
            key = normalize(item.get("question", ""))
            if key in taken or key in seen:
                skipped["already_used"] += 1
                continue
            problem = closed_set_problem(item)
            if problem is None:
                skipped["incomplete"] += 1
                continue
            seen.add(key)
            candidates.append(problem)
        candidates.sort(key=lambda r: _rank(seed, r["question"]))
        added = candidates[:closed_size]
        rl = rl + added
        report["rl_closed_set"] = len(added)
        report["closed_set_left_out"] = skipped
    report["rl"] = len(rl)
    return sft, rl, report


# ---------------------------------------------------------------------------------------------
# Command line: scripts/split_stage1.py

USAGE = """Split stage-1 output into the SFT-search set and the RL set (the paper: 20K / 20K), deterministically.

    python scripts/split_stage1.py --data_path output_data/mcq_verifiable_final_40000.json \
        --sft_size 20000 --rl_size 20000 [--closed_set output_data/mcq_verifiable_final_40000.json \
        --closed_size 4000] [--seed 42]

Writes <data stem>_sft_<N>.json (input of search_for_complex_reasoning_path.py) and
<data stem>_rl_<N>.json (input of RL_stage2.py) beside the input, or --sft_output / --rl_output.
See huatuo_o1/datagen/stage1_split.py for the rules (no overlap, hashed order, closed-set items).
"""


def make_parser() -> argparse.ArgumentParser:
    """The command line's flags."""
    p = argparse.ArgumentParser(description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = make_parser()
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    inputs = [("--data_path", args.data_path), ("--closed_set", args.closed_set)]
    check_distinct_paths(inputs, [("--sft_output", args.sft_output), ("--rl_output", args.rl_output)])
    records = load_records(args.data_path, what="stage-1 output")
    closed = load_records(args.closed_set, what="closed-set") if args.closed_set else None
    sft, rl, report = split(records, args.sft_size, args.rl_size, args.seed, closed, args.closed_size)
    src = Path(args.data_path)
    sft_path = Path(args.sft_output or src.with_name(f"{src.stem}_sft_{len(sft)}.json"))
    rl_path = Path(args.rl_output or src.with_name(f"{src.stem}_rl_{len(rl)}.json"))
    check_distinct_paths(inputs, [("--sft_output", sft_path), ("--rl_output", rl_path)])
    report.update(sft_output=str(sft_path), rl_output=str(rl_path))
    # the two splits are one set: a rerun with other sizes replaces both, never one of them
    write_file_set(
        sft_path.with_name(f"{src.stem}_split_set.json"),
        {"sft": (sft_path, json_bytes(sft)), "rl": (rl_path, json_bytes(rl))},
        {"seed": args.seed, **report},
    )
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0
