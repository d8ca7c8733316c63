"""The OpenAI Batch API for the API stages: the same requests at half price, answered within 24 h.

How it goes, in plain words:
  1. A stage runs every unfinished item at once (`run_items(..., batched=True)`). Each item's code
     is the live code: it awaits `client.chat(...)`. A `BatchLLMClient` does not send that request;
     it hands it to the run's `BatchRound` and waits.
  2. When every item in flight waits on a request (the round is complete), the round sends them
     together: one JSONL file per endpoint and model (`custom_id`, `method`, `url`, `body` per
     line), split to stay within `max_requests` lines and `max_bytes` per batch, uploaded through
     /v1/files (purpose "batch") and started through /v1/batches. Each batch is polled with
     exponential backoff (`poll_interval`, doubling up to `poll_max`); its output and error files
     are read when it ends, and every item gets its reply and goes on to its next request.
  3. Nothing paid twice: each request's `custom_id` is a hash of the endpoint, path and body, plus
     how many times the run asked that same request before (a re-ask of an invalid reply is a new
     request). Before a batch is created its exact lines and a pending record are written
     atomically under the stage's `batches/` folder; the batch id is written right after the API
     gives it; its results (and which requests it left unanswered) when it ends. A rerun replays
     each item from the start: requests already answered take the saved reply, requests in a batch
     still running wait for that batch (polled, never sent again), and a pending record whose
     batch id was never saved is looked up by its `metadata` in the batch list before anything is
     sent again (every page of the list, back to when the record was written). Requests an earlier
     run's batch left failed (error line, expired, missing) are never reused: the rerun sends them
     again under their next occurrence, and only them (`BatchState.failed_before`).
  4. A result applies only to the request it answers: a line whose `custom_id` is not one this run
     sent in that batch, or whose saved request no longer hashes to its id, is ignored (that
     request is sent again next round). An expired or cancelled batch gives its finished results;
     the rest go in the next round. A failed request line (5xx, 429) is retried in the next round
     up to --max_retries; a 400 for that request only (context length) fails its item. A good line
     and an error line for one custom id: the good one counts. A result file the server no longer
     has (404) leaves its requests unanswered: they are sent again, nothing else.
  5. A batch the API rejects (status `failed`, validation errors) stops the run with one line and
     exit code 2; so does an endpoint without the Batch API (HTTP 404 on /v1/files or /v1/batches:
     a local server), with the advice to run without --batch_api.
  6. Cost: before a batch is created its cost is estimated (prompt tokens by the --dry_run
     heuristic, reply tokens `min(max_tokens, expected_reply_tokens)`, batch prices) and checked
     against --max_cost; a batch that would pass it is not sent (the run stops as --max_cost does).
     Replies are billed at the batch prices, cached prompt tokens at their own rate, and every
     usage also keeps `cost_live`, what the same requests cost live.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import hashlib
import json
import logging
import random
import secrets
import time
from collections import Counter
from pathlib import Path

import openai

from huatuo_o1.io import atomic_write_bytes, atomic_write_json, clean_json
from huatuo_o1.llm import (
    RETRYABLE,
    BudgetExceeded,
    FatalAPIError,
    LLMClient,
    TransientAPIError,
    current_item_usage,
    estimate_tokens,
)

log = logging.getLogger(__name__)

MAX_REQUESTS_PER_BATCH = 50_000
MAX_BYTES_PER_BATCH = 200 * 1024 * 1024
COMPLETION_WINDOW = "24h"
DEFAULT_POLL_INTERVAL_S = 10.0
DEFAULT_POLL_MAX_S = 300.0
EXPECTED_REPLY_TOKENS = 1000  # the --max_cost estimate of one reply (capped by max_tokens)
# A round ends when every item in flight waits on a request; an item busy elsewhere for longer than
# this (writing a file, say) does not hold back the others' requests
SETTLE_TIMEOUT_S = 2.0
# a batch created this long before its pending record was written cannot be that record's batch
LIST_SLACK_S = 600
TERMINAL = ("completed", "expired", "cancelled", "failed")
RETRYABLE_STATUS = (408, 409, 429)

OK, ERROR, MISSING = "ok", "error", "missing"


# Whether the reply the current item's last request got came from an earlier run's batch (set by
# BatchLLMClient for its caller): under --retry_failed such replies, the ones that made the item
# fail, do not count as tries, so the step is asked again and everything before it is reused.
reply_reused: contextvars.ContextVar[bool] = contextvars.ContextVar("reply_reused", default=False)


def counts_as_try(retry_failed: bool) -> bool:
    """Whether the reply just received counts toward a step's tries (see `reply_reused`)."""
    return not (retry_failed and reply_reused.get())


