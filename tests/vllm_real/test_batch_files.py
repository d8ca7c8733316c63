"""The Batch API files against a consumer we did not write: evaluation with --batch_api sends its
request JSONL to a Batch API whose batches vLLM's own batch runner (run_batch) answers, and our
batch reader takes the output file back into scored records. (Evaluation keeps a reply cut at
max_tokens, so the run is one batch; a stage would ask a cut reply again in a second one.)"""

from __future__ import annotations

import json
import os

from huatuo_o1.generation import clean_output
from tests.helpers import REPO, run_script
from tests.vllm_real.batch_shim import RunBatchShim

EVAL_FILE = REPO / "evaluation" / "data" / "eval_sample.json"
SOURCES = json.loads(EVAL_FILE.read_text())


def test_eval_batch_files_through_vllm_run_batch(vllm, default_model_dir, tmp_path):
    # run_batch starts its own engine, as it would offline; the session's server is not asked
    out = tmp_path / "out"
    with RunBatchShim(os.environ["HUATUO_VLLM_PYTHON"], default_model_dir, tmp_path / "batch_api") as shim:
        r = run_script(
            "evaluation/eval.py", "--model_name", default_model_dir, "--eval_file", EVAL_FILE,
            "--api_url", shim.url, "--served_model_name", vllm.served_name, "--use_chat_api",
            "--limit_num", 1, "--max_new_tokens", 16, "--output_dir", out, "--quiet",
            "--batch_api", "True", "--batch_poll_interval", 1,
            timeout=600,
        )  # fmt: skip
        logs = "\n".join(
            p.read_text(errors="replace")[-3000:] for p in (tmp_path / "batch_api").glob("*.log")
        )
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:] + logs
        assert len(shim.runs) == 1, shim.runs  # one batch: every question's request in one file
        [(sent, answered)] = shim.runs
    lines = [json.loads(x) for x in sent.read_text().splitlines()]
    assert len(lines) == len(SOURCES) and all(x["url"] == "/v1/chat/completions" for x in lines)
    assert all(x["method"] == "POST" and x["body"]["max_tokens"] == 16 for x in lines)
    results = [json.loads(x) for x in answered.read_text().splitlines()]
    assert sorted(x["custom_id"] for x in results) == sorted(x["custom_id"] for x in lines)
    assert all(x["response"]["status_code"] == 200 for x in results)
    # read back by our reader: every question scored from run_batch's replies
    [records_path] = [
        p
        for p in out.glob("*.json")
        if not p.name.endswith("_summary.json") and not p.name.startswith("result_")
    ]
    records = json.loads(records_path.read_text())
    assert len(records) == len(SOURCES) and all("error" not in x for x in records)
    replies = {clean_output(x["response"]["body"]["choices"][0]["message"]["content"]) for x in results}
    assert {x["output"] for x in records} == replies
