"""Stage 2 (search_for_complex_reasoning_path.py) against the loopback OpenAI-protocol server.

The scripted model (huatuo_o1/testing/search.py) is judged right after exactly d refinements of an
item whose Ground-True Answer is `scripted_answer(question, d)`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from huatuo_o1.datagen import search as script
from huatuo_o1.datagen.search import draw_strategy, parse_cot, stream_of_search
from huatuo_o1.testing import search as sm
from huatuo_o1.testing.openai_server import FakeOpenAIServer, FakeResponse

ROOT = Path(__file__).resolve().parents[1]
OPEN_Q, GT = "Open-ended Verifiable Question", "Ground-True Answer"


def make_data(path: Path, depths: list[int], extra: list[dict] | None = None) -> Path:
    rows = []
    for i, d in enumerate(depths, 1):
        q = f"Case {i}: which diagnosis?"
        rows.append({OPEN_Q: q, GT: sm.scripted_answer(q, d)})
    rows += extra or []
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def base_args(srv, out: Path, *extra) -> list[str]:
    return [
        "--api_url", srv.url, "--api_key", "sk-test-key", "--model_name", "gpt-4o",
        "--retry_backoff", "0.01", "--output_dir", str(out), *extra,
    ]  # fmt: skip


def run_main(data: Path, srv, out: Path, *extra) -> int:
    return script.main(["--data_path", str(data), *base_args(srv, out, *extra)])


def records(out: Path, stem: str = "data") -> dict[int, dict]:
    folder = out / f"{stem}_CoT_search"
    recs = (json.loads(p.read_text()) for p in folder.glob("*.json"))
    return {r["process_id"]: r for r in recs}


def merged(out: Path, stem: str = "data") -> tuple[list[dict], dict]:
    [path] = [p for p in out.glob(f"{stem}_CoT_search_final_*.json") if not p.stem.endswith("_summary")]
    summary = json.loads(path.with_name(path.stem + "_summary.json").read_text())
    return json.loads(path.read_text()), summary


def kinds(srv) -> list[str]:
    return [sm.request_kind(r.prompt) for r in srv.requests]


# ---------------------------------------------------------------------------------------------
# One mixed run: right at once / right after one refinement / label-guided / skipped item
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mixed")
    data = make_data(tmp / "data.json", [0, 1, 9], extra=[{"question": "rejected by stage 1"}])
    with FakeOpenAIServer(sm.responder) as srv:
        rc = run_main(
            data, srv, tmp / "out", "--seed", "3", "--export_verifier_data", str(tmp / "verifier.json")
        )
        reqs = list(srv.requests)
    return {"rc": rc, "tmp": tmp, "out": tmp / "out", "requests": reqs}


def test_right_at_once(mixed):
    assert mixed["rc"] == 0
    rec = records(mixed["out"])[1]
    assert rec["status"] == "kept"
    assert rec["response_type"] == ["Init_CoT"] and rec["verify"] == [True]
    assert rec["search_result"] == {"attempt": 1, "refinements": 0, "strategy": None, "label_guided": False}
    # init, verify, natural rewrite, final response; every exchange in the audit trail
    assert [sm.request_kind(q) for q in rec["gpt4_query_cot"]] == ["init", "verify", "natural", "response"]
    assert len(rec["gpt4_response_cot"]) == 4
    assert rec["Question"] == rec[OPEN_Q]
    assert "\n" in rec["Complex_CoT"] and rec["Response"]
    assert "### Look at the question" in rec["gpt4_query_cot"][2]
    assert "### Conclusion" in rec["gpt4_query_cot"][2] and "<Thought Process>" in rec["gpt4_query_cot"][2]
    assert (
        rec["Complex_CoT"] in rec["gpt4_query_cot"][3] and "<Internal Thinking>" in rec["gpt4_query_cot"][3]
    )
    assert rec["api_usage"]["requests"] == 4


def test_wrong_then_right_after_one_refinement(mixed):
    rec = records(mixed["out"])[2]
    assert rec["status"] == "kept"
    assert rec["verify"] == [False, True]
    strategy = rec["response_type"][1]
    assert strategy.startswith("Re_CoT_") and strategy != "Re_CoT_Backtracking"
    assert rec["search_result"]["refinements"] == 1
    assert rec["search_result"]["strategy"] == strategy[len("Re_CoT_") :]
    init, refined = rec["response_struct"]
    # the refinement's steps replace the old last Verification
    assert rec["Long_CoT"] == init[:-1] + refined
    refine_query = rec["gpt4_query_cot"][2]
    assert sm.request_kind(refine_query) == "refine"
    assert "<previous reasoning>" in refine_query and "</previous reasoning>" in refine_query
    shown = refine_query.split("<previous reasoning>\n")[1].split("\n</previous reasoning>")[0]
    assert json.loads(shown) == init[:-1]  # the reasoning so far minus its last Verification
    assert "judged false" in refine_query
    assert rec["verifications"][1] == {"response": sm.scripted_answer(rec[OPEN_Q], 1), "label": True}


def test_depth_exhausted_then_label_guided(mixed):
    rec = records(mixed["out"])[3]
    assert rec["status"] == "kept"
    assert rec["response_type"][0] == "Init_CoT" and rec["response_type"][-1] == "Label_CoT"
    assert len(rec["response_type"]) == 4  # init + max_search_depth (2) refinements + label
    assert rec["verify"] == [False, False, False, True]  # the label step is accepted unverified
    assert len(rec["verifications"]) == 3
    label_query = [q for q in rec["gpt4_query_cot"] if sm.request_kind(q) == "label"]
    assert len(label_query) == 1 and rec[GT] in label_query[0]
    assert rec["search_result"]["label_guided"] is True
    assert rec["api_usage"]["requests"] == 9


def test_merged_sft_file_summary_and_skipped(mixed):
    sft, summary = merged(mixed["out"])
    assert [r["process_id"] for r in sft] == [1, 2, 3]
    assert all(r["Question"] and r["Complex_CoT"] and r["Response"] for r in sft)
    assert 4 not in records(mixed["out"])  # the item without question/answer was never searched
    assert summary["skipped_missing_fields"] == 1 and summary["kept"] == 3
    out = summary["outcomes"]
    assert out["first_try"]["items"] == 1 and out["after_1_refinements"]["items"] == 1
    assert out["label_guided"]["items"] == 1
    assert out["label_guided"]["prompt_tokens"] > out["first_try"]["prompt_tokens"] > 0
    assert sum(v["drawn"] for v in summary["strategies"].values()) == 3
    assert summary["usage_this_run"]["search"]["requests"] == 4 + 6 + 9 == len(mixed["requests"])
    assert summary["cost_this_run"] > 0


def test_verifier_data_export(mixed):
    examples = json.loads((mixed["tmp"] / "verifier.json").read_text())
    assert len(examples) == 1 + 2 + 3  # every verifier call, none for the label-guided step
    assert all(set(e) == {"response", "reference", "label"} for e in examples)
    assert sum(e["label"] for e in examples) == 2
    assert all(e["label"] == (e["response"] == e["reference"]) for e in examples)


# ---------------------------------------------------------------------------------------------
# Search options
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["False", "false", "0"])
def test_efficient_search_off_drops_item(tmp_path, flag):
    data = make_data(tmp_path / "data.json", [9, 0])
    with FakeOpenAIServer(sm.responder) as srv:
        assert run_main(data, srv, tmp_path / "out", "--efficient_search", flag) == 0
        assert "label" not in kinds(srv)
    recs = records(tmp_path / "out")
    assert recs[1]["status"] == "dropped" and "Complex_CoT" not in recs[1]
    assert recs[1]["verify"] == [False, False, False]
    sft, summary = merged(tmp_path / "out")
    assert [r["process_id"] for r in sft] == [2]
    assert summary["dropped"] == 1 and summary["outcomes"]["dropped"]["items"] == 1


def test_attempts_restart_from_initial_reasoning(tmp_path):
    """3 attempts of depth 1; the second refinement ever made is right (attempt 2)."""
    q = "Case 1: which diagnosis?"
    data = tmp_path / "data.json"
    data.write_text(json.dumps([{OPEN_Q: q, GT: "the right answer"}]))
    refines = []

    def responder(req):
        if sm.request_kind(req.prompt) == "refine":
            refines.append(req.prompt)
            return sm.cot_reply("the right answer" if len(refines) == 2 else "wrong", refinement=True)
        return sm.responder(req)

    with FakeOpenAIServer(responder) as srv:
        rc = run_main(data, srv, tmp_path / "out", "--max_search_attempts", "3", "--max_search_depth", "1")
        assert rc == 0
        assert kinds(srv).count("init") == 1  # the initial reasoning is not asked again
    rec = records(tmp_path / "out")[1]
    assert rec["status"] == "kept"
    assert rec["search_result"]["attempt"] == 2
    shown = [r.split("<previous reasoning>")[1].split("</previous reasoning>")[0] for r in refines]
    assert len(shown) == 2 and shown[0] == shown[1]  # both attempts start from the same reasoning
    [failed] = rec["prior_fail_try"]
    assert failed["verify"] == [False, False] and "prior_fail_try" not in failed
    assert failed["Long_CoT"][:2] == rec["Long_CoT"][:2]  # same initial reasoning
    assert len(rec["Long_CoT"]) == 2 + 4  # init minus Verification + one refinement, not two
    assert rec["verify"] == [False, True]
    assert rec["response_type"][0] == "Init_CoT" and len(rec["response_type"]) == 2


def test_all_attempts_fail_kept_in_prior_fail_try(tmp_path):
    data = make_data(tmp_path / "data.json", [9])
    with FakeOpenAIServer(sm.responder) as srv:
        args = ["--max_search_attempts", "3", "--max_search_depth", "1", "--efficient_search", "False"]
        assert run_main(data, srv, tmp_path / "out", *args) == 0
        assert len(srv.requests) == 2 + 3 * 2
    rec = records(tmp_path / "out")[1]
    assert rec["status"] == "dropped" and len(rec["prior_fail_try"]) == 2
    traces = [*rec["prior_fail_try"], rec]
    assert all(t["response_type"][0] == "Init_CoT" and len(t["response_type"]) == 2 for t in traces)
    _, summary = merged(tmp_path / "out")
    assert sum(v["drawn"] for v in summary["strategies"].values()) == 3  # failed attempts counted


def test_malformed_cot_reply_is_retried(tmp_path):
    bad = iter(
        [
            "I think it is pneumonia.",  # no JSON
            json.dumps(
                {
                    "CoT": [
                        {"action": "Inner Thinking", "title": "t", "content": "c"},
                        {"action": "Verification", "content": "v"},
                        {"action": "Final Conclusion", "content": "x"},
                    ]
                }
            ),  # fmt: skip
        ]
    )

    def responder(req):
        if sm.request_kind(req.prompt) == "init":
            nxt = next(bad, None)
            if nxt is not None:
                return nxt
        return sm.responder(req)

    data = make_data(tmp_path / "data.json", [0])
    with FakeOpenAIServer(responder) as srv:
        assert run_main(data, srv, tmp_path / "out") == 0
        assert kinds(srv)[:3] == ["init", "init", "init"]
    rec = records(tmp_path / "out")[1]
    assert rec["status"] == "kept" and rec["invalid_replies"] == 2
    assert rec["gpt4_response_cot"][0] == "I think it is pneumonia."


def test_reply_never_valid_fails_item_not_run(tmp_path):
    def responder(req):
        if sm.request_kind(req.prompt) == "init" and "Case 1:" in req.prompt:
            return "not json"
        return sm.responder(req)

    data = make_data(tmp_path / "data.json", [0, 0])
    with FakeOpenAIServer(responder) as srv:
        assert run_main(data, srv, tmp_path / "out", "--max_tries", "2", "--num_process", "1") == 0
    recs = records(tmp_path / "out")
    assert recs[1]["status"] == "failed" and "initial reasoning" in recs[1]["error"]
    assert recs[1]["gpt4_response_cot"] == ["not json", "not json"]
    assert recs[2]["status"] == "kept"
    sft, summary = merged(tmp_path / "out")
    assert [r["process_id"] for r in sft] == [2] and summary["failed"] == 1


def test_cot_validation_rule():
    ok = sm.cot_reply("x")
    assert parse_cot(ok)[-1]["action"] == "Verification"
    assert (
        parse_cot("```json\n" + json.dumps({"CoT": json.loads(ok.strip("`json\n"))["CoT"][:-1]}) + "```")
        is None
    )
    assert parse_cot(json.dumps({"CoT": "text"})) is None
    assert "### Conclusion\nx" in stream_of_search(parse_cot(ok))


def test_first_refinement_never_backtracks():
    for seed in range(300):
        rng = random.Random(seed)
        assert draw_strategy(rng, 0) != "Backtracking"
    later = {draw_strategy(random.Random(s), 1) for s in range(300)}
    assert "Backtracking" in later and len(later) == 4


def test_strategy_draws_seeded_and_first_never_backtracking(tmp_path):
    data = make_data(tmp_path / "data.json", [9] * 25)
    seqs = []
    for run, seed in enumerate(["7", "7", "8"]):
        out = tmp_path / f"out{run}"
        with FakeOpenAIServer(sm.responder) as srv:
            args = [
                "--seed",
                seed,
                "--efficient_search",
                "0",
                "--max_search_depth",
                "3",
                "--num_process",
                "8",
            ]
            assert run_main(data, srv, out, *args) == 0
        recs = records(out)
        assert all(r["response_type"][1] != "Re_CoT_Backtracking" for r in recs.values())
        seqs.append([recs[i]["response_type"] for i in sorted(recs)])
    assert any("Re_CoT_Backtracking" in t[2:] for t in seqs[0])  # drawn later on
    assert seqs[0] == seqs[1] and seqs[0] != seqs[2]


def test_chinese_prompts(tmp_path):
    data = make_data(tmp_path / "data.json", [9])
    with FakeOpenAIServer(sm.responder) as srv:
        assert run_main(data, srv, tmp_path / "out", "--language", "zh", "--max_search_depth", "1") == 0
        prompts = {sm.request_kind(r.prompt): r.prompt for r in srv.requests}
    assert "请先逐步推理" in prompts["init"]
    assert "被判定为错误" in prompts["refine"]
    assert "私下告诉你" in prompts["label"]
    assert "以上是模型的回答" in prompts["verify"]
    assert "自然、流畅的思维过程" in prompts["natural"] and "最终回复" in prompts["response"]
    assert records(tmp_path / "out")[1]["status"] == "kept"


def test_separate_verifier(tmp_path):
    data = make_data(tmp_path / "data.json", [1])
    with FakeOpenAIServer(sm.responder) as srv, FakeOpenAIServer(sm.responder) as judge:
        args = ["--verifier_model_name", "judge-model", "--verifier_api_url", judge.url]
        assert run_main(data, srv, tmp_path / "out", *args) == 0
        assert "verify" not in kinds(srv) and kinds(judge) == ["verify", "verify"]
        assert {r.body["model"] for r in judge.requests} == {"judge-model"}
    _, summary = merged(tmp_path / "out")
    assert summary["usage_this_run"]["verifier"]["requests"] == 2


# ---------------------------------------------------------------------------------------------
# Failures, resume, input errors, dry run (through the real script)
# ---------------------------------------------------------------------------------------------


def test_one_item_failing_does_not_stop_run(tmp_path):
    def responder(req):
        return FakeResponse(status=500) if "Case 2:" in req.prompt else sm.responder(req)

    data = make_data(tmp_path / "data.json", [0, 0, 0])
    with FakeOpenAIServer(responder) as srv:
        # the run goes on past the failed item, then exits 1: there is an item left to retry
        assert run_main(data, srv, tmp_path / "out", "--max_retries", "1", "--num_process", "1") == 1
    assert sorted(records(tmp_path / "out")) == [1, 3]  # the failed item is not saved: a rerun retries it
    _, summary = merged(tmp_path / "out")
    assert summary["unfinished"] == 1 and "item 2" in summary["errors"][0]


def test_burst_of_failures_stops_run(tmp_path, capsys):
    data = make_data(tmp_path / "data.json", [0] * 10)
    with FakeOpenAIServer(FakeResponse(status=503, headers={"Retry-After": "0"})) as srv:
        args = ["--max_retries", "0", "--num_process", "1", "--max_consecutive_failures", "3"]
        assert run_main(data, srv, tmp_path / "out", *args) == 3  # stopped with work left
        assert len(srv.requests) == 3
    assert "stopped: 3 consecutive items failed" in capsys.readouterr().out
    _, summary = merged(tmp_path / "out")
    assert "consecutive" in summary["stopped_reason"] and summary["unfinished"] == 10


def _script(*args, **kw):
    return subprocess.run(
        [sys.executable, str(ROOT / "search_for_complex_reasoning_path.py"), *args],
        capture_output=True, text=True, cwd=kw.pop("cwd", None), timeout=60, **kw,
    )  # fmt: skip


def test_resume_after_crash_repeats_no_finished_item(tmp_path):
    data = make_data(tmp_path / "data.json", [0, 1, 0, 1, 0, 0])
    out = tmp_path / "out"
    reached, release = threading.Event(), threading.Event()

    def stalls_on_item_4(req):
        if "Case 4:" in req.prompt:
            reached.set()
            release.wait(30)
        return sm.responder(req)

    with FakeOpenAIServer(stalls_on_item_4) as srv:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "search_for_complex_reasoning_path.py"), "--data_path", str(data),
             *base_args(srv, out, "--num_process", "1")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            assert reached.wait(45), "the run never reached item 4"
            os.kill(proc.pid, signal.SIGKILL)  # crash mid-item
            proc.wait(10)
        finally:
            release.set()
            if proc.poll() is None:
                proc.kill()
    assert sorted(records(out)) == [1, 2, 3]
    with FakeOpenAIServer(sm.responder) as srv:
        r = _script("--data_path", str(data), *base_args(srv, out))
        assert r.returncode == 0, r.stderr
        asked = {p.split("Case ")[1].split(":")[0] for p in (q.prompt for q in srv.requests) if "Case " in p}
        assert asked == {"4", "5", "6"}
        assert len(srv.requests) == 6 + 4 + 4  # items 4 (one refinement), 5, 6
    sft, summary = merged(out)
    assert [r["process_id"] for r in sft] == [1, 2, 3, 4, 5, 6]
    assert summary["resumed_skipped"] == 3


def test_bad_input_exit_2_before_any_request(tmp_path):
    (tmp_path / "obj.json").write_text('{"Open-ended Verifiable Question": "q"}')
    (tmp_path / "broken.json").write_text("[{")
    with FakeOpenAIServer(sm.responder) as srv:
        for name in ("obj.json", "broken.json", "missing.json"):
            r = _script("--data_path", str(tmp_path / name), *base_args(srv, tmp_path / "out"))
            assert r.returncode == 2
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0]
        assert srv.count() == 0
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.json"))


def test_dry_run_prints_request_range_without_network(tmp_path, capsys):
    data = make_data(tmp_path / "data.json", [0, 1, 2], extra=[{"question": "no open-ended form"}])
    with FakeOpenAIServer(sm.responder) as srv:
        rc = run_main(data, srv, tmp_path / "out", "--dry_run", "--max_search_attempts", "2")
        assert rc == 0 and srv.count() == 0
    text = capsys.readouterr().out
    # best: 4 per item; worst: init+verify + 2 attempts x 2 depths x 2 + label + rewrite + response
    assert "requests: 12 to 39" in text and "3 items to search (1 skipped" in text
    assert "USD" in text
    assert not (tmp_path / "out").exists()


def test_verifier_export_counts_each_verdict_once_over_attempts(tmp_path):
    data = make_data(tmp_path / "data.json", [9])  # never right: 3 attempts x depth 1, then label
    with FakeOpenAIServer(sm.responder) as srv:
        args = ["--max_search_attempts", "3", "--max_search_depth", "1", "--seed", "1"]
        assert (
            run_main(data, srv, tmp_path / "out", *args, "--export_verifier_data", str(tmp_path / "v.json"))
            == 0
        )
        verifier_calls = kinds(srv).count("verify")
    examples = json.loads((tmp_path / "v.json").read_text())
    assert verifier_calls == 4 and len(examples) == 4  # the initial verdict + one per attempt
    # every attempt's first refinement, not only the last attempt's, avoids Backtracking
    (rec,) = records(tmp_path / "out").values()
    for trace in [rec, *rec["prior_fail_try"]]:
        assert trace["response_type"][1] != "Re_CoT_Backtracking"


def test_stage1_output_feeds_stage2(tmp_path):
    """A stage-1 merged file: filtered/failed items are skipped, stale fields never leak into traces."""
    q = "Case 1: which diagnosis?"
    rows = [
        {OPEN_Q: q, GT: sm.scripted_answer(q, 0), "status": "kept", "api_usage": {"requests": 1},
         "Complex_CoT": "hand-written", "Response": "hand-written"},
        {OPEN_Q: "Case 2: filtered?", GT: "x", "status": "filtered", "filter_verdict": "Too Simple"},
    ]  # fmt: skip
    data = tmp_path / "data.json"
    data.write_text(json.dumps(rows))
    with FakeOpenAIServer(sm.responder) as srv:
        assert run_main(data, srv, tmp_path / "out") == 0
        n_requests = srv.count()
    (rec,) = records(tmp_path / "out").values()
    assert rec["api_usage"]["requests"] == n_requests == 4
    assert rec["Complex_CoT"] != "hand-written" and "Case 2" not in json.dumps(records(tmp_path / "out"))


def test_verifier_on_another_host_never_gets_the_search_key(tmp_path):
    data = make_data(tmp_path / "data.json", [0])
    with FakeOpenAIServer(sm.responder) as srv, FakeOpenAIServer(sm.responder) as judge:
        env = os.environ.copy()
        os.environ["OPENAI_API_KEY"] = "sk-test-env-key"
        try:
            assert (
                run_main(
                    data, srv, tmp_path / "out", "--verifier_api_url", f"http://localhost:{judge.port}/v1"
                )
                == 0
            )
        finally:
            os.environ.clear()
            os.environ.update(env)
        judge_auth = {r.headers.get("authorization") for r in judge.requests}
    assert judge.count() and not any("sk-test" in (a or "") for a in judge_auth)
