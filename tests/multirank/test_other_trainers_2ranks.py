"""GRPO, RLOO, DPO and verifier training on two ranks, launched as users launch them.

Under ZeRO-3 each trains two steps with a checkpoint after each, is cut back to checkpoint-1 (as if
killed after step 1) and the same command resumes at step 2, logging each step once; under ZeRO-2
each trains and saves. Every final model loads with every tensor whole. Each also logs the
one-process numbers at the same global batch and seed: GRPO and RLOO (with --reproducible_sampling,
so both layouts sample the same rollouts) their rewards, reward std and losses at both steps, DPO
and the verifier their losses; the verifier starts from the same loss under ZeRO-3, ZeRO-2 and no
DeepSpeed (its new head is drawn from --seed)."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.multirank.launching import assert_whole_model, launch, logged, trainer_state, write_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rl_data(tmp_path_factory):
    rows = [{"Open-ended Verifiable Question": f"Q{i}: which drug for case {i}?", "Ground-True Answer": f"drug {i}"}
            for i in range(12)]  # fmt: skip
    return write_json(tmp_path_factory.mktemp("rl") / "rl.json", rows)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """8 pairs, each kept under dpo_args' --max_length 48 (the longest is 40 tokens): two whole
    optimizer steps of 4, the same 4 pairs per step in every layout."""
    path = tmp_path_factory.mktemp("dpo") / "pairs.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": f"Q{i}: drug{'?' * i}", "chosen": f"aspirin {i}",
                                          "rejected": "heparin"}) for i in range(8)))  # fmt: skip
    return path


@pytest.fixture(scope="module")
def verifier_data(tmp_path_factory):
    rows = [{"response": f"## Thinking\nx{'.' * i}\n## Final Response\ndrug {i % 3}", "reference": f"drug {i % 2}",
             "label": i % 3 == i % 2} for i in range(10)]  # fmt: skip
    return write_json(tmp_path_factory.mktemp("verifier") / "v.json", rows)


def resume_after_kill(config, script, args, out, tmp_path, key):
    """Train (2 steps, a checkpoint each), cut back to checkpoint-1, rerun: step 2 is redone, each
    step logged once. The first run's trainer state."""
    r = launch(config, script, *args, cwd=tmp_path)
    assert "x 2 process(es)" in r.stdout
    first = trainer_state(out / "checkpoint-2")
    assert [s for s, _ in logged(first, key)] == [1, 2]
    if config == "zero3":
        shutil.rmtree(out / "checkpoint-2")
        r = launch(config, script, *args, cwd=tmp_path)
        assert "resuming from" in r.stdout and "checkpoint-1" in r.stdout
        again = trainer_state(out / "checkpoint-2")
        assert [s for s, _ in logged(again, key)] == [1, 2]
    return first


ANSWERS = ("## Thinking\n\nReasoning.\n\n## Final Response\n\ndrug A",
           "## Thinking\n\nReasoning.\n\n## Final Response\n\ndrug B")  # fmt: skip


@pytest.fixture(scope="module")
def two_answer_policy(tiny_lm_dir, tmp_path_factory):
    """The tiny random model plus two added tokens, each a whole well-formed answer ("drug A", "drug
    B"), which a `sequence_bias` in its generation config makes it write, then eos: every completion
    is one of the two, drawn at the model's odds, so within a group some are right and some wrong
    (the exact verifier gives 1.0 or 0.1) and the advantages are not zero."""
    from tokenizers import AddedToken
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dst = tmp_path_factory.mktemp("two_answer_policy")
    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    tok.add_tokens([AddedToken(a, normalized=False, special=False) for a in ANSWERS])
    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    model.resize_token_embeddings(len(tok))
    bias = []
    for answer in ANSWERS:
        tid = tok.convert_tokens_to_ids(answer)
        bias += [[[tid], 40.0], [[tid, tok.eos_token_id], 80.0]]
    model.generation_config.sequence_bias = bias
    tok.save_pretrained(dst)
    model.save_pretrained(dst)
    return dst


@pytest.fixture(scope="module")
def ab_data(tmp_path_factory):
    rows = [{"Open-ended Verifiable Question": f"Case {i}: which drug?", "Ground-True Answer": "drug A" if i % 2 else "drug B"}
            for i in range(12)]  # fmt: skip
    return write_json(tmp_path_factory.mktemp("ab") / "ab.json", rows)


