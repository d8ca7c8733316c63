"""Live requests against a hostile loopback server: replies that trickle, long Retry-After, servers
that echo credentials, budgets and oversized records. Billing is counted at the server."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from huatuo_o1.datagen import search as script
from huatuo_o1.llm import RETRY_AFTER_CAP_S, LLMClient, TransientAPIError
from huatuo_o1.redact import mask_secrets
from huatuo_o1.testing import search as sm
from huatuo_o1.testing.openai_server import FakeOpenAIServer, FakeResponse
from tests.test_batch_api import exit_line, make_data, records

KEY = "sk-hostile-test-key-0123456789"


def chat(client: LLMClient, prompt: str = "hello"):
    async def go():
        async with client:  # the bound here only keeps a broken build from hanging the suite
            return await asyncio.wait_for(client.chat(prompt), 120)

    return asyncio.run(go())


def test_request_timeout_bounds_a_reply_that_trickles(tmp_path):
    """One byte every 0.2 s never trips a read timeout; --request_timeout bounds the whole request."""
    with FakeOpenAIServer(lambda req: FakeResponse("x" * 400, trickle=0.2)) as srv:
        client = LLMClient("gpt-4o", api_key=KEY, api_url=srv.url, timeout=1.0, max_retries=1, backoff_base=0)
        with pytest.raises(TransientAPIError, match="APITimeoutError"):
            chat(client)
        assert srv.count("/chat/completions") == 2  # asked, timed out, asked once more
    assert client.usage.requests == 0


def test_a_retry_after_beyond_the_cap_gives_the_request_up_in_one_line(tmp_path):
    wait = FakeResponse(status=429, headers={"Retry-After": "3600"}, code="rate_limit_exceeded")
    with FakeOpenAIServer(lambda req: wait) as srv:
        client = LLMClient("gpt-4o", api_key=KEY, api_url=srv.url, max_retries=6)
        with pytest.raises(TransientAPIError) as e:
            chat(client)
        assert srv.count("/chat/completions") == 1  # not retried for an hour, not hammered either
    msg = str(e.value)
    assert "3600 s" in msg and f"{RETRY_AFTER_CAP_S:.0f} s" in msg and "\n" not in msg


def test_basic_auth_echoed_by_a_server_is_masked(tmp_path, capsys):
    data = make_data(tmp_path / "data.json", [0])
    password = "sk-url-password-987654321"
    with FakeOpenAIServer(
        lambda req: FakeResponse(status=401, error="bad credentials", echo_auth=True)
    ) as srv:
        url = srv.url.replace("http://", f"http://alice:{password}@")
        argv = ["--data_path", str(data), "--api_url", url, "--output_dir", str(tmp_path / "o")]
        code, err = exit_line(lambda: script.main(argv), capsys)
        sent = srv.requests[0].headers["authorization"]
    assert code == 2 and "invalid API key" in err
    token = base64.b64encode(f"alice:{password}".encode()).decode()
    assert sent.startswith(("Basic", "Bearer"))  # the server did get credentials to echo
    everything = err + "".join(p.read_text() for p in (tmp_path / "o").rglob("*") if p.is_file())
    assert password not in everything and token not in everything
    assert mask_secrets("you sent Authorization: Basic YWxpY2U6c2VjcmV0cGFzcw==") == (
        "you sent Authorization: Basic ***"
    )
    assert mask_secrets("header Bearer abc.def-123_xyz") == "header Bearer ***"


def test_a_reply_that_echoes_the_key_is_masked_in_item_and_merged_files(tmp_path):
    data = make_data(tmp_path / "data.json", [0])
    out = tmp_path / "o"

    def responder(req):
        reply = sm.responder(req)
        if sm.request_kind(req.prompt) == "response":
            return reply + f" (your key is {KEY})"
        return reply

    with FakeOpenAIServer(responder) as srv:
        argv = ["--data_path", str(data), "--api_url", srv.url, "--api_key", KEY, "--output_dir", str(out)]
        assert script.main(argv) == 0
    files = [p for p in out.rglob("*") if p.is_file()]
    assert all(KEY not in p.read_text() for p in files)
    assert "your key is ***" in records(out)[1]["Response"]
    merged = json.loads(next(p for p in out.glob("*_final_*.json") if "summary" not in p.name).read_text())
    assert "your key is ***" in merged[0]["Response"]
