"""Scoring multiple-choice answers the way HuatuoGPT-o1's evaluation did, plus stricter reports.

Answer extraction (`match_choice`), in the original's order (the paper's numbers depend on it):
  0. Keep only the text after `## Final Response\\n\\n` when the output has one.
  1. "answer is X" (X a capital letter): the first and the last such letter.
  2. Else an option letter standing alone: preceded by a non-word character, a Chinese character,
     "is ", the start, a quote, `*`, `#`, `(`, and followed by a non-word character, a Chinese
     character or the end; "A " (the article, as in "A 45-year-old man") is never taken.
  3. Else the option whose text occurs in the output (case-insensitive): first = the option whose
     text appears earliest, last = the one whose text appears latest.
  4. Else the option whose text is most similar to the output (difflib ratio).
  An empty output extracts nothing (the original fell through to step 4 and picked the last option).

`score_output` stores both numberings: `ans_type` as the original (1 = steps 1 and 2, 2 = step 3,
3 = step 4; 0 = nothing extracted) and `ans_step` = the step above.

Scores per source:
  lenient    : the original's number: accuracy of the first extracted letter and of the last one,
               the better of the two.
  strict     : the last letter, only when it came from steps 1-2; else the item is unanswered
               (and wrong). `unanswered` is that rate.
With k samples per question (`--n_samples`), each sample is scored as above, and per source we add
the mean accuracy over samples with a 95% confidence interval (normal approximation, questions as
the unit: the spread of per-question mean accuracies), majority-vote accuracy (the most frequent
extracted letter; ties go to the letter seen first) and pass@k (any sample right).
"""

from __future__ import annotations

import difflib
import math
import re
from collections import Counter

from huatuo_o1.formats import final_response_or_all

LETTERS = "ABCDEFGHIJKLMN"
STRICT_STEPS = (1, 2)  # extraction steps the strict score accepts
# our step -> the original's `ans_type` (it numbered steps 1 and 2 both 1; 0 = nothing extracted)
ORIGINAL_TYPE = {0: 0, 1: 1, 2: 1, 3: 2, 4: 3}


def _letter_class(options: dict) -> str:
    keys = "".join(k for k in options if len(k) == 1 and k.isalpha() and k.isupper())
    return "".join(sorted(set(keys or LETTERS[: len(options)])))


def str_similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def match_choice(text: str, options: dict) -> tuple[list[str | None], int]:
    """Extract ([first letter, last letter], step) from a model output; step 0 = nothing found."""
    text = final_response_or_all(text or "")
    if not text.strip():
        return [None, None], 0
    # 1. "answer is X"
    matches = list(re.finditer(r"answer is\s*?([A-N])(?![A-Za-z0-9])", text, re.S))
    if matches:
        return [matches[0].group(1), matches[-1].group(1)], 1
    # 2. a standalone option letter
    letters = _letter_class(options)
    pattern = (
        r"([\u4e00-\u9fff]|is |是|项|\*|\W|\ |\(|为|^|'|\"|#)(?![aA] )(["
        + letters
        + r"])(\W|[\u4e00-\u9fff]|$)"
    )
    matches = list(re.finditer(pattern, text, re.S))
    if matches:
        return [matches[0].group(2), matches[-1].group(2)], 2
    # 3. option text contained in the output
    low = text.lower()
    found = [
        (k, low.index(str(v).lower()), low.rindex(str(v).lower()))
        for k, v in options.items()
        if str(v).strip() and str(v).lower() in low
    ]
    if found:
        first = min(found, key=lambda x: x[1])[0]
        last = max(found, key=lambda x: x[2])[0]
        return [first, last], 3
    # 4. the most similar option text (ties: the later option, as the original's `>=`)
    best, best_sim = None, -1.0
    for k, v in options.items():
        sim = str_similarity(str(v).lower(), low)
        if sim >= best_sim:
            best, best_sim = k, sim
    return [best, best], 4


def score_output(output: str, options: dict, answer_idx: str) -> dict:
    """Everything the results file keeps about one output."""
    ans, step = match_choice(output, options)
    strict_ans = ans[1] if step in STRICT_STEPS else None
    gold = str(answer_idx).strip().upper()
    return {
        "ans": ans,
        "ans_type": ORIGINAL_TYPE[step],  # the original's numbering: 1 letter, 2 option text, 3 difflib
        "ans_step": step,  # our finer step (see match_choice)
        "strict_ans": strict_ans,
        "correct_first": ans[0] is not None and ans[0].upper() == gold,
        "correct_last": ans[1] is not None and ans[1].upper() == gold,
        "correct_strict": strict_ans is not None and strict_ans.upper() == gold,
    }


def _samples(record: dict) -> list[dict]:
    """The scored samples of a record (one unless --n_samples > 1)."""
    if record.get("samples"):
        return record["samples"]
    return [record]


