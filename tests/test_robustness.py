"""Hostile-user findings: outputs that are inputs, truncated or odd replies, content-keyed items,
SIGTERM, path flags. Offline, against the loopback server."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from huatuo_o1.datagen import construct, decontam, search, stage1_split
from huatuo_o1.io import InputError
from huatuo_o1.llm import LLMClient, ReplyUnusable, TransientAPIError
from huatuo_o1.parsing import extract_json, parse_filter_verdict, parse_verdict, strip_think
from huatuo_o1.testing import search as sm
from huatuo_o1.testing.openai_server import FakeOpenAIServer, FakeResponse
from tests.helpers import run_script

OPEN_Q, GT = "Open-ended Verifiable Question", "Ground-True Answer"
KEY = "sk-robustness-test-key-0123456789"


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def mcq_items(n: int, start: int = 1) -> list[dict]:
    return [
        {
            "question": f"Question number {i}: a patient with finding F{i}. What is the diagnosis?",
            "options": {"A": f"Disease A{i}", "B": f"Disease B{i}"},
            "answer_idx": "B",
            "answer": f"Disease B{i}",
        }
        for i in range(start, start + n)
    ]


def construct_responder(req):
    if "four verdicts" in req.prompt:  # the filter
        return "Pass"
    n = int(req.prompt.split("Question number ")[1].split(":")[0])
    return json.dumps({OPEN_Q: f"Open question {n}?", GT: f"Disease B{n}"})


def construct_argv(data, out, url, *extra) -> list[str]:
    return [
        "--data_path", str(data), "--model_name", "gpt-4o", "--api_key", KEY, "--api_url", url,
        "--output_dir", str(out), "--retry_backoff", "0.01", "--num_process", "2",
        "--decontaminate_against", "none", *map(str, extra),
    ]  # fmt: skip


def search_rows(n: int, start: int = 1) -> list[dict]:
    return [
        {OPEN_Q: f"Case {i}: which diagnosis?", GT: sm.scripted_answer(f"Case {i}: which diagnosis?", 0)}
        for i in range(start, start + n)
    ]


def search_argv(data, out, url, *extra) -> list[str]:
    return [
        "--data_path", str(data), "--model_name", "gpt-4o", "--api_key", KEY, "--api_url", url,
        "--output_dir", str(out), "--retry_backoff", "0.01", "--seed", "1", *map(str, extra),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# an output that is also an input, or two outputs that are one file
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["construct", "search"])
def test_output_path_equal_to_data_path_is_refused_before_any_request(tmp_path, stage):
    if stage == "construct":
        data, mod, argv, responder = (
            write_json(tmp_path / "in.json", mcq_items(2)),
            construct,
            construct_argv,
            construct_responder,
        )
    else:
        data, mod, argv, responder = (
            write_json(tmp_path / "in.json", search_rows(2)),
            search,
            search_argv,
            sm.responder,
        )
    before = data.read_bytes()
    link = tmp_path / "link.json"
    link.symlink_to(data)
    for target in (data, tmp_path / "." / "in.json", link):
        with FakeOpenAIServer(responder) as srv:
            with pytest.raises(InputError, match="same file as --data_path"):
                mod.main(argv(data, tmp_path / "out", srv.url, "--output_path", target))
            assert srv.count() == 0
    assert data.read_bytes() == before
    assert not (tmp_path / "out").exists()


def test_search_export_equal_to_output_path_is_refused(tmp_path):
    data = write_json(tmp_path / "in.json", search_rows(1))
    with FakeOpenAIServer(sm.responder) as srv:
        with pytest.raises(InputError, match="--output_path and --export_verifier_data are the same file"):
            search.main(
                search_argv(
                    data, tmp_path / "out", srv.url, "--output_path", tmp_path / "x.json",
                    "--export_verifier_data", tmp_path / "x.json",
                )
            )  # fmt: skip
        assert srv.count() == 0


def test_decontaminate_and_split_refuse_one_file_for_two_outputs(tmp_path):
    data = write_json(tmp_path / "d.json", [{OPEN_Q: "q?", GT: "a"}])
    before = data.read_bytes()
    with pytest.raises(InputError, match="--output and --dropped_output are the same file"):
        decontam.main(
            [
                "--data_path",
                str(data),
                "--against",
                str(data),
                "--output",
                "x.json",
                "--dropped_output",
                "./x.json",
            ]
        )
    with pytest.raises(InputError, match="--output .* same file as --data_path"):
        decontam.main(
            ["--data_path", str(data), "--against", str(tmp_path / "e.json"), "--output", str(data)]
        )
    with pytest.raises(InputError, match="--sft_output and --rl_output are the same file"):
        stage1_split.main(
            [
                "--data_path",
                str(data),
                "--sft_output",
                str(tmp_path / "s.json"),
                "--rl_output",
                str(tmp_path / "s.json"),
            ]
        )
    with pytest.raises(InputError, match="--rl_output .* same file as --data_path"):
        stage1_split.main(["--data_path", str(data), "--rl_output", str(data)])
    assert data.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.json"]
    # through the script: one line, exit 2
    p = run_script("scripts/split_stage1.py", "--data_path", data, "--sft_output", data)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("error: --sft_output")


def _split(data, *extra):
    assert stage1_split.main(["--data_path", str(data), *map(str, extra)]) == 0


def test_split_rerun_with_other_sizes_replaces_the_whole_set(tmp_path):
    rows = [{OPEN_Q: f"Question {i}: which drug?", GT: f"drug {i}"} for i in range(12)]
    data = write_json(tmp_path / "v.json", rows)
    _split(data, "--sft_size", 4, "--rl_size", 4, "--seed", 1)
    assert {"v_sft_4.json", "v_rl_4.json"} <= {p.name for p in tmp_path.iterdir()}
    # another RL size: the SFT file keeps its name, the old RL file is removed, not left beside it
    _split(data, "--sft_size", 4, "--rl_size", 6, "--seed", 2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["v.json", "v_rl_6.json", "v_sft_4.json", "v_split_set.json"]
    sft = {r[OPEN_Q] for r in json.loads((tmp_path / "v_sft_4.json").read_text())}
    rl = {r[OPEN_Q] for r in json.loads((tmp_path / "v_rl_6.json").read_text())}
    assert not sft & rl
    manifest = json.loads((tmp_path / "v_split_set.json").read_text())
    assert manifest["set_state"] == "complete" and set(manifest["set_files"]) == {"sft", "rl"}
    # a file the user edited since is not ours to remove
    (tmp_path / "v_rl_6.json").write_text("[]")
    _split(data, "--sft_size", 4, "--rl_size", 5, "--seed", 2)
    assert (tmp_path / "v_rl_6.json").read_text() == "[]" and (tmp_path / "v_rl_5.json").exists()


def test_a_set_killed_between_its_renames_is_finished_by_the_next_write(tmp_path, monkeypatch):
    from huatuo_o1 import io

    a, b, manifest = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "set.json"
    io.write_file_set(manifest, {"a": (a, b"old a"), "b": (b, b"old b")}, {})
    real_replace, calls = io.os.replace, []

    def killed_after_one(src, dst):
        calls.append(dst)
        if len(calls) == 3:  # the "committing" manifest, a, then b
            raise KeyboardInterrupt  # the kill: a renamed, b not yet
        real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        io.write_file_set(manifest, {"a": (a, b"new a"), "b": (b, b"new b")}, {})
    monkeypatch.setattr(io.os, "replace", real_replace)
    assert (a.read_bytes(), b.read_bytes()) == (b"new a", b"old b")  # the torn state a kill leaves
    # the next write of that set first completes the interrupted one, then writes its own
    io.write_file_set(manifest, {"a": (a, b"third a"), "b": (b, b"third b")}, {})
    assert (a.read_bytes(), b.read_bytes()) == (b"third a", b"third b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json", "set.json"]  # no temp left
    # a failure while writing the members leaves the old set whole and no temp file
    monkeypatch.setattr(
        io.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No space left on device"))
    )
    with pytest.raises(io.OutputError, match="No space left"):
        io.write_file_set(manifest, {"a": (a, b"x"), "b": (b, b"y")}, {})
    assert (a.read_bytes(), b.read_bytes()) == (b"third a", b"third b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json", "set.json"]


# ---------------------------------------------------------------------------------------------
# replies cut at max_tokens, without an answer, with a draft, or with an error body
# ---------------------------------------------------------------------------------------------


def call(client, method: str, *args, **kwargs):
    async def go():
        async with client:
            return await getattr(client, method)(*args, **kwargs)

    return asyncio.run(go())


def client_for(srv, **kw) -> LLMClient:
    return LLMClient("gpt-4o", api_key=KEY, api_url=srv.url, backoff_base=0.0, **kw)


def test_reply_cut_at_max_tokens_is_asked_again_with_the_same_request():
    cut = FakeResponse("The answer for V0 is the", finish_reason="length")
    with FakeOpenAIServer([cut, "The answer for V0 is B."]) as srv:
        assert call(client_for(srv), "chat", "q?", max_tokens=8) == "The answer for V0 is B."
        assert srv.count() == 2 and srv.requests[0].body == srv.requests[1].body
    with FakeOpenAIServer([cut]) as srv:
        with pytest.raises(ReplyUnusable, match="cut at max_tokens"):
            call(client_for(srv), "chat", "q?")
        assert srv.count() == 2
    with FakeOpenAIServer([FakeResponse("partial", finish_reason="length")]) as srv:
        with pytest.raises(ReplyUnusable, match="cut at max_tokens"):
            call(client_for(srv), "complete", "p", n=1)


def test_cut_reply_is_kept_as_is_for_evaluated_models():
    with FakeOpenAIServer([FakeResponse("The answer is", finish_reason="length")]) as srv:
        assert call(client_for(srv, strict_replies=False), "chat", "q?") == "The answer is"
        assert srv.count() == 1


@pytest.mark.parametrize(
    "reply,needle",
    [
        (FakeResponse(null_content=True, reasoning_content="thinking..."), "only reasoning"),
        (FakeResponse("", reasoning_content='{"x": 1}'), "only reasoning"),
        (FakeResponse(null_content=True), "null content"),
    ],
)
def test_reply_without_an_answer_is_never_the_answer(reply, needle):
    with FakeOpenAIServer([reply, "answer"]) as srv:
        assert call(client_for(srv), "chat", "q?") == "answer"
    with FakeOpenAIServer([reply]) as srv:
        with pytest.raises(ReplyUnusable, match=needle):
            call(client_for(srv), "chat", "q?")


def test_construct_item_cut_at_max_tokens_fails_and_is_never_kept(tmp_path, caplog):
    data, out = write_json(tmp_path / "mcq.json", mcq_items(2)), tmp_path / "out"

    def responder(req):
        reply = construct_responder(req)
        if "Question number 2" in req.prompt:
            return FakeResponse(reply[:20], finish_reason="length")
        return reply

    with FakeOpenAIServer(responder) as srv:
        assert construct.main(construct_argv(data, out, srv.url)) == 1
        assert srv.count() == 3  # item 1 once, item 2 twice (the same request)
    assert "cut at max_tokens" in caplog.text
    [merged_path] = [p for p in out.glob("*_final_*.json") if not p.stem.endswith("_summary")]
    recs = json.loads(merged_path.read_text())
    assert [r["answer"] for r in recs] == ["Disease B1"]
    assert len(list((out / "mcq_verifiable").glob("*.json"))) == 1


def test_think_draft_is_not_parsed_as_the_answer(tmp_path):
    draft = json.dumps({OPEN_Q: "Draft question?", GT: "Draft answer"})

    def responder(req):
        return f"<think>\nFirst try: {draft}\nHmm, no.\n</think>\n\n{construct_responder(req)}"

    data, out = write_json(tmp_path / "mcq.json", mcq_items(1)), tmp_path / "out"
    with FakeOpenAIServer(responder) as srv:
        assert construct.main(construct_argv(data, out, srv.url, "--filter_data")) == 0
    [merged_path] = [p for p in out.glob("*_final_*.json") if not p.stem.endswith("_summary")]
    [rec] = json.loads(merged_path.read_text())
    assert rec[GT] == "Disease B1" and rec[OPEN_Q] == "Open question 1?"
    assert parse_verdict("<think>Is it false? No.</think>True") is True
    assert parse_filter_verdict("<think>maybe Too Simple</think>\nPass") == "Pass"
    assert extract_json('<think>{"a": 1} unfinished') is None
    assert strip_think("no draft here") == "no draft here"


def test_search_response_drops_the_think_draft(tmp_path):
    def responder(req):
        text = sm.responder(req)
        return (
            f"<think>draft of the answer</think>{text}"
            if "high-quality final response" in req.prompt
            else text
        )

    data, out = write_json(tmp_path / "d.json", search_rows(1)), tmp_path / "out"
    with FakeOpenAIServer(responder) as srv:
        assert search.main(search_argv(data, out, srv.url)) == 0
    [merged_path] = [p for p in out.glob("*_final_*.json") if not p.stem.endswith("_summary")]
    [rec] = json.loads(merged_path.read_text())
    assert "<think>" not in rec["Response"] and "draft" not in rec["Response"]


def test_a_runaway_reply_is_never_kept(monkeypatch):
    from huatuo_o1 import llm

    monkeypatch.setattr(llm, "MAX_REPLY_CHARS", 1000)
    with FakeOpenAIServer(["x" * 1001, "y" * 1001]) as srv:
        with pytest.raises(ReplyUnusable, match="1,001 characters long"):
            call(client_for(srv), "chat", "q")
        assert srv.count("/chat/completions") == 2  # asked again once, then the item fails
    with FakeOpenAIServer(["x" * 1001, "short answer"]) as srv:
        assert call(client_for(srv), "chat", "q") == "short answer"


def test_http_200_with_an_error_body_is_retried_like_a_5xx():
    gateway = FakeResponse(body={"error": {"message": "upstream overloaded", "code": 503}})
    with FakeOpenAIServer([gateway, "OK"]) as srv:
        client = client_for(srv)
        assert call(client, "chat", "q?") == "OK"
        assert client.usage.retries == 1
    with FakeOpenAIServer([FakeResponse(body={"choices": []}), "OK"]) as srv:
        assert call(client_for(srv), "chat", "q?") == "OK"
    with FakeOpenAIServer([gateway]) as srv:
        with pytest.raises(TransientAPIError, match="error body.*upstream overloaded"):
            call(client_for(srv, max_retries=2), "chat", "q?")
        assert srv.count() == 3


def test_llm_judge_survives_an_error_body():
    from huatuo_o1.rl.rewards import LLMJudgeVerifier

    gateway = FakeResponse(body={"error": {"message": "overloaded"}})
    with FakeOpenAIServer([gateway, "True"]) as srv:
        judge = LLMJudgeVerifier("gpt-4o", api_key=KEY, api_url=srv.url)
        assert judge.probabilities(["B"], ["B"]) == [1.0]


# ---------------------------------------------------------------------------------------------
# items identified by content, not by position or file name
# ---------------------------------------------------------------------------------------------


def merged_of(out: Path, task: str) -> list[dict]:
    [path] = [p for p in out.glob(f"{task}_final_*.json") if not p.stem.endswith("_summary")]
    return json.loads(path.read_text())


def test_search_after_a_stage1_rerun_pays_only_the_new_item(tmp_path):
    out = tmp_path / "out"
    first = write_json(tmp_path / "mcq_verifiable_final_3.json", search_rows(3))
    with FakeOpenAIServer(sm.responder) as srv:
        assert search.main(search_argv(first, out, srv.url)) == 0
    # stage 1 rerun: one item filled in at the front, a new file name (the old one removed)
    first.unlink()
    second = write_json(tmp_path / "mcq_verifiable_final_4.json", search_rows(1, start=9) + search_rows(3))
    with FakeOpenAIServer(sm.responder) as srv:
        assert search.main(search_argv(second, out, srv.url)) == 0
        assert srv.count() > 0 and all("Case 9" in r.prompt for r in srv.requests)
    recs = merged_of(out, "mcq_verifiable_final_4_CoT_search")
    assert [r["Question"] for r in recs] == [f"Case {i}: which diagnosis?" for i in (9, 1, 2, 3)]
    assert [r["process_id"] for r in recs] == [1, 2, 3, 4]
    with FakeOpenAIServer(sm.responder) as srv:  # reordered: nothing paid
        write_json(second, list(reversed(json.loads(second.read_text()))))
        assert search.main(search_argv(second, out, srv.url)) == 0
        assert srv.count() == 0


def test_construct_inputs_with_one_file_name_never_replace_each_others_results(tmp_path):
    out = tmp_path / "out"
    (tmp_path / "medqa").mkdir()
    (tmp_path / "medmcqa").mkdir()
    a = write_json(tmp_path / "medqa" / "train.json", mcq_items(2))
    b = write_json(tmp_path / "medmcqa" / "train.json", mcq_items(3, start=10))
    with FakeOpenAIServer(construct_responder) as srv:
        assert construct.main(construct_argv(a, out, srv.url)) == 0
        assert construct.main(construct_argv(b, out, srv.url)) == 0
        assert srv.count() == 5
        assert construct.main(construct_argv(a, out, srv.url)) == 0
        assert srv.count() == 5  # the first input's results are still there: nothing paid again
    assert [r[GT] for r in merged_of(out, "train_verifiable")] == ["Disease B1", "Disease B2"]


def test_results_left_under_the_position_layout_are_reused(tmp_path):
    from huatuo_o1.io import fingerprint

    data, out = write_json(tmp_path / "mcq.json", mcq_items(3)), tmp_path / "out"
    with FakeOpenAIServer(construct_responder) as srv:
        assert construct.main(construct_argv(data, out, srv.url)) == 0
    folder = out / "mcq_verifiable"
    raw = json.loads(data.read_text())
    for p in list(folder.glob("*.json")):  # rewrite as an older run left them: <position>.json
        rec = json.loads(p.read_text())
        pid = rec.pop("process_id")
        rec.pop("content_id")
        old = {**raw[pid - 1], "process_id": pid}
        p.unlink()
        write_json(folder / f"{pid}.json", {**rec, "process_id": pid, "input_fingerprint": fingerprint(old)})
    raw[1]["answer_idx"] = "A"  # item 2 edited since: its old result is not reused
    write_json(data, raw)
    with FakeOpenAIServer(construct_responder) as srv:
        assert construct.main(construct_argv(data, out, srv.url)) == 0
        assert srv.count() == 1 and "Question number 2" in srv.requests[0].prompt
    assert [r["answer"] for r in merged_of(out, "mcq_verifiable")] == [
        "Disease B1",
        "Disease B2",
        "Disease B3",
    ]
    assert (folder / "1.json").exists()  # the old files are left as they were


# ---------------------------------------------------------------------------------------------
# SIGTERM, run folder names
# ---------------------------------------------------------------------------------------------


def test_sigterm_stops_like_ctrl_c_with_one_line(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers import REPO

    data, out = write_json(tmp_path / "mcq.json", mcq_items(4)), tmp_path / "out"
    with FakeOpenAIServer(construct_responder, latency=30) as srv:  # every request hangs
        cmd = [
            sys.executable,
            str(REPO / "construct_verifiable_medical_problems.py"),
            *construct_argv(data, out, srv.url),
        ]
        proc = subprocess.Popen(
            cmd, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and srv.count() == 0:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "terminated (SIGTERM): results written so far are kept; rerun the same command to resume"
    )
    assert not (out / "mcq_verifiable" / ".huatuo_run.lock").exists()  # the run lock was released


@pytest.mark.parametrize("name", ["../x", "/abs/run", "", " ", "..", "a/b"])
def test_sft_experiment_name_must_be_a_plain_name(tmp_path, name):
    from types import SimpleNamespace

    from huatuo_o1.train import sft

    args = SimpleNamespace(output_dir=str(tmp_path / "ckpts"), experiment_name=name)
    with pytest.raises(InputError, match="--experiment_name .* must be a plain name"):
        sft.train(args)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_dangling_symlink_output_dir_is_named_as_such(tmp_path):
    from huatuo_o1.io import OutputError, check_writable_dir

    link = tmp_path / "out"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(OutputError, match="is a symlink to .*gone, which does not exist"):
        check_writable_dir(link, "--output_dir")


# ---------------------------------------------------------------------------------------------
# evaluation: fewer samples than asked, a server that dies mid-run
# ---------------------------------------------------------------------------------------------

EVAL_ITEM = {"question": "Q1 which?", "options": {"A": "Aspirin", "B": "Heparin"}, "answer_idx": "B"}


def eval_argv(eval_file, out, url, *extra) -> list[str]:
    return [
        "--model_name", "gpt-x", "--eval_file", str(eval_file), "--api_url", url, "--use_chat_api",
        "--output_dir", str(out), "--quiet", "--max_retries", "1", *map(str, extra),
    ]  # fmt: skip


def test_eval_sample_shortfall_is_asked_again_never_hidden(tmp_path, capsys):
    from huatuo_o1.eval.run import main

    eval_file = write_json(tmp_path / "e.json", {"S": [EVAL_ITEM, {**EVAL_ITEM, "question": "Q2 which?"}]})
    out = tmp_path / "out"
    # a server that caps n at 1: the rest is asked for, and each question gets its 3 samples
    with FakeOpenAIServer(lambda r: ["The answer is B."]) as srv:
        assert main(eval_argv(eval_file, out, srv.url, "--n_samples", "3", "--temperature", "0.7")) == 0
        assert sorted(r.n for r in srv.requests if r.path.endswith("/chat/completions")) == [1, 1, 2, 2, 3, 3]
    records = json.loads((out / "gpt-xe_api_n3.json").read_text())
    assert [len(r["samples"]) for r in records] == [3, 3]
    # a server that answers fewer than asked and then fails: the question fails, nothing of it is kept
    out2 = tmp_path / "out2"
    with FakeOpenAIServer(lambda r: ["The answer is B."] if r.n == 2 else FakeResponse(status=503)) as srv:
        assert main(eval_argv(eval_file, out2, srv.url, "--n_samples", "2", "--temperature", "0.7")) == 1
    assert "2 of 2 questions have no answer yet" in capsys.readouterr().err
    assert not list((out2 / ".eval_cache").glob("*/*.json"))
    # short outputs an earlier run cached are unfinished: asked again, completed
    with FakeOpenAIServer(lambda r: ["The answer is B."] * r.n) as srv:
        assert main(eval_argv(eval_file, out2, srv.url, "--n_samples", "2", "--temperature", "0.7")) == 0
    for p in (out2 / ".eval_cache").glob("*/*.json"):
        rec = json.loads(p.read_text())
        p.write_text(json.dumps({**rec, "outputs": rec["outputs"][:1]}))
    with FakeOpenAIServer(lambda r: ["The answer is B."] * r.n) as srv:
        assert main(eval_argv(eval_file, out2, srv.url, "--n_samples", "2", "--temperature", "0.7")) == 0
    records = json.loads((out2 / "gpt-xe_api_n2.json").read_text())
    assert [len(r["samples"]) for r in records] == [2, 2]


def test_eval_partial_scores_are_named_partial_and_a_dead_server_is_not_a_timeout(tmp_path, capsys):
    from huatuo_o1.eval.run import main

    eval_file = write_json(tmp_path / "e.json", {"S": [EVAL_ITEM, {**EVAL_ITEM, "question": "Q2 which?"}]})
    out = tmp_path / "out"
    with FakeOpenAIServer(lambda r: "The answer is B.") as srv:
        assert main(eval_argv(eval_file, out, srv.url, "--limit_num", "1")) == 0
    assert (out / "result_gpt-xe_api.json").exists()  # the complete 1-question run

    # the server process dies while the second question is in flight; its port then refuses connections
    def dying(req):
        return os._exit(1) if "Q2" in req.prompt else "The answer is B."

    with FakeOpenAIServer(dying, in_process=False) as srv:
        assert main(eval_argv(eval_file, out, srv.url)) == 1
    err = capsys.readouterr().err
    assert "cannot connect: connection refused" in err
    assert "timeout" not in err.lower()
    summary = json.loads((out / "gpt-xe_api_summary.json").read_text())
    assert summary["complete"] is False and summary["missing"] == 1
    assert (out / "result_gpt-xe_api.partial.json").exists() and not (out / "result_gpt-xe_api.json").exists()
    # a rerun against a live server completes it: the complete file comes back, the partial goes
    with FakeOpenAIServer(lambda r: "The answer is B.") as srv:
        assert main(eval_argv(eval_file, out, srv.url)) == 0
    assert (out / "result_gpt-xe_api.json").exists() and not (out / "result_gpt-xe_api.partial.json").exists()
    assert json.loads((out / "gpt-xe_api_summary.json").read_text())["complete"] is True


# ---------------------------------------------------------------------------------------------
# a full disk during training
# ---------------------------------------------------------------------------------------------


def test_disk_full_during_an_sft_checkpoint_is_one_line_and_leaves_no_torn_checkpoint(
    tiny_lm_dir, tmp_path, monkeypatch, capsys
):
    import torch

    from huatuo_o1.train import sft
    from tests.test_sft import make_records, sft_argv

    data = write_json(tmp_path / "d.json", make_records(8))
    argv = sft_argv(tiny_lm_dir, data, tmp_path / "run", "--max_steps", "4", "--save_steps", "2")
    real_save = torch.save

    def full_at_step_4(obj, f, *a, **kw):  # the optimizer file of checkpoint-4 finds the disk full
        if "checkpoint-4" in str(f):
            Path(f).write_bytes(b"\0" * 10)
            # what torch's writer raises when the disk is full: no errno, no "No space left"
            raise RuntimeError(
                "[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file data/0: file write failed"
            )
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", full_at_step_4)
    from huatuo_o1.cli import run_main

    with pytest.raises(SystemExit) as e:
        run_main(lambda: sft.main(argv))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1].startswith("error: cannot write in")
        and "no space left" in err[-1]
        and "removed the partial checkpoint-4" in err[-1]
    )
    assert "resume from checkpoint-2" in err[-1] and not any("Traceback" in line for line in err)
    run = tmp_path / "run" / "sft_stage1"
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2"]
    # space freed: the rerun resumes from checkpoint-2 and finishes
    monkeypatch.setattr(torch, "save", real_save)
    assert sft.main(argv) in (0, None)
    assert (run / "checkpoint-4" / "trainer_state.json").exists() and (run / "model.safetensors").exists()


def test_sigterm_with_a_grace_saves_a_checkpoint_then_stops(tiny_lm_dir, tmp_path):
    import os
    import signal

    from transformers import TrainerCallback

    from huatuo_o1.cli import Terminated
    from huatuo_o1.train.sft import parse_args, train
    from tests.test_sft import make_records, sft_argv

    class Preempt(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 1:
                os.kill(os.getpid(), signal.SIGTERM)  # SLURM's notice, mid-run

    data = write_json(tmp_path / "d.json", make_records(8))
    argv = sft_argv(tiny_lm_dir, data, tmp_path / "run", "--max_steps", "4", "--sigterm_grace", "30")
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated):
        train(parse_args(argv), callbacks=[Preempt()])
    run = tmp_path / "run" / "sft_stage1"
    # no save was due (the default saves once per epoch), yet the step in flight was saved
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-1"]
    assert (run / "checkpoint-1" / "trainer_state.json").exists()
    assert signal.getsignal(signal.SIGTERM) == before  # the run's handler is gone with it
