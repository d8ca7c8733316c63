"""How evaluation scores answers: the original's figures, and our corrected reading beside them.

Two readings of every output, kept apart:
  * The original layout (eval/original.py): the original's extraction and numbers, quirks
    included; empty outputs are left out. `ans`, `ans_type`, `correct_first`, `correct_last` of a
    record and every number in `result_*.json` come from it, so the same outputs give the paper's
    figure bit for bit.
  * Our "fixed" reading (`match_choice` below), which changes only what we consider bugs:
      0. Keep only the text after `## Final Response\\n\\n` when the output has one.
      1. "answer is X" where X is a capital letter NOT followed by a letter or digit ("The answer
         is Cardiology" and "The answer is CD" are no letter answers).
      2. Else an option letter standing alone (the original's rule 2, letters taken from the
         item's option keys).
      3. Else the options whose text occurs in the output: first = the option mentioned earliest,
         last = the option mentioned latest.
      4. Else the option whose text is most similar to the output (difflib ratio).
      An empty or blank output extracts nothing and counts as wrong (the original drops an empty
      one and reads a blank one by similarity).
    `fixed_ans`, `ans_step` (the step above, 0 = nothing) and `fixed_correct_*` hold it.

Scores per source:
  lenient        the original layout's score (the paper's number): the better of first-letter and
                 last-letter accuracy over the outputs it keeps.
  fixed_lenient  the same rule on our fixed reading, over every output (empty ones wrong).
  strict         our last letter, only when it came from steps 1-2; else the item is unanswered
                 (and wrong). `unanswered` is that rate.
  dropped        outputs the original layout leaves out (empty after its clean-up).
With k samples per question (`--n_samples`), the original layout is computed for each run (sample j
of every question) as the original would for that run, and `lenient` is their mean (the paper
averaged 5 runs on GPQA); we add the mean accuracy over samples with a 95% confidence interval
(normal approximation, questions as the unit), majority-vote accuracy (the most frequent letter;
ties go to the letter seen first) and pass@k (any sample right), for the fixed lenient and the
strict pick.
"""

from __future__ import annotations

import difflib
import math
import re
from collections import Counter

from huatuo_o1.eval.original import original_extract, original_scores
from huatuo_o1.formats import final_response_or_all

