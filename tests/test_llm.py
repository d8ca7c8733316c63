"""The shared LLM client and runner against the loopback OpenAI-protocol server."""

from __future__ import annotations

import asyncio
import time

import pytest

from huatuo_o1.io import ItemStore
from huatuo_o1.llm import (
    BudgetExceeded,
    FatalAPIError,
    LLMClient,
    RequestRejected,
    TransientAPIError,
    estimate_tokens,
    normalize_base_url,
    price_for,
)
from huatuo_o1.parsing import extract_json, parse_filter_verdict, parse_verdict
from huatuo_o1.runner import run_items
from huatuo_o1.testing import FakeOpenAIServer, FakeResponse

KEY = "sk-fake-unit-test-key-0123456789"


def call(client: LLMClient, method: str, *args, **kwargs):
    """Run one client call in a fresh event loop and close the client afterwards."""

    async def go():
        async with client:
            return await getattr(client, method)(*args, **kwargs)

    return asyncio.run(go())


@pytest.mark.parametrize(
    "given,expected",
    [
        ("https://api.openai.com/v1/chat/completions", "https://api.openai.com/v1"),
        ("https://api.openai.com/v1", "https://api.openai.com/v1"),
        ("https://api.openai.com/v1/", "https://api.openai.com/v1"),
        ("http://127.0.0.1:30000", "http://127.0.0.1:30000/v1"),
        ("http://localhost:8000/v1/completions", "http://localhost:8000/v1"),
        ("https://gateway.example.com/openai/v1/chat/completions", "https://gateway.example.com/openai/v1"),
        (None, None),
    ],
)
def test_normalize_base_url(given, expected):
    assert normalize_base_url(given) == expected


def test_price_table_and_override():
    assert price_for("gpt-4o") == (2.50, 10.00)
    assert price_for("gpt-4o-mini") == (0.15, 0.60)
    assert price_for("gpt-4o-2024-08-06") == (2.50, 10.00)
    assert price_for("my-local-llama") is None
    assert price_for("my-local-llama", (1.0, 2.0)) == (1.0, 2.0)


def test_estimate_tokens():
    assert estimate_tokens("abcd" * 10) == 10
    assert estimate_tokens("心肌梗死") == 4


def test_retry_after_is_honoured_and_counted():
    script = [FakeResponse(status=429, headers={"Retry-After": "0.3"}), "ok"]
    with FakeOpenAIServer(script) as srv:
        c = LLMClient("gpt-4o", api_key=KEY, api_url=srv.url, backoff_base=0.001)
        t = time.monotonic()
        assert call(c, "chat", "hi") == "ok"
        assert time.monotonic() - t >= 0.3
    assert c.usage.retries == 1 and c.usage.requests == 1


def test_transient_error_after_retries():
    with FakeOpenAIServer([FakeResponse(status=503)]) as srv:
        c = LLMClient("gpt-4o", api_key=KEY, api_url=srv.url, max_retries=2, backoff_base=0.001)
        with pytest.raises(TransientAPIError, match="kept failing after 3 tries"):
            call(c, "chat", "hi")
        assert srv.count() == 3


@pytest.mark.parametrize(
    "status,text",
    [(400, "request rejected"), (403, "permission denied"), (404, "not found"), (401, "invalid API key")],
)
def test_fatal_statuses_are_not_retried_and_mask_the_key(status, text):
    with FakeOpenAIServer([FakeResponse(status=status, error=f"bad thing with key {KEY}")]) as srv:
        c = LLMClient("gpt-4o", api_key=KEY, api_url=srv.url)
        with pytest.raises(FatalAPIError) as info:
            call(c, "chat", "hi")
        assert srv.count() == 1
    assert text in str(info.value) and KEY not in str(info.value) and KEY not in repr(c)


def test_budget_stops_new_requests():
    with FakeOpenAIServer(lambda r: "x" * 400) as srv:
        c = LLMClient("gpt-4o", api_url=srv.url, price=(1e6, 1e6), max_cost=50)

        async def go():
            async with c:
                await c.chat("hello")
                with pytest.raises(BudgetExceeded):
                    await c.chat("again")

        asyncio.run(go())
        assert srv.count() == 1


