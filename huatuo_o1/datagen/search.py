"""Stage 2: verifier-guided search for complex reasoning paths (verifiable problem -> SFT record).

For each verifiable problem (docs/data_formats.md §2), in plain words:
  1. Items without both "Open-ended Verifiable Question" and "Ground-True Answer" are skipped and
     counted (e.g. the ones stage 1 filtered out). `process_id` = 1-based position in the input file;
     `content_id` = a hash of the open-ended question and ground truth names the item's trace file, so
     a stage-1 rerun (a new file name, items filled in or moved) never re-pays a finished item;
     traces of older runs (named by position, or in the folder of another input file name) are reused
     when they match (`io.adopt_results`).
  2. Initial reasoning: the LLM answers the question as JSON {"CoT": [...]}, a list of steps whose
     `action` is "Inner Thinking" (with a `title`), "Final Conclusion" or "Verification". A reply is
     valid only if it parses and its last three steps are Inner Thinking, Final Conclusion,
     Verification, in that order. An invalid reply is asked again, up to `max_tries` requests.
  3. Verification: a verifier LLM (the same one, or --verifier_model_name/--verifier_api_url)
     compares the Final Conclusion with the Ground-True Answer and answers True or False.
  4. Search: while the latest conclusion is judged false, up to `max_search_depth` refinements.
     Each draws a strategy uniformly from Backtracking, Exploring New Paths, Verification,
     Correction (the first refinement of an attempt never draws Backtracking). The prompt shows the
     reasoning so far minus its last Verification; the reply starts with a new Verification and its
     steps replace the old last Verification. Every refinement is verified again.
  5. Attempts: up to `max_search_attempts`; each new attempt restarts from the initial reasoning
     (already verified: no new request for it) and the failed attempt is kept in `prior_fail_try`.
  6. Efficient search: if every attempt failed, one label-guided refinement is told the reference
     answer (and asked to reason as if it had not been told); its result is accepted unverified.
     Without efficient search such an item is `dropped`: kept in its trace file, not in the SFT data.
  7. A correct trace is serialised as `### <title>` / `### Conclusion` / `### Verification` blocks and
     rewritten by the LLM as natural thinking ({"NaturalReasoning": "..."}, must hold line breaks)
     -> `Complex_CoT`; a second request writes the user-facing answer -> `Response`;
     `Question` = the open-ended question (docs/data_formats.md §3).

Every record keeps the audit trail: `gpt4_query_cot`/`gpt4_response_cot` (every request and reply,
in order, invalid ones included), `response_struct`, `response_type` (Init_CoT, Re_CoT_<Strategy>,
Label_CoT, one per reasoning step, aligned with `verify`), `verify`, `verifications` (conclusion and
verdict of every verifier call), `Long_CoT`, `prior_fail_try`, `search_result`, `status`
(kept / dropped / failed) and `api_usage`.

Strategy draws use one `random.Random` per item, seeded from (--seed, the item's content id):
reproducible whatever the concurrency or the order items finish in, and the same on resume. Without
--seed, the seed is a random number drawn once per trace folder and saved in it (`.search_seed`):
fresh randomness for a new folder, and a rerun after a kill asks exactly what the killed run asked,
so the answers a batch already paid for are used (`folder_seed`).

The run itself (resume, bounded concurrency, failure limits) is huatuo_o1/runner.py; the summary
(right at the first try, after 1, 2, ... refinements, per strategy, by label guidance, dropped,
failed, with tokens and cost per bucket) is computed from the stored records, so it covers
resumed runs too.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import random
from collections import Counter
from pathlib import Path

from huatuo_o1.batch import (
    add_batch_args,
    check_batch_args,
    counts_as_try,
    round_from_args,
    run_items_live_or_batched,
)
from huatuo_o1.cli import add_dataclass_args, run_async_stage
from huatuo_o1.contract import GROUND_TRUTH as GT
from huatuo_o1.contract import OPEN_QUESTION as OPEN_Q
from huatuo_o1.contract import (
    SEARCH_INITIAL_KIND,
    SFT_COT,
    SFT_QUESTION,
    SFT_RESPONSE,
    STEP_CONCLUSION,
    STEP_THINKING,
)
from huatuo_o1.io import (
    DEFAULT_MAX_RECORD_KB,
    InputError,
    ItemStore,
    adopt_results,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_jsonl,
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
    normalize_base_url,
    price_for,
    usage_report,
)
from huatuo_o1.lock import item_claims, run_lock
from huatuo_o1.parsing import extract_json, parse_verdict, strip_think
from huatuo_o1.prompts import (
    LANGUAGES,
    SEARCH_STRATEGIES,
    VERIFY_SCHEMA,
    cot_schema,
    final_response_prompt,
    init_cot_prompt,
    label_guided_prompt,
    natural_reasoning_prompt,
    natural_schema,
    refine_prompt,
    response_schema,
    verify_prompt,
)
from huatuo_o1.runner import RunReport, add_run_args, check_run_args, exit_code_for

log = logging.getLogger(__name__)

KEPT, DROPPED, FAILED = "kept", "dropped", "failed"
COT_TAIL = (STEP_THINKING, STEP_CONCLUSION, "Verification")
INIT, LABEL = SEARCH_INITIAL_KIND, "Label_CoT"


@dataclasses.dataclass
class SearchConfig:
    """How one item is searched (the command-line flags of the same names)."""

    max_search_attempts: int = dataclasses.field(
        default=1, metadata={"help": "Attempts; each restarts from the initial reasoning."}
    )
    max_search_depth: int = dataclasses.field(
        default=2, metadata={"help": "Refinements per attempt while the conclusion is judged false."}
    )
    efficient_search: bool = dataclasses.field(
        default=True,
        metadata={"help": "After all attempts failed, one label-guided refinement (accepted unverified)."},
    )
    max_tries: int = dataclasses.field(
        default=3, metadata={"help": "Requests per step when a reply is invalid (CoT, verdict, rewrite)."}
    )
    language: str = dataclasses.field(default="en", metadata={"help": "Prompt language: en or zh."})
    seed: int | None = dataclasses.field(
        default=None,
        metadata={
            "help": "Seed of the strategy draws (None: a random seed drawn once per trace folder and "
            "saved there, so a rerun draws what the interrupted run drew)."
        },
    )
    gen_kwargs: dict = dataclasses.field(
        default_factory=dict, metadata={"help": "Extra request parameters (e.g. max_tokens)."}
    )


# ---------------------------------------------------------------------------------------------
# Parsing and serialisation (pure functions)
# ---------------------------------------------------------------------------------------------


def validate_cot(obj) -> list[dict] | None:
    """The steps of a {"CoT": [...]} object if valid: every step an object with a string `action`
    and `content`, and the last three actions Inner Thinking, Final Conclusion, Verification."""
    if not isinstance(obj, dict):
        return None
    steps = obj.get("CoT")
    if not isinstance(steps, list) or len(steps) < 3:
        return None
    for step in steps:
        if not isinstance(step, dict):
            return None
        if not isinstance(step.get("action"), str) or not isinstance(step.get("content"), str):
            return None
    if tuple(s["action"].strip() for s in steps[-3:]) != COT_TAIL:
        return None
    return steps


def parse_cot(reply: str) -> list[dict] | None:
    """A valid CoT step list from an LLM reply (code fences and prose around tolerated), or None."""
    return validate_cot(extract_json(reply, ("CoT",)))


def parse_natural_reasoning(reply: str) -> str | None:
    """The "NaturalReasoning" text of a reply; None unless it is a string with line breaks. A list
    of lines (what prompts.natural_schema asks a constrained reply for) is joined with line breaks."""
    obj = extract_json(reply, ("NaturalReasoning",))
    text = obj.get("NaturalReasoning") if obj else None
    if isinstance(text, list) and all(isinstance(x, str) for x in text):
        text = "\n".join(x.strip() for x in text if x.strip())
    if not isinstance(text, str) or "\n" not in text.strip():
        return None
    return text.strip()


def parse_final_response(reply: str) -> str | None:
    """The final response: the "Response" of a reply in prompts.response_schema's shape, else the
    free-form reply (after any <think> draft); None when empty."""
    obj = extract_json(reply, ("Response",))
    if obj is not None:
        text = obj["Response"]
        return (text.strip() or None) if isinstance(text, str) else None
    return strip_think(reply).strip() or None


def previous_reasoning(long_cot: list[dict]) -> str:
    """The reasoning shown to a refinement: the trace minus its last Verification, as JSON."""
    return json.dumps(long_cot[:-1], ensure_ascii=False, indent=2)


def stream_of_search(long_cot: list[dict]) -> str:
    """The trace as `### <title>` / `### Conclusion` / `### Verification` blocks."""
    blocks = []
    for step in long_cot:
        action = step["action"].strip()
        title = step.get("title") if action == "Inner Thinking" else None
        head = title or ("Conclusion" if action == "Final Conclusion" else action)
        blocks.append(f"### {head}\n{step['content']}\n")
    return "\n".join(blocks).strip()


def draw_strategy(rng: random.Random, depth_index: int) -> str:
    """Uniform over SEARCH_STRATEGIES; the first refinement (depth_index 0) never backtracks."""
    choices = SEARCH_STRATEGIES if depth_index > 0 else SEARCH_STRATEGIES[1:]
    return rng.choice(choices)


def item_rng(seed: int | None, item_id) -> random.Random:
    """The item's own generator: seeded from (seed, the item's id), fresh randomness without a seed."""
    return random.Random(f"{seed}:{item_id}") if seed is not None else random.Random()


SEED_FILE = ".search_seed"


def folder_seed(folder: Path) -> int:
    """The strategy seed saved in a trace folder, drawn and saved (atomically) the first time: a
    rerun without --seed draws the strategies the interrupted run drew, so its requests are the
    same and nothing a batch already answered is asked (and paid) again."""
    path = Path(folder) / SEED_FILE
    try:
        return int(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        pass
    seed = random.SystemRandom().randrange(2**62)
    atomic_write_bytes(path, f"{seed}\n".encode())
    return seed


# ---------------------------------------------------------------------------------------------
# The search of one item
# ---------------------------------------------------------------------------------------------


# Fields this stage writes; dropped from an input record so a rerun on a search output (or on
# data/demo_data.json, which carries hand-written ones) never mixes old and new results.
STALE_FIELDS = (
    SFT_QUESTION, SFT_COT, SFT_RESPONSE, "status", "error", "api_usage", "input_fingerprint",
    "verify", "verifications", "Long_CoT", "gpt4_query_cot", "gpt4_response_cot", "response_struct",
    "response_type", "prior_fail_try", "invalid_replies", "search_result",
)  # fmt: skip


class ItemFailed(Exception):
    """A step's reply stayed invalid after max_tries requests: the item ends as `failed`."""