def request_hash(endpoint: str, path: str, body: dict) -> str:
    """The fingerprint of one request: its endpoint (base URL), path and exact body."""
    blob = json.dumps([endpoint, path, clean_json(body)], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


def custom_id_for(fingerprint: str, occurrence: int) -> str:
    return f"{fingerprint}-{occurrence}"


def fingerprint_of(custom_id: str) -> str:
    return str(custom_id).rsplit("-", 1)[0]


async def run_items_live_or_batched(items: list[dict], process, store, batches, **kwargs):
    """runner.run_items, with each item's requests gathered into rounds when `batches` (this module's
    round runner) is given, and those batches closed at the end; live otherwise."""
    from huatuo_o1.runner import run_items

    try:
        return await run_items(
            items,
            batches.track(process) if batches is not None else process,
            store,
            batched=batches is not None,
            **kwargs,
        )
    finally:
        if batches is not None:
            await batches.close()


def add_batch_args(parser) -> None:
    """--batch_api and its settings (the API stages and evaluation through an API)."""
    from huatuo_o1.cli import str2bool

    g = parser.add_argument_group("Batch API (docs/batch_api.md)")
    g.add_argument(
        "--batch_api",
        type=str2bool,
        default=False,
        help="True/False: send the requests through the OpenAI Batch API (half price, results within "
        "24 h), all unfinished items together, one request each per round (default False: live).",
    )
    g.add_argument(
        "--batch_poll_interval",
        type=float,
        default=DEFAULT_POLL_INTERVAL_S,
        help="Seconds before a batch is polled first; doubled after every poll up to 300 s.",
    )
    g.add_argument(
        "--batch_max_requests",
        type=int,
        default=MAX_REQUESTS_PER_BATCH,
        help="Requests per batch file at most (the Batch API's limit: 50000).",
    )
    g.add_argument(
        "--batch_max_mb",
        type=float,
        default=MAX_BYTES_PER_BATCH / 2**20,
        help="Size of one batch file at most, in MB (the Batch API's limit: 200).",
    )


def check_batch_args(args) -> None:
    from huatuo_o1.io import InputError

    if not getattr(args, "batch_api", False):
        return
    if args.batch_poll_interval <= 0:
        raise InputError(f"--batch_poll_interval must be above 0 (got {args.batch_poll_interval})")
    if args.batch_max_requests < 1:
        raise InputError(f"--batch_max_requests must be at least 1 (got {args.batch_max_requests})")
    if args.batch_max_mb <= 0:
        raise InputError(f"--batch_max_mb must be above 0 (got {args.batch_max_mb})")


def round_from_args(args, folder: Path) -> BatchRound | None:
    """The run's BatchRound when --batch_api is on (its saved batches under `folder`), else None."""
    if not getattr(args, "batch_api", False):
        return None
    check_batch_args(args)
    return BatchRound(
        BatchState(folder),
        poll_interval=args.batch_poll_interval,
        max_requests=args.batch_max_requests,
        max_bytes=int(args.batch_max_mb * 2**20),
    )


# ---------------------------------------------------------------------------------------------
# What is saved: requests, batch ids, results
# ---------------------------------------------------------------------------------------------


class BatchState:
    """The batches of one stage folder, on disk: `<local id>.requests.jsonl` (the exact lines),
    `<local id>.json` (status pending -> submitted -> done or failed, the batch id, the endpoint)
    and `<local id>.results.jsonl` (one outcome per request of a finished batch)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.records: dict[str, dict] = {}
        self.answers: dict[str, tuple] = {}  # custom id -> a usable outcome (an HTTP 200 reply)
        # custom ids an earlier run's batch left failed (error line, expired, missing): a rerun
        # skips them and sends the request again under the next occurrence
        self.failed_before: set[str] = set()
        self.waiting: dict[str, str] = {}  # custom id -> local id of a batch not finished yet
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("*.json")):
            try:
                rec = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if not isinstance(rec, dict) or "local_id" not in rec:
                continue
            self.records[rec["local_id"]] = rec
            if rec.get("status") in ("pending", "submitted"):
                for cid in self.saved_ids(rec["local_id"]):
                    self.waiting[cid] = rec["local_id"]
            elif rec.get("status") == "done":
                for cid, outcome in self._load_results(rec["local_id"]).items():
                    if outcome[0] == OK:
                        self.answers[cid] = outcome
                    else:
                        self.failed_before.add(cid)

    def _path(self, local_id: str, suffix: str) -> Path:
        return self.folder / f"{local_id}{suffix}"

    def saved_lines(self, local_id: str) -> list[dict]:
        try:
            text = self._path(local_id, ".requests.jsonl").read_text(encoding="utf-8")
        except OSError:
            return []
        return [json.loads(x) for x in text.splitlines() if x.strip()]

    def saved_ids(self, local_id: str) -> list[str]:
        """The custom ids of a saved batch whose line still hashes to its id (an edited or corrupt
        request file answers nothing)."""
        rec = self.records[local_id]
        out = []
        for line in self.saved_lines(local_id):
            cid = line.get("custom_id", "")
            path = str(line.get("url", ""))[len("/v1") :]
            if fingerprint_of(cid) == request_hash(rec["endpoint"], path, line.get("body") or {}):
                out.append(cid)
        return out

    def _load_results(self, local_id: str) -> dict[str, tuple]:
        try:
            text = self._path(local_id, ".results.jsonl").read_text(encoding="utf-8")
        except OSError:
            return {}
        out = {}
        for x in text.splitlines():
            if x.strip():
                row = json.loads(x)
                out[row["custom_id"]] = tuple(row["outcome"])
        return out

    def new_batch(self, lines: list[dict], endpoint: str, model: str, path: str, estimate: float) -> str:
        """Save a batch's lines, then its pending record; its local id."""
        local_id = f"b{len(self.records) + 1:05d}-{secrets.token_hex(3)}"
        data = b"".join(json.dumps(x, ensure_ascii=False).encode("utf-8") + b"\n" for x in lines)
        atomic_write_bytes(self._path(local_id, ".requests.jsonl"), data)
        rec = {
            "local_id": local_id,
            "status": "pending",
            "endpoint": endpoint,  # the base URL, credentials masked
            "model": model,
            "path": path,
            "requests": len(lines),
            "estimated_cost": round(estimate, 6),
            "batch_id": None,
            "input_file_id": None,
            "created_at": int(time.time()),  # how far back a rerun looks for it in the batch list
        }
        self.records[local_id] = rec
        self._save(local_id)
        for x in lines:
            self.waiting[x["custom_id"]] = local_id
        return local_id

    def update(self, local_id: str, **fields) -> None:
        self.records[local_id].update(fields)
        self._save(local_id)

    def _save(self, local_id: str) -> None:
        atomic_write_json(self._path(local_id, ".json"), self.records[local_id])

    def finish(self, local_id: str, outcomes: dict[str, tuple], status: str) -> None:
        """Save a finished batch's outcomes, then mark it done."""
        rows = [{"custom_id": k, "outcome": list(v)} for k, v in outcomes.items()]
        data = b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in rows)
        atomic_write_bytes(self._path(local_id, ".results.jsonl"), data)
        self.update(local_id, status="done", batch_status=status)
        self.answers.update({k: v for k, v in outcomes.items() if v[0] == OK})
        self.failed_before.update(k for k, v in outcomes.items() if v[0] != OK)
        for cid in outcomes:
            self.waiting.pop(cid, None)
        for cid in [c for c, lid in self.waiting.items() if lid == local_id]:
            self.waiting.pop(cid)


