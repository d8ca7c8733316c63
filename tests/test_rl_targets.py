"""RL on every SFT target: the reward's format rule follows --sft_target; the flag is in the run identity."""

from __future__ import annotations

import pytest

from huatuo_o1.io import InputError
from huatuo_o1.rl.rewards import ExactMatchVerifier, RewardConfig, score_responses

WELL = "## Thinking\n\nReasoning.\n\n## Final Response\n\n{}"


def test_a_response_policy_has_no_format_rule():
    cfg = RewardConfig(sft_target="response")
    res = score_responses(
        ["Aspirin", " heparin \n", WELL.format("aspirin")], ["aspirin"] * 3, ExactMatchVerifier(), cfg
    )
    assert res.rewards == [1.0, 0.1, 0.1]  # the whole output is the answer, a Thinking section included
    assert res.well_formed == [True, True, True]
    mcq = score_responses(
        ["The answer is B."], ["The answer is B"], ExactMatchVerifier(), RewardConfig(sft_target="mcq")
    )
    assert mcq.rewards == [1.0]


@pytest.mark.parametrize("target", ["complex_cot", "simple_cot"])
def test_thinking_targets_keep_the_format_rule(target):
    cfg = RewardConfig(sft_target=target)
    res = score_responses(["Aspirin", WELL.format("Aspirin")], ["aspirin"] * 2, ExactMatchVerifier(), cfg)
    assert res.rewards == [0.0, 1.0]
    assert score_responses(["Aspirin"], ["aspirin"], ExactMatchVerifier()).rewards == [0.0]  # the default


def test_grpo_reward_function_follows_the_target():
    from huatuo_o1.rl.grpo_trainer import MedicalRewardFunc

    f = MedicalRewardFunc(ExactMatchVerifier(), RewardConfig(sft_target="response"))
    assert f(
        prompts=["p"], completions=[[{"role": "assistant", "content": "Aspirin"}]], reference=["aspirin"]
    ) == [1.0]


def test_target_flag_in_the_identity_of_ppo_and_grpo():
    from huatuo_o1.rl import grpo, ppo
    from huatuo_o1.rl.grpo_trainer import grpo_identity
    from huatuo_o1.rl.ppo_trainer import ppo_identity

    base = ["--model_name_or_path", "m", "--output_dir", "o", "--report_to", "none"]
    s, a, m = grpo.parse_args([*base, "--sft_target", "mcq"])
    assert s.reward_config().sft_target == "mcq" and grpo_identity(s, a, m)["sft_target"] == "mcq"
    s, a, m = ppo.parse_args(base)
    assert ppo_identity(s, a, m)["sft_target"] == "complex_cot"
    with pytest.raises(
        InputError, match="--sft_target must be one of complex_cot, simple_cot, response, mcq"
    ):
        grpo.parse_args([*base, "--sft_target", "cot"])


def test_ppo_reward_hook_takes_the_target(tmp_path, tiny_lm_dir):
    import json

    from huatuo_o1.rl import ppo
    from huatuo_o1.rl.ppo_trainer import build_ppo_trainer

    data = tmp_path / "d.json"
    data.write_text(json.dumps([{"Open-ended Verifiable Question": f"Q{i}?", "Ground-True Answer": "a"}
                                for i in range(8)]))  # fmt: skip
    argv = ["--model_name_or_path", str(tiny_lm_dir), "--dataset_name", str(data), "--verifier", "exact",
            "--output_dir", str(tmp_path / "o"), "--report_to", "none", "--per_device_train_batch_size", "2",
            "--gradient_accumulation_steps", "1", "--total_episodes", "4", "--sft_target", "response"]  # fmt: skip
    trainer = build_ppo_trainer(*ppo.parse_args(argv))
    assert trainer.reward_hook.scorer.cfg.sft_target == "response"
