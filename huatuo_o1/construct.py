"""Stage 1: turn multiple-choice medical exam questions into verifiable open-ended problems.

For each item (CONTRACTS §1), in plain words:
  1. (with --filter_data) The LLM judges the question against three criteria (needs reasoning;
     one unambiguous answer; can be asked open-ended with a definite answer) and answers one of
     Pass / Too Simple / Ambiguous Answer / Not Reformulatable. Only Pass goes on; the verdict is
     kept on the item as `filter_verdict`.
  2. The LLM rewrites the question as JSON {"Open-ended Verifiable Question", "Ground-True Answer"}.
  A reply that does not parse is asked again (up to `max_tries` per step); one that never parses
  marks the item `failed` with the raw replies kept for inspection. Every item ends with a
  `status`: kept, filtered or failed (CONTRACTS §2).

Items get `process_id` = their 1-based position in the input file, so reruns name them the same;
finished items are stored one file each (see runner.py), which is what makes resume exact.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from huatuo_o1.contract import GROUND_TRUTH as GT
from huatuo_o1.contract import OPEN_QUESTION as OPEN_Q
from huatuo_o1.io import InputError, ItemStore, atomic_write_json, load_records, write_merged
from huatuo_o1.llm import LLMClient, Usage, client_from_args, dry_run_report, usage_report
from huatuo_o1.parsing import extract_json, parse_filter_verdict
from huatuo_o1.prompts import filter_prompt, rewrite_prompt
from huatuo_o1.runner import RunReport, exit_code_for, run_items

log = logging.getLogger(__name__)

REWRITE_KEYS = (OPEN_Q, GT)


def load_mcq_items(path: str | Path) -> list[dict]:
    """Read and validate CONTRACTS §1 input; number the items by position (`process_id`)."""
    items = load_records(path, what="input")
    for i, item in enumerate(items, 1):
        where = f"{path}: item {i}"
        for key in ("question", "options", "answer"):
            if key not in item or item[key] in (None, ""):
                raise InputError(f"{where} lacks field {key!r}")
        if not isinstance(item["question"], str):
            raise InputError(f"{where}: 'question' must be a string")
        options = item["options"]
        if not isinstance(options, dict) or not options:
            raise InputError(f"{where}: 'options' must be a non-empty mapping of letter to text")
        idx = item.get("answer_idx")
        if idx not in (None, "") and idx not in options:
            raise InputError(f"{where}: answer_idx {idx!r} is not one of the options {list(options)}")
        item["process_id"] = i
    return items


def task_name_for(data_path: str | Path) -> str:
    return f"{Path(data_path).stem}_verifiable"


async def _ask_until_parsed(client: LLMClient, prompt: str, parse, max_tries: int, replies: list[str]):
    for _ in range(max_tries):
        reply = await client.chat(prompt)
        replies.append(reply)
        parsed = parse(reply)
        if parsed:
            return parsed
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
    item: dict, client: LLMClient, filter_data: bool, language: str, max_tries: int
) -> dict:
    record = _fresh_record(item)
    if filter_data:
        replies: list[str] = []
        verdict = await _ask_until_parsed(
            client, filter_prompt(item, language), parse_filter_verdict, max_tries, replies
        )
        record["filter_reply"] = replies[-1]
        if verdict is None:
            record.update(status="failed", error="filter reply named no verdict", raw_replies=replies)
            return record
        record["filter_verdict"] = verdict
        if verdict != "Pass":
            record["status"] = "filtered"
            return record
    replies = []
    parsed = await _ask_until_parsed(
        client, rewrite_prompt(item, language), _parse_rewrite, max_tries, replies
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


def _fresh_record(item: dict) -> dict:
    """The input item without fields this stage writes: an input that already carries an open-ended
    question (e.g. data/demo_data.json, or a rerun on a stage-1 output) must not keep it when the item
    is filtered or fails, since downstream stages search every item that has one (CONTRACTS §2)."""
    record = dict(item)
    for key in (OPEN_Q, GT, "status", "filter_verdict", "filter_reply", "error", "raw_replies"):
        record.pop(key, None)
    return record


def plan_requests(items: list[dict], filter_data: bool, language: str) -> list[tuple[str, int]]:
    """Every request a run would make if each reply parsed at once and every item passed."""
    plan = []
    for item in items:
        if filter_data:
            plan.append((filter_prompt(item, language), 5))
        plan.append((rewrite_prompt(item, language), 120))
    return plan


def summarize(report: RunReport, merged: list[dict], total: int, usage: Usage, model: str, price) -> dict:
    verdicts: dict[str, int] = {}
    for rec in merged:
        if "filter_verdict" in rec:
            verdicts[rec["filter_verdict"]] = verdicts.get(rec["filter_verdict"], 0) + 1
    statuses = {s: sum(1 for r in merged if r.get("status") == s) for s in ("kept", "filtered", "failed")}
    return {
        "items": total,
        **statuses,
        "unfinished": total - len(merged),
        "resumed_skipped": report.skipped,
        "filter_verdicts": verdicts,
        "stopped_reason": report.stopped_reason,
        "usage": usage.as_dict(),
        "usage_text": usage_report(model, usage, price),
    }


def print_plan(args, items: list[dict], already_done: int = 0) -> None:
    plan = plan_requests(items, args.filter_data, args.language)
    note = "assumes every item passes the filter and every reply parses at once"
    if already_done:
        note = f"{already_done} items already finished are not counted; " + note
    if args.filter_data:
        note += f" (the {len(items)} rewrite requests happen only for items judged Pass)"
    print(dry_run_report(args.model_name, plan, args.price, note))


async def run(args) -> int:
    """The whole stage for parsed command-line args; returns the exit code."""
    if args.max_tries < 1:
        raise InputError(f"--max_tries must be at least 1 (got {args.max_tries})")
    items = load_mcq_items(args.data_path)
    if args.limit_num:
        items = items[: args.limit_num]
    task = task_name_for(args.data_path)
    out_dir = Path(args.output_dir)
    if args.dry_run:
        done = ItemStore.existing_ids(out_dir / task)
        print_plan(args, [it for it in items if str(it["process_id"]) not in done], len(done))
        return 0
    store = ItemStore(out_dir / task)
    if args.retry_failed:
        store.drop_status("failed")
    usage = Usage()
    client = client_from_args(args, usage=usage)
    try:
        report = await run_items(
            items,
            lambda it: process_item(it, client, args.filter_data, args.language, args.max_tries),
            store,
            concurrency=args.num_process,
            desc="construct",
            max_consecutive_failures=args.max_consecutive_failures,
        )
    finally:
        await client.close()
    merged = store.load_finished(items)
    merged_path = write_merged(merged, out_dir, task, args.output_path)
    summary = summarize(report, merged, len(items), usage, args.model_name, args.price)
    atomic_write_json(merged_path.with_name(merged_path.stem + "_summary.json"), summary)
    print(describe(summary, merged_path))
    return exit_code_for(report)


def describe(summary: dict, merged_path: Path) -> str:
    return (
        f"kept {summary['kept']} / filtered {summary['filtered']} / failed {summary['failed']}"
        f" / unfinished {summary['unfinished']} (of {summary['items']}; {summary['resumed_skipped']} done"
        f" in earlier runs) -> {merged_path}\n{summary['usage_text']}\n"
        f"filter verdicts: {json.dumps(summary['filter_verdicts'])}"
    )