class Searcher:
    """Runs the method on one item at a time; `process` is what the runner calls."""

    def __init__(
        self,
        client: LLMClient,
        verifier: LLMClient | None,
        config: SearchConfig,
        retry_failed: bool = False,
    ):
        self.client = client
        self.verifier = verifier or client
        self.cfg = config
        # --retry_failed: invalid replies an earlier run's batch paid for are kept but do not count
        # as tries, so the failed step is asked again and every answer before it is reused
        self.retry_failed = retry_failed
        # each reply's JSON schema, its bounds sized so that the longest reply fits in max_tokens
        max_tokens, lang = config.gen_kwargs.get("max_tokens"), config.language
        self.cot_schema = cot_schema(max_tokens, lang)
        self.continue_schema = cot_schema(max_tokens, lang, continued=True)
        self.natural_schema = natural_schema(max_tokens, lang)
        self.response_schema = response_schema(max_tokens, lang)

    async def _ask(
        self,
        d: dict,
        prompt: str,
        parse,
        what: str,
        client: LLMClient | None = None,
        schema: dict | None = None,
    ):
        """Ask until `parse` accepts the reply (at most max_tries requests); log every exchange.
        `schema`: the reply's JSON schema (prompts.py), sent as --structured_outputs says."""
        client = client or self.client
        tries = 0
        while tries < max(1, self.cfg.max_tries):
            reply = await client.chat(prompt, schema=schema, **self.cfg.gen_kwargs)
            d["gpt4_query_cot"].append(prompt)
            d["gpt4_response_cot"].append(reply)
            parsed = parse(reply)
            if parsed is not None:
                return parsed
            d["invalid_replies"] += 1
            tries += counts_as_try(self.retry_failed)
        raise ItemFailed(f"{what} reply invalid after {max(1, self.cfg.max_tries)} tries")

    async def _verify(self, d: dict) -> bool:
        conclusion = d["Long_CoT"][-2]["content"]
        prompt = verify_prompt(conclusion, d[GT], self.cfg.language)
        try:
            verdict = await self._ask(
                d, prompt, parse_verdict, "verifier", client=self.verifier, schema=VERIFY_SCHEMA
            )
        except ItemFailed:
            verdict = None  # the verifier never said True or False: count it as not verified
        d["verify"].append(bool(verdict))
        d["verifications"].append({"response": conclusion, "label": verdict})
        return bool(verdict)

    def _add_steps(self, d: dict, steps: list[dict], kind: str, replace_last: bool) -> None:
        d["response_struct"].append(steps)
        d["Long_CoT"] = (d["Long_CoT"][:-1] + steps) if replace_last else steps
        d["response_type"].append(kind)

    async def _search(self, d: dict, rng: random.Random, current: list) -> dict:
        """Steps 2-5; returns the trace of the last attempt (earlier ones in its prior_fail_try).
        `current[0]` always holds the trace being extended, for the caller to keep on ItemFailed."""
        q, lang = d[OPEN_Q], self.cfg.language
        steps = await self._ask(
            d, init_cot_prompt(q, lang), parse_cot, "initial reasoning", schema=self.cot_schema
        )
        self._add_steps(d, steps, INIT, replace_last=False)
        await self._verify(d)
        initial = copy.deepcopy(d)
        prior: list[dict] = []
        for attempt in range(max(1, self.cfg.max_search_attempts)):
            if attempt > 0:
                d.pop("prior_fail_try", None)
                prior.append(d)
                d = copy.deepcopy(initial)
                d["prior_fail_try"] = prior
            current[0] = d
            refinements = 0
            for depth in range(self.cfg.max_search_depth):
                if d["verify"][-1]:
                    break
                strategy = draw_strategy(rng, depth)
                prompt = refine_prompt(q, previous_reasoning(d["Long_CoT"]), strategy, lang)
                steps = await self._ask(
                    d, prompt, parse_cot, f"refinement ({strategy})", schema=self.continue_schema
                )
                self._add_steps(d, steps, f"Re_CoT_{strategy}", replace_last=True)
                refinements += 1
                await self._verify(d)
            if d["verify"][-1]:
                d["search_result"].update(attempt=attempt + 1, refinements=refinements)
                if refinements:
                    d["search_result"]["strategy"] = d["response_type"][-1][len("Re_CoT_") :]
                break
        return d

    async def process(self, item: dict) -> dict:
        d = copy.deepcopy(item)
        for key in STALE_FIELDS:  # an input that is a trace or SFT file already: start clean
            d.pop(key, None)
        d.update(
            verify=[],
            verifications=[],
            Long_CoT=[],
            gpt4_query_cot=[],
            gpt4_response_cot=[],
            response_struct=[],
            response_type=[],
            prior_fail_try=[],
            invalid_replies=0,
        )
        d["search_result"] = {"attempt": None, "refinements": 0, "strategy": None, "label_guided": False}
        q, lang = d[OPEN_Q], self.cfg.language
        current = [d]
        try:
            d = await self._search(
                d, item_rng(self.cfg.seed, item.get("content_id", item.get("process_id"))), current
            )
            if not d["verify"][-1]:
                if not self.cfg.efficient_search:
                    d["status"] = DROPPED
                    return d
                prompt = label_guided_prompt(q, previous_reasoning(d["Long_CoT"]), d[GT], lang)
                steps = await self._ask(
                    d, prompt, parse_cot, "label-guided refinement", schema=self.continue_schema
                )
                self._add_steps(d, steps, LABEL, replace_last=True)
                d["verify"].append(True)  # accepted without verification (the method's rule)
                d["search_result"]["label_guided"] = True
            thought = stream_of_search(d["Long_CoT"])
            d[SFT_COT] = await self._ask(
                d,
                natural_reasoning_prompt(thought, q, lang),
                parse_natural_reasoning,
                "natural rewrite",
                schema=self.natural_schema,
            )
            d[SFT_RESPONSE] = await self._ask(
                d,
                final_response_prompt(d[SFT_COT], q, lang),
                parse_final_response,
                "final response",
                schema=self.response_schema,
            )
            d[SFT_QUESTION] = q
            d["status"] = KEPT
        except ItemFailed as e:
            d = current[0]  # the trace being extended when the reply stayed invalid
            d["status"] = FAILED
            d["error"] = str(e)
        return d


