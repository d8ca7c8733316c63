"""evaluation/eval.py against a real vLLM server on the embedded model: the completions path with
the chat template applied here (--tokenizer), the chat API, several samples per question, and
replies cut at --max_new_tokens kept and scored as they are. No --seed: a seeded request stops the
engine of vLLM's CPU build."""

from __future__ import annotations

import json

from tests.helpers import REPO, run_script

EVAL_FILE = REPO / "evaluation" / "data" / "eval_sample.json"
SOURCES = json.loads(EVAL_FILE.read_text())
LIMIT = 2


def _eval(vllm, model_dir, out, *extra):
    r = run_script(
        "evaluation/eval.py",
        "--model_name", model_dir, "--eval_file", EVAL_FILE, "--api_url", vllm.url,
        "--served_model_name", vllm.served_name, "--limit_num", LIMIT, "--output_dir", out, "--quiet",
        *extra,
        timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    [summary] = [p for p in out.glob("*_summary.json")]
    [records] = [
        p
        for p in out.glob("*.json")
        if not p.name.endswith("_summary.json") and not p.name.startswith("result_")
    ]
    assert not list(out.glob("*partial*")), "a complete run leaves no partial file"
    return json.loads(summary.read_text()), json.loads(records.read_text()), r


def test_completions_with_the_client_side_chat_template(vllm, default_model_dir, tmp_path):
    summary, records, _ = _eval(
        vllm, default_model_dir, tmp_path, "--tokenizer", default_model_dir, "--max_new_tokens", 48
    )
    assert set(summary["sources"]) == set(SOURCES)
    assert all(s["count"] == min(LIMIT, len(SOURCES[k])) for k, s in summary["sources"].items())
    assert len(records) == sum(min(LIMIT, len(v)) for v in SOURCES.values())
    assert all(isinstance(r["output"], str) and r["output"].strip() and "error" not in r for r in records)


def test_chat_api_with_three_samples(vllm, default_model_dir, tmp_path):
    summary, records, _ = _eval(
        vllm, default_model_dir, tmp_path, "--use_chat_api", "--n_samples", 3, "--max_new_tokens", 32,
        "--temperature", 0.8,
    )  # fmt: skip
    assert set(summary["sources"]) == set(SOURCES)
    for r in records:
        assert len(r["samples"]) == 3 and all(isinstance(s["output"], str) for s in r["samples"])
        assert "error" not in r
    stats = next(iter(summary["sources"].values()))["strict_samples"]
    assert {"mean", "maj@3", "pass@3"} <= set(stats)


def test_replies_cut_at_max_new_tokens_are_kept_and_scored(vllm, default_model_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_model_dir)
    summary, records, _ = _eval(
        vllm, default_model_dir, tmp_path, "--tokenizer", default_model_dir, "--max_new_tokens", 3
    )
    # every question answered (cut, not failed): in the table, with at most 3 tokens of output
    assert sum(s["count"] for s in summary["sources"].values()) == len(records)
    assert all(r["output"].strip() and "error" not in r for r in records)
    assert all(len(tok(r["output"], add_special_tokens=False)["input_ids"]) <= 4 for r in records)
