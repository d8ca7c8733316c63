"""The ablation trainers as users run them: RL_stage2_dpo.py and RL_stage2_rloo.py under the real
`accelerate launch` with the shipped one-process CPU config, tiny models, two optimizer steps.

Each run saves at step 1 and stops (--max_steps 1); the same command with --max_steps 2 resumes
from checkpoint-1 (weights, optimizer, scheduler, data position) rather than starting over: the
launch says so, checkpoint-2 holds global step 2, and its log history keeps step 1's entry from the
first launch (a fresh 2-step run logs step 1 again, with a 2-step schedule's learning rate). A rerun
with another learning rate is refused (one line, exit 2) instead of continuing a run made with other
settings. Both also train one step under the recipes' DeepSpeed ZeRO-3 config.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from huatuo_o1.io import InputError
from huatuo_o1.rl import dpo, rloo
from tests.test_launch import assert_loadable, global_step, launch, write_json

pytestmark = pytest.mark.slow
CPU = "cpu_single_process.yaml"


def log_history(ckpt: Path) -> list[dict]:
    return json.loads((ckpt / "trainer_state.json").read_text())["log_history"]


def check_resumed(out: Path, first_stderr: str, second_stderr: str, loss_key: str) -> None:
    assert "resuming from" not in first_stderr
    assert f"resuming from {out / 'checkpoint-1'}" in second_stderr
    assert global_step(out / "checkpoint-1") == 1 and global_step(out / "checkpoint-2") == 2
    first = [h for h in log_history(out / "checkpoint-1") if loss_key in h]
    history = [h for h in log_history(out / "checkpoint-2") if loss_key in h]
    assert [h["step"] for h in history] == [1, 2]
    assert history[0] == first[0]  # step 1 as the first launch logged it, not retrained
    assert_loadable(out / "final")


def refusal(main, argv: list) -> str:
    """The one-line error of a rerun whose settings differ from the checkpoint's (raised before any
    model loads, so it is checked in-process)."""
    with pytest.raises(InputError) as e:
        main([str(a) for a in argv])
    return str(e.value)


def test_dpo_launch_saves_and_resumes(tmp_path, tiny_lm_dir):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps({"prompt": f"Q{i}: drug?", "chosen": "aspirin", "rejected": "heparin"})
                               for i in range(4)))  # fmt: skip
    out = tmp_path / "dpo"

    def argv(steps, lr="1e-6"):
        return ["--model_name_or_path", tiny_lm_dir, "--dataset_name", pairs, "--output_dir", out,
                "--run_name", "final", "--per_device_train_batch_size", "2", "--global_batch_size", "2",
                "--max_length", "32", "--max_steps", steps, "--learning_rate", lr, "--report_to", "none",
                "--logging_steps", "1", "--save_strategy", "steps", "--save_steps", "1"]  # fmt: skip

    r1 = launch(CPU, "RL_stage2_dpo.py", *argv(1), cwd=tmp_path)
    assert "2 per device x 1 accumulation x 1 process(es) = 2" in r1.stderr
    r2 = launch(CPU, "RL_stage2_dpo.py", *argv(2), cwd=tmp_path)
    check_resumed(out, r1.stderr, r2.stderr, "loss")
    err = refusal(dpo.main, argv(3, lr="2e-6"))
    assert "--learning_rate 1e-06, not --learning_rate 2e-06" in err and "--resume False" in err


def test_rloo_launch_saves_and_resumes(tmp_path, tiny_lm_dir, tiny_verifier_dir):
    rows = [{"Open-ended Verifiable Question": f"Q{i}: which drug for case {i}?", "Ground-True Answer": f"drug {i}"}
            for i in range(6)]  # fmt: skip
    data = write_json(tmp_path / "rl.json", rows)
    out = tmp_path / "rloo"

    def argv(steps, lr="5e-7"):
        return ["--model_name_or_path", tiny_lm_dir, "--reward_model_path", tiny_verifier_dir,
                "--dataset_name", data, "--output_dir", out, "--run_name", "final",
                "--per_device_train_batch_size", "2", "--global_batch_size", "2", "--max_completion_length", "4",
                "--max_steps", steps, "--learning_rate", lr, "--report_to", "none", "--logging_steps", "1",
                "--save_strategy", "steps", "--save_steps", "1", "--malformed_reward", "0.5"]  # fmt: skip

    r1 = launch(CPU, "RL_stage2_rloo.py", *argv(1), cwd=tmp_path)
    assert "effective global batch" in r1.stderr
    r2 = launch(CPU, "RL_stage2_rloo.py", *argv(2), cwd=tmp_path)
    check_resumed(out, r1.stderr, r2.stderr, "rewards/medical_verifier/mean")
    history = log_history(out / "checkpoint-2")
    assert [h["rewards/medical_verifier/mean"] for h in history if "rewards/medical_verifier/mean" in h] == [
        0.5,
        0.5,
    ]
    err = refusal(rloo.main, argv(3, lr="1e-6"))
    assert "--learning_rate 5e-07, not --learning_rate 1e-06" in err


def test_dpo_and_rloo_train_under_the_shipped_zero3_config(tmp_path, tiny_lm_dir, tiny_verifier_dir):
    """The recipes' launcher config (DeepSpeed ZeRO-3): one step each, a loadable final policy."""
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps({"prompt": f"Q{i}: drug?", "chosen": "aspirin", "rejected": "heparin"})
                               for i in range(4)))  # fmt: skip
    rows = [{"Open-ended Verifiable Question": f"Q{i}: which drug?", "Ground-True Answer": f"drug {i}"}
            for i in range(4)]  # fmt: skip
    data = write_json(tmp_path / "rl.json", rows)
    common = ["--model_name_or_path", tiny_lm_dir, "--run_name", "final", "--per_device_train_batch_size", "2",
              "--global_batch_size", "2", "--max_steps", "1", "--report_to", "none", "--save_strategy", "no"]  # fmt: skip
    launch("deepspeed_zero3.yaml", "RL_stage2_dpo.py", *common, "--dataset_name", pairs, "--max_length", "32",
           "--output_dir", tmp_path / "dpo", cwd=tmp_path)  # fmt: skip
    launch("deepspeed_zero3.yaml", "RL_stage2_rloo.py", *common, "--dataset_name", data,
           "--reward_model_path", tiny_verifier_dir, "--max_completion_length", "4",
           "--output_dir", tmp_path / "rloo", cwd=tmp_path)  # fmt: skip
    for out in (tmp_path / "dpo" / "final", tmp_path / "rloo" / "final"):
        assert_loadable(out)
