"""The data contract between the stages: field names, record shapes, and one loader for them all.

The stages are separate scripts that hand data on only through JSON/JSONL files (and HF
checkpoints). docs/data_formats.md describes every format in words; this module is its code
side: every field name is spelled here once and imported by the stages, so a format changes in
one place. Names follow the published datasets, spelling included ("Ground-True Answer").

Record kinds (section numbers of docs/data_formats.md):
  §1 multiple-choice item      question, options, answer_idx, answer    (input of stage 1)
  §2 verifiable problem        §1 + Open-ended Verifiable Question, Ground-True Answer
  §3 SFT record                Question, Complex_CoT, Response           (output of the search)
  §5 verifier example          response, reference, label
  §6 evaluation item           question, options, answer_idx

`load_dataset_records` is the one way a stage reads a data set named on its command line: a local
JSON/JSONL file (through `io.load_records`), a `datasets` folder, or a hub dataset name. A hub
dataset's configuration is named with a `:config` suffix (`org/name:en`), the canonical form for
every script; SFT's older `--data_config` flag is kept as an alias.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from huatuo_o1.io import InputError, load_records, read_text

log = logging.getLogger(__name__)

# §1 multiple-choice item (also §6, the evaluation item)
MCQ_QUESTION = "question"
MCQ_OPTIONS = "options"
MCQ_ANSWER_IDX = "answer_idx"
MCQ_ANSWER = "answer"
PROCESS_ID = "process_id"  # 1-based position in the input file, added by stages 1 and 2

# §2 verifiable problem
OPEN_QUESTION = "Open-ended Verifiable Question"
GROUND_TRUTH = "Ground-True Answer"

# §3 SFT record
SFT_QUESTION = "Question"
SFT_COT = "Complex_CoT"
SFT_RESPONSE = "Response"

# §3 the search's audit trail, kept beside the SFT fields (read by SFT's simple_cot target):
# the reasoning steps of every search step (the first is the initial reasoning), the kind of each
# step ("Init_CoT", "Re_CoT_<Strategy>", "Label_CoT") and the verifier's verdict on each.
SEARCH_STEPS = "response_struct"
SEARCH_STEP_KINDS = "response_type"
SEARCH_VERDICTS = "verify"
SEARCH_INITIAL_KIND = "Init_CoT"
# one reasoning step of a search reply: {"action": ..., "title": ..., "content": ...}
STEP_ACTION, STEP_TITLE, STEP_CONTENT = "action", "title", "content"
STEP_THINKING, STEP_CONCLUSION = "Inner Thinking", "Final Conclusion"

# §5 verifier example
VERIFIER_RESPONSE = "response"
VERIFIER_REFERENCE = "reference"
VERIFIER_LABEL = "label"

# DPO pair (scripts/make_dpo_pairs.py -> RL_stage2_dpo.py): trl's preference-data names
DPO_PROMPT = "prompt"
DPO_CHOSEN = "chosen"
DPO_REJECTED = "rejected"

# The fields each record kind must carry (what a reader of that kind checks for).
RECORD_FIELDS = {
    "multiple_choice": (MCQ_QUESTION, MCQ_OPTIONS, MCQ_ANSWER),
    "verifiable_problem": (OPEN_QUESTION, GROUND_TRUTH),
    "sft": (SFT_QUESTION, SFT_COT, SFT_RESPONSE),
    "verifier_example": (VERIFIER_RESPONSE, VERIFIER_REFERENCE, VERIFIER_LABEL),
    "evaluation": (MCQ_QUESTION, MCQ_OPTIONS, MCQ_ANSWER_IDX),
    "dpo_pair": (DPO_PROMPT, DPO_CHOSEN, DPO_REJECTED),
}

# The paper's evaluation file: its place in this repository and in the original one (same path).
PAPER_EVAL_RELPATH = "evaluation/data/eval_data.json"
PAPER_EVAL_FILE = Path(__file__).resolve().parents[1] / PAPER_EVAL_RELPATH
LOCAL_SUFFIXES = (".json", ".jsonl")
DEFAULT_CONFIG = "en"  # taken when a hub dataset has several configurations and none is named


def split_config(source: str, config: str | None = None) -> tuple[str, str | None]:
    """(name, config) of `org/name:config`; `config` (an older flag) must agree with a suffix."""
    name, sep, suffix = source.partition(":")
    if not sep:
        return source, config
    if config is not None and config != suffix:
        raise InputError(f"{source!r} names configuration {suffix!r} but --data_config says {config!r}")
    return name, suffix or config


def is_local_file(source: str) -> bool:
    """A source read as a JSON/JSONL file: an existing file, or a name ending in .json/.jsonl."""
    path = Path(source).expanduser()
    return path.is_file() or path.suffix.lower() in LOCAL_SUFFIXES


def load_dataset_records(
    source: str, config: str | None = None, split: str = "train", what: str = "dataset"
) -> list[dict]:
    """The records of a data set named on a command line, as plain dicts.

    - a local JSON/JSONL file (an existing file or a .json/.jsonl name): `io.load_records`;
    - an existing folder: `datasets.load_dataset(folder)` (data files or a dataset repo clone);
    - `org/name` or `org/name:config`: a hub dataset through `datasets` (`config` is the older
      `--data_config` spelling of the suffix). A dataset with several configurations and none named
      loads `en` when it has one (the published sets: en, zh, en_mix, zh_mix).
    Anything else, a missing path or a failed hub load raises InputError (one line).
    """
    if is_local_file(source):
        return load_records(Path(source).expanduser(), what=what)
    name, config = split_config(source, config)
    if not Path(name).expanduser().is_dir() and (name.startswith((".", "/", "~")) or name.count("/") > 1):
        raise InputError(f"{what} file not found: {source}")
    return _load_with_datasets(name, config, split, what, source)


def _load_with_datasets(name: str, config: str | None, split: str, what: str, source: str) -> list[dict]:
    try:
        import datasets

        try:
            ds = datasets.load_dataset(name, config, split=split)
        except ValueError as e:
            if config is not None or "config" not in str(e).lower():
                raise
            names = datasets.get_dataset_config_names(name)
            if DEFAULT_CONFIG not in names:
                raise InputError(
                    f"{name}: name a configuration as {name}:<config> (one of {names})"
                ) from None
            log.warning(
                "%s has several configurations %s; using %r (name one as %s:<config>)",
                name, names, DEFAULT_CONFIG, name,
            )  # fmt: skip
            ds = datasets.load_dataset(name, DEFAULT_CONFIG, split=split)
    except InputError:
        raise
    except Exception as e:  # datasets raises many kinds (FileNotFound, ConnectionError, DatasetNotFound...)
        detail = str(e).splitlines()[0] if str(e) else ""
        raise InputError(
            f"cannot load {what} {source!r}: not a local file, and the hub dataset failed to load "
            f"({type(e).__name__}: {detail})"
        ) from None
    return [dict(r) for r in ds]


# ---------------------------------------------------------------------------------------------
# §6 the evaluation file: read by evaluation and by decontamination alike


def read_eval_file(path: str | Path) -> dict[str, list[dict]]:
    """{source: [items]} of an evaluation file: an object mapping sources to lists of items, or a
    bare list (source "normal"), as JSON or JSONL (a UTF-8 BOM is accepted). Every item is an object
    with a non-empty `question` string; InputError (one line) naming the source and item otherwise.
    What evaluation needs beyond that (options, answer_idx) it checks itself."""
    path = Path(path)
    text = read_text(path, "evaluation")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError:
            raise InputError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}) nor JSONL") from None
        if not data:
            raise InputError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply to be an eval file") from None
    if isinstance(data, list):
        data = {"normal": data}
    if not isinstance(data, dict) or not data:
        raise InputError(f"{path}: expected an object mapping sources to lists of items, or a list of items")
    for source, items in data.items():
        if not isinstance(items, list):
            raise InputError(f"{path}: source {source!r} is not a list of items")
        for i, it in enumerate(items, 1):
            where = f"{path}: source {source!r} item {i}"
            if not isinstance(it, dict):
                raise InputError(f"{where} is not an object")
            q = it.get(MCQ_QUESTION)
            if q is not None and not isinstance(q, str):
                raise InputError(f"{where}: question is a {type(q).__name__}, not a string")
            if not (q or "").strip():
                raise InputError(f"{where} has no question")
    return data
