"""The original evaluation's numbers, quirks included: the layout of `result_*.json`.

HuatuoGPT-o1's evaluation/eval.py and scorer.py produced the paper's Table 1. To report the same
number from the same model outputs, this module re-states their behaviour in our own code (none of
theirs is copied), including what we would call bugs. Our corrected reading lives in
eval/scoring.py and is reported in separate columns ("fixed", "strict", "unanswered"); it never
changes the figures computed here.

What the original does with one output, in order:
  * Clean-up before scoring: every `</s>` is removed and one leading space is dropped. An output
    left empty by that is dropped from the evaluation altogether: it counts neither as right nor
    as wrong (n shrinks). A whitespace-only output is not empty and is scored.
  * Only the text after the last `## Final Response` header followed by a blank line is read,
    when the output has one.
  * Rule 1: the words "answer is", optional spaces (as few as possible), then any capital letter
    A to N, whatever the number of options and whatever follows the letter. So "The answer is
    Cardiology" reads C, "The answer is CD" reads C, "The answer is **B**" falls through.
    First = the first such letter, last = the last one.
  * Rule 2: one of the first len(options) letters of "ABCDEFGHIJKLMN" standing between
    separators (a non-word character, a CJK character, a few Chinese particles, the start or
    the end), never an "a"/"A" followed by a space. First and last such letter.
  * Rule 3: the options whose text occurs in the lower-cased output. Last = the option whose
    text occurs last (by its last occurrence). "First" is NOT the earliest: it is the option whose
    first occurrence is the latest (equal positions: the earlier option in the item). Option text
    is matched anywhere, inside other words too.
  * Rule 4: the option most similar to the whole output (difflib ratio; ties go to the later
    option). Rules 1 and 2 have type 1, rule 3 type 2, rule 4 type 3.
  * Per source: [score, first right, n, last right], where score is the first-letter accuracy
    when it is strictly higher than the last-letter accuracy, else the last-letter accuracy.
    Sources appear in the order of their first scored item. Letters compare case-insensitively.
"""

from __future__ import annotations

import difflib
import re

from huatuo_o1.generation import clean_output  # noqa: F401 - the original's clean-up, part of its pipeline

ORIGINAL_LETTERS = "ABCDEFGHIJKLMN"
FINAL_SPLIT = "## Final Response\n\n"
_ANSWER_IS = re.compile(r"answer is\s*?([A-N])", re.S)


def _standalone_letter_pattern(n_options: int) -> re.Pattern:
    letters = ORIGINAL_LETTERS[:n_options]
    before = r"([\u4e00-\u9fff]|is |是|项|\*|\W|\ |\(|为|^|'|\"|#)"
    after = r"(\W|[\u4e00-\u9fff]|$)"
    return re.compile(before + r"(?![aA] )([" + letters + "])" + after, re.S)


def original_extract(text: str, options: dict) -> tuple[list[str], int]:
    """([first, last], type) exactly as the original scorer reads an (already cleaned) output."""
    if FINAL_SPLIT in text:
        text = text.split(FINAL_SPLIT)[-1]
    hits = _ANSWER_IS.findall(text)
    if hits:
        return [hits[0], hits[-1]], 1
    hits = [m.group(2) for m in _standalone_letter_pattern(len(options)).finditer(text)]
    if hits:
        return [hits[0], hits[-1]], 1
    low = text.lower()
    keys = list(options)
    texts = [str(options[k]).lower() for k in keys]
    present = [i for i, t in enumerate(texts) if t in low]
    if present:
        # latest last occurrence; ties: the earlier option (a stable sort, reversed)
        last = keys[max(present, key=lambda i: (low.rindex(texts[i]), -i))]
        # the original's "first": the latest FIRST occurrence (same tie rule)
        first = keys[max(present, key=lambda i: (low.index(texts[i]), -i))]
        return [first, last], 2
    best = 0
    best_ratio = 0.0
    for i, t in enumerate(texts):
        ratio = difflib.SequenceMatcher(None, t, low).ratio()
        if ratio >= best_ratio:
            best, best_ratio = i, ratio
    return [keys[best], keys[best]], 3


def original_scores(records: list[dict]) -> dict[str, list]:
    """{source: [score, first right, n, last right]} from records carrying `source`, `options`,
    `answer_idx` and one `output` each, already cleaned by `clean_output` as the backends save
    them (several samples: one record per sample). Empty outputs are left out, as the original.
    A record's `ans`, when given, must be original_extract's reading of its output (saves a second
    extraction)."""
    res: dict[str, list] = {}
    for r in records:
        out = r.get("output") or ""
        if not out:
            continue
        src = r.get("source", "unknown")
        row = res.setdefault(src, [0, 0, 0, 0])
        known = r.get("ans")  # already extracted from this very output (eval.scoring.score_output)
        first, last = known if known and known[0] is not None else original_extract(out, r["options"])[0]
        gold = str(r["answer_idx"]).lower()
        row[1] += first.lower() == gold
        row[3] += last.lower() == gold
        row[2] += 1
    for row in res.values():
        head, tail = row[1] / row[2], row[3] / row[2]
        row[0] = head if head > tail else tail
    return res
