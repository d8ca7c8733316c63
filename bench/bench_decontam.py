"""Benchmark of decontamination: items screened per second, against a naive baseline, same run.

    .venv/bin/python bench/bench_decontam.py [--items 200000] [--eval 10000] [--contaminated 0.02]

Synthetic data (generated here, seeded): --eval exam-like questions of 300-900 characters built from
a medical-sounding vocabulary, and --items training questions of the same kind; a fraction
(--contaminated) of the items carry 64-100 characters copied from a random eval question, with their
whitespace changed (newlines, double spaces) so normalisation matters; a few are copies of a whole
eval question.

  - ours     : huatuo_o1.datagen.decontam.EvalIndex (numpy hashed windows, bitmap prefilter, exact check),
               index build included in the time;
  - baseline : the straightforward way: a Python set of every normalised 64-character window of
               the eval questions, and every window of every item looked up in it (same answers).

Both must flag exactly the same items (checked); the script prints items/s of each and the ratio.
"""

from __future__ import annotations

import argparse
import random
import time

from huatuo_o1.datagen.decontam import WINDOW, EvalIndex, normalize

STEMS = (
    "A {age}-year-old {sex} has {sym} for {dur}.",
    "Examination: {sign}.",
    "Labs: {lab}.",
    "History of {hist}.",
    "{sym} worse with {trig}.",
)


def make_vocab(rng: random.Random) -> list[str]:
    syll = ["ca", "ro", "mi", "tis", "lo", "pa", "the", "no", "sis", "ne", "phro", "car", "dio", "hepa", "to"]
    syll += ["gly", "cae", "mia", "ur", "ic", "ost", "eo", "my", "el", "itis", "al", "gia", "derm", "ven"]
    return ["".join(rng.choice(syll) for _ in range(rng.randint(2, 5))) for _ in range(50000)]


def make_question(rng: random.Random, vocab: list[str]) -> str:
    parts = []
    target = rng.randint(300, 900)
    size = 0
    while size < target:
        stem = rng.choice(STEMS).format(
            age=rng.randint(18, 90),
            sex=rng.choice(("man", "woman", "boy", "girl")),
            sym=" ".join(rng.choices(vocab, k=rng.randint(1, 4))),
            dur=f"{rng.randint(1, 12)} {rng.choice(('days', 'weeks', 'months'))}",
            sign=" ".join(rng.choices(vocab, k=rng.randint(2, 6))),
            lab=" ".join(rng.choices(vocab, k=rng.randint(2, 6))),
            hist=" ".join(rng.choices(vocab, k=rng.randint(1, 3))),
            trig=rng.choice(vocab),
        )
        parts.append(stem)
        size += len(stem) + 1
    parts.append(rng.choice(("Most likely diagnosis?", "What is the cause?", "Next step?")))
    return " ".join(parts)


def make_data(n_items: int, n_eval: int, rate: float, seed: int = 0):
    rng = random.Random(seed)
    vocab = make_vocab(rng)
    evals = [("bench", i + 1, make_question(rng, vocab)) for i in range(n_eval)]
    items = []
    for _ in range(n_items):
        q = make_question(rng, vocab)
        r = rng.random()
        if r < rate:
            src = normalize(rng.choice(evals)[2])
            k = rng.randint(WINDOW, min(100, len(src)))
            s = rng.randint(0, len(src) - k)
            piece = src[s : s + k].replace(" ", "\n", 1).replace(" ", "  ", 1)
            cut = rng.randint(0, len(q))
            q = q[:cut] + " " + piece + " " + q[cut:]
        elif r < rate * 1.1:
            q = rng.choice(evals)[2]
        items.append(q)
    return evals, items


def baseline(evals, items) -> list[bool]:
    windows = set()
    whole = set()
    for _, _, q in evals:
        t = normalize(q)
        whole.add(t)
        for s in range(len(t) - WINDOW + 1):
            windows.add(t[s : s + WINDOW])
    out = []
    for q in items:
        t = normalize(q)
        out.append(t in whole or any(t[s : s + WINDOW] in windows for s in range(len(t) - WINDOW + 1)))
    return out


def ours(evals, items) -> list[bool]:
    index = EvalIndex(evals)
    return [m is not None for m in index.find(items)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--eval", type=int, default=10_000)
    ap.add_argument("--contaminated", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    evals, items = make_data(args.items, args.eval, args.contaminated, args.seed)
    chars = sum(len(q) for q in items)
    print(
        f"data: {len(items)} items ({chars / 1e6:.1f}M characters) against {len(evals)} eval questions "
        f"({sum(len(q) for _, _, q in evals) / 1e6:.1f}M characters); generated in {time.perf_counter() - t0:.1f} s"
    )
    t0 = time.perf_counter()
    a = ours(evals, items)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    b = baseline(evals, items)
    t_base = time.perf_counter() - t0
    assert a == b, f"the two disagree on {sum(x != y for x, y in zip(a, b, strict=True))} items"
    print(f"flagged: {sum(a)} items ({100 * sum(a) / len(a):.2f}%), identical in both")
    print(f"ours     : {t_ours:7.2f} s  {len(items) / t_ours:10.0f} items/s (index build included)")
    print(f"baseline : {t_base:7.2f} s  {len(items) / t_base:10.0f} items/s (Python set of 64-char windows)")
    print(f"ratio ours/baseline: {t_base / t_ours:.1f}x")


if __name__ == "__main__":
    main()