def test_completions_endpoint_returns_n_texts():
    with FakeOpenAIServer(lambda r: [f"t{i}" for i in range(r.n)]) as srv:
        c = LLMClient("m", api_url=f"http://127.0.0.1:{srv.port}")
        assert call(c, "complete", "prompt", n=3) == ["t0", "t1", "t2"]
        assert srv.requests[0].path == "/v1/completions"


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


def test_extract_json_variants():
    keys = ("a",)
    assert extract_json('{"a": 1}', keys) == {"a": 1}
    assert extract_json('text before ```json\n{"a": 2}\n``` after', keys) == {"a": 2}
    assert extract_json('Sure: {"a": "two\nlines"} thanks', keys) == {"a": "two\nlines"}
    assert extract_json('{"b": 1} then {"a": 3}', keys) == {"a": 3}
    assert extract_json('{"a": [1, 2,],}', keys) == {"a": [1, 2]}
    assert extract_json("no json", keys) is None


def test_verdict_parsers():
    assert parse_filter_verdict("Ambiguous Answer.") == "Ambiguous Answer"
    assert parse_filter_verdict("I think: Pass") == "Pass"
    assert parse_filter_verdict("unsure") is None
    assert parse_filter_verdict("It is not too simple.\nVerdict: Pass") == "Pass"  # last line decides
    assert parse_filter_verdict("As a compass for learners: Too Simple") == "Too Simple"  # whole words
    assert parse_filter_verdict("Pass or Too Simple?") is None  # ambiguous: asked again
    assert parse_verdict("True") is True
    assert parse_verdict("The response is False.") is False
    assert parse_verdict("正确") is True and parse_verdict("不正确") is False
    assert parse_verdict("maybe") is None


@pytest.mark.parametrize("status", [408, 409])
def test_timeout_and_conflict_statuses_are_retried(status):
    with FakeOpenAIServer([FakeResponse(status=status), "ok"]) as srv:
        c = LLMClient("gpt-4o", api_url=srv.url, backoff_base=0.001)
        assert call(c, "chat", "hi") == "ok"
        assert srv.count() == 2


def test_malformed_retry_after_still_retries():
    with FakeOpenAIServer([FakeResponse(status=429, headers={"Retry-After": "soon"}), "ok"]) as srv:
        c = LLMClient("gpt-4o", api_url=srv.url, backoff_base=0.001)
        assert call(c, "chat", "hi") == "ok"


def test_quota_exhausted_is_fatal_not_retried():
    with FakeOpenAIServer([FakeResponse(status=429, code="insufficient_quota", error="quota")]) as srv:
        c = LLMClient("gpt-4o", api_url=srv.url, backoff_base=0.001)
        with pytest.raises(FatalAPIError, match="quota exhausted"):
            call(c, "chat", "hi")
        assert srv.count() == 1


def test_context_length_rejection_concerns_one_request():
    err = FakeResponse(status=400, code="context_length_exceeded", error="too long")
    with FakeOpenAIServer([err]) as srv:
        c = LLMClient("gpt-4o", api_url=srv.url)
        with pytest.raises(RequestRejected, match="context_length_exceeded"):
            call(c, "chat", "hi")


def test_budget_is_shared_between_clients():
    with FakeOpenAIServer(lambda r: "x" * 400) as srv:
        a = LLMClient("gpt-4o", api_url=srv.url, price=(1e6, 1e6), max_cost=150)
        b = LLMClient("gpt-4o", api_url=srv.url, price=(1e6, 1e6), budget=a.budget)

        async def go():
            async with a, b:
                await a.chat("hello")
                await b.chat("hello")  # together past the limit
                with pytest.raises(BudgetExceeded):
                    await a.chat("again")

        asyncio.run(go())
        assert srv.count() == 2


def test_env_key_not_used_when_disabled(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeOpenAIServer(["ok", "ok"]) as srv:
        call(LLMClient("m", api_url=srv.url), "chat", "hi")
        call(LLMClient("m", api_url=srv.url, env_key=False), "chat", "hi")
        auths = [r.headers.get("authorization") for r in srv.requests]
    assert auths[0] == f"Bearer {KEY}" and KEY not in auths[1]
