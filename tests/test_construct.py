"""Stage 1 end to end against a loopback OpenAI-protocol server with scripted replies."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from huatuo_o1.datagen.construct import item_key
from huatuo_o1.testing.openai_server import FakeOpenAIServer, FakeResponse
from tests.helpers import REPO, run_script

SCRIPT = "construct_verifiable_medical_problems.py"
KEY = "sk-fake-construct-test-key-0123456789"


def make_items(n: int) -> list[dict]:
    return [
        {
            "question": f"Question number {i}: a patient with finding F{i}. What is the diagnosis?",
            "options": {"A": f"Disease A{i}", "B": f"Disease B{i}", "C": f"Disease C{i}"},
            "answer_idx": "B",
            "answer": f"Disease B{i}",
        }
        for i in range(1, n + 1)
    ]


def write_items(tmp_path: Path, items, name="mcq.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(items))
    return p


def is_filter(prompt: str) -> bool:
    return "four verdicts" in prompt or "四个判定" in prompt


def question_no(prompt: str) -> int:
    return int(prompt.split("Question number ")[1].split(":")[0])


def rewrite_json(n: int) -> str:
    return json.dumps(
        {"Open-ended Verifiable Question": f"Open question {n}?", "Ground-True Answer": f"Disease B{n}"}
    )


def default_responder(req):
    n = question_no(req.prompt)
    return "Pass" if is_filter(req.prompt) else rewrite_json(n)


def args_for(data: Path, out: Path, srv, *extra) -> list[str]:
    return [
        "--data_path", str(data), "--model_name", "gpt-4o", "--api_key", KEY, "--api_url", srv.url,
        "--output_dir", str(out), "--retry_backoff", "0.01", *extra,
    ]  # fmt: skip


def merged_file(out: Path) -> Path:
    files = [p for p in out.glob("*_final_*.json") if not p.name.endswith("_summary.json")]
    assert len(files) == 1, files
    return files[0]


def run_main(argv):
    from construct_verifiable_medical_problems import main

    return main(argv)


def test_happy_path_with_filter(tmp_path):
    data = write_items(tmp_path, make_items(5))
    with FakeOpenAIServer(default_responder) as srv:
        assert run_main(args_for(data, tmp_path / "out", srv, "--filter_data")) == 0
        assert srv.count("/chat/completions") == 10
    merged = json.loads(merged_file(tmp_path / "out").read_text())
    assert [r["process_id"] for r in merged] == [1, 2, 3, 4, 5]
    for r in merged:
        assert r["status"] == "kept" and r["filter_verdict"] == "Pass"
        assert r["Open-ended Verifiable Question"] == f"Open question {r['process_id']}?"
        assert r["Ground-True Answer"] == f"Disease B{r['process_id']}"
        assert r["answer"] == f"Disease B{r['process_id']}"  # input fields kept
    assert merged_file(tmp_path / "out").name == "mcq_verifiable_final_5.json"


def test_without_filter_makes_only_rewrite_calls(tmp_path):
    data = write_items(tmp_path, make_items(3))
    with FakeOpenAIServer(default_responder) as srv:
        assert run_main(args_for(data, tmp_path / "out", srv)) == 0
        assert srv.count() == 3
        assert not any(is_filter(r.prompt) for r in srv.requests)
        prompt = srv.requests[0].prompt
    assert "<Multiple-choice Question>" in prompt and "</Multiple-choice Question>" in prompt
    assert "Correct Answer: B. Disease B" in prompt and "A. Disease A" in prompt
    assert all(r["status"] == "kept" for r in json.loads(merged_file(tmp_path / "out").read_text()))


def test_filtered_item_keeps_verdict_and_has_no_open_question(tmp_path):
    data = write_items(tmp_path, make_items(3))

    def responder(req):
        n = question_no(req.prompt)
        if is_filter(req.prompt):
            return "Too Simple" if n == 2 else "Verdict: Pass"
        return rewrite_json(n)

    with FakeOpenAIServer(responder) as srv:
        assert run_main(args_for(data, tmp_path / "out", srv, "--filter_data")) == 0
    merged = json.loads(merged_file(tmp_path / "out").read_text())
    assert [r["status"] for r in merged] == ["kept", "filtered", "kept"]
    assert merged[1]["filter_verdict"] == "Too Simple"
    assert "Open-ended Verifiable Question" not in merged[1]
    summary = json.loads((tmp_path / "out" / "mcq_verifiable_final_3_summary.json").read_text())
    assert summary["kept"] == 2 and summary["filtered"] == 1 and summary["filter_verdicts"]["Too Simple"] == 1


def test_unparsable_reply_is_retried_then_parsed(tmp_path):
    data = write_items(tmp_path, make_items(1))
    messy = 'Here you go:\n```json\n{"Open-ended Verifiable Question": "What is\nthe diagnosis?", "Ground-True Answer": "Disease B1",}\n```\nDone.'
    with FakeOpenAIServer(["I cannot produce JSON today.", messy]) as srv:
        assert run_main(args_for(data, tmp_path / "out", srv)) == 0
        assert srv.count() == 2
    (rec,) = json.loads(merged_file(tmp_path / "out").read_text())
    assert rec["status"] == "kept"
    assert rec["Open-ended Verifiable Question"] == "What is\nthe diagnosis?"


def test_reply_that_never_parses_marks_item_failed_and_run_goes_on(tmp_path):
    data = write_items(tmp_path, make_items(2))

    def responder(req):
        n = question_no(req.prompt)
        return "no json here" if n == 1 else rewrite_json(n)

    with FakeOpenAIServer(responder) as srv:
        assert run_main(args_for(data, tmp_path / "out", srv)) == 0
        assert srv.count() == 3  # 2 tries for item 1, 1 for item 2
    merged = json.loads(merged_file(tmp_path / "out").read_text())
    assert merged[0]["status"] == "failed" and merged[0]["raw_replies"] == ["no json here"] * 2
    assert merged[1]["status"] == "kept"


@pytest.mark.parametrize(
    "first",
    [FakeResponse(status=429, headers={"Retry-After": "0"}), FakeResponse(status=500)],
    ids=["429", "500"],
)
def test_transient_errors_are_retried(tmp_path, first):
    data = write_items(tmp_path, make_items(1))
    with FakeOpenAIServer([first, rewrite_json(1)]) as srv:
        assert run_main(args_for(data, tmp_path / "out", srv)) == 0
        assert srv.count() == 2
    (rec,) = json.loads(merged_file(tmp_path / "out").read_text())
    assert rec["status"] == "kept"


def test_bad_key_exits_2_with_message_and_no_retry(tmp_path):
    data = write_items(tmp_path, make_items(3))
    err = FakeResponse(status=401, error=f"Incorrect API key provided: {KEY}")
    with FakeOpenAIServer([err]) as srv:
        proc = run_script(SCRIPT, *args_for(data, tmp_path / "out", srv, "--num_process", "1"))
        assert srv.count() == 1
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: invalid API key for http://127.0.0.1:")
    assert KEY not in proc.stderr + proc.stdout


def test_bad_input_exits_2_and_touches_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    keep = out / "previous_result.json"
    keep.write_text('{"x": 1}')
    bad_items = make_items(3)
    bad_items[1]["options"] = ["A", "B"]
    cases = {
        "notjson.json": ("{ not json", "not valid JSON"),
        "notlist.json": (json.dumps({"question": "q"}), "expected a JSON list"),
        "missing.json": (
            json.dumps([{"question": "q", "options": {"A": "a"}}]),
            "item 1 lacks field 'answer'",
        ),
        "badopts.json": (json.dumps(bad_items), "item 2: 'options' must be a non-empty mapping"),
    }
    with FakeOpenAIServer(default_responder) as srv:
        for name, (content, expected) in cases.items():
            (tmp_path / name).write_text(content)
            proc = run_script(SCRIPT, *args_for(tmp_path / name, out, srv))
            assert proc.returncode == 2, proc.stderr
            line = proc.stderr.strip()
            assert "\n" not in line and expected in line and name in line
        assert srv.count() == 0
    assert keep.read_text() == '{"x": 1}' and sorted(p.name for p in out.iterdir()) == [
        "previous_result.json"
    ]


def test_unwritable_result_exits_2_and_keeps_earlier_results(tmp_path):
    data = write_items(tmp_path, make_items(8))
    out = tmp_path / "out"
    items_dir = out / f"{data.stem}_verifiable"
    keys = [item_key(it) for it in json.loads(data.read_text())]
    (items_dir / f"{keys[4]}.json").mkdir(parents=True)  # item 5's result path cannot be written
    with FakeOpenAIServer(default_responder) as srv:
        proc = run_script(SCRIPT, *args_for(data, out, srv, "--num_process", "1"))
        assert srv.count() == 5  # stops at once: items 6-8 are not sent
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: cannot write the result of item 5")
    for key in keys[:4]:
        assert json.loads((items_dir / f"{key}.json").read_text())["status"] == "kept"


def test_dry_run_makes_no_request(tmp_path):
    data = write_items(tmp_path, make_items(4))
    with FakeOpenAIServer(default_responder) as srv:
        proc = run_script(SCRIPT, *args_for(data, tmp_path / "out", srv, "--filter_data", "--dry_run"))
        assert srv.count() == 0
    assert proc.returncode == 0, proc.stderr
    assert "[dry run] no request sent. 8 requests to gpt-4o" in proc.stdout
    assert "USD" in proc.stdout and "estimator" in proc.stdout
    assert not (tmp_path / "out").exists()


def test_crash_then_resume_repeats_no_finished_item(tmp_path):
    n = 12
    data = write_items(tmp_path, make_items(n))
    out = tmp_path / "out"
    store = out / "mcq_verifiable"
    with FakeOpenAIServer(default_responder, latency=0.05) as srv:
        cmd = [
            sys.executable,
            str(REPO / SCRIPT),
            *args_for(data, out, srv, "--filter_data", "--num_process", "2"),
        ]
        proc = subprocess.Popen(cmd, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.time() + 60
        while time.time() < deadline and len(list(store.glob("*.json"))) < 4:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        finished_before = {json.loads(p.read_text())["process_id"] for p in store.glob("*.json")}
        assert 4 <= len(finished_before) < n
        assert run_main(args_for(data, out, srv, "--filter_data", "--num_process", "2")) == 0
        calls = [question_no(r.prompt) for r in srv.requests]
    for pid in finished_before:  # finished before the crash: no call after it
        assert calls.count(pid) == 2, (pid, calls.count(pid))
    merged = json.loads(merged_file(out).read_text())
    assert [r["process_id"] for r in merged] == list(range(1, n + 1))
    assert not list(store.glob(".*.tmp"))


def test_api_key_never_written(tmp_path):
    data = write_items(tmp_path, make_items(2))
    with FakeOpenAIServer(default_responder) as srv:
        proc = run_script(SCRIPT, *args_for(data, tmp_path / "out", srv, "--filter_data"))
        assert all(r.headers.get("authorization") == f"Bearer {KEY}" for r in srv.requests)
    assert proc.returncode == 0, proc.stderr
    assert KEY not in proc.stdout + proc.stderr
    for f in (tmp_path / "out").rglob("*"):
        if f.is_file():
            assert KEY not in f.read_text()


def test_key_from_environment(tmp_path):
    data = write_items(tmp_path, make_items(1))
    with FakeOpenAIServer(default_responder) as srv:
        argv = args_for(data, tmp_path / "out", srv)
        i = argv.index("--api_key")
        del argv[i : i + 2]
        proc = run_script(SCRIPT, *argv, env={"OPENAI_API_KEY": KEY})
        assert srv.requests[0].headers.get("authorization") == f"Bearer {KEY}"
    assert proc.returncode == 0, proc.stderr


def test_chinese_prompts(tmp_path):
    data = write_items(tmp_path, make_items(1))
    with FakeOpenAIServer(default_responder) as srv:
        assert run_main(args_for(data, tmp_path / "out", srv, "--filter_data", "--language", "zh")) == 0
        assert "四个判定" in srv.requests[0].prompt and "<Multiple-choice Question>" in srv.requests[0].prompt


def test_max_cost_stops_cleanly_and_resumes(tmp_path):
    data = write_items(tmp_path, make_items(6))
    with FakeOpenAIServer(default_responder) as srv:
        # at --price 1e6,1e6 one token costs 1 USD, so a request costs ~200 USD (~190 of it the prompt,
        # checked before sending): 500 USD allows 2
        argv = args_for(
            data,
            tmp_path / "out",
            srv,
            "--num_process",
            "1",
            "--price",
            "1000000,1000000",
            "--max_cost",
            "500",
        )
        assert run_main(argv) == 3  # stopped by the budget with work left
        first = srv.count()
        merged = json.loads(merged_file(tmp_path / "out").read_text())
        assert 0 < len(merged) < 6 and first == len(merged)
        assert run_main(args_for(data, tmp_path / "out", srv)) == 0
        assert srv.count() == first + (6 - len(merged))


def test_rerun_keeps_other_stages_merged_files(tmp_path):
    data = write_items(tmp_path, make_items(2))
    out = tmp_path / "out"
    out.mkdir()
    search_merge = out / "mcq_verifiable_final_2_CoT_search_final_1.json"  # stage 2 run on our output
    search_merge.write_text("[]")
    (out / "mcq_verifiable_final_1.json").write_text("[]")  # an older merge of this very task
    with FakeOpenAIServer(default_responder) as srv:
        assert run_main(args_for(data, out, srv)) == 0
    assert search_merge.exists()
    assert not (out / "mcq_verifiable_final_1.json").exists()


def test_filtered_item_drops_an_open_question_the_input_carried(tmp_path):
    items = make_items(2)
    for it in items:  # like data/demo_data.json: the input already has the stage-1 fields
        it.update({"Open-ended Verifiable Question": "old?", "Ground-True Answer": "old", "status": "kept"})
    data = write_items(tmp_path, items)

    def responder(req):
        return (
            ("Too Simple" if question_no(req.prompt) == 1 else "Pass")
            if is_filter(req.prompt)
            else rewrite_json(2)
        )

    with FakeOpenAIServer(responder) as srv:
        assert run_main(args_for(data, tmp_path / "out", srv, "--filter_data")) == 0
    first, second = json.loads(merged_file(tmp_path / "out").read_text())
    assert first["status"] == "filtered" and "Open-ended Verifiable Question" not in first
    assert "Ground-True Answer" not in first
    assert second["Open-ended Verifiable Question"] == "Open question 2?"
    assert second["api_usage"]["requests"] == 2


def test_edited_input_item_is_redone_on_resume(tmp_path):
    items = make_items(3)
    data = write_items(tmp_path, items)
    with FakeOpenAIServer(default_responder) as srv:
        assert run_main(args_for(data, tmp_path / "out", srv)) == 0
        items[1]["answer"] = items[1]["options"]["B"] = "Disease B2, corrected"
        write_items(tmp_path, items)
        assert run_main(args_for(data, tmp_path / "out", srv)) == 0
        assert srv.count() == 4  # 3, then only the edited item again
    merged = json.loads(merged_file(tmp_path / "out").read_text())
    assert merged[1]["answer"] == "Disease B2, corrected"


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--num_process", "0"], "--num_process must be at least 1"),
        (["--max_tries", "0"], "--max_tries must be at least 1"),
        (["--model_name", "my-local-model", "--max_cost", "1"], "--max_cost needs a price"),
    ],
)
def test_bad_flag_values_exit_2(tmp_path, flags, message):
    data = write_items(tmp_path, make_items(1))
    with FakeOpenAIServer(default_responder) as srv:
        argv = args_for(data, tmp_path / "out", srv)
        if "--model_name" in flags:
            i = argv.index("--model_name")
            del argv[i : i + 2]
        proc = run_script(SCRIPT, *argv, *flags)
        assert srv.count() == 0
    assert proc.returncode == 2 and message in proc.stderr


def test_rejected_request_fails_only_its_item(tmp_path):
    data = write_items(tmp_path, make_items(3))

    def responder(req):
        if question_no(req.prompt) == 2:
            return FakeResponse(
                status=400, error="maximum context length exceeded", code="context_length_exceeded"
            )
        return default_responder(req)

    with FakeOpenAIServer(responder) as srv:
        assert run_main(args_for(data, tmp_path / "out", srv)) == 1  # an item is left to retry
        assert srv.count() == 3  # no retry of the rejected request, the others went on
    assert [r["process_id"] for r in json.loads(merged_file(tmp_path / "out").read_text())] == [1, 3]


def test_dry_run_after_a_partial_run_counts_only_what_is_left(tmp_path):
    data = write_items(tmp_path, make_items(4))
    with FakeOpenAIServer(default_responder) as srv:
        assert run_main(args_for(data, tmp_path / "out", srv, "--limit_num", "3")) == 0
        proc = run_script(SCRIPT, *args_for(data, tmp_path / "out", srv, "--dry_run"))
    assert "1 requests to gpt-4o" in proc.stdout and "3 items already finished" in proc.stdout