# ---------------------------------------------------------------------------------------------
# Input, dry run, merge, export, summary
# ---------------------------------------------------------------------------------------------


def task_name_for(data_path: str | Path) -> str:
    """The original's task name: `<data file stem>_CoT_search`."""
    return f"{Path(data_path).stem}_CoT_search"


TASK_SUFFIX = "_CoT_search"


def item_key(item: dict) -> str | None:
    """The item's identity: what this stage reads of it (the open-ended question, the ground truth)."""
    q, a = item.get(OPEN_Q), item.get(GT)
    if not isinstance(q, str) or a in (None, "") or isinstance(a, (dict, list)):
        return None
    return content_key(q, str(a))


def load_search_items(
    path: str | Path, max_record_kb: float | None = DEFAULT_MAX_RECORD_KB
) -> tuple[list[dict], int]:
    """docs/data_formats.md §2 records numbered by input position; returns (searchable items, skipped
    count). Skipped: records stage 1 filtered out or failed, and records with neither field (not
    a verifiable problem). A record with one field of the two missing, empty or of the wrong kind
    (a question that is a list, an answer that is an object) is malformed: InputError naming it
    (io.require_text's rule); so is a record over --max_record_kb."""
    records = load_records(path, what="input")
    check_record_sizes(path, records, max_record_kb)
    items = []
    for i, rec in enumerate(records, 1):
        rec["process_id"] = i
        q, a = rec.get(OPEN_Q), rec.get(GT)
        if rec.get("status") in ("filtered", "failed"):  # stage 1 kept its verdict, not the item
            continue
        if q in (None, "") and a in (None, ""):  # not a verifiable problem: skipped and counted
            continue
        require_text(path, i, rec, OPEN_Q)
        if isinstance(a, (int, float)) and not isinstance(a, bool):
            a = str(a)  # a numeric answer (a dose, a count) is its text
        rec[GT] = a
        require_text(path, i, rec, GT)
        items.append(rec)
    return items, len(records) - len(items)