# GRPO and RLOO at the same global batch (4 completions of 2 prompts a step) and seed, with
# --reproducible_sampling (each completion drawn from its key, not from a process's RNG): the same
# rollouts on one process and on two ranks, so the same rewards, the same group advantages (their
# std is logged, and the loss at step 1, where the policy ratio is 1, is minus their token mean) and
# the same losses. Step 1 up to float32 summation order (1e-5 relative). Step 2 follows one Adam
# step, whose update is about lr x the sign of each gradient, so a near-zero gradient summed in
# another order moves its weight the other way by a whole lr: a few 1e-3 relative there (seen: 1.4e-3
# on RLOO's KL), against tens of percent for other rollouts (without --reproducible_sampling, GRPO's
# step-2 loss came out 2.3 times the one-process loss).
GROUP_SAME = ("reward", "reward_std", "rewards/medical_verifier/mean", "completions/mean_length", "loss", "kl",
              "entropy")  # fmt: skip


def group_args(script, policy, data, out, accumulation, *extra):
    args = ["--model_name_or_path", policy, "--verifier", "exact", "--dataset_name", data, "--output_dir", out,
            "--run_name", "final", "--per_device_train_batch_size", "2", "--num_generations", "2",
            "--max_completion_length", "4", "--max_steps", "2", "--report_to", "none", "--logging_steps", "1",
            "--save_strategy", "steps", "--save_steps", "1", "--malformed_reward", "0.5", "--seed", "3",
            "--reproducible_sampling", "True", "--learning_rate", "1e-3", "--beta", "0.1", *extra]  # fmt: skip
    if script == "RL_stage2_rloo.py":
        return [*args, "--global_batch_size", "4"]
    return [*args, "--gradient_accumulation_steps", str(accumulation)]


def one_process_state(script, tmp_path_factory, policy, data):
    tmp = tmp_path_factory.mktemp("one_" + script.split(".")[0])
    launch(None, script, *group_args(script, policy, data, tmp / "out", 2), cwd=tmp)
    return trainer_state(tmp / "out" / "checkpoint-2")


def assert_same_as_one_process(two: dict, one: dict):
    rewards = logged(two, "rewards/medical_verifier/mean")
    assert len(rewards) == 2 and any(0.1 < r < 1 for _, r in rewards), rewards  # right and wrong in a step
    assert any(v != 0 for _, v in logged(two, "reward_std")), "no group with different rewards"
    for key in GROUP_SAME:
        for step, rel in ((0, 1e-5), (1, 1e-2)):
            assert logged(two, key)[step][1] == pytest.approx(logged(one, key)[step][1], rel=rel, abs=1e-6), (
                key,
                step + 1,
            )


@pytest.fixture(scope="module")
def grpo_one_process(tmp_path_factory, two_answer_policy, ab_data):
    return one_process_state("RL_stage2_grpo.py", tmp_path_factory, two_answer_policy, ab_data)


@pytest.mark.parametrize("config", ["zero3", "zero2"])
def test_grpo_two_ranks(config, tmp_path, two_answer_policy, ab_data, grpo_one_process):
    out = tmp_path / "grpo"
    args = group_args("RL_stage2_grpo.py", two_answer_policy, ab_data, out, 1)
    first = resume_after_kill(config, "RL_stage2_grpo.py", args, out, tmp_path, "reward")
    assert_same_as_one_process(first, grpo_one_process)
    assert_whole_model(out / "final")


def test_rloo_two_ranks_zero3(tmp_path, tmp_path_factory, two_answer_policy, ab_data):
    out = tmp_path / "rloo"
    args = group_args("RL_stage2_rloo.py", two_answer_policy, ab_data, out, 1)
    first = resume_after_kill(
        "zero3", "RL_stage2_rloo.py", args, out, tmp_path, "rewards/medical_verifier/mean"
    )
    one = one_process_state("RL_stage2_rloo.py", tmp_path_factory, two_answer_policy, ab_data)
    assert_same_as_one_process(first, one)
    assert_whole_model(out / "final")


def test_rloo_refuses_a_run_of_zero_steps_on_two_ranks(tmp_path, tiny_lm_dir, rl_data):
    """The paper's default global batch (128 completions = 64 prompts) on 11 training rows: each rank
    stops with one line and exit 2 (the launcher then exits 1), nothing saved (it used to log
    'training finished: 0 steps', exit 0 and save the unchanged policy)."""
    out = tmp_path / "rloo"
    r = launch("zero3", "RL_stage2_rloo.py", "--model_name_or_path", tiny_lm_dir, "--verifier", "exact",
               "--dataset_name", rl_data, "--output_dir", out, "--report_to", "none", "--per_device_train_batch_size",
               "2", cwd=tmp_path, expect=1)  # fmt: skip
    assert "exitcode  : 2" in r.stdout
    errors = [line for line in r.stdout.splitlines() if line.startswith("error: ")]
    assert errors and "11 training prompts are fewer than one optimizer step of 64 prompts" in errors[0]
    assert "x 2 process(es)" in errors[0]
    assert not (out / "final").exists()


