"""The item runner (huatuo_o1.runner): failure limits, resume, worker ramp, unwritable results."""

from __future__ import annotations

import asyncio

import pytest

from huatuo_o1.io import ItemStore
from huatuo_o1.llm import TransientAPIError
from huatuo_o1.runner import run_items


def test_runner_stops_after_consecutive_failures_and_keeps_results(tmp_path):
    items = [{"process_id": i} for i in range(1, 31)]

    async def process(item):
        if item["process_id"] > 3:
            raise TransientAPIError("endpoint down")
        return {"status": "kept", **item}

    store = ItemStore(tmp_path)
    report = asyncio.run(
        run_items(items, process, store, concurrency=1, max_consecutive_failures=5, show_progress=False)
    )
    assert report.done == 3 and report.failed == 5
    assert "5 consecutive items failed" in report.stopped_reason
    assert store.done_ids() == {"1", "2", "3"}


def test_runner_skips_finished_items(tmp_path):
    store = ItemStore(tmp_path)
    store.save(2, {"process_id": 2, "status": "kept"})
    seen = []

    async def process(item):
        seen.append(item["process_id"])
        return {"status": "kept", **item}

    items = [{"process_id": i} for i in (1, 2, 3)]
    report = asyncio.run(run_items(items, process, store, concurrency=2, show_progress=False))
    assert sorted(seen) == [1, 3] and report.skipped == 1 and report.statuses["kept"] == 2


def test_runner_starts_workers_on_a_short_ramp(tmp_path, monkeypatch):
    """Workers start RAMP_STEP_S apart (no lockstep bursts), all of them within RAMP_MAX_S."""
    import huatuo_o1.runner as runner

    delays, real_sleep = [], asyncio.sleep

    async def sleep(delay, *a, **kw):
        delays.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)

    async def process(item):
        return {"status": "kept", **item}

    items = [{"process_id": i} for i in range(1, 9)]
    asyncio.run(run_items(items, process, ItemStore(tmp_path / "a"), concurrency=4, show_progress=False))
    assert delays == pytest.approx([runner.RAMP_STEP_S * r for r in (1, 2, 3)])
    delays.clear()
    items = [{"process_id": i} for i in range(1, 2001)]
    report = asyncio.run(
        run_items(items, process, ItemStore(tmp_path / "b"), concurrency=2000, show_progress=False)
    )
    assert report.done == 2000 and len(delays) == 1999 and max(delays) <= runner.RAMP_MAX_S


def test_runner_stops_when_a_result_cannot_be_written(tmp_path):
    """A write error (disk full, no permission) stops the run with OutputError instead of dropping the
    item silently; what was written before stays."""
    from huatuo_o1.io import OutputError

    store = ItemStore(tmp_path)
    (tmp_path / "3.json").mkdir()  # item 3's result path cannot be written
    seen = []

    async def process(item):
        seen.append(item["process_id"])
        return {"status": "kept", **item}

    items = [{"process_id": i} for i in range(1, 8)]
    with pytest.raises(OutputError, match="cannot write the result of item 3"):
        asyncio.run(run_items(items, process, store, concurrency=1, show_progress=False))
    assert seen == [1, 2, 3] and store.done_ids() == {"1", "2"}
    assert not list(tmp_path.glob(".*.tmp"))
