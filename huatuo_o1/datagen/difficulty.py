"""The paper's difficulty filter for stage 1: drop questions that every small model answers correctly.

In plain words, for each item that survived decontamination and the question rules:
  1. Each model named in --difficulty_models (the paper: Gemma2-9B, LLaMA-3.1-8B, Qwen2.5-7B, served
     by any OpenAI-compatible endpoint at --difficulty_api_url) gets the multiple-choice question as
     the evaluation asks it (`huatuo_o1.prompts.eval_prompt`, one user turn), greedy by default.
  2. Its answer is scored with the evaluation's original scorer through `is_correct` (the one place
     that calls it): the item counts as answered correctly when the first option letter the scorer
     extracts is the right one (the original scorer's per-question "correct" list uses that letter).
  3. When every listed model answered correctly, the item is too easy and drops before GPT-4o is
     asked. Each model's answer, extracted letter and verdict are recorded on the item.

Every model answer is saved on its own as soon as it arrives (one file per item and model under
<output_dir>/<task>_difficulty/<model>/), so a rerun never asks a finished answer again even when the
item itself did not finish (its GPT-4o request failed, the run was killed); a saved answer is reused
only for the same prompt and generation settings.
An item without a known correct letter (no `answer_idx`, and `answer` matches no option text) skips
the filter, with that note on the item.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import Path

from huatuo_o1.eval.original import clean_output, original_extract
from huatuo_o1.io import atomic_write_json
from huatuo_o1.llm import LLMClient
from huatuo_o1.prompts import eval_prompt

EXPECTED_REPLY_TOKENS = 300  # --dry_run's guess for one small-model answer


def is_correct(output: str, item: dict, letter: str) -> tuple[bool, str | None]:
    """(correct, extracted letter) for one answer, read as the original evaluation reads it
    (eval.original: its clean-up, then its first extracted letter; an empty output is wrong)."""
    text = clean_output(output)
    if not text:
        return False, None
    first = original_extract(text, item["options"])[0][0]
    return first.upper() == str(letter).upper(), first


def answer_letter(item: dict) -> str | None:
    """The correct option's letter: `answer_idx`, else the option whose text is the `answer`."""
    idx = item.get("answer_idx")
    if idx not in (None, "") and str(idx) in item["options"]:
        return str(idx)
    answer = " ".join(str(item.get("answer", "")).split()).lower()
    for letter, text in item["options"].items():
        if " ".join(str(text).split()).lower() == answer:
            return str(letter)
    return None


def model_slug(model: str) -> str:
    """A folder name for a model name (e.g. google/gemma-2-9b-it -> google_gemma-2-9b-it)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("._") or "model"


class DifficultyFilter:
    """The small models, their clients and the saved answers of one run."""

    def __init__(
        self,
        clients: dict[str, LLMClient],
        cache_dir: str | Path,
        temperature: float = 0.0,
        max_tokens: int = 2000,
    ):
        self.clients = clients
        self.cache_dir = Path(cache_dir)
        self.settings = {"temperature": temperature, "max_tokens": max_tokens}

    @property
    def models(self) -> list[str]:
        return list(self.clients)

    def _key(self, prompt: str) -> str:
        blob = json.dumps([prompt, self.settings], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _path(self, model: str, pid) -> Path:
        return self.cache_dir / model_slug(model) / f"{pid}.json"

    def cached(self, model: str, item: dict) -> dict | None:
        """The saved answer of `model` to this item's current prompt, or None."""
        path = self._path(model, item["process_id"])
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        if isinstance(rec, dict) and rec.get("prompt_key") == self._key(eval_prompt(item)):
            return rec
        return None

    def pending(self, item: dict) -> list[str]:
        """The models whose answer to this item is not saved yet (what a run would still ask)."""
        if answer_letter(item) is None:
            return []
        return [m for m in self.clients if self.cached(m, item) is None]

    async def _answer(self, model: str, item: dict, letter: str) -> dict:
        rec = self.cached(model, item)
        if rec is not None:  # the saved answer, scored again: an edited answer_idx changes the verdict
            correct, extracted = is_correct(rec["output"], item, letter)
            return {**rec, "extracted": extracted, "correct": correct}
        prompt = eval_prompt(item)
        output = await self.clients[model].chat(prompt, **self.settings)
        correct, extracted = is_correct(output, item, letter)
        rec = {
            "model": model,
            "prompt_key": self._key(prompt),
            "output": output,
            "extracted": extracted,
            "correct": correct,
        }
        await asyncio.to_thread(atomic_write_json, self._path(model, item["process_id"]), rec)
        return rec

    async def judge(self, item: dict) -> tuple[dict, str | None]:
        """(what to record on the item, the drop reason when every model was right, else None)."""
        letter = answer_letter(item)
        if letter is None:
            return {
                "skipped": "no correct option letter (answer_idx missing, answer matches no option)"
            }, None
        results = await asyncio.gather(*(self._answer(m, item, letter) for m in self.clients))
        record = {
            r["model"]: {"correct": r["correct"], "extracted": r["extracted"], "output": r["output"]}
            for r in results
        }
        if all(r["correct"] for r in results):
            picks = ", ".join(f"{r['model']}: {r['extracted']}" for r in results)
            return record, f"all {len(results)} small models answered correctly ({picks}; answer {letter})"
        return record, None

    def plan(self, items: list[dict]) -> list[tuple[str, int]]:
        """(prompt, expected reply tokens) of every small-model request a run would still make."""
        return [(eval_prompt(it), EXPECTED_REPLY_TOKENS) for it in items for _ in self.pending(it)]

    async def close(self) -> None:
        for c in self.clients.values():
            await c.close()
