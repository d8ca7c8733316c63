"""SFT targets: what the assistant turn of each training example is (SFT_stage1.py --sft_target).

The paper's Table 2 compares models fine-tuned on different targets built from the same data.
Each target turns a record into one chat, (user turn, assistant turn):

- `complex_cot` (default, the paper's recipe): `Question` -> `## Thinking` + `Complex_CoT` +
  `## Final Response` + `Response` (huatuo_o1.formats.format_response). Read by
  `sft_data.check_sft_records`, exactly as before the targets existed.
- `simple_cot`: `Question` -> `## Thinking` + the search's first reasoning (e0, its "Inner
  Thinking" steps) + `## Final Response` + its first conclusion (y0, the "Final Conclusion" step).
  Both come from the search's audit trail: the first entry of `response_struct` (whose kind in
  `response_type` is `Init_CoT`) and the first verdict in `verify`. By default only items whose
  first conclusion the verifier judged correct qualify (`--simple_cot_first_correct`): a target
  that teaches a wrong answer would measure wrong labels, not short reasoning. The others are
  skipped and counted. Each step renders as `<title>: <content>`, steps separated by a blank line
  (no `#` headers, so a step title can never forge the answer format's sections).
- `response`: `Question` -> `Response` alone (ŷ, no reasoning).
- `mcq`: the multiple-choice question with its options, in evaluation's user turn
  (huatuo_o1.prompts.eval_prompt), -> `The answer is <letter>. <option text>` (MCQ_ANSWER_FORM).
  The letter is `answer_idx`; a record without one but whose `answer` is the text of exactly one
  option takes that option's letter.

A file without what a target needs raises InputError (one line, exit 2) naming the first record
and the missing fields.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from huatuo_o1.contract import (
    MCQ_ANSWER,
    MCQ_ANSWER_IDX,
    MCQ_OPTIONS,
    MCQ_QUESTION,
    OPEN_QUESTION,
    SEARCH_INITIAL_KIND,
    SEARCH_STEP_KINDS,
    SEARCH_STEPS,
    SEARCH_VERDICTS,
    SFT_COT,
    SFT_QUESTION,
    SFT_RESPONSE,
    STEP_ACTION,
    STEP_CONCLUSION,
    STEP_CONTENT,
    STEP_THINKING,
    STEP_TITLE,
    load_dataset_records,
)
from huatuo_o1.formats import DEFAULT_SFT_TARGET, SFT_TARGETS, format_response
from huatuo_o1.io import InputError
from huatuo_o1.prompts import eval_prompt
from huatuo_o1.train.sft_data import check_sft_records

log = logging.getLogger(__name__)

MCQ_ANSWER_FORM = "The answer is {letter}. {text}"


def check_target(target: str) -> None:
    if target not in SFT_TARGETS:
        raise InputError(f"--sft_target must be one of {', '.join(SFT_TARGETS)}, got {target!r}")


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _missing(source: str, i: int, target: str, fields: Sequence[str]) -> InputError:
    names = ", ".join(repr(f) for f in fields)
    return InputError(f"{source}: item {i} lacks field(s) {names} that --sft_target {target} needs")


def _question(rec: dict) -> str | None:
    q = rec.get(SFT_QUESTION)
    return rec.get(OPEN_QUESTION) if _blank(q) else q


def simple_cot_of(rec: dict, source: str, i: int) -> tuple[str, str, bool] | None:
    """(first reasoning, first conclusion, judged correct) of a search record; None when its first
    search step is not the initial reasoning (no such step recorded)."""
    missing = [f for f in (SEARCH_STEPS, SEARCH_VERDICTS) if not rec.get(f)]
    if _blank(_question(rec)):
        missing.insert(0, SFT_QUESTION)
    if missing:
        raise _missing(source, i, "simple_cot", missing)
    kinds = rec.get(SEARCH_STEP_KINDS) or [SEARCH_INITIAL_KIND]
    steps = rec[SEARCH_STEPS][0]
    if kinds[0] != SEARCH_INITIAL_KIND or not isinstance(steps, list):
        return None
    thinking, conclusion = [], None
    for step in steps:
        if not isinstance(step, dict) or not isinstance(step.get(STEP_CONTENT), str):
            continue
        action = str(step.get(STEP_ACTION, "")).strip()
        content = step[STEP_CONTENT].strip()
        if action == STEP_THINKING and content:
            title = str(step.get(STEP_TITLE) or "").strip()
            thinking.append(f"{title}: {content}" if title else content)
        elif action == STEP_CONCLUSION and content:
            conclusion = content
    if not thinking or conclusion is None:
        return None
    return "\n\n".join(thinking), conclusion, bool(rec[SEARCH_VERDICTS][0])


def mcq_of(rec: dict, source: str, i: int) -> tuple[str, str]:
    """(user turn, assistant turn) of a multiple-choice record."""
    q, opts = rec.get(MCQ_QUESTION), rec.get(MCQ_OPTIONS)
    letter, text = rec.get(MCQ_ANSWER_IDX), rec.get(MCQ_ANSWER)
    missing = [name for name, v in ((MCQ_QUESTION, q), (MCQ_OPTIONS, opts)) if _blank(v) or not v]
    if _blank(letter) and isinstance(opts, dict) and not _blank(text):
        matches = [k for k, v in opts.items() if str(v).strip() == str(text).strip()]
        letter = matches[0] if len(matches) == 1 else None
    if _blank(letter):
        missing.append(MCQ_ANSWER_IDX)
    if missing:
        raise _missing(source, i, "mcq", missing)
    if not isinstance(q, str) or not isinstance(opts, dict):
        raise InputError(f"{source}: item {i}: question must be a string and options an object of letters")
    letter = str(letter).strip()
    if letter not in opts:
        raise InputError(
            f"{source}: item {i}: answer_idx {letter!r} is not one of the options {', '.join(opts)}"
        )
    user = eval_prompt({MCQ_QUESTION: q, MCQ_OPTIONS: opts})
    return user, MCQ_ANSWER_FORM.format(letter=letter, text=str(opts[letter]).strip())


def build_chats(
    records: Sequence[dict], target: str, source: str, simple_cot_first_correct: bool = True
) -> list[tuple[str, str]]:
    """[(user turn, assistant turn)] of the records for `target` (see the module docstring)."""
    check_target(target)
    if target == DEFAULT_SFT_TARGET:
        return [
            (r[SFT_QUESTION], format_response(r[SFT_COT], r[SFT_RESPONSE]))
            for r in check_sft_records(records, source)
        ]
    if len(records) == 0:
        raise InputError(f"{source}: no records")
    chats: list[tuple[str, str]] = []
    skipped_wrong = skipped_no_initial = 0
    for i, rec in enumerate(records, 1):
        if not isinstance(rec, dict):
            raise InputError(f"{source}: item {i} is not a JSON object")
        if target == "response":
            q, resp = _question(rec), rec.get(SFT_RESPONSE)
            missing = [f for f, v in ((SFT_QUESTION, q), (SFT_RESPONSE, resp)) if _blank(v)]
            if missing:
                raise _missing(source, i, target, missing)
            chats.append((str(q), str(resp)))
        elif target == "mcq":
            chats.append(mcq_of(rec, source, i))
        else:  # simple_cot
            found = simple_cot_of(rec, source, i)
            if found is None:
                skipped_no_initial += 1
                continue
            thinking, conclusion, correct = found
            if simple_cot_first_correct and not correct:
                skipped_wrong += 1
                continue
            chats.append((str(_question(rec)), format_response(thinking, conclusion)))
    if target == "simple_cot":
        log.info(
            "simple_cot: %d of %d items; skipped %d whose first conclusion was judged wrong, %d without "
            "an initial reasoning with steps and a conclusion",
            len(chats), len(records), skipped_wrong, skipped_no_initial,
        )  # fmt: skip
    if not chats:
        raise InputError(
            f"{source}: no item qualifies for --sft_target {target} (first conclusion judged wrong: "
            f"{skipped_wrong}, no initial reasoning: {skipped_no_initial})"
        )
    return chats


def load_sft_chats(
    data_path: str,
    data_config: str | None = None,
    target: str = DEFAULT_SFT_TARGET,
    simple_cot_first_correct: bool = True,
) -> list[tuple[str, str]]:
    """Load a data set and build the chats of `target`; InputError (one line) on what it lacks."""
    check_target(target)
    records = load_dataset_records(data_path, data_config, what="SFT data")
    return build_chats(records, target, data_path, simple_cot_first_correct)
