"""Live requests against a hostile loopback server: replies that trickle, long Retry-After, servers
that echo credentials, budgets and oversized records. Billing is counted at the server."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import pytest

from huatuo_o1.datagen import construct
from huatuo_o1.datagen import search as script
from huatuo_o1.llm import RETRY_AFTER_CAP_S, BudgetExceeded, LLMClient, TransientAPIError
from huatuo_o1.redact import mask_secrets
from huatuo_o1.testing import search as sm
from huatuo_o1.testing.openai_server import FakeOpenAIServer, FakeResponse
from tests.test_batch_api import exit_line, make_data, records

KEY = "sk-hostile-test-key-0123456789"
OPEN_Q, GT = "Open-ended Verifiable Question", "Ground-True Answer"


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
        for _ in range(200):  # the server sees each connection closed mid-reply (bounded wait)
            if srv.abandoned >= 2:
                break
            time.sleep(0.05)
        assert srv.abandoned == 2
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


# ---------------------------------------------------------------------------------------------
# Budgets and records that hold


def test_a_prompt_whose_estimate_passes_the_budget_is_never_sent():
    with FakeOpenAIServer(lambda req: "ok") as srv:
        client = LLMClient("gpt-4o", api_key=KEY, api_url=srv.url, max_cost=0.05)
        with pytest.raises(BudgetExceeded, match="estimated .* would pass it"):
            chat(client, "word " * 20_000)  # ~25,000 prompt tokens: ~0.06 USD at gpt-4o prices
        assert chat(LLMClient("gpt-4o", api_key=KEY, api_url=srv.url, max_cost=0.05), "short") == "ok"
        assert srv.count("/chat/completions") == 1  # only the short one


def test_a_record_over_the_size_limit_is_refused_in_one_line_naming_it(tmp_path, capsys):
    rows = [{OPEN_Q: "Case 1?", GT: "a"}, {OPEN_Q: "Case 2? " + "x" * 300_000, GT: "b"}]
    data = tmp_path / "data.json"
    data.write_text(json.dumps(rows))
    with FakeOpenAIServer(sm.responder) as srv:
        argv = ["--data_path", str(data), "--api_url", srv.url, "--output_dir", str(tmp_path / "o")]
        code, err = exit_line(lambda: script.main(argv), capsys)
        assert srv.count() == 0
    assert code == 2 and len(err.splitlines()) == 1
    assert "item 2 is 293 KB, more than --max_record_kb 256" in err


# ---------------------------------------------------------------------------------------------
# One rule for malformed and duplicated items


def _mcq(i: int, **over) -> dict:
    item = {
        "question": f"Question number {i}: a patient with finding F{i}. What is the diagnosis?",
        "options": {"A": f"Disease A{i}", "B": f"Disease B{i}"},
        "answer_idx": "B",
        "answer": f"Disease B{i}",
    }
    return {**item, **over}


def _construct_argv(data: Path, out: Path, url: str) -> list[str]:
    return [
        "--data_path", str(data), "--model_name", "gpt-4o", "--api_key", KEY, "--api_url", url,
        "--decontaminate_against", "none", "--output_dir", str(out),
    ]  # fmt: skip


def _construct_reply(req) -> str:
    n = int(req.prompt.split("Question number ")[1].split(":")[0])
    return json.dumps({OPEN_Q: f"Open question {n}?", GT: f"Disease B{n}"})


@pytest.mark.parametrize(
    "bad,needle",
    [
        ({"answer": 3}, "item 2: 'answer' must be text (got a number)"),
        ({"question": ["a", "list"]}, "item 2: 'question' must be text (got a list)"),
        ({"options": {f"O{k}": "x" for k in range(30)}}, "'options' has 30 entries, more than 26"),
    ],
)
def test_stage1_refuses_a_malformed_item_in_one_line(tmp_path, capsys, bad, needle):
    data = tmp_path / "mcq.json"
    data.write_text(json.dumps([_mcq(1), _mcq(2, **bad)]))
    with FakeOpenAIServer(_construct_reply) as srv:
        code, err = exit_line(lambda: construct.main(_construct_argv(data, tmp_path / "o", srv.url)), capsys)
        assert srv.count() == 0
    assert code == 2 and len(err.splitlines()) == 1 and needle in err


@pytest.mark.parametrize("bad", [["a", "list"], {"an": "object"}])
def test_stage2_refuses_a_question_that_is_not_text_and_skips_one_stage1_dropped(tmp_path, capsys, bad):
    rows = [
        {OPEN_Q: "Case 1?", GT: sm.scripted_answer("Case 1?", 0)},
        {"question": "filtered by stage 1", "status": "filtered"},
        {OPEN_Q: bad, GT: "b"},
    ]
    data = tmp_path / "data.json"
    data.write_text(json.dumps(rows))
    with FakeOpenAIServer(sm.responder) as srv:
        argv = ["--data_path", str(data), "--api_url", srv.url, "--output_dir", str(tmp_path / "o")]
        code, err = exit_line(lambda: script.main(argv), capsys)
        assert srv.count() == 0
    assert code == 2 and "item 3: 'Open-ended Verifiable Question' must be text" in err
    rows.pop()
    data.write_text(json.dumps(rows))
    with FakeOpenAIServer(sm.responder) as srv:
        assert script.main(argv[:3] + [srv.url] + argv[4:]) == 0  # the filtered record: skipped


def test_decontaminate_refuses_a_question_that_is_a_list(tmp_path, capsys):
    from huatuo_o1.datagen.decontam import main as decontam_main

    ev = tmp_path / "eval.json"
    ev.write_text(json.dumps({"S": [{"question": "An evaluation question about something", "options": {}}]}))
    data = tmp_path / "data.json"
    data.write_text(json.dumps([{"question": "fine"}, {"question": ["copied", "unchecked"]}]))
    code, err = exit_line(lambda: decontam_main(["--data_path", str(data), "--against", str(ev)]), capsys)
    assert code == 2 and "item 2: 'question' must be text (got a list)" in err
    assert not (tmp_path / "data_clean.json").exists()


def test_duplicated_items_are_done_and_written_once_in_both_stages(tmp_path, capsys):
    data = tmp_path / "mcq.json"
    data.write_text(json.dumps([_mcq(1), _mcq(2), _mcq(1)]))
    out = tmp_path / "o"
    with FakeOpenAIServer(_construct_reply) as srv:
        assert construct.main(_construct_argv(data, out, srv.url)) == 0
        assert srv.count() == 2
    [merged] = [p for p in out.glob("mcq_verifiable_final_*.json") if "summary" not in p.name]
    assert [r["process_id"] for r in json.loads(merged.read_text())] == [1, 2]
    assert "1 item(s) repeat an earlier item's content" in capsys.readouterr().out
    rows = [{OPEN_Q: "Case 1?", GT: sm.scripted_answer("Case 1?", 0)}] * 2
    sdata = tmp_path / "s.json"
    sdata.write_text(json.dumps(rows))
    with FakeOpenAIServer(sm.responder) as srv:
        argv = ["--data_path", str(sdata), "--api_url", srv.url, "--output_dir", str(out)]
        assert script.main(argv) == 0
    summary = json.loads(next(out.glob("s_CoT_search_final_*_summary.json")).read_text())
    assert summary["unfinished"] == 0 and summary["duplicates"] == 1 and summary["kept"] == 1


# ---------------------------------------------------------------------------------------------
# Content-keyed items: one run at a time on an item, whatever the input file's name


def test_a_second_run_on_the_same_items_under_another_file_name_is_refused(tmp_path, capsys):
    import os
    import subprocess
    import sys
    import time

    from tests.helpers import REPO

    rows = [{OPEN_Q: f"Case {i}?", GT: sm.scripted_answer(f"Case {i}?", 0)} for i in (1, 2)]
    first, second = tmp_path / "medqa.json", tmp_path / "medqa_copy.json"
    first.write_text(json.dumps(rows))
    second.write_text(json.dumps(rows[::-1]))
    out = tmp_path / "o"
    held = {"on": True}

    def responder(req):
        until = time.monotonic() + 20  # bounded: a broken build fails the test instead of hanging it
        while held["on"] and time.monotonic() < until:  # the first run stays in flight meanwhile
            time.sleep(0.02)
        return sm.responder(req)

    with FakeOpenAIServer(responder) as srv:
        argv = ["--data_path", str(first), "--api_url", srv.url, "--output_dir", str(out)]
        env = {**os.environ, "PYTHONPATH": str(REPO), "OPENAI_API_KEY": ""}
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "search_for_complex_reasoning_path.py"), *argv],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while not srv.count("/chat/completions") and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            assert srv.count("/chat/completions") >= 1
            n = srv.count("/chat/completions")
            argv2 = ["--data_path", str(second), "--api_url", srv.url, "--output_dir", str(out)]
            code, err = exit_line(lambda: script.main(argv2), capsys)
            assert code == 2 and len(err.splitlines()) == 1
            assert "2 item(s) of this input are being worked on by search" in err
            assert srv.count("/chat/completions") == n  # the second run paid nothing
        finally:
            proc.kill()  # kill -9: its claim stays behind, its owner gone
            proc.wait(30)
            held["on"] = False
        assert script.main(argv2) == 0  # the dead run's claim is taken over
    assert len(records(out, "medqa_copy_CoT_search")) == 2