# Expected reply lengths (tokens) for --dry_run; prompts are built from the real questions.
_EST = {"cot": 700, "refine": 600, "verdict": 2, "natural": 900, "response": 450}


def _fake_steps(n_tokens: int) -> list[dict]:
    words = " ".join(["reasoning"] * max(1, n_tokens * 4 // 10))
    return [
        {"action": "Inner Thinking", "title": "Step", "content": words},
        {"action": "Final Conclusion", "content": "conclusion"},
        {"action": "Verification", "content": "check"},
    ]


def plan_requests(items: list[dict], cfg: SearchConfig, worst: bool) -> tuple[list, list]:
    """(LLM requests, verifier requests) as (prompt, expected reply tokens) for every item.

    Best case: the first conclusion is right (init, verify, rewrite, response). Worst case: every
    attempt uses every refinement, then label guidance (with --efficient_search) or, without it,
    success at the very last refinement; every reply valid at once.
    """
    main, ver = [], []
    lang = cfg.language
    for it in items:
        q, a = it[OPEN_Q], it[GT]
        main.append((init_cot_prompt(q, lang), _EST["cot"]))
        ver.append((verify_prompt("x" * 200, a, lang), _EST["verdict"]))
        cot = _fake_steps(_EST["cot"])
        if worst:
            for _ in range(max(1, cfg.max_search_attempts)):
                cot = _fake_steps(_EST["cot"])
                for _ in range(cfg.max_search_depth):
                    main.append(
                        (refine_prompt(q, previous_reasoning(cot), "Correction", lang), _EST["refine"])
                    )
                    ver.append((verify_prompt("x" * 200, a, lang), _EST["verdict"]))
                    cot = cot[:-1] + _fake_steps(_EST["refine"])
            if cfg.efficient_search:
                main.append((label_guided_prompt(q, previous_reasoning(cot), a, lang), _EST["refine"]))
                cot = cot[:-1] + _fake_steps(_EST["refine"])
        thought = stream_of_search(cot)
        main.append((natural_reasoning_prompt(thought, q, lang), _EST["natural"]))
        main.append((final_response_prompt("x" * _EST["natural"] * 4, q, lang), _EST["response"]))
    return main, ver


def dry_run_text(args, items: list[dict], skipped: int, cfg: SearchConfig) -> str:
    verifier_model = args.verifier_model_name or args.model_name
    separate = verifier_model != args.model_name
    out = [f"[dry run] {len(items)} items to search ({skipped} skipped: no open-ended question/answer)"]
    counts = []
    for label, worst in (
        ("best case (every first conclusion right)", False),
        ("worst case (all attempts and depths used)", True),
    ):
        main, ver = plan_requests(items, cfg, worst)
        counts.append(len(main) + len(ver))
        out.append(f"[dry run] --- {label}: {len(main) + len(ver)} requests")
        if separate:
            out.append(f"[dry run] search LLM ({len(main)} requests):")
            out.append(dry_run_report(args.model_name, main, args.price))
            out.append(f"[dry run] verifier ({len(ver)} requests):")
            out.append(dry_run_report(verifier_model, ver, None))
        else:
            out.append(dry_run_report(args.model_name, main + ver, args.price))
    out.append(
        f"[dry run] requests: {counts[0]} to {counts[1]} (invalid replies are re-asked, up to "
        f"--max_tries {cfg.max_tries} per step, on top of this)"
    )
    return "\n".join(out)


def _walk_traces(record: dict):
    yield record
    for failed in record.get("prior_fail_try") or []:
        yield from _walk_traces(failed)


def verifier_examples(records: list[dict]) -> list[dict]:
    """Every verifier decision as docs/data_formats.md §5 {"response", "reference", "label"} (failed attempts
    included; label-guided steps, never verified, and verdicts that never parsed excluded)."""
    out = []
    for rec in records:
        for trace in _walk_traces(rec):
            verifications = trace.get("verifications") or []
            if trace is not rec:  # a failed attempt restarted from the initial reasoning, whose
                verifications = verifications[1:]  # verdict the final trace already holds
            for v in verifications:
                if v.get("label") is not None:
                    out.append({"response": v["response"], "reference": rec[GT], "label": bool(v["label"])})
    return out


def write_examples(path: str | Path, examples: list[dict]) -> None:
    """A JSON list, or JSONL when the name ends in .jsonl (both read by load_records); atomic."""
    if Path(path).suffix == ".jsonl":
        atomic_write_jsonl(path, examples)
    else:
        atomic_write_json(path, examples)


def _bucket(rec: dict) -> str:
    if rec.get("status") == FAILED:
        return "failed"
    if rec.get("status") == DROPPED:
        return "dropped"
    res = rec.get("search_result") or {}
    if res.get("label_guided"):
        return "label_guided"
    n = res.get("refinements", 0)
    return "first_try" if n == 0 and res.get("attempt") == 1 else f"after_{n}_refinements"


def summarize(
    records: list[dict],
    total: int,
    skipped: int,
    report: RunReport,
    usages: dict[str, tuple[Usage, str]],
    prices: dict,
) -> dict:
    """Outcome counts, strategy statistics and tokens/cost, from every stored record of the input."""
    buckets: dict[str, dict] = {}
    for rec in records:
        b = buckets.setdefault(
            _bucket(rec), {"items": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0}
        )
        u = rec.get("api_usage") or {}
        b["items"] += 1
        b["prompt_tokens"] += u.get("prompt_tokens", 0)
        b["completion_tokens"] += u.get("completion_tokens", 0)
        b["cost"] = round(b["cost"] + u.get("cost", 0.0), 6)
    order = ["first_try"] + sorted(
        (k for k in buckets if k.startswith("after_")), key=lambda k: int(k.split("_")[1])
    )
    order += ["label_guided", "dropped", "failed"]
    drawn, verified_right = Counter(), Counter()
    success_strategy, by_attempt = Counter(), Counter()
    for rec in records:
        for trace in _walk_traces(rec):
            for kind, ok in zip(trace.get("response_type") or [], trace.get("verify") or [], strict=False):
                if kind.startswith("Re_CoT_"):
                    drawn[kind[7:]] += 1
                    verified_right[kind[7:]] += bool(ok)
        res = rec.get("search_result") or {}
        if rec.get("status") == KEPT and not res.get("label_guided"):
            by_attempt[str(res.get("attempt"))] += 1
            if res.get("strategy"):
                success_strategy[res["strategy"]] += 1
    statuses = Counter(r.get("status") for r in records)
    this_run = {name: u.as_dict() for name, (u, _) in usages.items()}
    return {
        "items_in_file": total + skipped,
        "skipped_missing_fields": skipped,
        "items_searched": total,
        "kept": statuses[KEPT],
        "dropped": statuses[DROPPED],
        "failed": statuses[FAILED],
        "unfinished": total - len(records),
        "resumed_skipped": report.skipped,
        "outcomes": {k: buckets[k] for k in order if k in buckets},
        "kept_by_attempt": dict(sorted(by_attempt.items())),
        "strategies": {
            s: {
                "drawn": drawn[s],
                "judged_right": verified_right[s],
                "final_step_of_a_success": success_strategy[s],
            }
            for s in SEARCH_STRATEGIES
        },
        "usage_this_run": this_run,
        "cost_this_run": round(sum(u.cost for u, _ in usages.values()), 6),
        "cost_this_run_live_equivalent": round(sum(u.cost_live for u, _ in usages.values()), 6),
        "usage_text": [usage_report(model, u, prices.get(name)) for name, (u, model) in usages.items()],
        "usage_all_runs": {
            "prompt_tokens": sum(b["prompt_tokens"] for b in buckets.values()),
            "completion_tokens": sum(b["completion_tokens"] for b in buckets.values()),
            "cost": round(sum(b["cost"] for b in buckets.values()), 6),
        },
        "stopped_reason": report.stopped_reason,
        "errors": report.errors[:20],
    }


def describe(summary: dict, merged_path: Path) -> str:
    lines = [
        f"kept {summary['kept']} / dropped {summary['dropped']} / failed {summary['failed']} / unfinished "
        f"{summary['unfinished']} (of {summary['items_searched']} searched; {summary['skipped_missing_fields']} "
        f"skipped without question/answer; {summary['resumed_skipped']} done in earlier runs) -> {merged_path}",
        f"{'outcome':<24}{'items':>7}{'prompt tok':>12}{'compl. tok':>12}{'cost USD':>11}",
    ]
    for k, b in summary["outcomes"].items():
        lines.append(
            f"{k:<24}{b['items']:>7}{b['prompt_tokens']:>12}{b['completion_tokens']:>12}{b['cost']:>11.4f}"
        )
    lines.append(f"{'strategy':<24}{'drawn':>7}{'judged right':>14}{'last step of success':>22}")
    for s, v in summary["strategies"].items():
        lines.append(f"{s:<24}{v['drawn']:>7}{v['judged_right']:>14}{v['final_step_of_a_success']:>22}")
    lines.extend(summary["usage_text"])
    if "batch_api" in summary:
        b = summary["batch_api"]
        lines.append(
            f"Batch API: {b['rounds']} rounds, {b['batches_submitted']} batches sent, "
            f"{b['reused_answers']} answers reused from earlier runs (billed then: "
            f"{b['reused_answers_cost_billed_earlier']:.4f} USD); cost {summary['cost_this_run']:.4f} USD "
            f"(live-equivalent {summary['cost_this_run_live_equivalent']:.4f} USD)"
        )
    return "\n".join(lines)


def config_from_args(args) -> SearchConfig:
    gen = {"max_tokens": args.max_tokens} if args.max_tokens else {}
    return SearchConfig(
        max_search_attempts=args.max_search_attempts,
        max_search_depth=args.max_search_depth,
        efficient_search=args.efficient_search,
        max_tries=args.max_tries,
        language=args.language,
        seed=args.seed,
        gen_kwargs=gen,
    )


async def run(args) -> int:
    """The whole stage for parsed command-line args; returns the exit code.

    Every flag, the input and the output locations are checked before the first request; the
    trace folder is locked for the run (lock.py), so a second run on it is refused."""
    check_client_args(args)
    check_run_args(args)
    check_batch_args(args)
    check_api_url(args.verifier_api_url, "--verifier_api_url")
    if args.max_search_attempts < 1 or args.max_search_depth < 0 or args.max_tries < 1:
        raise InputError("--max_search_attempts and --max_tries must be >= 1, --max_search_depth >= 0")
    check_distinct_paths(
        [("--data_path", args.data_path)],
        [
            ("--output_path", args.output_path),
            ("the summary of --output_path", summary_path_for(args.output_path)),
            ("--export_verifier_data", args.export_verifier_data),
        ],
    )
    items, skipped = load_search_items(args.data_path, args.max_record_kb)
    if args.limit_num:
        items = items[: args.limit_num]
    cfg = config_from_args(args)
    task = task_name_for(args.data_path)
    out_dir = Path(args.output_dir)
    if args.dry_run:
        done = ItemStore.existing_ids(out_dir / task, keyed_by_content(items, item_key), "content_id")
        todo = [it for it in items if item_key(it) not in done]
        print(dry_run_text(args, todo, skipped, cfg))
        if done:
            print(f"[dry run] {len(items) - len(todo)} items already finished are not counted")
        return 0
    check_writable_dir(out_dir, "--output_dir")
    if args.output_path:
        check_writable_file(args.output_path, "--output_path")
    if args.export_verifier_data:
        check_writable_file(args.export_verifier_data, "--export_verifier_data")
    # the folder lock covers this input's trace folder; the claims cover its items, which traces for
    # other input file names in the same --output_dir may share (content-keyed)
    with run_lock(out_dir / task, what="search"), item_claims(out_dir, "search", map(item_key, items)):
        return await _run_locked(args, items, skipped, cfg, task, out_dir)


async def _run_locked(
    args, items: list[dict], skipped: int, cfg: SearchConfig, task: str, out_dir: Path
) -> int:
    store = ItemStore(out_dir / task)
    if cfg.seed is None:  # the folder's own seed: a rerun asks exactly what this run asks
        cfg = dataclasses.replace(cfg, seed=folder_seed(out_dir / task))
    if args.retry_failed:
        store.drop_status(FAILED)
    position = {}
    for it in items:
        position.setdefault(item_key(it), it["process_id"])
    work = keyed_by_content(items, item_key)
    others = [p for p in out_dir.glob(f"*{TASK_SUFFIX}") if p.is_dir() and p.name != task]
    reused = adopt_results(store, work, item_key, others)
    if reused:
        print(f"reused {reused} traces of earlier runs (older layout or another input file name)")
    usage = Usage()
    # --batch_api: every item at once, their requests sent together as batches, round by round
    batches = round_from_args(args, out_dir / task / "batches")
    factory = batches.client if batches is not None else None
    client = client_from_args(args, usage=usage, factory=factory)
    usages = {"search": (usage, args.model_name)}
    prices = {"search": args.price}
    verifier = None
    if args.verifier_model_name or args.verifier_api_url or args.verifier_api_key:
        vusage = Usage()
        vmodel = args.verifier_model_name or args.model_name
        vurl = args.verifier_api_url or args.api_url
        same_host = normalize_base_url(vurl) == normalize_base_url(args.api_url)
        verifier = client_from_args(
            args,
            usage=vusage,
            model=vmodel,
            api_url=vurl,
            # never send the search endpoint's key (or OPENAI_API_KEY) to another host
            api_key=args.verifier_api_key or (args.api_key if same_host else None),
            env_key=same_host,
            price=args.price if vmodel == args.model_name else None,
            budget=client.budget,  # --max_cost bounds the run, verifier included
            factory=factory,
        )
        usages["verifier"] = (vusage, vmodel)
        prices["verifier"] = price_for(vmodel, prices["search"] if vmodel == args.model_name else None)
    searcher = Searcher(client, verifier, cfg, retry_failed=args.retry_failed)

    async def process(it):
        return await searcher.process({**it, "process_id": position[it["content_id"]]})

    try:
        report = await run_items_live_or_batched(
            work,
            process,
            store,
            batches,
            concurrency=args.num_process,
            desc="search",
            id_key="content_id",
            label_of=lambda it: position[it["content_id"]],
            max_consecutive_failures=args.max_consecutive_failures,
        )
    finally:
        await client.close()
        if verifier is not None:
            await verifier.close()
    records = [
        {**r, "process_id": position[r["content_id"]]} for r in store.load_finished(work, id_key="content_id")
    ]
    merged_path = write_merged(
        [r for r in records if r.get("status") == KEPT], out_dir, task, args.output_path
    )
    summary = summarize(records, len(work), skipped, report, usages, prices)
    summary["duplicates"] = len(items) - len(work)
    summary["items_in_file"] += summary["duplicates"]
    if summary["duplicates"]:
        print(duplicate_note(summary["duplicates"]))
    if batches is not None:
        summary["batch_api"] = batches.summary()
    atomic_write_json(merged_path.with_name(merged_path.stem + "_summary.json"), summary)
    if args.export_verifier_data:
        examples = verifier_examples(records)
        write_examples(args.export_verifier_data, examples)
        print(f"verifier data: {len(examples)} examples -> {args.export_verifier_data}")
    print(describe(summary, merged_path))
    return exit_code_for(report, records)


# ---------------------------------------------------------------------------------------------
# Command line: search_for_complex_reasoning_path.py

USAGE = """Stage 2: verifier-guided search for complex reasoning paths (verifiable problems -> SFT data).

    python search_for_complex_reasoning_path.py --data_path data/demo_data.json --efficient_search True \
        --max_search_attempts 1 --max_search_depth 2 --model_name gpt-4o --api_key [key]

The paper's search (depth 3, 3 attempts) is one flag away: add --paper_settings (explicit
--max_search_depth / --max_search_attempts still win). Without it the original code's defaults hold:
depth 2, 1 attempt, label guidance on.

See huatuo_o1/datagen/search.py for the method. Output: one trace file per item under
<output_dir>/<task>/ (resume state; task = <data file stem>_CoT_search), the merged SFT file
<output_dir>/<task>_final_<N>.json (N kept items) and <...>_summary.json beside it.
"""


ORIGINAL_SETTINGS = {k: getattr(SearchConfig, k) for k in ("max_search_depth", "max_search_attempts")}
PAPER_SETTINGS = {"max_search_depth": 3, "max_search_attempts": 3}


def make_parser() -> argparse.ArgumentParser:
    """The command line's flags."""
    p = argparse.ArgumentParser(description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data_path",
        type=str,
        required=True,
        help="Verifiable problems (JSON list or JSONL, docs/data_formats.md §2).",
    )
    add_client_args(p, default_model="gpt-4", default_num_process=5)
    add_structured_outputs_arg(p)
    add_dataclass_args(p, SearchConfig, exclude={"gen_kwargs"}, choices={"language": LANGUAGES})
    p.add_argument(
        "--paper_settings",
        action="store_true",
        help="Search as the paper did: --max_search_depth 3 --max_search_attempts 3 (flags given "
        "explicitly still win; label guidance stays as --efficient_search says).",
    )
    # None marks "not given", so --paper_settings can tell an explicit flag from the default.
    p.set_defaults(**dict.fromkeys(PAPER_SETTINGS))
    p.add_argument(
        "--max_tokens", type=int, default=8192, help="max_tokens sent with every request (0: not sent)."
    )
    g = p.add_argument_group("verifier (default: the search model and endpoint)")
    g.add_argument("--verifier_model_name", type=str, default=None, help="Model that judges conclusions.")
    g.add_argument("--verifier_api_url", type=str, default=None, help="Endpoint of the verifier model.")
    g.add_argument(
        "--verifier_api_key",
        type=str,
        default=None,
        help="API key of the verifier endpoint (default: --api_key).",
    )
    p.add_argument(
        "--export_verifier_data",
        type=str,
        default=None,
        help="Also write every verification as {response, reference, label} (.json list or .jsonl).",
    )
    add_run_args(p, merged_help="Merged SFT file")
    add_batch_args(p)
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = make_parser()
    args = p.parse_args(argv)
    for name, value in (PAPER_SETTINGS if args.paper_settings else ORIGINAL_SETTINGS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main(argv=None) -> int:
    return run_async_stage(run, parse_args(argv))
