"""Hostile-user findings: outputs that are inputs, truncated or odd replies, content-keyed items,
SIGTERM, path flags. Offline, against the loopback server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from huatuo_o1.datagen import construct, decontam, search, stage1_split
from huatuo_o1.io import InputError
from huatuo_o1.testing import search as sm
from huatuo_o1.testing.openai_server import FakeOpenAIServer
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
