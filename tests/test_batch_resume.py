"""Nothing paid twice through the Batch API: reruns after a kill ask what the killed run asked,
failed requests are asked again (only those), and what the server loses or repeats is handled.
Billing is counted at the loopback server: every line of every batch it was given is paid."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from huatuo_o1.batch import BatchRound, BatchState
from huatuo_o1.datagen import search as script
from huatuo_o1.llm import Usage
from huatuo_o1.testing import search as sm
from huatuo_o1.testing.openai_server import FakeBatch, FakeOpenAIServer, FakeResponse
from tests.test_batch_api import (
    FAST,
    ask_batched,
    batch_lines,
    make_data,
    records,
    without_usage,
    write_mcq,
)


def argv(data: Path, srv, out: Path, *extra) -> list[str]:
    """The search command line without --seed (the default the kill case is about)."""
    return [
        "--data_path", str(data), "--api_url", srv.url, "--api_key", "sk-test-key-123456",
        "--model_name", "gpt-4o", "--retry_backoff", "0.01", "--output_dir", str(out), *FAST, *extra,
    ]  # fmt: skip


def billed(srv) -> int:
    """Request lines the server was given in batches: each is paid once it runs."""
    return sum(len(x) for x in batch_lines(srv))


def test_rerun_without_seed_after_a_kill_in_a_refinement_round_pays_nothing_twice(tmp_path):
    data = make_data(tmp_path / "data.json", [1, 1, 2, 2, 9])
    with FakeOpenAIServer(sm.responder) as srv:  # the same run, never interrupted
        assert script.main(argv(data, srv, tmp_path / "whole")) == 0
        uninterrupted = billed(srv)
    stuck = FakeBatch(statuses=["validating", "in_progress"])
    out = tmp_path / "killed"
    # rounds: initial reasoning, verification, then the first refinements (batch 3)
    with FakeOpenAIServer(sm.responder, batches=[FakeBatch(), FakeBatch(), stuck, FakeBatch()]) as srv:

        async def killed():
            task = asyncio.ensure_future(script.run(script.parse_args(argv(data, srv, out))))
            while srv.batch_creates < 3 or not srv.count("/v1/batches/batch_00003"):
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(killed())
        refine_round = batch_lines(srv)[2]
        assert len(refine_round) == 5 and all(sm.request_kind(_prompt(x)) == "refine" for x in refine_round)
        stuck.statuses.append("completed")
        assert script.main(argv(data, srv, out)) == 0
        later = [x["body"] for lines in batch_lines(srv)[3:] for x in lines]
        total = billed(srv)
    assert not [x for x in refine_round if x["body"] in later]  # the paid refinements were used
    assert total == uninterrupted
    assert len(records(out)) == 5


def _prompt(line: dict) -> str:
    return "\n".join(m["content"] for m in line["body"]["messages"])


def test_a_plain_rerun_retries_the_requests_that_failed_and_only_those(tmp_path, caplog):
    """An expired batch left one request unanswered and --max_retries 0 failed its item: the rerun
    sends that request again (next occurrence), reuses every answer, and exits 0."""
    data = make_data(tmp_path / "data.json", [0, 1])
    out = tmp_path / "o"
    expired = FakeBatch(statuses=["in_progress", "expired"], answered=1)
    with FakeOpenAIServer(sm.responder, batches=[expired, FakeBatch()]) as srv:
        assert script.main(argv(data, srv, out, "--max_retries", "0", "--seed", "1")) == 1
        first_run = batch_lines(srv)
        unanswered = first_run[0][1]
        assert list(records(out)) == [1]
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert script.main(argv(data, srv, out, "--max_retries", "0", "--seed", "1")) == 0
        rerun = batch_lines(srv)[len(first_run) :]
    assert [x["body"] for x in rerun[0]] == [unanswered["body"]]  # only the failed request
    assert rerun[0][0]["custom_id"] == unanswered["custom_id"][:-1] + "1"
    answered_before = [x["body"] for lines in first_run for x in lines if x is not unanswered]
    assert not [x for lines in rerun for x in lines if x["body"] in answered_before]
    assert sorted(records(out)) == [1, 2]
    assert "kept failing" not in caplog.text  # nothing failed in the rerun


def test_retry_failed_asks_the_failed_step_again_and_reuses_the_steps_before(tmp_path):
    data = make_data(tmp_path / "data.json", [1, 0])
    out = tmp_path / "o"
    broken = {"on": True}

    def responder(req):
        if broken["on"] and "Case 1" in req.prompt and sm.request_kind(req.prompt) == "refine":
            return "no JSON here"
        return sm.responder(req)

    with FakeOpenAIServer(responder) as srv:
        assert script.main(argv(data, srv, out, "--max_tries", "1", "--seed", "1")) == 0
        assert records(out)[1]["status"] == "failed"
        first = [x["body"] for lines in batch_lines(srv) for x in lines]
        n_first = len(batch_lines(srv))
        broken["on"] = False
        assert script.main(argv(data, srv, out, "--max_tries", "1", "--seed", "1", "--retry_failed")) == 0
        rerun = [x for lines in batch_lines(srv)[n_first:] for x in lines]
    rec = records(out)[1]
    assert rec["status"] == "kept"
    kinds = [sm.request_kind(_prompt(x)) for x in rerun]
    assert kinds[0] == "refine" and "init" not in kinds  # the initial reasoning and verdict reused
    refine = rerun[0]
    assert refine["body"] in first and refine["custom_id"].endswith("-1")  # asked again, next occurrence
    assert sum(b == refine["body"] for b in first) == 1


def test_a_result_file_deleted_on_the_server_resends_only_its_requests(tmp_path):
    async def ask(srv):
        rnd = BatchRound(BatchState(tmp_path / "b"), poll_interval=0.001)
        client = rnd.client(model="gpt-4o", api_url=srv.url, api_key="sk-x", usage=Usage())
        try:
            return await asyncio.gather(client.chat("one"), client.chat("two"))
        finally:
            await rnd.close()
            await client.close()

    with FakeOpenAIServer(
        lambda req: req.prompt.upper(), batches=[FakeBatch(files_gone=True), FakeBatch()]
    ) as srv:
        assert asyncio.run(ask(srv)) == ["ONE", "TWO"]
        first, second = batch_lines(srv)
    assert [x["body"] for x in second] == [x["body"] for x in first]
    assert all(x["custom_id"].endswith("-1") for x in second)


def test_a_batch_not_recorded_is_found_beyond_the_first_page_of_the_batch_list(tmp_path):
    stuck = FakeBatch(statuses=["in_progress"])

    with FakeOpenAIServer(lambda req: "the reply", batches=stuck) as srv:
        asyncio.run(ask_batched(tmp_path / "b", srv, kill=True))
        [path] = (tmp_path / "b").glob("*.json")
        rec = json.loads(path.read_text())
        path.write_text(json.dumps({**rec, "status": "pending", "batch_id": None}))  # id never saved
        srv.add_other_batches(250)  # newer batches of other tools: the saved one is on page 3
        stuck.statuses.append("completed")
        assert asyncio.run(ask_batched(tmp_path / "b", srv, kill=False)) == "the reply"
        uploads = sum(1 for r in srv.requests if r.path == "/v1/files")
    assert uploads == 1  # found, not sent again


def test_a_good_line_and_an_error_line_for_one_request_count_as_answered(tmp_path):
    data = make_data(tmp_path / "data.json", [0, 1])
    with FakeOpenAIServer(sm.responder) as srv:
        assert script.main(argv(data, srv, tmp_path / "plain", "--seed", "1")) == 0
        plain = billed(srv)
    with FakeOpenAIServer(sm.responder, batches=FakeBatch(duplicate_errors=True)) as srv:
        assert script.main(argv(data, srv, tmp_path / "dup", "--seed", "1")) == 0
        assert billed(srv) == plain  # nothing sent again
    assert without_usage(records(tmp_path / "dup")) == without_usage(records(tmp_path / "plain"))


def test_a_failed_error_line_left_over_is_not_reused_as_an_answer(tmp_path):
    """A 5xx line after --max_retries: the rerun sends that request, not 'a reused answer'."""
    data = make_data(tmp_path / "data.json", [0])
    out = tmp_path / "o"
    fail = {"on": True}

    def responder(req):
        if fail["on"]:
            return FakeResponse(status=500, error="overloaded")
        return sm.responder(req)

    with FakeOpenAIServer(responder) as srv:
        assert script.main(argv(data, srv, out, "--max_retries", "1")) == 1
        n = billed(srv)
        fail["on"] = False
        assert script.main(argv(data, srv, out, "--max_retries", "1")) == 0
        assert billed(srv) == n + 4  # init (again), verify, rewrite, response
    assert records(out)[1]["status"] == "kept"


def test_stage1_retry_failed_reuses_the_filter_verdict_and_asks_the_rewrite_again(tmp_path):
    from huatuo_o1.datagen import construct

    data = write_mcq(tmp_path / "mcq.json", (1, 2))
    broken = {"on": True}

    def responder(req):
        n = int(req.prompt.split("Question number ")[1].split(":")[0])
        if "four verdicts" in req.prompt:
            return "Pass"
        if broken["on"] and n == 2:
            return "not JSON"
        return json.dumps({"Open-ended Verifiable Question": f"Open {n}?", "Ground-True Answer": f"B{n}"})

    def cmd(*extra):
        return [
            "--data_path", str(data), "--model_name", "gpt-4o", "--api_key", "sk-k", "--api_url", srv.url,
            "--filter_data", "--decontaminate_against", "none", "--output_dir", str(tmp_path / "o"),
            "--max_tries", "1", *FAST, *extra,
        ]  # fmt: skip

    with FakeOpenAIServer(responder) as srv:
        assert construct.main(cmd()) == 0
        n_first = len(batch_lines(srv))
        broken["on"] = False
        assert construct.main(cmd("--retry_failed")) == 0
        rerun = [x for lines in batch_lines(srv)[n_first:] for x in lines]
    assert len(rerun) == 1 and "four verdicts" not in _prompt(rerun[0])  # the rewrite only
    assert rerun[0]["custom_id"].endswith("-1")
    merged = next(p for p in (tmp_path / "o").glob("mcq_verifiable_final_*.json") if "summary" not in p.name)
    assert [r["status"] for r in json.loads(merged.read_text())] == ["kept", "kept"]
