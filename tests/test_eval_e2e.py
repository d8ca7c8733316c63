"""evaluation/eval.py end to end: a loopback OpenAI-protocol server with scripted outputs, the hf backend."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from huatuo_o1.eval.run import main
from huatuo_o1.testing.openai_server import FakeOpenAIServer, FakeResponse

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

        name = f"{Path(tiny_lm_dir).name}mini_eval_api"  # the original's name: no separator
        records = json.loads((out / f"{name}.json").read_text())
        summary = json.loads((out / f"{name}_summary.json").read_text())
        # result_<name>.json keeps the original's layout: {source: [score, first, count, last]},
        # and its numbers: the empty output of Q3 is left out, as the original dropped it
        assert json.loads((out / f"result_{name}.json").read_text()) == {
            "SrcA": [2 / 3, 1, 3, 2],
            "SrcB": [1.0, 2, 2, 2],
        }
        assert len(records) == 6 and [r["question"][:2] for r in records] == [
            "Q1",
            "Q2",
            "Q3",
            "Q4",
            "Q5",
            "Q6",
        ]
        q3 = records[2]
        # empty: kept in the results file, left out of the original layout, wrong in ours
        assert q3["output"] == "" and q3["ans_type"] == 0 and q3["dropped_by_original"]
        assert not q3["correct_last"] and not q3["fixed_correct_last"]
        # the original's ans_type numbering (1 letter, 2 option text) beside our finer step
        assert (records[4]["ans_type"], records[4]["ans_step"]) == (1, 2)
        assert (records[5]["ans_type"], records[5]["ans_step"]) == (2, 3)
        a, b = summary["sources"]["SrcA"], summary["sources"]["SrcB"]
        assert (a["count"], a["lenient"], a["dropped"], a["score_list"]) == (4, 2 / 3, 1, [2 / 3, 1, 3, 2])
        assert (a["fixed_first"], a["fixed_last"], a["fixed_lenient"], a["strict"], a["unanswered"]) == (
            0.25,
            0.5,
            0.5,
            0.5,
            0.25,
        )
        assert (b["count"], b["lenient"], b["fixed_lenient"], b["strict"], b["unanswered"]) == (
            2,
            1.0,
            1.0,
            0.5,
            0.5,
        )
        assert summary["missing"] == 0 and summary["overall"]["count"] == 6
        # which file was scored: not the paper's
        assert summary["eval_file"]["is_paper_file"] is False
        assert len(summary["eval_file"]["git_blob_id"]) == 40 and "lenient" in summary["columns"]

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
    by_seed = {7: "The answer is A.", 8: "The answer is B.", 9: "The answer is B."}

    def resp(req):  # --seed with k samples: k requests seeded seed, seed+1, ...
        assert req.n == 1
        return by_seed[req.body["seed"]]

    with FakeOpenAIServer(resp) as srv:
        args = _args(
            eval_file, out, "gpt-x", "--api_url", srv.url, "--use_chat_api", "--n_samples", "3", "--seed", "7"
        )
        assert main(args) == 0
        assert all(
            r.path.endswith("/chat/completions") for r in srv.requests if r.path.endswith("completions")
        )
        bodies = [r.body for r in srv.requests if r.path.endswith("completions")]
        assert len(bodies) == 18 and sorted({b["seed"] for b in bodies}) == [7, 8, 9]
        assert bodies[0]["model"] == "gpt-x"
        assert bodies[0]["messages"][0]["content"].startswith(
            "Please answer the following multiple-choice question:"
        )
    # without --seed: one request per question asking for n=3
    with FakeOpenAIServer(lambda req: ["The answer is A."] * req.n) as srv:
        args = _args(eval_file, tmp_path / "out2", "gpt-x", "--api_url", srv.url, "--use_chat_api")
        assert main([*args, "--n_samples", "3"]) == 0
        bodies = [r.body for r in srv.requests if r.path.endswith("completions")]
        assert len(bodies) == 6 and all(b["n"] == 3 and "seed" not in b for b in bodies)
    summary = json.loads((out / "gpt-xmini_eval_api_n3_summary.json").read_text())
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
            {"SrcZ": [{"question": "q", "options": {"A": "x"}, "answer_idx": "A"}, {"options": {"A": "x"}}]},
            "source 'SrcZ' item 2 has no question",
        ),
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
    name = f"{Path(tiny_lm_dir).name}mini_eval_api"
    records = json.loads((out / f"{name}.json").read_text())
    assert len(records) == 4 and all(isinstance(r["output"], str) and "ans" in r for r in records)
    summary = json.loads((out / f"{name}_summary.json").read_text())
    assert summary["sources"]["SrcA"]["count"] == 2 and summary["sources"]["SrcB"]["count"] == 2
    assert main(args) == 0  # resumed: nothing to generate, same records
    assert json.loads((out / f"{name}.json").read_text()) == records
    # the same seed without resume generates again and gives identical records
    (out / f"{name}.json").unlink()
    assert main([*args, "--no_resume"]) == 0
    assert json.loads((out / f"{name}.json").read_text()) == records


def _completions(srv, since=0):
    return [r for r in srv.requests[since:] if r.path.endswith("/completions")]


def test_edited_answer_idx_is_rescored_without_requests(tiny_lm_dir, eval_file, tmp_path):
    out = tmp_path / "out"
    name = f"{Path(tiny_lm_dir).name}mini_eval_api"
    with FakeOpenAIServer(responder) as srv:
        args = _args(eval_file, out, tiny_lm_dir, "--port", str(srv.port))
        assert main(args) == 0
        assert json.loads((out / f"result_{name}.json").read_text())["SrcA"][0] == 2 / 3
        data = json.loads(eval_file.read_text())
        data["SrcA"][1]["answer_idx"] = "A"  # Q2's output "The answer is A." is now right
        eval_file.write_text(json.dumps(data))
        n = len(srv.requests)
        assert main(args) == 0
        assert _completions(srv, n) == []  # same prompts: cached outputs, scored anew
        records = json.loads((out / f"{name}.json").read_text())
        assert records[1]["answer_idx"] == "A" and records[1]["correct_last"]
        assert json.loads((out / f"result_{name}.json").read_text())["SrcA"] == [1.0, 2, 3, 3]
        data["SrcA"][1]["question"] = "Q2 oral vitamin K antagonist, edited?"  # prompt changed
        eval_file.write_text(json.dumps(data))
        n = len(srv.requests)
        assert main(args) == 0
        assert len(_completions(srv, n)) == 1


def test_item_ids_do_not_shift_with_limit_num(tiny_lm_dir, eval_file, tmp_path):
    out = tmp_path / "out"
    name = f"{Path(tiny_lm_dir).name}mini_eval_api"
    with FakeOpenAIServer(responder) as srv:
        assert main(_args(eval_file, out, tiny_lm_dir, "--port", str(srv.port), "--limit_num", "1")) == 0
        first = {r["item_id"] for r in json.loads((out / f"{name}.json").read_text())}
        assert len(_completions(srv)) == 2
        n = len(srv.requests)
        assert main(_args(eval_file, out, tiny_lm_dir, "--port", str(srv.port))) == 0
        assert len(_completions(srv, n)) == 4  # only the questions not done with --limit_num 1
        full = [r["item_id"] for r in json.loads((out / f"{name}.json").read_text())]
        assert first == {full[0], full[4]} and full[0].startswith("1-") and full[4].startswith("1-")


def test_changed_model_weights_are_not_served_from_the_cache(tiny_lm_dir, eval_file, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_lm_dir, model)
    out = tmp_path / "out"
    with FakeOpenAIServer(responder) as srv:
        args = _args(eval_file, out, model, "--port", str(srv.port), "--limit_num", "1")
        assert main(args) == 0
        n = len(srv.requests)
        weights = next(p for p in model.iterdir() if p.suffix in (".safetensors", ".bin"))
        st = weights.stat()
        os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # retrained in place
        assert main(args) == 0
        assert len(_completions(srv, n)) == 2


def test_a_rejected_prompt_is_saved_wrong_and_the_run_goes_on(tiny_lm_dir, eval_file, tmp_path):
    out = tmp_path / "out"
    name = f"{Path(tiny_lm_dir).name}mini_eval_api"

    def resp(req):
        if "Q4 " in req.prompt:
            return FakeResponse(status=400, error="prompt too long", code="context_length_exceeded")
        return responder(req)

    with FakeOpenAIServer(resp) as srv:
        assert main(_args(eval_file, out, tiny_lm_dir, "--port", str(srv.port), "--max_retries", "0")) == 0
        records = json.loads((out / f"{name}.json").read_text())
        q4 = records[3]
        assert q4["output"] == "" and not q4["correct_last"] and q4["strict_ans"] is None
        assert "context_length_exceeded" in q4["error"] and "--max_tokens" in q4["error"]
        summary = json.loads((out / f"{name}_summary.json").read_text())
        assert [r["item_id"] for r in summary["rejected"]] == [q4["item_id"]]
        assert summary["sources"]["SrcA"]["count"] == 4 and summary["sources"]["SrcA"]["unanswered"] == 0.5
        n = len(srv.requests)
        assert main(_args(eval_file, out, tiny_lm_dir, "--port", str(srv.port))) == 0
        assert _completions(srv, n) == []  # saved: a rerun does not ask again


def test_a_bad_key_still_stops_the_run(tiny_lm_dir, eval_file, tmp_path):
    from huatuo_o1.llm import FatalAPIError

    with FakeOpenAIServer(lambda r: FakeResponse(status=401, error="bad key")) as srv:
        with pytest.raises(FatalAPIError):
            main(_args(eval_file, tmp_path, tiny_lm_dir, "--port", str(srv.port)))


def test_hf_batched_greedy_equals_one_at_a_time_and_copies_greedy_samples(tiny_lm_dir):
    from huatuo_o1.generation import HFGenerator, load_tokenizer

    tok = load_tokenizer(str(tiny_lm_dir))
    gen = HFGenerator(str(tiny_lm_dir), tok, device="cpu", dtype="float32")
    prompts = [
        "<|im_start|>user\nshort<|im_end|>\n",
        "<|im_start|>user\na much longer prompt here, padded<|im_end|>\n",
    ]
    batched = gen.generate(prompts, 2, 6, 0.0, 0.9)
    single = [gen.generate([p], 1, 6, 0.0, 0.9)[0] for p in prompts]
    assert [b[0] for b in batched] == [s[0] for s in single]
    assert all(len(b) == 2 and b[0] == b[1] for b in batched)  # greedy: one decode, copied


def test_api_key_reaches_the_server_but_no_file_or_output(tiny_lm_dir, eval_file, tmp_path, capsys):
    key = "sk-fake-eval-key-0123456789"
    out = tmp_path / "out"
    with FakeOpenAIServer(responder) as srv:
        assert main(_args(eval_file, out, tiny_lm_dir, "--api_url", srv.url, "--api_key", key)) == 0
        assert all(r.headers.get("authorization") == f"Bearer {key}" for r in srv.requests)
    captured = capsys.readouterr()
    assert key not in captured.out + captured.err
    files = [f for f in out.rglob("*") if f.is_file()]
    assert files and not any(key in f.read_text(errors="ignore") for f in files)