def _ci95(values: list[float]) -> tuple[float, float, float]:
    n = len(values)
    mean = sum(values) / n if n else 0.0
    if n < 2:
        return mean, mean, mean
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = 1.96 * math.sqrt(var / n)
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def _majority(letters: list[str | None]) -> str | None:
    votes = [x for x in letters if x is not None]
    if not votes:
        return None
    counts = Counter(votes)
    top = max(counts.values())
    return next(x for x in votes if counts[x] == top)


def summarize(records: list[dict]) -> dict:
    """Per-source summary: count, lenient, strict, unanswered (+ first/last and the original's list).

    With several samples per record, also mean accuracy with its 95% CI, maj@k and pass@k, for both
    the lenient pick (the better position of the source) and the strict pick.
    """
    by_source: dict[str, list[dict]] = {}
    for r in records:
        by_source.setdefault(r.get("source", "normal"), []).append(r)
    out: dict[str, dict] = {}
    for source, recs in by_source.items():
        samples = [s for r in recs for s in _samples(r)]
        n = len(samples)
        first = sum(s["correct_first"] for s in samples) / n
        last = sum(s["correct_last"] for s in samples) / n
        strict = sum(s["correct_strict"] for s in samples) / n
        unanswered = sum(s["strict_ans"] is None for s in samples) / n
        pos = 0 if first > last else 1  # the original took the head score only when strictly better
        res = {
            "count": len(recs),
            "lenient": max(first, last),
            "strict": strict,
            "unanswered": unanswered,
            "first": first,
            "last": last,
            "empty_outputs": sum(not (s.get("output") or "").strip() for s in samples),
            # the original's summary list: [score, first correct, count, last correct]
            "score_list": [
                max(first, last),
                sum(s["correct_first"] for s in samples),
                n,
                sum(s["correct_last"] for s in samples),
            ],
        }
        k = max(len(_samples(r)) for r in recs)
        if k > 1:
            res["n_samples"] = k
            gold = [str(r["answer_idx"]).strip().upper() for r in recs]
            for name, pick in (
                ("lenient", lambda s, pos=pos: s["ans"][pos]),
                ("strict", lambda s: s["strict_ans"]),
            ):
                per_q = [
                    [(pick(s) or "").upper() == g for s in _samples(r)]
                    for r, g in zip(recs, gold, strict=True)
                ]
                mean, lo, hi = _ci95([sum(c) / len(c) for c in per_q])
                maj = [_majority([pick(s) for s in _samples(r)]) for r in recs]
                res[name + "_samples"] = {
                    "mean": mean,
                    "ci95": [lo, hi],
                    f"maj@{k}": sum((m or "").upper() == g for m, g in zip(maj, gold, strict=True))
                    / len(recs),
                    f"pass@{k}": sum(any(c) for c in per_q) / len(recs),
                }
        out[source] = res
    return out


def overall(summary: dict) -> dict:
    """Count-weighted average of the per-source numbers (the sources' mean over all questions)."""
    total = sum(v["count"] for v in summary.values())
    if not total:
        return {"count": 0, "lenient": 0.0, "strict": 0.0, "unanswered": 0.0}
    return {
        "count": total,
        **{
            m: sum(v[m] * v["count"] for v in summary.values()) / total
            for m in ("lenient", "strict", "unanswered")
        },
    }


def format_table(summary: dict) -> str:
    """The per-source table printed at the end of a run."""
    rows = [("source", "count", "lenient", "strict", "unanswered")]
    for source, v in summary.items():
        rows.append(
            (
                source,
                str(v["count"]),
                f"{100 * v['lenient']:.1f}",
                f"{100 * v['strict']:.1f}",
                f"{100 * v['unanswered']:.1f}",
            )
        )
    if len(summary) > 1:
        a = overall(summary)
        rows.append(
            (
                "ALL (weighted)",
                str(a["count"]),
                f"{100 * a['lenient']:.1f}",
                f"{100 * a['strict']:.1f}",
                f"{100 * a['unanswered']:.1f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for j, r in enumerate(rows):
        lines.append(
            "  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)])
        )
        if j == 0:
            lines.append("-" * len(lines[0]))
    extra = []
    for source, v in summary.items():
        for name in ("lenient", "strict"):
            s = v.get(name + "_samples")
            if s:
                k = v["n_samples"]
                extra.append(
                    f"{source} [{name}, k={k}]: mean {100 * s['mean']:.1f} "
                    f"(95% CI {100 * s['ci95'][0]:.1f}-{100 * s['ci95'][1]:.1f}), "
                    f"maj@{k} {100 * s[f'maj@{k}']:.1f}, pass@{k} {100 * s[f'pass@{k}']:.1f}"
                )
    return "\n".join(lines + ([""] + extra if extra else []))
