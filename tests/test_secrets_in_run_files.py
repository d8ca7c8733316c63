"""No secret in any run file: RL_stage2.py with an LLM judge and its API key as a flag, reporting to
wandb (offline): the key reaches neither run_args.json, the checkpoints, the logs nor wandb's own
files (which copy the command line), while every other flag is recorded. (Credentials inside URLs
are masked the same way: tests/test_run_record.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from huatuo_o1.testing.openai_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_judge_key_never_reaches_run_or_wandb_files(tmp_path, tiny_lm_dir):
    data = tmp_path / "rl.json"
    data.write_text(json.dumps([{"Open-ended Verifiable Question": f"Q{i}?", "Ground-True Answer": f"a{i}"}
                                for i in range(6)]))  # fmt: skip
    out, wandb_dir = tmp_path / "out", tmp_path / "wandb"
    with FakeOpenAIServer(lambda req: "True") as srv:
        url = srv.url
        cmd = [sys.executable, str(ROOT / "RL_stage2.py"), "--model_name_or_path", str(tiny_lm_dir),
               "--dataset_name", str(data), "--verifier", "llm", "--judge_model", "fake", "--judge_api_url", url,
               "--judge_api_key", "sk-TOPSECRET", "--output_dir", str(out), "--run_name", "final",
               "--response_length", "8", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
               "--total_episodes", "2", "--num_ppo_epochs", "1", "--num_sample_generations", "0",
               "--report_to", "wandb", "--logging_steps", "1", "--save_strategy", "steps", "--save_steps", "1",
               "--wandb_project", "secrets-test"]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline",
               "WANDB_DIR": str(wandb_dir), "OPENAI_API_KEY": "", "WANDB_SILENT": "true"}  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        assert srv.count("/chat/completions") >= 2  # the judge was asked, with the key

    run_files = [p for p in [*out.rglob("*"), *wandb_dir.rglob("*")] if p.is_file()]
    assert any(p.name.endswith(".wandb") for p in run_files)  # wandb wrote its run file
    for p in run_files:
        blob = p.read_bytes()
        assert b"TOPSECRET" not in blob, p
    for stream in (r.stdout, r.stderr):
        assert "TOPSECRET" not in stream
    flags = json.loads((out / "run_args.json").read_text())["flags"]
    assert flags["judge_api_key"] == "***" and flags["judge_api_url"] == url
    assert (
        flags["total_episodes"] == 2
        and flags["judge_model"] == "fake"
        and flags["wandb_project"] == "secrets-test"
    )
    assert "wandb: project secrets-test, offline" in r.stderr


def test_verifier_settings_never_show_the_judge_key():
    from types import SimpleNamespace

    from huatuo_o1.rl.rewards import VerifierSettings

    flags = SimpleNamespace(
        verifier="llm", judge_model="gpt-4o", judge_api_key="sk-judge-secret-0123456789", judge_api_url=None,
        judge_max_concurrency=4, verifier_max_length=512, verifier_batch_size=2,
    )  # fmt: skip
    s = VerifierSettings.of(flags, None)
    assert s.api_key == "sk-judge-secret-0123456789" and s.max_concurrency == 4
    assert "sk-judge" not in repr(s)
