"""Run an async function over many items with bounded concurrency, resume and failure limits.

The plan, in plain words:
  - Items already in the result store (one file per finished item) are skipped: that is resume.
  - `concurrency` workers pull items from a queue; each item's calls run in sequence inside its
    worker, so at most `concurrency` requests are in flight.
  - A finished item's record is written atomically at once (off the event loop) before its worker
    takes the next item: a crash (even kill -9) loses at most the items in flight, and a rerun
    neither repeats nor duplicates finished ones. A record that cannot be written (disk full, no
    permission) stops the run with `OutputError` (one line, exit code 2) instead of being dropped.
  - The workers start 1 ms apart (`RAMP_STEP_S`): requests that all start at once stay in
    lockstep with a steady endpoint and their replies keep arriving in one burst that queues on
    the event loop every round.
  - The record's `status` field (e.g. "kept", "filtered", "failed") is counted for the summary;
    a record is saved whatever its status (a reply that never parsed is kept for inspection).
  - An item whose requests kept failing (`TransientAPIError`), was rejected for that item alone
    (`RequestRejected`, e.g. too long for the context) or that raised unexpectedly is not saved (so a
    rerun retries it); the run then exits 1. `max_consecutive_failures` endpoint failures in a row
    mean the endpoint is down: the run stops with the reason, finished results intact.
  - Each saved record carries `input_fingerprint`, a hash of its input item: on resume an item whose
    input changed since (the file was edited) is done again instead of reusing a stale result. Until
    it is redone (the budget or the endpoint may stop it) it counts as unfinished: the stages leave
    it out of the merged file (`ItemStore.load_finished`) and the run exits 3 (`exit_code_for`).
  - Exit codes (`exit_code_for`), so that `stage1 && stage2` never goes on with half the data:
    0 every item finished; EXIT_ITEMS_FAILED (1) the run went through every item but some failed
    on the endpoint, or every finished item ended `failed` (no reply ever parsed: a wrong model or
    prompt); EXIT_WORK_LEFT (3) the run stopped with work left: --max_cost reached, the endpoint
    looked down, or an edited item is not redone yet. 2 (bad input, fatal API error) comes from
    cli.run_main. Every non-zero code means: rerun the same command to continue.
  - `BudgetExceeded` stops new items cleanly; `FatalAPIError` (bad key, unknown model) cancels the
    items in flight and propagates, so the script exits with code 2.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from tqdm.auto import tqdm

from huatuo_o1.io import DEFAULT_MAX_RECORD_KB, ItemStore, OutputError, fingerprint
from huatuo_o1.llm import (
    BudgetExceeded,
    FatalAPIError,
    RequestRejected,
    TransientAPIError,
    Usage,
    current_item_usage,
)
from huatuo_o1.redact import mask_secrets

log = logging.getLogger(__name__)

# Workers start this far apart (all of them within RAMP_MAX_S): requests that all start at once stay
# in lockstep with a steady endpoint, and every round their replies arrive in one burst that queues
# on the event loop; a 1 ms ramp spreads them out (bench/bench_construct.py: +0.01 to +0.035 of ideal).
# Against endpoints with seconds of latency it costs nothing measurable and spares rate limiters
# a burst of simultaneous requests.
RAMP_STEP_S = 0.001

EXIT_ITEMS_FAILED = 1  # every item was tried; some failed (a rerun retries them)
EXIT_WORK_LEFT = 3  # stopped with items not done (budget, endpoint down, edited items)
RAMP_MAX_S = 0.25


@dataclasses.dataclass
class RunReport:
    total: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    statuses: Counter = dataclasses.field(default_factory=Counter)
    stopped_reason: str | None = None
    budget_stopped: bool = False
    errors: list[str] = dataclasses.field(default_factory=list)
    stale: int = 0  # items whose stored result was made from an older version of their input
    stale_left: int = 0  # of those, the ones this run did not redo (unfinished)

    @property
    def ok(self) -> bool:
        return self.stopped_reason is None


async def run_items(
    items: list[dict],
    process: Callable[[dict], Awaitable[dict]],
    store: ItemStore,
    concurrency: int,
    desc: str = "items",
    id_key: str = "process_id",
    max_consecutive_failures: int = 20,
    show_progress: bool = True,
    label_of: Callable[[dict], object] | None = None,
    batched: bool = False,
) -> RunReport:
    """`label_of(item)`: how messages name an item (default: its `id_key`, e.g. its position where the
    store is keyed by content). `batched`: every unfinished item at once, without the start ramp
    (the Batch API's rounds, huatuo_o1/batch.py: requests wait in the round, not on the wire)."""
    report = RunReport(total=len(items))
    name = label_of or (lambda it: it.get(id_key))
    finished = store.fingerprints()
    prints = {str(it[id_key]): fingerprint(it) for it in items}

    def is_done(it: dict) -> bool:
        key = str(it[id_key])
        return key in finished and finished[key] in (None, prints[key])

    stale = {k for k, fp in prints.items() if finished.get(k, fp) not in (None, fp)}
    report.stale = len(stale)
    saved: set[str] = set()
    todo = [it for it in items if not is_done(it)]
    report.skipped = len(items) - len(todo)
    queue: asyncio.Queue = asyncio.Queue()
    for it in todo:
        queue.put_nowait(it)
    consecutive = 0
    stop = asyncio.Event()
    fatal: list[BaseException] = []
    bar = tqdm(total=len(todo), desc=desc, disable=not show_progress, dynamic_ncols=True)

    def refresh():
        bar.set_postfix(done=report.done, failed=report.failed, skipped=report.skipped, refresh=False)

    refresh()

    def abort(err: BaseException) -> None:
        """Stop at once: the other items in flight would fail the same way. The first error is raised."""
        if not fatal:
            fatal.append(err)
        stop.set()
        for w in workers:
            if w is not asyncio.current_task():
                w.cancel()

    async def save(key, record: dict, label) -> bool:
        """Write the record off the event loop (its fsync would stall every worker); False, and the
        run stops with OutputError, when it cannot be written (disk full, no permission)."""
        try:
            await asyncio.to_thread(store.save, key, record)
        except Exception as e:
            abort(OutputError(f"cannot write the result of item {label}: {e}"))
            return False
        saved.add(str(key))
        report.done += 1
        report.statuses[record.get("status", "done")] += 1
        return True

    async def worker(rank: int):
        nonlocal consecutive
        if rank and ramp_step:
            await asyncio.sleep(rank * ramp_step)
        while not stop.is_set():
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            usage = Usage()
            token = current_item_usage.set(usage)
            try:
                record = await process(item)
            except BudgetExceeded as e:
                report.budget_stopped = True
                report.stopped_reason = str(e)
                stop.set()
                return
            except FatalAPIError as e:
                abort(e)
                return
            except RequestRejected as e:  # this item's request only (e.g. too long): not the endpoint
                report.failed += 1
                msg = mask_secrets(f"item {name(item)}: {e}")
                report.errors.append(msg)
                log.warning(msg)
            except (TransientAPIError, Exception) as e:  # noqa: B014 - both listed for clarity
                report.failed += 1
                consecutive += 1
                msg = mask_secrets(f"item {name(item)}: {type(e).__name__}: {e}")
                report.errors.append(msg)
                log.warning(msg)
                if consecutive >= max_consecutive_failures:
                    report.stopped_reason = mask_secrets(
                        f"{consecutive} consecutive items failed (last: {type(e).__name__}: {e}); "
                        "the endpoint looks down"
                    )
                    stop.set()
            else:
                consecutive = 0
                record["api_usage"] = usage.as_dict()  # this stage's requests for the item
                record["input_fingerprint"] = prints[str(item[id_key])]
                if not await save(item[id_key], record, name(item)):
                    return
            finally:
                current_item_usage.reset(token)
            bar.update(1)
            refresh()

    n_workers = max(1, len(todo) if batched else min(concurrency, len(todo)))
    ramp_step = 0.0 if batched else min(RAMP_STEP_S, RAMP_MAX_S / n_workers)
    workers = [asyncio.create_task(worker(rank)) for rank in range(n_workers)]
    try:
        await asyncio.gather(*workers, return_exceptions=True)
    finally:
        for w in workers:
            w.cancel()
        bar.close()
    if fatal:
        raise fatal[0]
    report.stale_left = len(stale - saved)
    return report


def add_run_args(parser, merged_help: str = "Merged output file") -> None:
    """Output and resume flags shared by the API stages."""
    parser.add_argument(
        "--output_dir", type=str, default="output_data", help="Folder for per-item files and merges."
    )
    parser.add_argument(
        "--output_path",
        type=str,
        default=None,
        help=f"{merged_help} (default: <output_dir>/<task>_final_<N>.json).",
    )
    parser.add_argument(
        "--retry_failed", action="store_true", help="On resume, redo items whose replies never parsed."
    )
    parser.add_argument(
        "--max_record_kb",
        type=float,
        default=DEFAULT_MAX_RECORD_KB,
        help="Refuse (one line naming it, exit 2) an input record larger than this as JSON, in KB: "
        "a record that large is a mistake and would cost a fortune in prompt tokens (0: no limit).",
    )
    parser.add_argument(
        "--max_consecutive_failures",
        type=int,
        default=20,
        help="Stop the run after this many items in a row failed on the endpoint (it looks down).",
    )


def check_run_args(args) -> None:
    """InputError (one line, exit 2) for values of `add_run_args` flags that cannot work."""
    from huatuo_o1.io import InputError

    if args.max_record_kb < 0:
        raise InputError(f"--max_record_kb must be 0 (no limit) or more (got {args.max_record_kb})")
    if args.max_consecutive_failures < 1:
        raise InputError(
            f"--max_consecutive_failures must be at least 1 (got {args.max_consecutive_failures})"
        )


def exit_code_for(report: RunReport, records: list[dict] | None = None) -> int:
    """The run's exit code (see the module doc), with one line on stdout for each reason it is not 0.
    `records`: the finished records of the input (all runs), to tell when every one of them failed."""
    failed = work_left = False
    if report.stopped_reason:
        print(
            f"stopped: {report.stopped_reason}. Finished items are saved; rerun the same command to resume "
            f"(exit code {EXIT_WORK_LEFT}: work left)."
        )
        work_left = True
    elif report.failed:
        print(
            f"{report.failed} item(s) failed on the endpoint (see the warnings); rerun the same command to "
            f"retry them (exit code {EXIT_ITEMS_FAILED})."
        )
        failed = True
    if report.stale_left:
        print(
            f"{report.stale_left} item(s) changed in the input since their result was made and are not redone "
            "yet: they are left out of the merged file; rerun the same command to redo them."
        )
        work_left = True
    if records and all(r.get("status") == "failed" for r in records):
        print(
            f"every finished item ({len(records)}) failed: no reply could be used (see `error` and the "
            "raw replies in the item files); check the model and endpoint, then rerun with --retry_failed."
        )
        failed = True
    return EXIT_WORK_LEFT if work_left else EXIT_ITEMS_FAILED if failed else 0
