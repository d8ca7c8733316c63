"""--batch_api: the OpenAI Batch API for the API stages, against the loopback server's batch endpoints."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from huatuo_o1.batch import BatchRound, BatchState, fingerprint_of, request_hash
from huatuo_o1.cli import run_main as cli_run_main
from huatuo_o1.datagen import construct
from huatuo_o1.datagen import search as script
from huatuo_o1.llm import LLMClient, Usage, rates_for
from huatuo_o1.testing import search as sm
from huatuo_o1.testing.openai_server import FakeBatch, FakeOpenAIServer, FakeResponse

OPEN_Q, GT = "Open-ended Verifiable Question", "Ground-True Answer"
FAST = ("--batch_api", "True", "--batch_poll_interval", "0.005")


def make_data(path: Path, depths: list[int]) -> Path:
    rows = []
    for i, d in enumerate(depths, 1):
        q = f"Case {i}: which diagnosis?"
        rows.append({OPEN_Q: q, GT: sm.scripted_answer(q, d)})
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def search_argv(data: Path, srv, out: Path, *extra) -> list[str]:
    return [
        "--data_path", str(data), "--api_url", srv.url, "--api_key", "sk-test-key-123456",
        "--model_name", "gpt-4o", "--retry_backoff", "0.01", "--output_dir", str(out), "--seed", "3",
        *extra,
    ]  # fmt: skip


def records(out: Path, task: str = "data_CoT_search") -> dict[int, dict]:
    recs = (json.loads(p.read_text()) for p in (out / task).glob("*.json"))
    return {r["process_id"]: r for r in recs}


def without_usage(recs: dict[int, dict]) -> dict[int, dict]:
    return {k: {f: v for f, v in r.items() if f != "api_usage"} for k, r in recs.items()}


def batch_lines(srv) -> list[list[dict]]:
    """The request lines of every batch the server was given, in creation order."""
    out = []
    for b in srv.batches.values():
        data = srv.files[b["input_file_id"]]["data"].decode()
        out.append([json.loads(x) for x in data.splitlines() if x])
    return out


def live_records(tmp_path: Path, data: Path) -> dict[int, dict]:
    with FakeOpenAIServer(sm.responder) as srv:
        assert script.main(search_argv(data, srv, tmp_path / "live")) == 0
    return records(tmp_path / "live")


def exit_line(argv_main, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        cli_run_main(argv_main)
    err = capsys.readouterr().err  # the progress bar shares stderr: the error lines only
    return e.value.code, "\n".join(x for x in err.replace("\r", "\n").splitlines() if "error" in x)


# ---------------------------------------------------------------------------------------------


def test_round_trip_through_files_and_batches(tmp_path):
    """Requests gathered in one round go out as one JSONL batch (custom_id, method, url, body) through
    /v1/files and /v1/batches; replies come back from the output file, saved beside the requests."""

    async def go(srv):
        rnd = BatchRound(BatchState(tmp_path / "batches"), poll_interval=0.001)
        client = rnd.client(model="gpt-4o", api_url=srv.url, api_key="sk-x", usage=Usage())
        try:
            return await asyncio.gather(*(client.chat(f"say {i}") for i in range(3))), rnd, client
        finally:
            await rnd.close()
            await client.close()

    with FakeOpenAIServer(lambda req: req.prompt.upper()) as srv:
        replies, rnd, client = asyncio.run(go(srv))
        assert srv.batch_creates == 1
        [lines] = batch_lines(srv)
        b = next(iter(srv.batches.values()))
        paths = [r.path for r in srv.requests]
    assert replies == ["SAY 0", "SAY 1", "SAY 2"]
    assert b["endpoint"] == "/v1/chat/completions" and b["completion_window"] == "24h"
    assert [x["method"] for x in lines] == ["POST"] * 3 and {x["url"] for x in lines} == {
        "/v1/chat/completions"
    }
    for x in lines:  # the custom id is the request's fingerprint and its occurrence
        assert fingerprint_of(x["custom_id"]) == request_hash(
            client.display_url, "/chat/completions", x["body"]
        )
    assert "/v1/files" in paths and any(p.endswith("/content") for p in paths)
    saved = sorted(p.name for p in (tmp_path / "batches").iterdir())
    assert [n.split(".", 1)[1] for n in saved] == ["json", "requests.jsonl", "results.jsonl"]
    rec = json.loads((tmp_path / "batches" / saved[0]).read_text())
    assert rec["status"] == "done" and rec["batch_id"] == b["id"] and rec["requests"] == 3
    assert "sk-x" not in "".join(p.read_text() for p in (tmp_path / "batches").iterdir())
    assert client.usage.requests == 3 and client.usage.cost == pytest.approx(client.usage.cost_live / 2)


def test_batched_search_gives_the_live_records(tmp_path):
    data = make_data(tmp_path / "data.json", [0, 1, 2, 9, 0])
    live = live_records(tmp_path, data)
    with FakeOpenAIServer(sm.responder) as srv:
        assert script.main(search_argv(data, srv, tmp_path / "batch", *FAST)) == 0
        creates = srv.batch_creates
        live_posts = srv.count("/v1/chat/completions") - sum(len(x) for x in batch_lines(srv))
    batch = records(tmp_path / "batch")
    assert without_usage(batch) == without_usage(live)
    assert live_posts == 0  # nothing sent live
    assert (
        creates == 9
    )  # rounds: the label-guided item's 9 requests (init, 3x verify, 2 refine, label, 2 rewrites)
    for k, r in batch.items():
        lu, bu = live[k]["api_usage"], r["api_usage"]
        assert (bu["requests"], bu["prompt_tokens"], bu["completion_tokens"]) == (
            lu["requests"],
            lu["prompt_tokens"],
            lu["completion_tokens"],
        )
        assert bu["cost_live"] == pytest.approx(lu["cost"]) and bu["cost"] == pytest.approx(
            lu["cost"] / 2, abs=2e-6
        )
    [path] = [p for p in (tmp_path / "batch").glob("*_summary.json")]
    summary = json.loads(path.read_text())
    assert summary["batch_api"]["rounds"] == 9
    assert summary["cost_this_run"] == pytest.approx(summary["cost_this_run_live_equivalent"] / 2, abs=1e-5)


def test_kill_and_rerun_polls_the_saved_batch_instead_of_sending_again(tmp_path):
    data = make_data(tmp_path / "data.json", [0, 1, 9])
    live = live_records(tmp_path, data)
    stuck = FakeBatch(statuses=["validating", "in_progress"])  # never ends until the test says so
    out = tmp_path / "batch"
    with FakeOpenAIServer(sm.responder, batches=[stuck, FakeBatch()]) as srv:

        async def killed():
            task = asyncio.ensure_future(script.run(script.parse_args(search_argv(data, srv, out, *FAST))))
            while srv.batch_creates == 0 or not srv.count("/v1/batches/batch_00001"):
                await asyncio.sleep(0.01)
            task.cancel()  # what kill does: nothing after this point runs
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(killed())
        assert srv.batch_creates == 1
        [rec_path] = (out / "data_CoT_search" / "batches").glob("*.json")
        rec = json.loads(rec_path.read_text())
        assert rec["status"] == "submitted" and rec["batch_id"] == "batch_00001"
        stuck.statuses.append("completed")
        polls_before = srv.count("/v1/batches/batch_00001")
        assert script.main(search_argv(data, srv, out, *FAST)) == 0
        assert srv.count("/v1/batches/batch_00001") > polls_before  # the first batch was polled again
        ids = [x["custom_id"] for lines in batch_lines(srv) for x in lines]
        first_round = [x["custom_id"] for x in batch_lines(srv)[0]]
    assert len(ids) == len(set(ids))  # no request was ever sent twice
    assert srv.batch_creates == 9  # round 1 polled, rounds 2-9 sent once each
    assert len(first_round) == 3
    assert without_usage(records(out)) == without_usage(live)


def test_expired_batch_gives_its_results_and_sends_the_rest_next_round(tmp_path):
    data = make_data(tmp_path / "data.json", [0, 0, 1, 1])
    live = live_records(tmp_path, data)
    expired = FakeBatch(statuses=["in_progress", "expired"], answered=2)
    with FakeOpenAIServer(sm.responder, batches=[expired, FakeBatch()]) as srv:
        assert script.main(search_argv(data, srv, tmp_path / "batch", *FAST)) == 0
        first, second = batch_lines(srv)[:2]
    assert without_usage(records(tmp_path / "batch")) == without_usage(live)
    unanswered = [x["body"] for x in first[2:]]
    assert [x["body"] for x in second if x["body"] in unanswered] == unanswered  # sent again, next round
    assert len(second) == 4  # 2 again + the 2 answered items' next requests
    assert all(x["custom_id"].endswith("-1") for x in second if x["body"] in unanswered)


def test_batch_rejected_by_validation_exits_2_with_one_line(tmp_path, capsys):
    data = make_data(tmp_path / "data.json", [0, 1])
    bad = FakeBatch(
        statuses=["validating", "failed"],
        errors=[
            {"code": "invalid_request", "message": "model gpt-4o is not available\nfor batch", "line": 1}
        ],
    )
    with FakeOpenAIServer(sm.responder, batches=bad) as srv:
        code, err = exit_line(lambda: script.main(search_argv(data, srv, tmp_path / "o", *FAST)), capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert "batch batch_00001 rejected" in err and "invalid_request" in err and "line 1" in err
    assert "sk-test-key" not in err


def test_endpoint_without_batch_api_stops_with_one_line(tmp_path, capsys):
    data = make_data(tmp_path / "data.json", [0])
    with FakeOpenAIServer(sm.responder, batch_api=False) as srv:
        code, err = exit_line(lambda: script.main(search_argv(data, srv, tmp_path / "o", *FAST)), capsys)
        assert srv.count("/chat/completions") == 0
    assert code == 2 and len(err.splitlines()) == 1
    assert "no Batch API (HTTP 404" in err and "run without --batch_api" in err


def test_cached_prompt_tokens_are_priced_at_the_cached_rate(tmp_path):
    def cached(req):
        return 100

    async def go(srv, batched):
        rnd = BatchRound(BatchState(tmp_path / f"b{batched}"), poll_interval=0.001) if batched else None
        kw = dict(model="gpt-4o", api_url=srv.url, api_key="sk-x", usage=Usage())
        client = rnd.client(**kw) if rnd else LLMClient(**kw)
        try:
            await client.chat("x" * 800)  # 200 prompt tokens, 100 of them cached
            return client.usage
        finally:
            if rnd:
                await rnd.close()
            await client.close()

    with FakeOpenAIServer(lambda req: "y" * 40, cached_tokens=cached) as srv:
        live = asyncio.run(go(srv, False))
        batch = asyncio.run(go(srv, True))
    assert (live.prompt_tokens, live.cached_tokens, live.completion_tokens) == (200, 100, 10)
    # gpt-4o: 2.50 input, 1.25 cached input, 10.00 output per 1M tokens; batch: half
    assert live.cost == pytest.approx((100 * 2.50 + 100 * 1.25 + 10 * 10.00) / 1e6)
    assert batch.cost == pytest.approx(live.cost / 2) and batch.cost_live == pytest.approx(live.cost)
    r = rates_for("gpt-4o-mini")
    assert (r.input, r.cached_input, r.output, r.batch_input, r.batch_output) == (
        0.15,
        0.075,
        0.60,
        0.075,
        0.30,
    )


def test_max_cost_refuses_a_batch_before_sending_it(tmp_path, capsys):
    data = make_data(tmp_path / "data.json", [0, 1, 2])
    with FakeOpenAIServer(sm.responder) as srv:
        rc = script.main(search_argv(data, srv, tmp_path / "o", *FAST, "--max_cost", "0.0001"))
        assert srv.batch_creates == 0 and srv.count("/v1/files") == 0
    out = capsys.readouterr().out
    assert rc == 3 and "the next batch (3 requests, estimated" in out and "it was not sent" in out


def test_dry_run_shows_live_and_batch_prices(tmp_path, capsys):
    data = make_data(tmp_path / "data.json", [0, 1])
    argv = [
        "--data_path",
        str(data),
        "--model_name",
        "gpt-4o",
        "--output_dir",
        str(tmp_path / "o"),
        "--dry_run",
    ]
    assert script.main(argv) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "cost ~" in x)
    m = re.search(r"cost ~([\d.]+) USD .*; with --batch_api ~([\d.]+) USD", line)
    assert m and float(m.group(2)) == pytest.approx(float(m.group(1)) / 2, abs=1e-4)


def test_result_with_a_mismatched_custom_id_is_ignored(tmp_path):
    data = make_data(tmp_path / "data.json", [0, 1])
    live = live_records(tmp_path, data)
    with FakeOpenAIServer(sm.responder, batches=[FakeBatch(tamper_ids=True), FakeBatch()]) as srv:
        assert script.main(search_argv(data, srv, tmp_path / "batch", *FAST)) == 0
        first, second = batch_lines(srv)[:2]
    assert [x["body"] for x in second] == [x["body"] for x in first]  # nothing applied: all sent again
    assert without_usage(records(tmp_path / "batch")) == without_usage(live)


def test_a_saved_request_that_no_longer_matches_its_id_answers_nothing(tmp_path):
    """A request file edited after saving: its lines do not hash to their custom ids any more."""
    state_dir = tmp_path / "batches"
    st = BatchState(state_dir)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    cid = f"{request_hash('http://h/v1', '/chat/completions', body)}-0"
    line = {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": body}
    lid = st.new_batch([line], "http://h/v1", "m", "/chat/completions", 0.0)
    assert BatchState(state_dir).waiting == {cid: lid}
    path = state_dir / f"{lid}.requests.jsonl"
    path.write_text(path.read_text().replace('"hi"', '"edited"'))
    assert BatchState(state_dir).waiting == {}


def test_per_batch_limits_split_a_round(tmp_path):
    data = make_data(tmp_path / "data.json", [0, 0, 0, 0, 0])
    with FakeOpenAIServer(sm.responder) as srv:
        assert script.main(search_argv(data, srv, tmp_path / "o", *FAST, "--batch_max_requests", "2")) == 0
        sizes = [len(x) for x in batch_lines(srv)]
    assert sizes == [2, 2, 1] * 4  # 4 rounds (init, verify, rewrite, response), 3 batches each


def write_mcq(path: Path, numbers) -> Path:
    """Stage-1 input: one two-option question per number, answer B."""
    items = [
        {
            "question": f"Question number {i}: a patient with finding F{i}. What is the diagnosis?",
            "options": {"A": f"Disease A{i}", "B": f"Disease B{i}"},
            "answer_idx": "B",
            "answer": f"Disease B{i}",
        }
        for i in numbers
    ]
    path.write_text(json.dumps(items))
    return path


def test_stage1_batched_matches_live(tmp_path):
    data = write_mcq(tmp_path / "mcq.json", range(1, 5))

    def responder(req):
        n = int(req.prompt.split("Question number ")[1].split(":")[0])
        if "four verdicts" in req.prompt:
            return "Pass" if n != 2 else "Too Simple"
        return json.dumps({OPEN_Q: f"Open question {n}?", GT: f"Disease B{n}"})

    def argv(out, *extra):
        return [
            "--data_path", str(data), "--model_name", "gpt-4o", "--api_key", "sk-k", "--filter_data",
            "--decontaminate_against", "none", "--output_dir", str(out), *extra,
        ]  # fmt: skip

    results = {}
    for mode, extra in (("live", ()), ("batch", FAST)):
        with FakeOpenAIServer(responder) as srv:
            assert construct.main([*argv(tmp_path / mode, *extra), "--api_url", srv.url]) == 0
            results[mode] = (
                srv.batch_creates,
                sorted(p.name for p in (tmp_path / mode).glob("*_final_*.json")),
            )
        merged = [p for p in (tmp_path / mode).glob("*_final_*.json") if "summary" not in p.name]
        results[mode] += (json.loads(merged[0].read_text()),)
    strip = [
        [{k: v for k, v in r.items() if k != "api_usage"} for r in results[m][2]] for m in ("live", "batch")
    ]
    assert strip[0] == strip[1] and results["batch"][0] == 2 and results["live"][0] == 0


def test_eval_through_the_batch_api_matches_live(tmp_path):
    from huatuo_o1.eval.run import main as eval_main

    ev = {
        "S": [
            {"question": f"Q{i} which?", "options": {"A": "x", "B": "y"}, "answer_idx": "A"} for i in range(3)
        ]
    }
    path = tmp_path / "ev.json"
    path.write_text(json.dumps(ev))
    outs = {}
    for mode, extra in (("live", ()), ("batch", FAST)):
        with FakeOpenAIServer(
            lambda req: "The answer is A." if "Q1" in req.prompt else "The answer is B."
        ) as srv:
            argv = [
                "--model_name", "gpt-x", "--eval_file", str(path), "--output_dir", str(tmp_path / mode),
                "--quiet", "--api_url", srv.url, "--use_chat_api", *extra,
            ]  # fmt: skip
            assert eval_main(argv) == 0
            creates = srv.batch_creates
        [res] = [
            p
            for p in (tmp_path / mode).glob("*.json")
            if p.name.startswith("gpt-x") and "summary" not in p.name
        ]
        outs[mode] = (creates, json.loads(res.read_text()))
    assert outs["live"][1] == outs["batch"][1] and outs["batch"][0] == 1


def test_rerun_after_finish_reuses_answers_without_requests(tmp_path):
    """Items finished but not saved (killed after the last round): answers come from saved results."""
    data = make_data(tmp_path / "data.json", [0, 1])
    out = tmp_path / "o"
    with FakeOpenAIServer(sm.responder) as srv:
        assert script.main(search_argv(data, srv, out, *FAST)) == 0
        for p in (out / "data_CoT_search").glob("*.json"):
            p.unlink()  # the item files lost; the batches folder kept
        n = srv.batch_creates
        first = json.loads(next(out.glob("*_summary.json")).read_text())
        assert script.main(search_argv(data, srv, out, *FAST)) == 0
        assert srv.batch_creates == n
    assert len(records(out)) == 2
    # the rerun paid nothing: what it reused was billed by the first run, and is reported as such
    summary = json.loads(next(out.glob("*_summary.json")).read_text())
    assert summary["cost_this_run"] == 0
    assert summary["batch_api"]["reused_answers_cost_billed_earlier"] == pytest.approx(
        first["cost_this_run"], abs=1e-5
    )
    assert summary["usage_all_runs"]["cost"] == pytest.approx(first["cost_this_run"], abs=1e-5)


def test_a_failed_request_line_is_retried_next_round_and_a_rejected_one_fails_its_item(tmp_path):
    data = make_data(tmp_path / "data.json", [0, 0])
    seen = set()

    def responder(req):
        if "Case 1" in req.prompt and sm.request_kind(req.prompt) == "init" and "once" not in seen:
            seen.add("once")
            return FakeResponse(status=500, error="overloaded")
        if "Case 2" in req.prompt:
            return FakeResponse(status=400, code="context_length_exceeded", error="too long")
        return sm.responder(req)

    with FakeOpenAIServer(responder) as srv:
        rc = script.main(search_argv(data, srv, tmp_path / "o", *FAST))
        sizes = [len(x) for x in batch_lines(srv)]
    recs = records(tmp_path / "o")
    assert rc == 1 and list(recs) == [1] and recs[1]["status"] == "kept"  # item 2 failed, not saved
    assert sizes[:2] == [2, 1]  # round 2: only the request that failed with HTTP 500, sent again


async def ask_batched(folder: Path, srv, kill: bool):
    """One question through a batch round in `folder`; with `kill`, cancelled once its batch is
    polled (the run killed while the batch is in flight)."""
    rnd = BatchRound(BatchState(folder), poll_interval=0.001)
    client = rnd.client(model="gpt-4o", api_url=srv.url, api_key="sk-x", usage=Usage())
    try:
        task = asyncio.ensure_future(client.chat("question"))
        if not kill:
            return await task
        while not srv.count("/v1/batches/batch_00001"):
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await rnd.close()
        await client.close()


def test_a_batch_created_but_not_recorded_is_found_by_its_metadata(tmp_path):
    """Killed between creating a batch and saving its id: the rerun finds it in the batch list."""
    stuck = FakeBatch(statuses=["in_progress"])

    with FakeOpenAIServer(lambda req: "the reply", batches=stuck) as srv:
        asyncio.run(ask_batched(tmp_path / "b", srv, kill=True))
        [path] = (tmp_path / "b").glob("*.json")
        rec = json.loads(path.read_text())
        path.write_text(json.dumps({**rec, "status": "pending", "batch_id": None}))  # id never saved
        stuck.statuses.append("completed")
        assert asyncio.run(ask_batched(tmp_path / "b", srv, kill=False)) == "the reply"
        assert srv.batch_creates == 1 and srv.count("/v1/batches") >= 1