LETTERS = "ABCDEFGHIJKLMN"
STRICT_STEPS = (1, 2)  # extraction steps the strict score accepts


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
    # 3. option text contained in the output: earliest and latest mention
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
    """Everything the results file keeps about one (already cleaned) output: both readings."""
    gold = str(answer_idx).strip().upper()
    output = output or ""
    if output:
        ans, ans_type = original_extract(output, options)
    else:  # left out by the original layout
        ans, ans_type = [None, None], 0
    fixed, step = match_choice(output, options)
    strict_ans = fixed[1] if step in STRICT_STEPS else None

    def right(x):
        return x is not None and x.upper() == gold

    return {
        "ans": ans,  # the original's [first, last]
        "ans_type": ans_type,  # the original's numbering: 1 letter, 2 option text, 3 difflib, 0 dropped
        "dropped_by_original": not output,
        "correct_first": right(ans[0]),
        "correct_last": right(ans[1]),
        "fixed_ans": fixed,
        "ans_step": step,  # our step (see match_choice)
        "fixed_correct_first": right(fixed[0]),
        "fixed_correct_last": right(fixed[1]),
        "strict_ans": strict_ans,
        "correct_strict": right(strict_ans),
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


def original_runs(records: list[dict]) -> list[dict[str, list]]:
    """The original layout of each run: run j scores sample j of every question (one run when
    each question has one output)."""
    k = max((len(_samples(r)) for r in records), default=1)
    runs = []
    for j in range(k):
        flat = [
            {
                "source": r.get("source", "normal"),
                "options": r["options"],
                "answer_idx": r["answer_idx"],
                "output": _samples(r)[j].get("output") if j < len(_samples(r)) else "",
                "ans": _samples(r)[j].get("ans") if j < len(_samples(r)) else None,
            }
            for r in records
        ]
        runs.append(original_scores(flat))
    return runs


def original_layout(records: list[dict]) -> dict[str, list]:
    """`result_*.json`: {source: [score, first right, n, last right]} over every output (the
    original's file itself when each question has one output)."""
    flat = [
        {
            "source": r.get("source", "normal"),
            "options": r["options"],
            "answer_idx": r["answer_idx"],
            "output": s.get("output") or "",
            "ans": s.get("ans"),
        }
        for r in records
        for s in _samples(r)
    ]
    return original_scores(flat)


def summarize(records: list[dict]) -> dict:
    """Per-source summary: the original layout's score and list, our fixed lenient, strict,
    unanswered, dropped outputs; with several samples per record also the per-run original
    scores, mean accuracy with its 95% CI, maj@k and pass@k (fixed lenient and strict picks)."""
    by_source: dict[str, list[dict]] = {}
    for r in records:
        by_source.setdefault(r.get("source", "normal"), []).append(r)
    layout = original_layout(records)
    runs = original_runs(records)
    out: dict[str, dict] = {}
    for source, recs in by_source.items():
        samples = [s for r in recs for s in _samples(r)]
        n = len(samples)
        first = sum(s["fixed_correct_first"] for s in samples) / n
        last = sum(s["fixed_correct_last"] for s in samples) / n
        strict = sum(s["correct_strict"] for s in samples) / n
        unanswered = sum(s["strict_ans"] is None for s in samples) / n
        pos = 0 if first > last else 1  # the better position, as the original chose it
        run_scores = [run[source][0] for run in runs if source in run]
        res = {
            "count": len(recs),
            "lenient": sum(run_scores) / len(run_scores) if run_scores else None,
            "fixed_lenient": max(first, last),
            "strict": strict,
            "unanswered": unanswered,
            "fixed_first": first,
            "fixed_last": last,
            "dropped": sum(bool(s.get("dropped_by_original")) for s in samples),
            # the original's list for this source: [score, first right, n, last right]
            "score_list": layout.get(source),
        }
        k = max(len(_samples(r)) for r in recs)
        if k > 1:
            res["n_samples"] = k
            res["original_runs"] = [run.get(source) for run in runs]
            gold = [str(r["answer_idx"]).strip().upper() for r in recs]
            for name, pick in (
                ("fixed_lenient", lambda s, pos=pos: s["fixed_ans"][pos]),
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


METRICS = ("lenient", "fixed_lenient", "strict", "unanswered")
COLUMNS = (  # printed table: header, summary key
    ("lenient (original)", "lenient"),
    ("fixed lenient", "fixed_lenient"),
    ("strict", "strict"),
    ("unanswered", "unanswered"),
)


def overall(summary: dict) -> dict:
    """Question-weighted average of the per-source numbers (sources without a score are skipped
    for that number), and the total of dropped outputs."""
    total = sum(v["count"] for v in summary.values())
    res: dict = {"count": total, "dropped": sum(v.get("dropped", 0) for v in summary.values())}
    for m in METRICS:
        have = [v for v in summary.values() if v.get(m) is not None]
        weight = sum(v["count"] for v in have)
        res[m] = sum(v[m] * v["count"] for v in have) / weight if weight else None
    return res


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def format_table(summary: dict) -> str:
    """The per-source table printed at the end of a run: the original layout's number first,
    our corrected columns after it, and the outputs the original layout leaves out."""
    rows = [("source", "count", *(h for h, _ in COLUMNS), "dropped")]
    for source, v in summary.items():
        rows.append((source, str(v["count"]), *(_pct(v[m]) for _, m in COLUMNS), str(v.get("dropped", 0))))
    if len(summary) > 1:
        a = overall(summary)
        rows.append(("ALL (weighted)", str(a["count"]), *(_pct(a[m]) for _, m in COLUMNS), str(a["dropped"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, r in enumerate(rows):
        lines.append(
            "  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)])
        )
        if j == 0:
            lines.append("-" * len(lines[0]))
    extra = []
    for source, v in summary.items():
        runs = v.get("original_runs")
        if runs:
            scores = " ".join(_pct(r[0] if r else None) for r in runs)
            extra.append(f"{source} [lenient (original), per run]: {scores}; mean {_pct(v['lenient'])}")
        for name in ("fixed_lenient", "strict"):
            s = v.get(name + "_samples")
            if s:
                k = v["n_samples"]
                extra.append(
                    f"{source} [{name.replace('_', ' ')}, k={k}]: mean {100 * s['mean']:.1f} "
                    f"(95% CI {100 * s['ci95'][0]:.1f}-{100 * s['ci95'][1]:.1f}), "
                    f"maj@{k} {100 * s[f'maj@{k}']:.1f}, pass@{k} {100 * s[f'pass@{k}']:.1f}"
                )
    return "\n".join(lines + ([""] + extra if extra else []))
