"""Stage 1: turn multiple-choice medical exam questions into verifiable open-ended problems.

The steps, in the paper's order, cheap ones first (each drop keeps its step and reason on the item,
`drop_step` / `drop_reason`, and the summary counts each step's drops):
  1. Decontamination (free, before any request): an item whose question shares 64 consecutive
     characters with an evaluation question (Med-PaLM 2's rule, see decontam.py) drops.
     Default eval file: evaluation/data/eval_data.json when it exists, else none (said in the log).
  2. Question rules (free): questions shorter than --min_question_length characters, and questions
     that ask for the incorrect option or allow several answers (see question_rules.py) drop.
  3. Difficulty (--difficulty_models, see difficulty.py): small models answer the question as the
     evaluation asks it; an item every one of them answers correctly drops as too easy.
  4. (with --filter_data) The LLM judges the question against the paper's three criteria and answers
     one of Pass / Too Simple / Ambiguous Answer / Not Reformulatable. Only Pass goes on; the verdict
     is kept on the item as `filter_verdict`.
  5. The LLM rewrites the question as JSON {"Open-ended Verifiable Question", "Ground-True Answer"}.
  A reply that does not parse is asked again (up to `max_tries` per step); one that never parses
  marks the item `failed` with the raw replies kept for inspection. Every item ends with a
  `status`: kept, filtered or failed (docs/data_formats.md §2).

Steps 1-2 are recomputed on every run (they cost nothing), so a rerun with other settings applies
them to every item; their drops are not stored per item. Items get `process_id` = their 1-based
position in the input file (the merged file's order), and `content_id`, a hash of question, options
and answer: finished items are stored one file each under that id (see runner.py), so reordering,
filling in or renaming the input never re-pays a finished item. Results of older runs (files named
by position, or in the folder of another input file name) are reused when they match (`adopt_results`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from huatuo_o1.batch import (
    add_batch_args,
    check_batch_args,
    counts_as_try,
    round_from_args,
    run_items_live_or_batched,
)
from huatuo_o1.cli import run_async_stage, str2bool
from huatuo_o1.contract import GROUND_TRUTH as GT
from huatuo_o1.contract import OPEN_QUESTION as OPEN_Q
from huatuo_o1.contract import PAPER_EVAL_FILE
from huatuo_o1.datagen import question_rules
from huatuo_o1.datagen.decontam import EvalIndex, screen
from huatuo_o1.datagen.difficulty import EXPECTED_REPLY_TOKENS as EXPECTED_SMALL_REPLY
from huatuo_o1.datagen.difficulty import DifficultyFilter
from huatuo_o1.io import (
    DEFAULT_MAX_RECORD_KB,
    InputError,
    ItemStore,
    adopt_results,
    atomic_write_json,
    check_distinct_paths,
    check_record_sizes,
    check_writable_dir,
    check_writable_file,
    content_key,
    duplicate_note,
    keyed_by_content,
    load_records,
    require_text,
    summary_path_for,
    write_merged,
)
from huatuo_o1.llm import (
    LLMClient,
    Usage,
    add_client_args,
    add_structured_outputs_arg,
    check_api_url,
    check_client_args,
    client_from_args,
    dry_run_report,
    is_openai_url,
    normalize_base_url,
    parse_price,
    price_for,
    usage_report,
)
from huatuo_o1.lock import item_claims, run_lock
from huatuo_o1.parsing import extract_json, parse_filter_verdict
from huatuo_o1.prompts import FILTER_SCHEMA, LANGUAGES, filter_prompt, rewrite_prompt, rewrite_schema
from huatuo_o1.runner import RunReport, add_run_args, check_run_args, exit_code_for

log = logging.getLogger(__name__)

REWRITE_KEYS = (OPEN_Q, GT)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_EVAL_FILE = PAPER_EVAL_FILE
# The steps that can drop an item, in the order they run (the summary's `dropped` keys).
DROP_STEPS = ("decontamination", "min_length", "question_form", "difficulty", "gpt_filter")
# Fields this stage writes on a record (an input that carries them from an earlier run loses them).
STAGE_FIELDS = (OPEN_Q, GT, "status", "filter_verdict", "filter_reply", "error", "raw_replies")
STAGE_FIELDS += ("drop_step", "drop_reason", "difficulty")


MAX_OPTIONS = 26  # one letter each, A to Z


def load_mcq_items(path: str | Path, max_record_kb: float | None = DEFAULT_MAX_RECORD_KB) -> list[dict]:
    """Read and validate docs/data_formats.md §1 input; number the items by position (`process_id`).
    A malformed item (io.require_text's rule), an `options` object of more than 26 entries or with
    non-text values, or a record over --max_record_kb stops the run in one line naming it."""
    items = load_records(path, what="input")
    check_record_sizes(path, items, max_record_kb)
    for i, item in enumerate(items, 1):
        where = f"{path}: item {i}"
        for key in ("question", "options", "answer"):
            if key not in item or item[key] in (None, ""):
                raise InputError(f"{where} lacks field {key!r}")
        require_text(path, i, item, "question")
        require_text(path, i, item, "answer")
        options = item["options"]
        if not isinstance(options, dict) or not options:
            raise InputError(f"{where}: 'options' must be a non-empty mapping of letter to text")
        if len(options) > MAX_OPTIONS:
            raise InputError(
                f"{where}: 'options' has {len(options)} entries, more than {MAX_OPTIONS} (A to Z)"
            )
        if not all(isinstance(v, str) and v.strip() for v in options.values()):
            raise InputError(f"{where}: every option must be text")
        idx = item.get("answer_idx")
        if idx not in (None, "") and idx not in options:
            raise InputError(f"{where}: answer_idx {idx!r} is not one of the options {list(options)}")
        item["process_id"] = i
    return items


def task_name_for(data_path: str | Path) -> str:
    return f"{Path(data_path).stem}_verifiable"


TASK_SUFFIX = "_verifiable"


def item_key(item: dict) -> str:
    """The item's identity: what this stage reads of it (question, options, answer)."""
    return content_key(item["question"], item["options"], item["answer"])


def other_result_folders(out_dir: Path, task: str) -> list[Path]:
    """This stage's item folders for other input file names (results reused by content)."""
    return [
        p
        for p in out_dir.glob(f"*{TASK_SUFFIX}")
        if p.is_dir() and p.name != task and not p.name.endswith("_difficulty")
    ]


async def _ask_until_parsed(
    client: LLMClient,
    prompt: str,
    parse,
    max_tries: int,
    replies: list[str],
    retry_failed: bool = False,
    schema: dict | None = None,
):
    """Ask until `parse` accepts a reply, at most max_tries requests; under --retry_failed the
    invalid replies an earlier run's batch paid for are reused but not counted (batch.counts_as_try).
    `schema`: the reply's JSON schema (prompts.py), sent as --structured_outputs says."""
    tries = 0
    while tries < max_tries:
        reply = await client.chat(prompt, schema=schema)
        replies.append(reply)
        parsed = parse(reply)
        if parsed:
            return parsed
        tries += counts_as_try(retry_failed)
    return None


def _parse_rewrite(reply: str) -> dict | None:
    obj = extract_json(reply, REWRITE_KEYS)
    if not obj:
        return None
    q, a = obj.get(OPEN_Q), obj.get(GT)
    if not isinstance(q, str) or not q.strip() or not isinstance(a, (str, int, float)) or not str(a).strip():
        return None
    return {OPEN_Q: q.strip(), GT: str(a).strip()}


async def process_item(
    item: dict,
    client: LLMClient,
    filter_data: bool,
    language: str,
    max_tries: int,
    difficulty: DifficultyFilter | None = None,
    retry_failed: bool = False,
    max_tokens: int = 0,
) -> dict:
    """One item through the filter and the rewrite. `max_tokens`: the cap each reply is sent with
    (0: none), which the rewrite's schema is sized to (prompts.rewrite_schema)."""
    record = _fresh_record(item)
    if difficulty is not None:
        record["difficulty"], reason = await difficulty.judge(item)
        if reason:
            record.update(status="filtered", drop_step="difficulty", drop_reason=reason)
            return record
    if filter_data:
        replies: list[str] = []
        verdict = await _ask_until_parsed(
            client,
            filter_prompt(item, language),
            parse_filter_verdict,
            max_tries,
            replies,
            retry_failed=retry_failed,
            schema=FILTER_SCHEMA,
        )
        record["filter_reply"] = replies[-1]
        if verdict is None:
            record.update(status="failed", error="filter reply named no verdict", raw_replies=replies)
            return record
        record["filter_verdict"] = verdict
        if verdict != "Pass":
            record.update(status="filtered", drop_step="gpt_filter", drop_reason=f"filter verdict: {verdict}")
            return record
    replies = []
    parsed = await _ask_until_parsed(
        client,
        rewrite_prompt(item, language),
        _parse_rewrite,
        max_tries,
        replies,
        retry_failed=retry_failed,
        schema=rewrite_schema(max_tokens or None, language),
    )
    if parsed is None:
        record.update(
            status="failed",
            error=f"rewrite reply did not parse after {len(replies)} tries",
            raw_replies=replies,
        )
        return record
    record.update(parsed)
    record["status"] = "kept"
    return record


def _stored_key(record: dict) -> str | None:
    """The content key of a stored result (it keeps the item's question, options and answer)."""
    if not all(k in record for k in ("question", "options", "answer")):
        return None
    return item_key(record)


def _fresh_record(item: dict) -> dict:
    """The input item without fields this stage writes: an input that already carries an open-ended
    question (e.g. data/demo_data.json, or a rerun on a stage-1 output) must not keep it when the item
    is filtered or fails, since downstream stages search every item that has one (docs/data_formats.md §2)."""
    record = dict(item)
    for key in STAGE_FIELDS:
        record.pop(key, None)
    return record


def eval_files_for(args) -> tuple[list[str], str]:
    """The eval files to screen against and a line saying which (or why none)."""
    given = args.decontaminate_against
    if given is None:
        shown = os.path.relpath(DEFAULT_EVAL_FILE, REPO)
        if DEFAULT_EVAL_FILE.is_file():
            return [str(DEFAULT_EVAL_FILE)], f"against the default {shown}"
        return [], (
            f"skipped: no --decontaminate_against and no {shown} "
            "(download the evaluation data there, or pass --decontaminate_against FILE[,FILE...])"
        )
    files = [f.strip() for f in given.split(",") if f.strip() and f.strip().lower() != "none"]
    if not files:
        return [], "skipped: --decontaminate_against none"
    return files, f"against {', '.join(files)}"


def prescreen(items: list[dict], args) -> tuple[dict[int, tuple[str, str]], dict]:
    """The free steps (decontamination, then the question rules): {process_id: (step, reason)} of the
    items they drop, and a note on what decontamination did (for the summary and the log)."""
    dropped: dict[int, tuple[str, str]] = {}
    files, where = eval_files_for(args)
    note = {"files": files, "note": where, "eval_questions": 0}
    if files:
        index = EvalIndex.from_files(files, ignore_common=args.decontam_ignore_common)
        note["eval_questions"] = len(index)
        note["ignored_common_windows"] = index.ignored_windows
        for item, match in zip(items, screen(items, index), strict=True):
            if match is not None:
                dropped[item["process_id"]] = ("decontamination", match.reason())
    for item in items:
        if item["process_id"] in dropped:
            continue
        hit = question_rules.check(item["question"], args.min_question_length, args.drop_negative_questions)
        if hit:
            dropped[item["process_id"]] = hit
    return dropped, note


def plan_requests(items: list[dict], filter_data: bool, language: str) -> list[tuple[str, int]]:
    """Every GPT request a run would make if each reply parsed at once and every item passed."""
    plan = []
    for item in items:
        if filter_data:
            plan.append((filter_prompt(item, language), 5))
        plan.append((rewrite_prompt(item, language), 120))
    return plan


def summarize(
    report: RunReport,
    merged: list[dict],
    total: int,
    usage: Usage,
    model: str,
    price,
    decontam: dict | None = None,
    difficulty_usage: dict[str, Usage] | None = None,
) -> dict:
    verdicts: dict[str, int] = {}
    for rec in merged:
        if "filter_verdict" in rec:
            verdicts[rec["filter_verdict"]] = verdicts.get(rec["filter_verdict"], 0) + 1
    statuses = {s: sum(1 for r in merged if r.get("status") == s) for s in ("kept", "filtered", "failed")}
    dropped = {step: sum(1 for r in merged if r.get("drop_step") == step) for step in DROP_STEPS}
    summary = {
        "items": total,
        **statuses,
        "unfinished": total - len(merged),
        "resumed_skipped": report.skipped,
        "dropped": dropped,
        "filter_verdicts": verdicts,
        "stopped_reason": report.stopped_reason,
        "usage": usage.as_dict(),
        "usage_text": usage_report(model, usage, price),
    }
    if decontam is not None:
        summary["decontamination"] = decontam
    if difficulty_usage:
        right = {m: 0 for m in difficulty_usage}
        judged = 0
        for rec in merged:
            answers = rec.get("difficulty") or {}
            if any(m in answers for m in right):
                judged += 1
            for m in right:
                if isinstance(answers.get(m), dict) and answers[m].get("correct"):
                    right[m] += 1
        summary["difficulty"] = {
            "judged_items": judged,
            "correct_by_model": right,
            "usage": {m: u.as_dict() for m, u in difficulty_usage.items()},
        }
    return summary


def difficulty_batched(args) -> bool:
    """Whether --batch_api covers the small models too: only when OpenAI serves them (their
    endpoint is OpenAI's API or --api_url's); a local server has no Batch API."""
    url = args.difficulty_api_url
    same = normalize_base_url(url) == normalize_base_url(args.api_url) if args.api_url else False
    return bool(getattr(args, "batch_api", False) and url and (is_openai_url(url) or same))


def difficulty_from_args(args, out_dir: Path, task: str, budget, batches=None) -> DifficultyFilter | None:
    """The small-model clients the flags describe (sharing the run's --max_cost budget), or None.
    `batches`: the run's BatchRound, used for them when `difficulty_batched`."""
    models = [m.strip() for m in (args.difficulty_models or "").split(",") if m.strip()]
    if not models:
        return None
    clients = {}
    make = batches.client if batches is not None and difficulty_batched(args) else LLMClient
    for m in models:
        clients[m] = make(
            model=m,
            api_key=args.difficulty_api_key,
            api_url=args.difficulty_api_url,
            max_concurrency=args.difficulty_num_process or args.num_process,
            max_retries=args.max_retries,
            backoff_base=args.retry_backoff,
            timeout=args.request_timeout,
            price=difficulty_price(args, m),
            budget=budget,
            usage=Usage(),
            env_key=False,  # self-hosted small models: never send the OpenAI key elsewhere
            strict_replies=False,  # answered as the evaluation asks: a cut answer is judged as it is
        )
    return DifficultyFilter(
        clients,
        out_dir / f"{task}_difficulty",
        temperature=args.difficulty_temperature,
        max_tokens=args.difficulty_max_tokens,
    )


def difficulty_price(args, model: str) -> tuple[float, float]:
    """--difficulty_price, else the price table, else free (a self-hosted model)."""
    return price_for(model, args.difficulty_price) or (0.0, 0.0)


def check_args(args) -> None:
    if args.max_tries < 1:
        raise InputError(f"--max_tries must be at least 1 (got {args.max_tries})")
    if args.max_tokens < 0:
        raise InputError(f"--max_tokens must be 0 (not sent) or more (got {args.max_tokens})")
    if args.min_question_length < 0:
        raise InputError(f"--min_question_length must be 0 or more (got {args.min_question_length})")
    if args.decontam_ignore_common < 0:
        raise InputError(f"--decontam_ignore_common must be 0 or more (got {args.decontam_ignore_common})")
    models = [m.strip() for m in (args.difficulty_models or "").split(",") if m.strip()]
    if models and not args.difficulty_api_url:
        raise InputError("--difficulty_models needs --difficulty_api_url (the endpoint serving those models)")
    check_api_url(args.difficulty_api_url, "--difficulty_api_url")
    if args.difficulty_num_process is not None and args.difficulty_num_process < 1:
        raise InputError(f"--difficulty_num_process must be at least 1 (got {args.difficulty_num_process})")
    if len(set(models)) != len(models):
        raise InputError(f"--difficulty_models names a model twice: {args.difficulty_models}")
    if args.difficulty_max_tokens < 1:
        raise InputError(f"--difficulty_max_tokens must be at least 1 (got {args.difficulty_max_tokens})")


def screened_record(item: dict, step: str, reason: str) -> dict:
    return {**_fresh_record(item), "status": "filtered", "drop_step": step, "drop_reason": reason}


def print_plan(args, items: list[dict], dropped: dict, difficulty, already_done: int = 0) -> None:
    free = {step: sum(1 for s, _ in dropped.values() if s == step) for step in DROP_STEPS[:3]}
    print(
        f"[dry run] free steps drop {len(dropped)} of {len(items) + len(dropped) + already_done} items: "
        + ", ".join(f"{k} {v}" for k, v in free.items())
    )
    if difficulty is not None:
        plan = difficulty.plan(items)
        names = ",".join(difficulty.models)
        prices = {difficulty_price(args, m) for m in difficulty.models}
        note = (
            f"{len(items)} items x {len(difficulty.models)} small models, answers already saved not counted; "
            f"~{EXPECTED_SMALL_REPLY} reply tokens each (a guess); self-hosted models cost 0 unless --difficulty_price"
        )
        price = prices.pop() if len(prices) == 1 else None
        print(dry_run_report(names, plan, price, note))
    plan = plan_requests(items, args.filter_data, args.language)
    note = "assumes every item passes the filter and every reply parses at once"
    if difficulty is not None:
        note += "; items the small models all answer correctly make none of these"
    if already_done:
        note = f"{already_done} items already finished are not counted; " + note
    if args.filter_data:
        note += f" (the {len(items)} rewrite requests happen only for items judged Pass)"
    print(dry_run_report(args.model_name, plan, args.price, note))


async def run(args) -> int:
    """The whole stage for parsed command-line args; returns the exit code.

    Every flag, the input and the output locations are checked before the first request; the
    item folder is locked for the run (lock.py), so a second run on it is refused."""
    check_client_args(args)
    check_run_args(args)
    check_args(args)
    check_batch_args(args)
    check_distinct_paths(
        [("--data_path", args.data_path)] + [("--decontaminate_against", f) for f in eval_files_for(args)[0]],
        [
            ("--output_path", args.output_path),
            ("the summary of --output_path", summary_path_for(args.output_path)),
        ],
    )
    items = load_mcq_items(args.data_path, args.max_record_kb)
    if args.limit_num:
        items = items[: args.limit_num]
    task = task_name_for(args.data_path)
    out_dir = Path(args.output_dir)
    dropped, decontam = prescreen(items, args)
    print(
        f"decontamination {decontam['note']}: {sum(s == 'decontamination' for s, _ in dropped.values())} dropped"
    )
    todo = [it for it in items if it["process_id"] not in dropped]
    if args.dry_run:
        done = ItemStore.existing_ids(out_dir / task, keyed_by_content(todo, item_key), "content_id")
        difficulty = difficulty_from_args(args, out_dir, task, budget=None)
        left = [it for it in todo if item_key(it) not in done]
        try:
            print_plan(args, left, dropped, difficulty, len(todo) - len(left))
        finally:
            if difficulty is not None:
                await difficulty.close()
        return 0
    check_writable_dir(out_dir, "--output_dir")
    if args.output_path:
        check_writable_file(args.output_path, "--output_path")
    # the folder lock covers this input's item folder; the claims cover its items, which results for
    # other input file names in the same --output_dir may share (content-keyed)
    with (
        run_lock(out_dir / task, what="construct"),
        item_claims(out_dir, "construct", map(item_key, todo)),
    ):
        return await _run_locked(args, items, todo, dropped, decontam, task, out_dir)


async def _run_locked(args, items, todo, dropped, decontam, task: str, out_dir: Path) -> int:
    store = ItemStore(out_dir / task)
    if args.retry_failed:
        store.drop_status("failed")
    position = {}
    for it in todo:
        position.setdefault(item_key(it), it["process_id"])
    work = keyed_by_content(todo, item_key)
    reused = adopt_results(store, work, _stored_key, other_result_folders(out_dir, task))
    if reused:
        print(f"reused {reused} results of earlier runs (older layout or another input file name)")
    usage = Usage()
    # --batch_api: every item at once, their requests sent together as batches, round by round
    batches = round_from_args(args, out_dir / task / "batches")
    # --max_tokens: a cap on each reply (0: none sent, the requests of runs without it)
    capped = {"default_kwargs": {"max_tokens": args.max_tokens}} if args.max_tokens else {}
    client = client_from_args(
        args, usage=usage, factory=batches.client if batches is not None else None, **capped
    )
    difficulty = None

    async def process(it):
        return await process_item(
            {**it, "process_id": position[it["content_id"]]},
            client,
            args.filter_data,
            args.language,
            args.max_tries,
            difficulty,
            retry_failed=args.retry_failed,
            max_tokens=args.max_tokens,
        )

    try:
        difficulty = difficulty_from_args(args, out_dir, task, budget=client.budget, batches=batches)
        report = await run_items_live_or_batched(
            work,
            process,
            store,
            batches,
            concurrency=args.num_process,
            desc="construct",
            id_key="content_id",
            label_of=lambda it: position[it["content_id"]],
            max_consecutive_failures=args.max_consecutive_failures,
        )
    finally:
        await client.close()
        if difficulty is not None:
            await difficulty.close()
    finished = {r["content_id"]: r for r in store.load_finished(work, id_key="content_id")}
    merged, seen = [], set()
    for it in items:
        pid, key = it["process_id"], item_key(it)
        if key in seen:  # a copy of an earlier item: done once, written once (io.duplicate_note)
            continue
        seen.add(key)
        if pid in dropped:
            merged.append(screened_record(it, *dropped[pid]))
        elif key in finished:
            merged.append({**finished[key], "process_id": pid})
    merged_path = write_merged(merged, out_dir, task, args.output_path)
    small_usage = {m: c.usage for m, c in difficulty.clients.items()} if difficulty else None
    summary = summarize(report, merged, len(seen), usage, args.model_name, args.price, decontam, small_usage)
    summary["duplicates"] = len(items) - len(seen)
    if summary["duplicates"]:
        print(duplicate_note(summary["duplicates"]))
    if batches is not None:
        summary["batch_api"] = batches.summary()
    atomic_write_json(merged_path.with_name(merged_path.stem + "_summary.json"), summary)
    print(describe(summary, merged_path))
    return exit_code_for(report, list(finished.values()))


def describe(summary: dict, merged_path: Path) -> str:
    lines = [
        f"kept {summary['kept']} / filtered {summary['filtered']} / failed {summary['failed']}"
        f" / unfinished {summary['unfinished']} (of {summary['items']}; {summary['resumed_skipped']} done"
        f" in earlier runs) -> {merged_path}",
        "dropped by step: " + ", ".join(f"{k} {v}" for k, v in summary["dropped"].items()),
        summary["usage_text"],
    ]
    if "difficulty" in summary:
        for m, u in summary["difficulty"]["usage"].items():
            lines.append(
                f"small model {m}: {u['requests']} requests, {u['prompt_tokens']} prompt + "
                f"{u['completion_tokens']} completion tokens; correct on "
                f"{summary['difficulty']['correct_by_model'][m]} of {summary['difficulty']['judged_items']} items"
            )
    lines.append(f"filter verdicts: {json.dumps(summary['filter_verdicts'])}")
    if "batch_api" in summary:
        b = summary["batch_api"]
        lines.append(
            f"Batch API: {b['rounds']} rounds, {b['batches_submitted']} batches sent, "
            f"{b['reused_answers']} answers reused from earlier runs"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line: construct_verifiable_medical_problems.py

USAGE = """Stage 1: multiple-choice medical exam questions -> verifiable open-ended problems.

    python construct_verifiable_medical_problems.py --data_path data/demo_data.json --filter_data \
        --model_name gpt-4o --api_key [key]

The paper's steps, in order (cheap first): decontamination against the eval sets, the question
rules, the small-models difficulty filter, the LLM filter (--filter_data), the LLM rewrite:

    python construct_verifiable_medical_problems.py --data_path data/demo_data.json --filter_data \
        --min_question_length 100 \
        --difficulty_models gemma-2-9b-it,Llama-3.1-8B-Instruct,Qwen2.5-7B-Instruct \
        --difficulty_api_url http://127.0.0.1:8000/v1 --model_name gpt-4o --api_key [key]

See huatuo_o1/datagen/construct.py for the method. Output: one file per item under
<output_dir>/<task>/ (resume state), the small models' answers under <output_dir>/<task>_difficulty/,
and the merged <output_dir>/<task>_final_<N>.json with its _summary.json.
"""


def make_parser() -> argparse.ArgumentParser:
    """The command line's flags."""
    p = argparse.ArgumentParser(description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data_path", type=str, required=True, help="Multiple-choice questions (JSON list or JSONL)."
    )
    p.add_argument(
        "--filter_data",
        action="store_true",
        help="Ask the LLM to filter questions first; only 'Pass' ones go on.",
    )
    add_client_args(p, default_model="gpt-4", default_num_process=10)
    p.add_argument("--language", choices=LANGUAGES, default="en", help="Prompt language.")
    p.add_argument("--max_tries", type=int, default=2, help="Requests per step when a reply does not parse.")
    add_structured_outputs_arg(p)
    p.add_argument(
        "--max_tokens",
        type=int,
        default=0,
        help="max_tokens sent with every filter and rewrite request (default 0: not sent). A cap keeps "
        "a small open teacher that never ends its reply from filling its whole context.",
    )
    s = p.add_argument_group("free steps (before any request)")
    s.add_argument(
        "--decontaminate_against",
        type=str,
        default=None,
        help="Eval files (evaluation format), comma-separated: an item sharing 64 consecutive characters "
        "with one of their questions drops. Default: evaluation/data/eval_data.json when it exists, else "
        "none. 'none' turns it off.",
    )
    s.add_argument(
        "--decontam_ignore_common",
        type=int,
        default=0,
        help="Ignore 64-character windows found in this many or more different eval questions (exam "
        "boilerplate). Default 0: every shared window counts, as the paper's rule.",
    )
    s.add_argument(
        "--min_question_length",
        type=int,
        default=0,
        help="Drop questions shorter than this many characters (default 0: none).",
    )
    s.add_argument(
        "--drop_negative_questions",
        type=str2bool,
        default=True,
        help="True/False: drop questions that ask for the incorrect option (EXCEPT, NOT, false...) or "
        "allow several answers (default True).",
    )
    d = p.add_argument_group("difficulty filter (small models; an item all of them answer correctly drops)")
    d.add_argument(
        "--difficulty_models",
        type=str,
        default=None,
        help="Comma-separated model names served at --difficulty_api_url (the paper: Gemma2-9B, "
        "LLaMA-3.1-8B, Qwen2.5-7B). Default: no difficulty filter.",
    )
    d.add_argument(
        "--difficulty_api_url", type=str, default=None, help="OpenAI-compatible endpoint serving them."
    )
    d.add_argument(
        "--difficulty_api_key",
        type=str,
        default=None,
        help="API key of that endpoint (default: none; the OpenAI key is never sent there).",
    )
    d.add_argument(
        "--difficulty_num_process",
        type=int,
        default=None,
        help="Small-model requests in flight per model (default: --num_process).",
    )
    d.add_argument(
        "--difficulty_temperature", type=float, default=0.0, help="Sampling temperature (default 0: greedy)."
    )
    d.add_argument(
        "--difficulty_max_tokens", type=int, default=2000, help="max_tokens of each answer (the eval's 2000)."
    )
    d.add_argument(
        "--difficulty_price",
        type=parse_price,
        default=None,
        help="IN,OUT USD per 1M tokens of the small models for --max_cost (default: the price table, "
        "else 0 = self-hosted).",
    )
    add_run_args(p, merged_help="Merged output file")
    add_batch_args(p)
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = make_parser()
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run_async_stage(run, parse_args(argv))