def dpo_args(model, pairs, out):
    return ["--model_name_or_path", model, "--dataset_name", pairs, "--output_dir", out, "--run_name", "final",
            "--per_device_train_batch_size", "1", "--global_batch_size", "4", "--max_length", "48", "--max_steps",
            "2", "--learning_rate", "1e-3", "--report_to", "none", "--logging_steps", "1", "--save_strategy",
            "steps", "--save_steps", "1", "--seed", "5"]  # fmt: skip


@pytest.fixture(scope="module")
def dpo_one_process(tmp_path_factory, tiny_lm_dir, pairs):
    tmp = tmp_path_factory.mktemp("dpo_one")
    launch(None, "RL_stage2_dpo.py", *dpo_args(tiny_lm_dir, pairs, tmp / "out"), cwd=tmp)
    return logged(trainer_state(tmp / "out" / "checkpoint-2"), "loss")


@pytest.mark.parametrize("config", ["zero3", "zero2"])
def test_dpo_two_ranks(config, tmp_path, tiny_lm_dir, pairs, dpo_one_process):
    out = tmp_path / "dpo"
    first = resume_after_kill(
        config, "RL_stage2_dpo.py", dpo_args(tiny_lm_dir, pairs, out), out, tmp_path, "loss"
    )
    # The one-process losses at the same global batch and seed. Step 1 (before any update) differs
    # only by float32 summation order. Step 2 follows one Adam update at lr 1e-3, whose first step
    # moves each weight by about lr x sign(gradient): a weight whose gradient is near zero can move
    # the other way when the gradients are summed in another order (two ranks' all-reduce vs one
    # process's accumulation), so rel 1e-4 (seen: under 1e-6). A real difference is far larger: when
    # trl dropped one of the pairs (--max_length 32), step 2 was a partial one, three pairs on one
    # process and four on two ranks (accelerate repeats the first pair to even the ranks), and the
    # losses differed by ~10% (0.163 vs 0.148).
    losses = logged(first, "loss")
    assert [s for s, _ in losses] == [s for s, _ in dpo_one_process] == [1, 2]
    assert losses[0][1] == pytest.approx(dpo_one_process[0][1], rel=1e-5)
    assert losses[1][1] == pytest.approx(dpo_one_process[1][1], rel=1e-4)
    _DPO_TWO_RANKS[config] = [v for _, v in losses]
    if len(_DPO_TWO_RANKS) == 2:
        assert _DPO_TWO_RANKS["zero3"] == pytest.approx(_DPO_TWO_RANKS["zero2"], rel=1e-5)
    assert_whole_model(out / "final")


_DPO_TWO_RANKS: dict = {}


def verifier_args(model, data, out):
    return ["--data_path", data, "--model_name_or_path", model, "--output_dir", out, "--max_steps", "2",
            "--save_steps", "1", "--logging_steps", "1", "--report_to", "none", "--eval_fraction", "0.2",
            "--learning_rate", "1e-3", "--seed", "7", "--per_device_train_batch_size", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def verifier_one_process(tmp_path_factory, tiny_lm_dir, verifier_data):
    """One process, accumulation 2 = the two ranks' global batch of 4."""
    tmp = tmp_path_factory.mktemp("verifier_one")
    launch(None, "train_verifier.py", *verifier_args(tiny_lm_dir, verifier_data, tmp / "out"),
           "--gradient_accumulation_steps", "2", cwd=tmp)  # fmt: skip
    return logged(trainer_state(tmp / "out" / "checkpoint-2"), "loss")


@pytest.mark.parametrize("config", ["zero3", "zero2"])
def test_verifier_two_ranks(config, tmp_path, tiny_lm_dir, verifier_data, verifier_one_process):
    out = tmp_path / "verifier"
    args = verifier_args(tiny_lm_dir, verifier_data, out)
    first = resume_after_kill(config, "train_verifier.py", args, out, tmp_path, "loss")
    # the same start (head drawn from --seed) and the same global batches as one process
    for (_, two), (_, one) in zip(logged(first, "loss"), verifier_one_process, strict=True):
        assert two == pytest.approx(one, rel=1e-5)
    assert_whole_model(out, "AutoModelForSequenceClassification")