# ---------------------------------------------------------------------------------------------
# The client and the round
# ---------------------------------------------------------------------------------------------


class BatchLLMClient(LLMClient):
    """An LLMClient whose requests go through the run's BatchRound instead of one by one; its
    replies, checks (cut or empty answers asked again), errors and accounting are the live ones."""

    def __init__(self, *args, batch_round: BatchRound, **kwargs):
        super().__init__(*args, **kwargs)
        self.round = batch_round

    async def _post(self, path: str, body: dict) -> dict:
        failures = 0
        last = ""
        while True:
            if not self.budget_left():
                raise BudgetExceeded(
                    f"--max_cost {self.budget.limit} USD reached (spent {self.budget.spent:.4f} USD)"
                )
            outcome, reused = await self.round.ask(self, path, body)
            reply_reused.set(reused)
            kind = outcome[0]
            if kind == OK:
                resp = outcome[1]
                if isinstance(resp, dict) and isinstance(resp.get("choices"), list) and resp["choices"]:
                    # a reply an earlier run's batch paid for counts for its item, not this run;
                    # the round reports it apart
                    cost = self._account(resp, batch=True, this_run=not reused)
                    if reused:
                        self.round.reused_cost += cost
                    return resp
                last = self._error_body_reason(resp)
            elif kind == ERROR:
                status, err_body = outcome[1], outcome[2]
                if status is not None and status not in RETRYABLE_STATUS and status < 500:
                    raise self.classify_status(status, err_body) from None
                last = f"HTTP {status}" if status else str(err_body)[:200]
            else:  # MISSING: expired, cancelled, or an answer that did not match: send it again
                last = str(outcome[1])
            failures += 1
            if failures > self.max_retries:
                raise TransientAPIError(
                    f"{self.display_url} Batch API kept failing this request after {failures} batches ({last})"
                )
            self.usage.retries += 1


