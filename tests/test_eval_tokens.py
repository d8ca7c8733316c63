"""Generated tokens in the evaluation summary: from the server's usage, else the tokenizer, else not counted."""

from __future__ import annotations

import json

from huatuo_o1.eval.run import main
from huatuo_o1.eval.tokens import generated_tokens, output_lengths
from huatuo_o1.testing.openai_server import FakeOpenAIServer, FakeResponse

EVAL = {
    "SrcA": [
        {"question": "Q1 drug?", "options": {"A": "Aspirin", "B": "Heparin"}, "answer_idx": "A"},
        {"question": "Q2 drug?", "options": {"A": "Aspirin", "B": "Heparin"}, "answer_idx": "B"},
    ],
    "SrcB": [{"question": "Q3 hormone?", "options": {"A": "Insulin", "B": "Glucagon"}, "answer_idx": "A"}],
}
TEXTS = {
    "Q1": "The answer is A.",
    "Q2": "## Thinking\n\nLong reasoning here.\n\n## Final Response\n\nB",
    "Q3": "A",
}


def text_for(req) -> str:
    return next(t for k, t in TEXTS.items() if k + " " in req.prompt)


def no_usage(req):
    text = text_for(req)
    if req.path.endswith("/chat/completions"):
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    else:
        choice = {"index": 0, "text": text, "finish_reason": "stop"}
    return FakeResponse(body={"id": "x", "object": "text_completion", "model": "m", "choices": [choice]})


def run_eval(tmp_path, model, responder, *extra) -> dict:
    eval_file = tmp_path / "e.json"
    eval_file.write_text(json.dumps(EVAL))
    out = tmp_path / "out"
    with FakeOpenAIServer(responder) as srv:
        argv = ["--model_name", str(model), "--eval_file", str(eval_file), "--output_dir", str(out), "--quiet",
                "--api_url", srv.url, *extra]  # fmt: skip
        assert main(argv) == 0
    (summary,) = out.glob("*_summary.json")
    return json.loads(summary.read_text())["generated_tokens"]


def test_counts_from_the_server_usage(tiny_lm_dir, tmp_path, capsys):
    tokens = run_eval(tmp_path, tiny_lm_dir, text_for)
    n = {k: max(1, len(t) // 4) for k, t in TEXTS.items()}  # what the loopback server reports
    assert tokens["counted_from"] == {"server_usage": 3}
    assert tokens["sources"]["SrcA"] == {
        "outputs": 2,
        "mean": (n["Q1"] + n["Q2"]) / 2,
        "median": (n["Q1"] + n["Q2"]) / 2,
    }
    assert tokens["sources"]["SrcB"] == {"outputs": 1, "mean": float(n["Q3"]), "median": float(n["Q3"])}
    assert tokens["overall"]["outputs"] == 3 and tokens["overall"]["median"] == float(n["Q1"])
    assert "generated tokens per output: mean" in capsys.readouterr().out


def test_without_usage_the_tokenizer_counts(tiny_lm_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    tokens = run_eval(tmp_path, tiny_lm_dir, no_usage)
    assert tokens["counted_from"] == {"tokenizer": 3}
    assert tokens["sources"]["SrcB"]["mean"] == len(tok("A", add_special_tokens=False)["input_ids"])


def test_without_usage_or_tokenizer_it_says_not_counted(tmp_path, capsys):
    tokens = run_eval(tmp_path, "gpt-x", no_usage, "--use_chat_api")
    assert tokens == {
        "counted_from": {"not_counted": 3},
        "note": "not counted: the server reported no usage and no tokenizer was available",
    }
    assert "generated tokens: not counted" in capsys.readouterr().out


def test_k_samples_share_the_reported_sum_and_rejected_questions_are_left_out():
    assert output_lengths(["a", "b"], {"completion_tokens": 9}) == ([4.5, 4.5], "server_usage")
    records = [{"item_id": "1", "source": "S"}, {"item_id": "2", "source": "S", "error": "too long"}]
    cached = {"1": {"outputs": ["a", "b"], "api_usage": {"completion_tokens": 10}}, "2": {"outputs": [""]}}
    got = generated_tokens(records, cached)
    assert got["overall"] == {"outputs": 2, "mean": 5.0, "median": 5.0}
