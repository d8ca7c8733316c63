"""The API stages with an open teacher: stage 1 -> stage 2 -> SFT records against a real vLLM
server on the embedded model, with structured outputs; and the DPO pair maker's server backend
(sampling from the server, the LLM judge on the same server). A 135M model's quality, but every
reply is a real engine's, constrained by our schemas."""

from __future__ import annotations

import json

import pytest

from huatuo_o1.contract import SFT_COT, SFT_QUESTION, SFT_RESPONSE
from tests.helpers import REPO, run_script

DEMO = REPO / "data" / "demo_data.json"


def _summary(out, stem: str) -> dict:
    [path] = out.glob(f"{stem}*_summary.json")
    return json.loads(path.read_text())


def test_stage1_stage2_sft_records_with_structured_outputs(vllm, default_model_dir, tmp_path):
    from huatuo_o1.train.sft_data import load_sft_records, tokenize_records

    out = tmp_path / "out"
    r = run_script(
        "construct_verifiable_medical_problems.py", "--data_path", DEMO, "--filter_data",
        "--limit_num", 6, "--model_name", vllm.served_name, "--api_url", vllm.url,
        "--output_dir", out, "--structured_outputs", "on", "--num_process", 6, "--max_tokens", 400,
        timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    s1 = _summary(out, "demo_data_verifiable")
    # with schemas every filter and rewrite reply parses: nothing fails, something is kept
    assert s1["failed"] == 0 and s1["kept"] >= 1, s1
    [stage1] = out.glob("demo_data_verifiable_final_*[0-9].json")

    r = run_script(
        "search_for_complex_reasoning_path.py", "--data_path", stage1, "--limit_num", 1,
        "--max_search_depth", 0, "--max_tokens", 1200, "--model_name", vllm.served_name,
        "--api_url", vllm.url, "--output_dir", out, "--structured_outputs", "on",
        timeout=600,
    )  # fmt: skip
    if r.returncode == 1 and "cut at max_tokens" in r.stderr and "1 item(s) failed" in r.stdout:
        # vLLM's CPU build takes no seed, so the 135M teacher's sampling differs run to run: a reply
        # that rambles past --max_tokens on every try fails its item, which the stage reports with
        # exit 1 and keeps for a rerun, as documented; there is then no record to check
        pytest.skip("the teacher's stage-2 replies were cut at --max_tokens on every try (unseeded sampling)")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    [sft] = [p for p in out.glob("*_CoT_search_final_*.json") if not p.name.endswith("_summary.json")]
    records = load_sft_records(str(sft))
    assert len(records) == 1 and all(records[0][k].strip() for k in (SFT_QUESTION, SFT_COT, SFT_RESPONSE))
    assert "\n" in records[0][SFT_COT]  # the natural thinking, one thought per line
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_model_dir)
    tokenized, stats = tokenize_records(tok, records, max_seq_len=2048)
    assert len(tokenized) == 1 and any(x != -100 for x in tokenized[0]["labels"])


def test_dpo_pairs_from_the_server_backend_and_its_llm_judge(vllm, default_model_dir, tmp_path):
    from huatuo_o1.contract import GROUND_TRUTH, OPEN_QUESTION

    data = tmp_path / "problems.json"
    rows = [
        {OPEN_QUESTION: "Which vitamin deficiency causes scurvy?", GROUND_TRUTH: "Vitamin C"},
        {OPEN_QUESTION: "Which organ makes insulin?", GROUND_TRUTH: "The pancreas"},
    ]
    data.write_text(json.dumps(rows))
    out = tmp_path / "pairs.jsonl"
    r = run_script(
        "scripts/make_dpo_pairs.py", "--model_path", default_model_dir, "--data_path", data,
        "--output", out, "--backend", "server", "--api_url", vllm.url,
        "--served_model_name", vllm.served_name, "--n_samples", 3, "--max_new_tokens", 24,
        "--seed", "None", "--sft_target", "response", "--verifier", "llm", "--judge_model", vllm.served_name,
        "--judge_api_url", vllm.url, "--structured_outputs", "on",
        timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    summary = json.loads((tmp_path / "pairs.jsonl.summary.json").read_text())
    assert summary["questions"] == 2 and summary.get("not_sampled", 0) == 0, summary
    samples = [json.loads(p.read_text()) for p in tmp_path.glob("pairs.jsonl.samples/*/*.json")]
    assert len(samples) == 2 and all(len(s["outputs"]) == 3 for s in samples)
    verdicts = [json.loads(p.read_text()) for p in tmp_path.glob("pairs.jsonl.samples/*/verdicts/*/*.json")]
    assert len(verdicts) == 2 and all(len(v["correct"]) == 3 for v in verdicts)
    for line in out.read_text().splitlines():  # whatever pairs the judge allowed are well formed
        pair = json.loads(line)
        assert pair["chosen"] != pair["rejected"]
