"""Rebuilding an evaluation file from the public benchmark datasets: NOT the paper's file.

The logic of evaluation/build_rebuilt_eval_data.py.

    python evaluation/build_rebuilt_eval_data.py --output evaluation/data/eval_rebuilt_not_paper.json
    python evaluation/eval.py --model_name $model_name --eval_file evaluation/data/eval_rebuilt_not_paper.json --port $port

The item set differs from the paper's evaluation/data/eval_data.json (other PubMedQA ids, other
MMLU-Pro categories, GPQA options in another order), so its numbers are not comparable with the
paper's Table 1; eval.py says so when it scores it. For the paper's file run
`python evaluation/get_eval_data.py`. Use this one for benchmarks or splits the paper's file lacks.

Never run in CI or tests (it downloads). Writes docs/data_formats.md §6: {source: [{question, options,
answer_idx, answer}]}, options as {"A": text, ...}. Sources, named as in HuatuoGPT-o1's file:
  MedQA_USMLE_test      GBaker/MedQA-USMLE-4-options, test (4 options)
  MedMCQA_validation    openlifescienceai/medmcqa, validation (opa..opd, cop = 0..3)
  PubMedQA_test         qiaojin/PubMedQA pqa_labeled; options yes/no/maybe, the abstract's contexts
                        before the question. Only the official 500 test ids when --pubmedqa_test_ids
                        (test_ground_truth.json of the PubMedQA GitHub repo) is given; otherwise
                        all 1000 labeled items under the name PubMedQA_labeled.
  MMLU-Pro_Medical_test TIGER-Lab/MMLU-Pro, test, categories --mmlu_pro_categories (up to 10 options)
  GPQA_Medical_test     Idavidrein/gpqa (gated: accept its terms and `huggingface-cli login`),
                        --gpqa_config, subdomains --gpqa_subdomains; the four answers are shuffled
                        with --seed (the dataset lists the correct one first).
A source that cannot be loaded (offline, gated) is skipped with a warning; --sources picks some.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

LETTERS = "ABCDEFGHIJKLMNOP"


def _item(question: str, options: list[str], correct: int) -> dict:
    opts = {LETTERS[i]: str(o).strip() for i, o in enumerate(options)}
    return {
        "question": question.strip(),
        "options": opts,
        "answer_idx": LETTERS[correct],
        "answer": opts[LETTERS[correct]],
    }


def medqa(args):
    from datasets import load_dataset

    ds = load_dataset("GBaker/MedQA-USMLE-4-options", split="test")
    out = []
    for r in ds:
        keys = sorted(r["options"])
        out.append(_item(r["question"], [r["options"][k] for k in keys], keys.index(r["answer_idx"])))
    return {"MedQA_USMLE_test": out}


def medmcqa(args):
    from datasets import load_dataset

    ds = load_dataset("openlifescienceai/medmcqa", split="validation")
    return {
        "MedMCQA_validation": [
            _item(r["question"], [r["opa"], r["opb"], r["opc"], r["opd"]], int(r["cop"])) for r in ds
        ]
    }


def pubmedqa(args):
    from datasets import load_dataset

    ds = load_dataset("qiaojin/PubMedQA", "pqa_labeled", split="train")
    ids = None
    name = "PubMedQA_labeled"
    if args.pubmedqa_test_ids:
        ids = set(json.loads(Path(args.pubmedqa_test_ids).read_text()))
        name = "PubMedQA_test"
    choices = ["yes", "no", "maybe"]
    out = []
    for r in ds:
        if ids is not None and str(r["pubid"]) not in ids:
            continue
        context = "\n".join(r["context"]["contexts"])
        out.append(_item(f"{context}\n{r['question']}", choices, choices.index(r["final_decision"])))
    return {name: out}


def mmlu_pro(args):
    from datasets import load_dataset

    ds = load_dataset("TIGER-Lab/MMLU-Pro", split="test")
    cats = {c.strip().lower() for c in args.mmlu_pro_categories.split(",")}
    out = [
        _item(r["question"], r["options"], int(r["answer_index"]))
        for r in ds
        if r["category"].lower() in cats
    ]
    return {"MMLU-Pro_Medical_test": out}


def gpqa(args):
    from datasets import load_dataset

    ds = load_dataset("Idavidrein/gpqa", args.gpqa_config, split="train")
    subs = {s.strip().lower() for s in args.gpqa_subdomains.split(",")}
    rng = random.Random(args.seed)
    out = []
    for r in ds:
        if str(r.get("Subdomain", "")).strip().lower() not in subs:
            continue
        answers = [
            r["Correct Answer"],
            r["Incorrect Answer 1"],
            r["Incorrect Answer 2"],
            r["Incorrect Answer 3"],
        ]
        order = list(range(4))
        rng.shuffle(order)
        out.append(_item(r["Question"], [answers[i] for i in order], order.index(0)))
    return {"GPQA_Medical_test": out}


BUILDERS = {"medqa": medqa, "medmcqa": medmcqa, "pubmedqa": pubmedqa, "mmlu_pro": mmlu_pro, "gpqa": gpqa}


def make_parser() -> argparse.ArgumentParser:
    """The command line's flags."""
    ap = argparse.ArgumentParser(
        description="Build the full evaluation file from public benchmarks (needs the hub)."
    )
    ap.add_argument(
        "--output",
        default="evaluation/data/eval_rebuilt_not_paper.json",
        help="Where to write the eval file.",
    )
    ap.add_argument(
        "--sources", default=",".join(BUILDERS), help=f"Comma-separated subset of {', '.join(BUILDERS)}."
    )
    ap.add_argument(
        "--pubmedqa_test_ids",
        default=None,
        help="test_ground_truth.json of the PubMedQA repo (keys = test pubids).",
    )
    ap.add_argument("--mmlu_pro_categories", default="health,biology", help="MMLU-Pro categories kept.")
    ap.add_argument(
        "--gpqa_config", default="gpqa_main", help="GPQA config (gpqa_main, gpqa_diamond, gpqa_extended)."
    )
    ap.add_argument("--gpqa_subdomains", default="Genetics,Molecular Biology", help="GPQA subdomains kept.")
    ap.add_argument("--seed", type=int, default=42, help="Seed for shuffling GPQA's answers.")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    data: dict[str, list] = {}
    for name in [s.strip() for s in args.sources.split(",") if s.strip()]:
        if name not in BUILDERS:
            print(f"error: unknown source {name!r}; choose from {', '.join(BUILDERS)}", file=sys.stderr)
            return 2
        try:
            part = BUILDERS[name](args)
        except Exception as e:  # offline, gated, renamed dataset: skip with the reason
            print(
                f"warning: skipped {name}: {type(e).__name__}: {str(e).splitlines()[0][:200]}",
                file=sys.stderr,
            )
            continue
        for src, items in part.items():
            print(f"{src}: {len(items)} questions")
        data.update(part)
    if not data:
        print("error: no source could be built (is the hub reachable?)", file=sys.stderr)
        return 1
    from huatuo_o1.io import atomic_write_json

    atomic_write_json(args.output, data)
    print(f"wrote {args.output}")
    return 0
