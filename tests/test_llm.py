"""The shared LLM client (huatuo_o1.llm) against the loopback OpenAI-protocol server."""

from __future__ import annotations

import asyncio
import time

import pytest

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
from huatuo_o1.testing.openai_server import FakeOpenAIServer, FakeResponse

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
