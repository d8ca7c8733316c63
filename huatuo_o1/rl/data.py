"""RL data: verifiable problems (docs/data_formats.md §2) turned into prompts that map back to their answers.

1. Load the records from a local JSON/JSONL file, or from a hub dataset name via `datasets`
   (`contract.load_dataset_records`; the original script read only local files although its
   README passed a hub name).
2. Drop (and count) rows without both "Open-ended Verifiable Question" and "Ground-True Answer"
   (e.g. those the stage-1 filter rejected).
3. Shuffle with the seed and hold out 10% (at most 200) rows for evaluation.
4. Build each prompt with the policy tokenizer's chat template (one user turn plus the
   generation prompt) and tokenise it.
5. `PromptTable` maps the exact prompt token ids back to the row's reference answer, so the
   reward compares every rollout with its own row's answer: no text search, no guessing.
   Identical prompts with different answers are ambiguous; later ones are dropped and counted.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

from huatuo_o1.contract import GROUND_TRUTH, OPEN_QUESTION, load_dataset_records
from huatuo_o1.io import InputError

log = logging.getLogger(__name__)


@dataclass
class RLData:
    """Train/eval rows (dicts with question, reference, prompt, input_ids) and what was dropped."""

    train: list[dict]
    eval: list[dict]
    dropped_missing: int = 0
    dropped_ambiguous: int = 0
    table: PromptTable = field(default=None)


def load_verifiable_problems(name_or_path: str, split: str = "train") -> list[dict]:
    """Records from a local JSON/JSONL file or a hub dataset (`name` or `name:config`)."""
    return load_dataset_records(name_or_path, split=split, what="dataset")


def keep_verifiable(records: list[dict]) -> tuple[list[dict], int]:
    """Rows with a non-empty question and answer; and how many were dropped."""
    kept = [
        r
        for r in records
        if isinstance(r.get(OPEN_QUESTION), str)
        and r[OPEN_QUESTION].strip()
        and r.get(GROUND_TRUTH) not in (None, "")
    ]
    return kept, len(records) - len(kept)


def split_eval(records: list, seed: int, frac: float = 0.1, max_eval: int = 200) -> tuple[list, list]:
    """Shuffle with `seed`, hold out `frac` (at most max_eval, at least 1 when 2+ rows) for eval."""
    rows = list(records)
    random.Random(seed).shuffle(rows)
    n_eval = min(max_eval, int(len(rows) * frac))
    if n_eval == 0 and len(rows) >= 2:
        n_eval = 1
    return rows[n_eval:], rows[:n_eval]


def prompt_text(tokenizer, question: str) -> str:
    """One user turn in the policy's chat template, ending with the assistant generation prompt."""
    if not getattr(tokenizer, "chat_template", None):
        raise InputError("the policy tokenizer has no chat template; RL prompts are built with it")
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )


def prompt_ids(tokenizer, question: str) -> list[int]:
    # The chat template writes the special tokens (bos included) itself.
    return tokenizer(prompt_text(tokenizer, question), add_special_tokens=False)["input_ids"]


class PromptTable:
    """Exact map from prompt token ids to the reference answer of the row they came from."""

    def __init__(self):
        self._ref: dict[tuple[int, ...], str] = {}
        self._lengths: list[int] = []

    def __len__(self) -> int:
        return len(self._ref)

    def add(self, ids: list[int], reference: str) -> bool:
        """Register a prompt; False when the same prompt already maps to a different reference."""
        key = tuple(ids)
        if key in self._ref:
            return self._ref[key] == reference
        self._ref[key] = reference
        if len(key) not in self._lengths:
            self._lengths.append(len(key))
            self._lengths.sort(reverse=True)
        return True

    def match_prefixes(self, ids: list[int]) -> list[tuple[int, str]]:
        """(prompt length, reference) of every registered prompt that `ids` starts with, longest first."""
        out = []
        for n in self._lengths:
            if n <= len(ids):
                ref = self._ref.get(tuple(ids[:n]))
                if ref is not None:
                    out.append((n, ref))
        return out


def build_rl_data(
    dataset_name: str,
    tokenizer,
    seed: int = 42,
    eval_frac: float = 0.1,
    max_eval: int = 200,
    max_prompt_length: int | None = None,
) -> RLData:
    """Load, filter, split and tokenise; every prompt is registered in one PromptTable."""
    records = load_verifiable_problems(dataset_name)
    kept, dropped = keep_verifiable(records)
    if dropped:
        log.warning(
            "dropped %d of %d rows without both %r and %r",
            dropped,
            len(records),
            OPEN_QUESTION,
            GROUND_TRUTH,
        )
    if not kept:
        raise InputError(f"{dataset_name}: no row has both {OPEN_QUESTION!r} and {GROUND_TRUTH!r}")
    table = PromptTable()
    rows, ambiguous, too_long = [], 0, 0
    for r in kept:
        q, ref = r[OPEN_QUESTION], str(r[GROUND_TRUTH])
        ids = prompt_ids(tokenizer, q)
        if max_prompt_length and len(ids) > max_prompt_length:
            too_long += 1
            continue
        if not table.add(ids, ref):
            ambiguous += 1
            continue
        rows.append({"question": q, "reference": ref, "input_ids": ids})
    if ambiguous:
        log.warning("dropped %d rows whose prompt repeats an earlier one with a different answer", ambiguous)
    if too_long:
        log.warning("dropped %d rows with prompts longer than %d tokens", too_long, max_prompt_length)
    if not rows:
        raise InputError(f"{dataset_name}: no usable rows left")
    train, ev = split_eval(rows, seed, eval_frac, max_eval)
    return RLData(train, ev, dropped, ambiguous, table)
