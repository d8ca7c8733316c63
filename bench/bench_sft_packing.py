"""SFT padding efficiency: real tokens / tokens computed, original batching vs ours (padding-free).

Baseline (the original): shuffled micro-batches of 2 examples per device, padded to the longest.
Ours (`--packing`, default): the same micro-batches concatenated into one row with per-example
position ids (`DataCollatorWithFlattening`), no padding.
Both are measured on the tensors the two collators actually return, in the same run, on:
- data/demo_data.json (if present), tokenized with the SmolLM2 chat template as SFT does;
- a synthetic set with the published set's length spread. ASSUMPTION (no network here to measure
  FreedomIntelligence/medical-o1-reasoning-SFT): lognormal token lengths per example with median
  700 tokens and sigma 0.5 (5th-95th percentile ~300-1600 tokens), clipped to [64, 8192].

    .venv/bin/python bench/bench_sft_packing.py [--n_synthetic 20000 --batch 2]
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

from huatuo_o1.train.sft_data import load_sft_records, make_collator, tokenize_records

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct"
DEMO = ROOT / "data" / "demo_data.json"


def efficiency(examples: list[dict], batch: int, packing: bool, pad_id: int, seed: int = 42) -> float:
    """Run the collator over shuffled micro-batches; real tokens / tokens in the returned input_ids."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    collate = make_collator(packing, pad_id)
    real = computed = 0
    for i in range(0, len(order), batch):
        feats = [examples[j] for j in order[i : i + batch]]
        out = collate(feats)
        real += sum(len(f["input_ids"]) for f in feats)
        computed += out["input_ids"].numel()
    return real / computed


def synthetic(n: int, seed: int = 0, median: float = 700, sigma: float = 0.5) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = int(min(8192, max(64, rng.lognormvariate(0.0, sigma) * median)))
        out.append({"input_ids": [1] * length, "labels": [1] * length})
    return out


def tokenizer():
    from transformers import AutoTokenizer

    if (SMOLLM2 / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(SMOLLM2), "SmolLM2-135M-Instruct"
    from huatuo_o1.testing.tiny_models import build_tiny_tokenizer

    return build_tiny_tokenizer(tempfile.mkdtemp()), "tiny test tokenizer"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--n_synthetic", type=int, default=20000, help="synthetic examples (published en set: ~20k)"
    )
    p.add_argument(
        "--batch", type=int, default=2, help="examples per micro-batch (original --train_bsz_per_gpu)"
    )
    p.add_argument("--max_seq_len", type=int, default=8192, help="SFT --max_seq_len")
    a = p.parse_args()

    sets = []
    if DEMO.exists():
        tok, name = tokenizer()
        examples, stats = tokenize_records(tok, load_sft_records(str(DEMO)), a.max_seq_len)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        sets.append((f"demo_data.json ({len(examples)} ex, {name})", examples, pad, stats.lengths))
    syn = synthetic(a.n_synthetic)
    sets.append(
        (f"synthetic lognormal median 700 ({len(syn)} ex)", syn, 0, [len(e["input_ids"]) for e in syn])
    )

    print(f"padding efficiency = real tokens / tokens computed, micro-batch {a.batch}")
    print(f"{'data':48s} {'tokens p50/p95':>15s} {'original':>9s} {'ours':>6s} {'ours/original':>14s}")
    for name, examples, pad, lengths in sets:
        s = sorted(lengths)
        pct = f"{s[len(s) // 2]}/{s[int(len(s) * 0.95) - 1]}"
        base = efficiency(examples, a.batch, packing=False, pad_id=pad)
        ours = efficiency(examples, a.batch, packing=True, pad_id=pad)
        print(f"{name:48s} {pct:>15s} {base:9.3f} {ours:6.3f} {ours / base:13.2f}x")


if __name__ == "__main__":
    main()