@dataclasses.dataclass
class _Ask:
    client: BatchLLMClient
    path: str
    body: dict
    custom_id: str
    future: asyncio.Future
    item: object


class BatchRound:
    """Collects the requests of every item in flight and sends each round as batches (module doc)."""

    def __init__(
        self,
        state: BatchState,
        poll_interval: float = DEFAULT_POLL_INTERVAL_S,
        poll_max: float = DEFAULT_POLL_MAX_S,
        max_requests: int = MAX_REQUESTS_PER_BATCH,
        max_bytes: int = MAX_BYTES_PER_BATCH,
        expected_reply_tokens: int = EXPECTED_REPLY_TOKENS,
        settle_timeout: float = SETTLE_TIMEOUT_S,
    ):
        self.state = state
        self.poll_interval = poll_interval
        self.poll_max = max(poll_max, poll_interval)
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.expected_reply_tokens = expected_reply_tokens
        self.settle_timeout = settle_timeout
        self.rounds = 0  # rounds that sent or waited on a batch
        self.submitted = 0  # batches created by this run
        self.reused = 0  # requests answered from batches of an earlier run
        self.reused_cost = 0.0  # what those batches were billed (then, not by this run)
        self._pending: list[_Ask] = []
        self._active: Counter = Counter()
        self._seen: Counter = Counter()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    # -- what the stages call -------------------------------------------------------------------
    def client(self, **kwargs) -> BatchLLMClient:
        return BatchLLMClient(batch_round=self, **kwargs)

    def track(self, process):
        """Wrap an item coroutine function: the round knows which items are in flight."""

        async def tracked(item):
            key = id(current_item_usage.get() or item)
            self._active[key] += 1
            try:
                return await process(item)
            finally:
                self._active[key] -= 1
                if self._active[key] <= 0:
                    del self._active[key]
                self._poke()

        return tracked

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    def summary(self) -> dict:
        return {
            "rounds": self.rounds,
            "batches_submitted": self.submitted,
            "reused_answers": self.reused,
            "reused_answers_cost_billed_earlier": round(self.reused_cost, 6),
        }

    # -- collecting -----------------------------------------------------------------------------
    async def ask(self, client: BatchLLMClient, path: str, body: dict) -> tuple[tuple, bool]:
        """The request's outcome, and whether a batch of an earlier run answered it (no request at
        all, and no cost in this run: that batch was billed when it ran)."""
        fp = request_hash(client.display_url, path, body)  # credentials in a URL are masked
        while True:
            cid = custom_id_for(fp, self._seen[fp])
            self._seen[fp] += 1
            if cid in self.state.answers:
                self.reused += 1
                return self.state.answers[cid], True
            if cid not in self.state.failed_before or cid in self.state.waiting:
                break
            # failed in an earlier run's batch: that failure is not this run's; ask again under
            # the next occurrence (an answer the earlier run got for that one is reused above)
        fut = asyncio.get_running_loop().create_future()
        item = current_item_usage.get()
        self._pending.append(_Ask(client, path, body, cid, fut, id(item) if item is not None else id(fut)))
        self._poke()
        return await fut, False

    def _poke(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._coordinate())

    def _complete(self) -> bool:
        """Every item in flight waits on a request (or none is tracked)."""
        waiting = {a.item for a in self._pending if not a.future.done()}
        return not self._active or all(k in waiting for k in self._active)

    async def _coordinate(self) -> None:
        while True:
            self._wake.clear()
            for _ in range(3):  # let every item that can run reach its next request
                await asyncio.sleep(0)
            self._pending = [a for a in self._pending if not a.future.done()]
            if not self._pending:
                if self._wake.is_set():
                    continue
                await self._wake.wait()
                continue
            if not self._complete():
                try:
                    await asyncio.wait_for(self._wake.wait(), self.settle_timeout)
                    continue
                except asyncio.TimeoutError:
                    pass  # an item stays busy elsewhere: send what is there
            asks, self._pending = self._pending, []
            try:
                await self._run_round(asks)
            except BaseException as e:
                for a in asks:
                    if not a.future.done():
                        if isinstance(e, asyncio.CancelledError):
                            a.future.cancel()
                        else:
                            a.future.set_exception(e)
                if isinstance(e, asyncio.CancelledError):
                    raise

    # -- one round --------------------------------------------------------------------------------
    async def _run_round(self, asks: list[_Ask]) -> None:
        self.rounds += 1
        groups: dict[tuple, list[_Ask]] = {}
        for a in asks:
            groups.setdefault((id(a.client), a.path), []).append(a)
        # every new batch of the round is estimated and checked against --max_cost before any is sent
        plans = []
        budgets: dict[int, float] = {}
        for (_, path), group in groups.items():
            client = group[0].client
            new = [a for a in group if a.custom_id not in self.state.waiting]
            est = sum(self._estimate(client, a.body) for a in new)
            plans.append((client, path, group, new, est))
            budget = client.budget
            budgets[id(budget)] = budgets.get(id(budget), 0.0) + est
            if budget.limit is not None and new and budget.spent + budgets[id(budget)] > budget.limit:
                raise BudgetExceeded(
                    f"--max_cost {budget.limit} USD: the next batch ({len(new)} requests, estimated "
                    f"{budgets[id(budget)]:.4f} USD at batch prices) would pass it (spent "
                    f"{budget.spent:.4f} USD); it was not sent"
                )
        results = await asyncio.gather(
            *(self._run_group(client, path, group, new) for client, path, group, new, _ in plans),
            return_exceptions=True,
        )
        for (_, _, group, _, _), res in zip(plans, results, strict=True):
            for a in group:
                if a.future.done():
                    continue
                if isinstance(res, BaseException):
                    a.future.set_exception(res)
                else:
                    a.future.set_result(res.get(a.custom_id) or (MISSING, "no result for this request"))

    def _estimate(self, client: BatchLLMClient, body: dict) -> float:
        rates = client.rates
        if rates is None:
            return 0.0
        text = json.dumps(body.get("messages") or body.get("prompt") or "", ensure_ascii=False)
        cap = body.get("max_tokens") or body.get("max_completion_tokens") or self.expected_reply_tokens
        n = int(body.get("n") or 1)
        reply = min(int(cap), self.expected_reply_tokens) * n
        return rates.cost(estimate_tokens(text), reply, batch=True)

    async def _run_group(self, client: BatchLLMClient, path: str, group: list[_Ask], new: list[_Ask]) -> dict:
        """Send the group's new requests as batches, wait for them and for the saved batches that
        hold the others; every outcome by custom id."""
        state = self.state
        local_ids = {state.waiting[a.custom_id] for a in group if a.custom_id in state.waiting}
        lines = [
            {"custom_id": a.custom_id, "method": "POST", "url": "/v1" + path, "body": clean_json(a.body)}
            for a in new
        ]
        for chunk in self._chunks(lines):
            est = sum(self._estimate(client, x["body"]) for x in chunk)
            lid = state.new_batch(chunk, client.display_url, client.model, path, est)
            await self._submit(client, lid)
            local_ids.add(lid)
        outcomes: dict[str, tuple] = {}
        done = await asyncio.gather(*(self._wait(client, lid) for lid in sorted(local_ids)))
        for part in done:
            outcomes.update(part)
        return outcomes

    def _chunks(self, lines: list[dict]):
        chunk, size = [], 0
        for x in lines:
            n = len(json.dumps(x, ensure_ascii=False).encode("utf-8")) + 1
            if chunk and (len(chunk) >= self.max_requests or size + n > self.max_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append(x)
            size += n
        if chunk:
            yield chunk

    async def _api(self, client: BatchLLMClient, what: str, fn, *args, missing_ok: bool = False, **kwargs):
        """One Batch API management call, retried like a request; 404: no Batch API there (or, with
        `missing_ok`, None: a file the server no longer has)."""
        for attempt in range(client.max_retries + 1):
            try:
                return await fn(*args, **kwargs)
            except openai.NotFoundError:
                if missing_ok:
                    return None
                raise FatalAPIError(
                    f"{client.display_url} has no Batch API (HTTP 404 on {what}): a local server (vLLM, "
                    "SGLang) lacks /v1/files and /v1/batches; run without --batch_api"
                ) from None
            except RETRYABLE as err:
                if attempt == client.max_retries:
                    raise TransientAPIError(
                        f"{client.display_url} kept failing on {what} ({type(err).__name__})"
                    ) from None
                await asyncio.sleep(
                    random.uniform(0, min(client.backoff_max, client.backoff_base * 2**attempt))
                )
            except openai.APIStatusError as err:
                if err.status_code >= 500 or err.status_code in RETRYABLE_STATUS:
                    if attempt == client.max_retries:
                        raise TransientAPIError(
                            f"{client.display_url} kept failing on {what} (HTTP {err.status_code})"
                        ) from None
                    await asyncio.sleep(
                        random.uniform(0, min(client.backoff_max, client.backoff_base * 2**attempt))
                    )
                    continue
                raise client._fatal(err) from None

    async def _submit(self, client: BatchLLMClient, local_id: str) -> None:
        """Upload a saved batch's lines and create the batch; its id is saved at once."""
        state = self.state
        rec = state.records[local_id]
        data = state._path(local_id, ".requests.jsonl").read_bytes()
        up = await self._api(
            client,
            "/v1/files",
            client.client.files.create,
            file=(f"{local_id}.jsonl", data, "application/jsonl"),
            purpose="batch",
        )
        state.update(local_id, input_file_id=up.id)
        batch = await self._api(
            client,
            "/v1/batches",
            client.client.batches.create,
            input_file_id=up.id,
            endpoint="/v1" + rec["path"],
            completion_window=COMPLETION_WINDOW,
            metadata={"huatuo_local_id": local_id},
        )
        state.update(local_id, status="submitted", batch_id=batch.id, batch_status=batch.status)
        self.submitted += 1

    async def _recover(self, client: BatchLLMClient, local_id: str) -> None:
        """A pending batch of an earlier run (killed between create and saving its id): find it by
        its metadata in the batch list; send it only when the API never created it."""
        found = None
        since = self.state.records[local_id].get("created_at")
        after = None
        while found is None:  # every page, newest first, back to the time the record was written
            kw = {"limit": 100} if after is None else {"limit": 100, "after": after}
            page = await self._api(client, "/v1/batches", client.client.batches.list, **kw)
            for b in page.data:
                if (b.metadata or {}).get("huatuo_local_id") == local_id:
                    found = b
                    break
            older = since is not None and page.data and (page.data[-1].created_at or 0) < since - LIST_SLACK_S
            if found is not None or not page.data or not getattr(page, "has_more", False) or older:
                break
            after = page.data[-1].id
        if found is not None:
            self.state.update(local_id, status="submitted", batch_id=found.id, batch_status=found.status)
        else:
            await self._submit(client, local_id)

    async def _wait(self, client: BatchLLMClient, local_id: str) -> dict[str, tuple]:
        """Poll a batch until it ends (exponential backoff); its outcomes by custom id."""
        state = self.state
        rec = state.records[local_id]
        if rec.get("status") == "done":
            return {cid: state.answers[cid] for cid in state.saved_ids(local_id) if cid in state.answers}
        if not rec.get("batch_id"):
            await self._recover(client, local_id)
        delay = self.poll_interval
        while True:
            batch = await self._api(
                client, f"/v1/batches/{rec['batch_id']}", client.client.batches.retrieve, rec["batch_id"]
            )
            if batch.status in TERMINAL:
                break
            if batch.status != rec.get("batch_status"):
                state.update(local_id, batch_status=batch.status)
            await asyncio.sleep(delay)
            delay = min(self.poll_max, delay * 2)
        if batch.status == "failed":
            state.update(local_id, status="failed", batch_status="failed")
            errors = [e for e in ((batch.errors.data if batch.errors else None) or [])]
            first = errors[0] if errors else None
            detail = (
                f"{first.code}: {first.message}" + (f" (line {first.line})" if first.line else "")
                if first is not None
                else "no reason given"
            )
            raise FatalAPIError(
                client._mask(
                    f"batch {batch.id} rejected by {client.display_url} ({len(errors)} error(s)): "
                    + " ".join(detail.split())[:300]
                )
            )
        sent = set(state.saved_ids(local_id))
        outcomes: dict[str, tuple] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = await self._api(
                client,
                f"/v1/files/{file_id}/content",
                client.client.files.content,
                file_id,
                missing_ok=True,
            )
            if content is None:  # deleted on the server: its requests are sent again, nothing else
                log.warning(
                    "batch %s: result file %s is gone from %s; its requests are sent again",
                    batch.id,
                    file_id,
                    client.display_url,
                )
                continue
            for raw in client.mask_reply(content.text).splitlines():  # never save an echoed key
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw)
                except json.JSONDecodeError:
                    continue
                cid = row.get("custom_id")
                if cid not in sent:  # answers no request of this batch: never applied
                    log.warning("batch %s: result for an unknown custom_id %r ignored", batch.id, cid)
                    continue
                outcome = _outcome(row)
                if cid in outcomes and outcomes[cid][0] == OK and outcome[0] != OK:
                    continue  # a good line and an error line for one request: the answer counts
                outcomes[cid] = outcome
        for cid in sent - set(outcomes):
            outcomes[cid] = (MISSING, f"batch {batch.id} {batch.status} without an answer")
        state.finish(local_id, outcomes, batch.status)
        return outcomes


def _outcome(row: dict) -> tuple:
    """(OK, reply body), (ERROR, HTTP status, error body) or (MISSING, why) for one result line."""
    resp = row.get("response") or None
    err = row.get("error") or None
    if isinstance(resp, dict) and resp.get("status_code") == 200 and isinstance(resp.get("body"), dict):
        return (OK, resp["body"])
    if isinstance(resp, dict) and resp.get("status_code"):
        return (ERROR, int(resp["status_code"]), resp.get("body"))
    code = err.get("code") if isinstance(err, dict) else None
    return (MISSING, f"not run ({code or 'no response'})")
