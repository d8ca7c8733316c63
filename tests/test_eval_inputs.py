"""Evaluation's one-line refusals, masked URL credentials, the scored file's identity, the chart."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from huatuo_o1.eval.run import main
from huatuo_o1.testing.openai_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"question": "Q1 which?", "options": {"A": "Aspirin", "B": "Heparin"}, "answer_idx": "B"}


def _eval(tmp_path, data, *extra, raw: bytes | None = None, server=None):
    p = tmp_path / "e.json"
    if raw is not None:
        p.write_bytes(raw)
    elif data is not None:
        p.write_text(json.dumps(data))
    with FakeOpenAIServer(lambda r: "The answer is B.") as srv:
        proc = subprocess.run(
            [
                sys.executable,
                str(ROOT / "evaluation/eval.py"),
                "--model_name",
                "m",
                "--use_chat_template",
                "False",
                "--eval_file",
                str(p),
                "--port",
                str(srv.port),
                "--output_dir",
                str(tmp_path / "out"),
                "--quiet",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)},
        )
        return proc, srv.requests


@pytest.mark.parametrize(
    "question, message",
    [({"text": "q"}, "question is a dict, not a string"), (["q"], "question is a list, not a string")],
)
def test_question_must_be_a_string(tmp_path, question, message):
    proc, requests = _eval(tmp_path, {"S": [GOOD, {**GOOD, "question": question}]})
    assert proc.returncode == 2 and requests == []
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'e.json'}: source 'S' item 2: {message}"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--limit_num", "0"], "--limit_num must be at least 1"),
        (["--limit_num", "-2"], "--limit_num must be at least 1"),
        (["--task", "../x"], "must be a plain name"),
        (["--task", "a/b"], "must be a plain name"),
        (["--task", ".."], "must be a plain name"),
        (["--max_retries", "-1"], "--max_retries must be 0 or more"),
        (["--model_name", "/"], "ends in no model name"),  # would scan the whole disk, name nothing
        (["--model_name", "a/.."], "ends in no model name"),  # would write hidden result files
    ],
)
def test_bad_flags_are_one_line(tmp_path, extra, message):
    proc, requests = _eval(tmp_path, {"S": [GOOD]}, *extra)
    assert proc.returncode == 2 and requests == []
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.json"))


def test_unreadable_eval_files_are_one_line(tmp_path):
    cases = [
        (b"\xff\xfe{not utf8", "not UTF-8 text"),
        (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    ]
    for raw, message in cases:
        proc, requests = _eval(tmp_path, None, raw=raw)
        assert proc.returncode == 2 and requests == []
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], proc.stderr
    (tmp_path / "e.json").unlink()
    (tmp_path / "e.json").mkdir()
    proc, requests = _eval(tmp_path, None)
    assert (
        proc.returncode == 2 and "is a folder" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    )


def test_unwritable_output_folder_is_refused_before_any_request(tmp_path):
    (tmp_path / "out").write_text("a file where the output folder should be")
    proc, requests = _eval(tmp_path, {"S": [GOOD]})
    assert proc.returncode == 2 and requests == []
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "is a file, not a folder" in lines[0]


def test_credentials_in_the_url_never_reach_a_file_or_output(tmp_path, capsys):
    with FakeOpenAIServer(lambda r: "The answer is B.") as srv:
        url = srv.url.replace("http://", "http://alice:s3cr3t-pw@")
        (tmp_path / "e.json").write_text(json.dumps({"S": [GOOD]}))
        args = ["--model_name", "gpt-x", "--eval_file", str(tmp_path / "e.json"), "--api_url", url]
        # (whether the HTTP client accepts credentials in a URL is the client's business: the run
        # may fail its question; what matters here is that the password is written nowhere)
        assert main([*args, "--use_chat_api", "--output_dir", str(tmp_path / "out"), "--quiet"]) in (0, 1)
    captured = capsys.readouterr()
    assert "s3cr3t-pw" not in captured.out + captured.err
    files = [f for f in (tmp_path / "out").rglob("*") if f.is_file()]
    assert files and not any(b"s3cr3t-pw" in f.read_bytes() for f in files)
    summary = json.loads(next((tmp_path / "out").glob("*_summary.json")).read_text())
    assert summary["settings"]["api_url"].startswith("http://***@127.0.0.1:")
    # a closed port: the error message masks them too
    from huatuo_o1.io import InputError

    with pytest.raises(InputError) as e:
        main([*args, "--use_chat_api", "--output_dir", str(tmp_path / "o2"), "--quiet"])
    assert "s3cr3t-pw" not in str(e.value) and "***@" in str(e.value)


def test_summary_says_which_file_was_scored(tmp_path, capsys, monkeypatch):
    from huatuo_o1.eval import data as eval_data

    with FakeOpenAIServer(lambda r: "The answer is B.") as srv:
        (tmp_path / "e.json").write_text(json.dumps({"S": [GOOD]}))
        args = ["--model_name", "gpt-x", "--eval_file", str(tmp_path / "e.json"), "--api_url", srv.url]
        args += ["--use_chat_api", "--output_dir", str(tmp_path / "out"), "--quiet"]
        assert main(args) == 0
        out = capsys.readouterr().out
        assert "not the paper's evaluation file" in out
        summary = json.loads(next((tmp_path / "out").glob("*_summary.json")).read_text())
        blob = eval_data.file_blob_id(tmp_path / "e.json")
        assert summary["eval_file"] == {
            "path": str(tmp_path / "e.json"),
            "git_blob_id": blob,
            "is_paper_file": False,
        }
        # the same run on a file whose blob id is the paper's: recorded as such, no note
        monkeypatch.setattr(eval_data, "PAPER_EVAL_BLOB", blob)
        assert main(args) == 0
        assert "not the paper's evaluation file" not in capsys.readouterr().out
        summary = json.loads(next((tmp_path / "out").glob("*_summary.json")).read_text())
        assert summary["eval_file"]["is_paper_file"] is True


def test_chart_and_per_run_original_layout(tmp_path):
    replies = iter(["The answer is B.", "The answer is A.", "", "The answer is B."] * 10)
    with FakeOpenAIServer(lambda r: [next(replies) for _ in range(r.n)]) as srv:
        (tmp_path / "e.json").write_text(json.dumps({"S": [GOOD, {**GOOD, "question": "Q2 which?"}]}))
        args = ["--model_name", "gpt-x", "--eval_file", str(tmp_path / "e.json"), "--api_url", srv.url]
        args += ["--use_chat_api", "--output_dir", str(tmp_path / "out"), "--quiet", "--n_samples", "2"]
        assert main(args) == 0
    out = tmp_path / "out"
    png = out / "gpt-xe_api_n2_chart.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = [json.loads((out / f"result_gpt-xe_api_n2_run{j}.json").read_text()) for j in (1, 2)]
    pooled = json.loads((out / "result_gpt-xe_api_n2.json").read_text())
    # run 1: sample 1 of each question; run 2: sample 2 (an empty one is left out of its run)
    assert sum(r["S"][2] for r in runs) == pooled["S"][2] == 3
    summary = json.loads((out / "gpt-xe_api_n2_summary.json").read_text())
    assert summary["sources"]["S"]["lenient"] == pytest.approx((runs[0]["S"][0] + runs[1]["S"][0]) / 2)


def test_trust_remote_code_flag_reaches_the_hf_backend(tiny_lm_dir, tmp_path):
    (tmp_path / "e.json").write_text(json.dumps({"S": [GOOD]}))
    args = ["--model_name", str(tiny_lm_dir), "--eval_file", str(tmp_path / "e.json"), "--backend", "hf"]
    args += ["--max_new_tokens", "2", "--output_dir", str(tmp_path / "out"), "--quiet", "--trust_remote_code"]
    assert main(args) == 0
    from huatuo_o1.eval.run import make_parser

    parse = make_parser().parse_args
    assert parse(["--eval_file", "x", "--trust_remote_code"]).trust_remote_code is True
    assert parse(["--eval_file", "x", "--trust_remote_code", "False"]).trust_remote_code is False
    assert parse(["--eval_file", "x"]).trust_remote_code is False


def test_sources_picks_sources_and_names_unknown_ones(tmp_path):
    from huatuo_o1.eval.run import select_items
    from huatuo_o1.io import InputError

    items = [{**GOOD, "source": s} for s in ("A", "B", "A", "C")]
    assert [(i, it["source"]) for i, it in select_items(items, None, "A,C")] == [(1, "A"), (2, "A"), (1, "C")]
    assert [(i, it["source"]) for i, it in select_items(items, 1, "A")] == [(1, "A")]
    with pytest.raises(InputError, match="Z not in the eval file"):
        select_items(items, None, "A,Z")


def test_second_eval_with_the_same_results_name_is_refused(tmp_path):
    """Two evaluations writing the same result files: the second is refused in one line, exit 2,
    before any request (a live run holds `<cache>/<name>.run`); once it is gone the run goes on."""
    from huatuo_o1 import lock

    proc, _ = _eval(tmp_path, {"S": [GOOD]})
    assert proc.returncode == 0, proc.stderr
    name = next((tmp_path / "out").glob("result_*.json")).stem[len("result_") :]
    folder = tmp_path / "out" / ".eval_cache" / f"{name}.run"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folder.mkdir(parents=True)
        rec = {**lock.owner_record("eval"), "pid": holder.pid, "start_time": lock.start_time(holder.pid)}
        (folder / lock.LOCK_NAME).write_text(json.dumps(rec))
        proc, requests = _eval(tmp_path, {"S": [GOOD]}, "--no_resume")
        assert proc.returncode == 2 and requests == []
        assert len(proc.stderr.strip().splitlines()) == 1 and "is in use by eval" in proc.stderr
    finally:
        holder.kill()
        holder.wait()
    proc, _ = _eval(tmp_path, {"S": [GOOD]})
    assert proc.returncode == 0, proc.stderr
    assert not (folder / lock.LOCK_NAME).exists()  # released when the run ends
