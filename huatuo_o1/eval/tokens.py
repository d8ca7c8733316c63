"""How long the evaluated model's answers are: generated tokens per source and overall.

The paper's Table 3 compares the mean length of each SFT target's answers. Evaluation counts, for
every scored output (a question the server rejected is left out):

1. the server's own count when its reply reported one: `usage.completion_tokens`, summed over the
   question's requests in its cached `api_usage`. With k samples per question the server reports
   their sum, so each sample gets the question's mean;
2. else the output re-tokenised with the model's tokenizer (the hf backend, or a server that
   reports no usage), without special tokens;
3. else it is not counted, and the summary says so.

`generated_tokens` returns mean and median per source and overall and how many outputs each way
was counted (`counted_from`).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict

USAGE, TOKENIZER, NOT_COUNTED = "server_usage", "tokenizer", "not_counted"


def output_lengths(
    outputs: list[str], api_usage: dict | None, tokenizer=None
) -> tuple[list[float] | None, str]:
    """(tokens of each output, how they were counted) of one question; (None, not_counted) when
    neither the server's usage nor a tokenizer is there."""
    completion = (api_usage or {}).get("completion_tokens") or 0
    if completion > 0 and outputs:
        return [completion / len(outputs)] * len(outputs), USAGE
    if tokenizer is not None:
        return [float(len(tokenizer(o, add_special_tokens=False)["input_ids"])) for o in outputs], TOKENIZER
    return None, NOT_COUNTED


def _stats(values: list[float]) -> dict:
    return {
        "outputs": len(values),
        "mean": round(statistics.fmean(values), 1),
        "median": round(statistics.median(values), 1),
    }


def generated_tokens(records: list[dict], cached: dict[str, dict], tokenizer=None) -> dict:
    """{"sources": {source: {outputs, mean, median}}, "overall": {...}, "counted_from": {...}} over
    the scored `records` (evaluation's results records), with each question's cached record
    (`outputs`, `api_usage`) from `cached` by item id. Without any count: {"note": ...} instead of
    the figures."""
    per_source: dict[str, list[float]] = defaultdict(list)
    how: Counter = Counter()
    for rec in records:
        if rec.get("error"):
            continue
        c = cached.get(rec["item_id"]) or {}
        outputs = c.get("outputs") or []
        lengths, way = output_lengths(outputs, c.get("api_usage"), tokenizer)
        how[way] += len(outputs)
        if lengths is not None:
            per_source[rec["source"]].extend(lengths)
    every = [v for vs in per_source.values() for v in vs]
    out: dict = {"counted_from": {k: how[k] for k in (USAGE, TOKENIZER, NOT_COUNTED) if how[k]}}
    if not every:
        out["note"] = "not counted: the server reported no usage and no tokenizer was available"
        return out
    out["sources"] = {s: _stats(v) for s, v in per_source.items()}
    out["overall"] = _stats(every)
    return out


def describe(tokens: dict) -> str:
    """One line for the report."""
    if "overall" not in tokens:
        return f"generated tokens: {tokens['note']}"
    o, ways = (
        tokens["overall"],
        ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in tokens["counted_from"].items()),
    )
    return f"generated tokens per output: mean {o['mean']}, median {o['median']} ({ways} outputs)"
