"""The Batch API files against a consumer we did not write: stage 1 with --batch_api sends its
request JSONL to a Batch API whose batches vLLM's own batch runner (run_batch) answers, and our
batch reader takes its output file back into kept records. Structured outputs included: each line
carries its JSON schema, and run_batch's engine follows it."""

from __future__ import annotations

import json
import os

from huatuo_o1.prompts import REWRITE_SCHEMA
from tests.helpers import REPO, run_script
from tests.vllm_real.batch_shim import RunBatchShim

DEMO = REPO / "data" / "demo_data.json"


def test_stage1_batch_files_through_vllm_run_batch(vllm, default_model_dir, tmp_path):
    # (the session's server is not used here: run_batch starts its own engine, as it would offline)
    out = tmp_path / "out"
    with RunBatchShim(os.environ["HUATUO_VLLM_PYTHON"], default_model_dir, tmp_path / "batch_api") as shim:
        r = run_script(
            "construct_verifiable_medical_problems.py", "--data_path", DEMO, "--limit_num", 3,
            "--max_tries", 1, "--model_name", vllm.served_name, "--api_url", shim.url,
            "--output_dir", out, "--batch_api", "True", "--batch_poll_interval", 1,
            timeout=600,
        )  # fmt: skip
        logs = "\n".join(
            p.read_text(errors="replace")[-3000:] for p in (tmp_path / "batch_api").glob("*.log")
        )
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:] + logs
        assert len(shim.runs) == 1  # one round: the three rewrites in one batch
        [(sent, answered)] = shim.runs
    lines = [json.loads(x) for x in sent.read_text().splitlines()]
    assert len(lines) == 3 and all(x["url"] == "/v1/chat/completions" for x in lines)
    assert all(x["body"]["response_format"]["json_schema"] == REWRITE_SCHEMA for x in lines)
    results = [json.loads(x) for x in answered.read_text().splitlines()]
    assert {x["custom_id"] for x in results} == {x["custom_id"] for x in lines}
    # read back by our reader: every item kept from run_batch's replies, their usage counted
    [summary_path] = out.glob("demo_data_verifiable*_summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["kept"] == 3 and summary["failed"] == 0, summary
    assert summary["usage"]["requests"] == 3 and summary["usage"]["completion_tokens"] > 0
    assert summary["batch_api"]["batches_submitted"] == 1
