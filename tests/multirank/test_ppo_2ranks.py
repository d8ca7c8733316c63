"""PPO (RL_stage2.py) on two ranks, driven only through its command line, so it covers whichever PPO
implementation the script runs.

The policy is the tiny random model plus one added token that decodes to a whole well-formed answer
("drug A"), and a `sequence_bias` in its saved generation config that makes every rollout that token
then eos: rollouts are the same whatever the sampling RNG, so one and two ranks see the same
responses, and with the exact-match verifier the reward varies by row (1.0 where the reference is
"drug A", 0.1 where it is "drug B"), so advantages and losses are not trivially zero.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.multirank.launching import assert_whole_model, launch, logged, preempt, trainer_state, write_json

pytestmark = pytest.mark.slow

FORMATTED = "## Thinking\n\nReasoning.\n\n## Final Response\n\ndrug A"


@pytest.fixture(scope="module")
def formatted_policy(tiny_lm_dir, tmp_path_factory) -> Path:
    from tokenizers import AddedToken
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dst = tmp_path_factory.mktemp("formatted_policy")
    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    tok.add_tokens([AddedToken(FORMATTED, normalized=False, special=False)])
    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    model.resize_token_embeddings(len(tok))
    tid = tok.convert_tokens_to_ids(FORMATTED)
    model.generation_config.sequence_bias = [[[tid], 40.0], [[tid, tok.eos_token_id], 80.0]]
    tok.save_pretrained(dst)
    model.save_pretrained(dst)
    return dst


@pytest.fixture(scope="module")
def ab_data(tmp_path_factory) -> Path:
    rows = [{"Open-ended Verifiable Question": f"Case {i}: which drug?", "Ground-True Answer": "drug A" if i % 2 else "drug B"}
            for i in range(18)]  # fmt: skip
    return write_json(tmp_path_factory.mktemp("ab") / "ab.json", rows)


def ppo_args(policy, data, out, episodes, *extra):
    return ["--model_name_or_path", policy, "--verifier", "exact", "--dataset_name", data, "--output_dir", out,
            "--run_name", "final", "--response_length", "4", "--per_device_train_batch_size", "2",
            "--global_batch_size", "4", "--local_rollout_forward_batch_size", "2", "--total_episodes", episodes,
            "--num_ppo_epochs", "1", "--num_sample_generations", "0", "--report_to", "none", "--logging_steps",
            "1", "--save_strategy", "steps", "--save_steps", "1", "--seed", "1", "--kl_coef", "0.05",
            "--eval_fraction", "0.1", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, formatted_policy, ab_data) -> dict:
    """The trainer state of the same command on one process (plain `python`, no DeepSpeed)."""
    tmp = tmp_path_factory.mktemp("ppo_one")
    r = launch(None, "RL_stage2.py", *ppo_args(formatted_policy, ab_data, tmp / "ppo", 8), cwd=tmp)
    assert "2 per device x 2 accumulation x 1 process(es) = 4 examples per optimizer step" in r.stdout
    return trainer_state(tmp / "ppo" / "checkpoint-2")


# Compared with one process, where both runs start from the same weights (the value head drawn from
# --seed) and roll out the same responses: at update 1 the rewards, the scores, the KL, the value and
# policy losses are means over the same 4 episodes, equal up to float32 summation order (1e-5
# relative); update 2 follows one optimizer step on the whitened advantages, so its KL and losses
# show whether both runs made the same update (advantages are whitened over the global batch, as on
# one process; trl whitened each rank's rows alone). Adam's first step moves each weight by about
# lr x the sign of its gradient, so weights whose gradient is near zero can move differently when
# the gradient is summed in another order: 1e-4 relative there.
SAME_AT_UPDATE_1 = ("reward/mean", "reward/well_formed", "reward/correct", "objective/scores", "objective/kl",
                    "loss/value_avg", "loss/policy_avg")  # fmt: skip
SAME_AT_UPDATE_2 = ("reward/mean", "objective/scores", "objective/kl", "objective/non_score_reward",
                    "loss/value_avg", "policy/approxkl_avg", "val/ratio")  # fmt: skip


@pytest.mark.parametrize("config", ["zero3", "zero2"])
def test_ppo_two_ranks_checkpoint_resume_final(config, tmp_path, formatted_policy, ab_data, one_process):
    """Two updates with a checkpoint after each (ZeRO-3 used to hang at the first one); the run is
    then cut back to checkpoint-1 and the same command resumes at update 2, logging each update once."""
    out = tmp_path / "ppo"
    r = launch(config, "RL_stage2.py", *ppo_args(formatted_policy, ab_data, out, 8), cwd=tmp_path)
    assert "2 per device x 1 accumulation x 2 process(es) = 4 examples per optimizer step" in r.stdout
    for step in (1, 2):
        ckpt = out / f"checkpoint-{step}"
        assert trainer_state(ckpt)["global_step"] == step
        assert_whole_model(ckpt / "value_model", "AutoModelForSequenceClassification", tokenizer=False)
        assert json.loads((ckpt / "run_args.json").read_text())["num_processes"] == 2
    assert_whole_model(out / "final")
    first = trainer_state(out / "checkpoint-2")
    rewards = [v for _, v in logged(first, "reward/mean")]
    assert len(rewards) == 2 and 0 < rewards[0] < 1  # varying rewards: some rows right, some wrong
    for key in SAME_AT_UPDATE_1:
        assert logged(first, key)[0][1] == pytest.approx(
            logged(one_process, key)[0][1], rel=1e-5, abs=1e-7
        ), key
    for key in SAME_AT_UPDATE_2:
        assert logged(first, key)[1][1] == pytest.approx(
            logged(one_process, key)[1][1], rel=1e-4, abs=1e-7
        ), key
    if config == "zero2":  # resume is exercised under ZeRO-3, the path that differs between ranks
        return
    # "killed" after update 1: the same command resumes there
    shutil.rmtree(out / "checkpoint-2")
    r = launch(config, "RL_stage2.py", *ppo_args(formatted_policy, ab_data, out, 8), cwd=tmp_path)
    assert "resuming from" in r.stdout and "checkpoint-1" in r.stdout
    again = trainer_state(out / "checkpoint-2")
    assert [s for s, _ in logged(again, "loss/policy_avg")] == [1, 2]  # each update logged once
    assert logged(again, "reward/mean") == logged(first, "reward/mean")
    assert_whole_model(out / "final")


def test_ppo_sigterm_to_the_launcher_saves_a_complete_checkpoint(tmp_path, formatted_policy, ab_data):
    """`kill <launcher>` with --sigterm_grace under ZeRO-3: both ranks finish the update and save one
    checkpoint together (the path that used to hang: the gathered policy and value model), with
    every rank's optimizer shard and a whole value model, and exit 143 with one line each; the same
    command, given the episodes of one more update, resumes from it."""
    out = tmp_path / "ppo"
    args = [*ppo_args(formatted_policy, ab_data, out, 4000), "--save_strategy", "no", "--sigterm_grace", "60"]
    ckpt = preempt("zero3", "RL_stage2.py", *args, cwd=tmp_path, once_logged="'objective/kl'")
    step = trainer_state(ckpt)["global_step"]
    assert_whole_model(ckpt / "value_model", "AutoModelForSequenceClassification", tokenizer=False)
    episodes = str((step + 1) * 4)
    r = launch("zero3", "RL_stage2.py", *ppo_args(formatted_policy, ab_data, out, episodes), "--save_strategy",
               "no", cwd=tmp_path)  # fmt: skip
    assert f"resuming from {ckpt}" in r.stdout
    assert_whole_model(out / "final")
