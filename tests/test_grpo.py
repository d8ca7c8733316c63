"""GRPO stage: same reward and data as PPO; a few steps finish and save a loadable policy."""

from __future__ import annotations

import json

import pytest

from huatuo_o1.contract import GROUND_TRUTH, OPEN_QUESTION

WELL = "## Thinking\n\nReasoning.\n\n## Final Response\n\n{}"


def test_reward_func_rows_and_metrics():
    from huatuo_o1.rl.grpo_trainer import MedicalRewardFunc
    from huatuo_o1.rl.rewards import ExactMatchVerifier

    logged = {}
    f = MedicalRewardFunc(ExactMatchVerifier())
    completions = [
        [{"role": "assistant", "content": WELL.format("Aspirin")}],
        [{"role": "assistant", "content": WELL.format("Aspirin")}],
        [{"role": "assistant", "content": "no format"}],
    ]
    rewards = f(
        prompts=[None] * 3,
        completions=completions,
        reference=["aspirin", "heparin", "aspirin"],
        log_metric=lambda k, v: logged.__setitem__(k, v),
    )
    assert rewards == [1.0, 0.1, 0.0]
    assert logged == {"reward/well_formed": pytest.approx(2 / 3), "reward/correct": pytest.approx(1 / 3)}
    assert f(prompts=["p"], completions=[WELL.format("x")], reference=["x"]) == [1.0]  # plain-text form


def test_grpo_few_steps(tmp_path, tiny_lm_dir, tiny_verifier_dir):
    from transformers import AutoModelForCausalLM

    from huatuo_o1.rl import grpo
    from huatuo_o1.rl.grpo_trainer import build_grpo_trainer

    data = tmp_path / "d.json"
    data.write_text(json.dumps([{OPEN_QUESTION: f"Q{i}?", GROUND_TRUTH: f"a{i}"} for i in range(10)]))
    out = tmp_path / "ckpts"
    s, a, m = grpo.parse_args(
        ["--model_name_or_path", str(tiny_lm_dir), "--reward_model_path", str(tiny_verifier_dir),
         "--dataset_name", str(data), "--output_dir", str(out), "--run_name", "g",
         "--per_device_train_batch_size", "4", "--num_generations", "2", "--max_completion_length", "16",
         "--max_steps", "2", "--report_to", "none", "--logging_steps", "1", "--save_strategy", "no",
         "--malformed_reward", "0.5", "--warmup_ratio", "0.1"]
    )  # fmt: skip
    assert a.warmup_steps == 0.1
    trainer = build_grpo_trainer(s, a, m)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "rewards/medical_verifier/mean" in h]
    assert len(logs) == 2
    assert all(h["rewards/medical_verifier/mean"] == pytest.approx(0.5) for h in logs)  # all malformed
    assert all("reward/well_formed" in h and "reward/correct" in h for h in logs)

    from huatuo_o1.rl.common import final_dir

    trainer.save_model(str(final_dir(a.output_dir, a.run_name)))
    AutoModelForCausalLM.from_pretrained(out / "g")


def test_reproducible_sampling_is_refused_with_vllm(tmp_path, tiny_lm_dir):
    """vLLM samples itself: --reproducible_sampling with --use_vllm stops in one line (before vLLM is
    looked for) instead of silently sampling per process."""
    from huatuo_o1.io import InputError
    from huatuo_o1.rl import grpo
    from huatuo_o1.rl.grpo_trainer import build_grpo_trainer

    data = tmp_path / "d.json"
    data.write_text(json.dumps([{OPEN_QUESTION: f"Q{i}?", GROUND_TRUTH: f"a{i}"} for i in range(10)]))
    s, a, m = grpo.parse_args(
        ["--model_name_or_path", str(tiny_lm_dir), "--verifier", "exact", "--dataset_name", str(data),
         "--output_dir", str(tmp_path / "o"), "--use_vllm", "True", "--reproducible_sampling", "True",
         "--report_to", "none"]
    )  # fmt: skip
    with pytest.raises(InputError, match="--reproducible_sampling .* drop one of --use_vllm"):
        build_grpo_trainer(s, a, m)
