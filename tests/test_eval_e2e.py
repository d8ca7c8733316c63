"""evaluation/eval.py end to end: a loopback OpenAI-protocol server with scripted outputs, the hf backend."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from huatuo_o1.eval_run import main
from huatuo_o1.testing import FakeOpenAIServer, FakeResponse

ROOT = Path(__file__).resolve().parents[1]

EVAL = {
    "SrcA": [
        {
            "question": "Q1 anticoagulant at once?",
            "options": {"A": "Aspirin", "B": "Heparin", "C": "Warfarin"},
            "answer_idx": "B",
        },
        {
            "question": "Q2 oral vitamin K antagonist?",
            "options": {"A": "Aspirin", "B": "Heparin", "C": "Warfarin"},
            "answer_idx": "C",
        },
        {"question": "Q3 empty reply?", "options": {"A": "Aspirin", "B": "Heparin"}, "answer_idx": "A"},
        {"question": "Q4 hedged?", "options": {"A": "Aspirin", "B": "Heparin"}, "answer_idx": "A"},
    ],
    "SrcB": [
        {"question": "Q5 hormone?", "options": {"A": "Insulin", "B": "Glucagon"}, "answer_idx": "A"},
        {"question": "Q6 text only?", "options": {"A": "Insulin", "B": "Glucagon"}, "answer_idx": "B"},
    ],
}
SCRIPT = {
    "Q1": "## Thinking\n\nA? no.\n\n## Final Response\n\nThe answer is B.",  # right (strict)
    "Q2": "The answer is A.",  # wrong
    "Q3": "",  # empty: wrong, unanswered, kept
    "Q4": "The answer is B. Hmm, the answer is A.",  # first wrong, last right
    "Q5": "**A**",  # right (strict)
    "Q6": "I would give glucagon.",  # right by option text: lenient only
}


def responder(req):
    for key, text in SCRIPT.items():
        if key + " " in req.prompt:
            return text
    return FakeResponse(status=500, error="unscripted")


@pytest.fixture()
def eval_file(tmp_path):
    p = tmp_path / "mini_eval.json"
    p.write_text(json.dumps(EVAL))
    return p


def _args(eval_file, out, model, *extra):
    return [
        "--model_name",
        str(model),
        "--eval_file",
        str(eval_file),
        "--output_dir",
        str(out),
        "--quiet",
        *extra,
    ]


def test_server_backend_scores_per_source_and_resumes(tiny_lm_dir, eval_file, tmp_path):
    out = tmp_path / "out"
    with FakeOpenAIServer(responder) as srv:
        assert main(_args(eval_file, out, tiny_lm_dir, "--port", str(srv.port))) == 0
        posts = [r for r in srv.requests if r.path.endswith("/completions")]
        assert len(posts) == 6 and all(r.path.endswith("/v1/completions") for r in posts)
        body = posts[0].body
        # the original's defaults, prompt chat-templated locally
        assert body["temperature"] == 0.5 and body["top_p"] == 0.9 and body["max_tokens"] == 2000
        assert body["model"] == "fake-model"  # the id the server reports on /v1/models
        assert body["prompt"].startswith(
            "<|im_start|>user\nPlease answer the following multiple-choice question:\n"
        )
        assert (
            body["prompt"].endswith("<|im_end|>\n<|im_start|>assistant\n")
            and "\nA. Aspirin\nB. Heparin" in body["prompt"]
        )

        name = f"{Path(tiny_lm_dir).name}_mini_eval_api"
        records = json.loads((out / f"{name}.json").read_text())
        summary = json.loads((out / f"result_{name}.json").read_text())
        assert len(records) == 6 and [r["question"][:2] for r in records] == [
            "Q1",
            "Q2",
            "Q3",
            "Q4",
            "Q5",
            "Q6",
        ]
        q3 = records[2]
        assert q3["output"] == "" and q3["ans_type"] == 0 and not q3["correct_last"]  # empty kept, wrong
        a, b = summary["sources"]["SrcA"], summary["sources"]["SrcB"]
        assert (a["count"], a["first"], a["last"], a["lenient"], a["strict"], a["unanswered"]) == (
            4,
            0.25,
            0.5,
            0.5,
            0.5,
            0.25,
        )
        assert (b["count"], b["lenient"], b["strict"], b["unanswered"]) == (2, 1.0, 0.5, 0.5)
        assert summary["missing"] == 0 and summary["overall"]["count"] == 6

        # rerun: everything comes from the cache, no new request
        n_before = len(srv.requests)
        assert main(_args(eval_file, out, tiny_lm_dir, "--port", str(srv.port))) == 0
        assert len(srv.requests) == n_before
        # a setting that changes outputs (strict prompt) does not reuse the cache, and names its file
        assert (
            main(
                _args(
                    eval_file,
                    out,
                    tiny_lm_dir,
                    "--port",
                    str(srv.port),
                    "--strict_prompt",
                    "--temperature",
                    "0",
                )
            )
            == 0
        )
        new = [r for r in srv.requests[n_before:] if r.path.endswith("/completions")]
        assert (
            len(new) == 6
            and "'The answer is A.'" in new[0].body["prompt"]
            and new[0].body["temperature"] == 0
        )
        assert (out / f"{name}_strict-prompt.json").exists()


def test_failed_requests_are_retried_on_rerun(tiny_lm_dir, eval_file, tmp_path):
    out = tmp_path / "out"
    flaky = {"on": True}

    def resp(req):
        if flaky["on"] and "Q2 " in req.prompt:
            return FakeResponse(status=503)
        return responder(req)

    with FakeOpenAIServer(resp) as srv:
        args = _args(eval_file, out, tiny_lm_dir, "--port", str(srv.port), "--max_retries", "0")
        assert main(args) == 1  # one question failed: reported, the others saved
        flaky["on"] = False
        n = len(srv.requests)
        assert main(args) == 0
        assert len([r for r in srv.requests[n:] if r.path.endswith("/completions")]) == 1


def test_chat_api_and_n_samples(eval_file, tmp_path):
    out = tmp_path / "out"

    def resp(req):
        assert req.n == 3
        return ["The answer is A.", "The answer is B.", "The answer is B."]

    with FakeOpenAIServer(resp) as srv:
        args = _args(
            eval_file, out, "gpt-x", "--api_url", srv.url, "--use_chat_api", "--n_samples", "3", "--seed", "7"
        )
        assert main(args) == 0
        assert all(
            r.path.endswith("/chat/completions") for r in srv.requests if r.path.endswith("completions")
        )
        body = next(r.body for r in srv.requests if r.path.endswith("completions"))
        assert body["model"] == "gpt-x" and body["seed"] == 7
        assert body["messages"][0]["content"].startswith(
            "Please answer the following multiple-choice question:"
        )
    summary = json.loads((out / "result_gpt-x_mini_eval_api_n3.json").read_text())
    a = summary["sources"]["SrcA"]["strict_samples"]
    # SrcA gold: B, C, A, A -> per-question accuracy 2/3, 0, 1/3, 1/3; maj (B) right only for Q1
    assert a["mean"] == pytest.approx((2 / 3 + 0 + 1 / 3 + 1 / 3) / 4)
    assert a["maj@3"] == 0.25 and a["pass@3"] == 0.75


@pytest.mark.parametrize(
    "data, message",
    [
        ("{not json", "not valid JSON"),
        ({"SrcZ": [{"question": "q", "answer_idx": "A"}]}, "source 'SrcZ' item 1 has no options"),
        ({"SrcZ": [{"question": "q", "options": {"A": "x"}}]}, "source 'SrcZ' item 1 has no answer_idx"),
        (
            [
                {"question": "q", "options": {"A": "x"}, "answer_idx": "A"},
                {"question": "q", "options": {"A": "x", "B": "y"}, "answer_idx": "E"},
            ],
            "source 'normal' item 2: answer_idx 'E' is not one of the options",
        ),
    ],
)
def test_malformed_eval_file_exits_2_before_any_request(tmp_path, data, message):
    p = tmp_path / "bad.json"
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    with FakeOpenAIServer(lambda r: "The answer is A.") as srv:
        proc = subprocess.run(
            [
                sys.executable,
                str(ROOT / "evaluation/eval.py"),
                "--model_name",
                "m",
                "--eval_file",
                str(p),
                "--port",
                str(srv.port),
                "--output_dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert srv.requests == []


def test_no_server_is_a_clear_error(tiny_lm_dir, eval_file, tmp_path):
    from huatuo_o1.io import InputError

    with FakeOpenAIServer() as srv:
        port = srv.port  # a port that is closed once the server stops
    with pytest.raises(InputError, match="no OpenAI-compatible server answers"):
        main(_args(eval_file, tmp_path, tiny_lm_dir, "--port", str(port)))


def test_hf_backend_with_tiny_model(tiny_lm_dir, eval_file, tmp_path):
    out = tmp_path / "out"
    args = _args(
        eval_file,
        out,
        tiny_lm_dir,
        "--backend",
        "hf",
        "--max_new_tokens",
        "4",
        "--batch_size",
        "4",
        "--seed",
        "0",
        "--limit_num",
        "2",
    )
    assert main(args) == 0
    name = f"{Path(tiny_lm_dir).name}_mini_eval_api"
    records = json.loads((out / f"{name}.json").read_text())
    assert len(records) == 4 and all(isinstance(r["output"], str) and "ans" in r for r in records)
    summary = json.loads((out / f"result_{name}.json").read_text())
    assert summary["sources"]["SrcA"]["count"] == 2 and summary["sources"]["SrcB"]["count"] == 2
    assert main(args) == 0  # resumed: nothing to generate, same records
    assert json.loads((out / f"{name}.json").read_text()) == records
