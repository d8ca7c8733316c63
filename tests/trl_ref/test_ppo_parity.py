"""Our PPO equals trl 1.12's `PPOTrainer`, one update for one update, on the same rollouts.

Runs in the reference environment (bash scripts/test_trl_ref.sh: `.venv-trl-ref` with trl 1.12.0,
the last trl with PPO, and HUATUO_TRL_REF=1); skipped elsewhere (the main suite), and where trl
ships no `trl.experimental.ppo`.

Both trainers start from the same models (trl's are copies of ours), data, seed and verifier, and
both get the same rollouts: generation is replaced, in both, by one function returning a fixed
response per prompt (well-formed right and wrong answers, malformed ones, ones past an eos, ones
without eos) and the policy's own logits for it. Everything after generation is each trainer's
real code: reference and value forward passes, the verifier's scores, KL penalty, whitening, GAE,
the PPO epochs, the optimizer. After one update the advantages, returns, losses, clip fractions,
approximate KL and the updated policy and value weights agree to TOL (relative 1e-5), across the
configurations of CONFIGS.
"""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
import torch

if os.environ.get("HUATUO_TRL_REF") != "1":
    pytest.skip("the PPO reference tier: bash scripts/test_trl_ref.sh", allow_module_level=True)
pytest.importorskip("trl.experimental.ppo")

from huatuo_o1.contract import GROUND_TRUTH, OPEN_QUESTION  # noqa: E402

TOL = {"rtol": 1e-5, "atol": 1e-7}
WELL = "## Thinking\n\nReasoning.\n\n## Final Response\n\n{}"
METRICS = ("loss/policy_avg", "loss/value_avg", "policy/clipfrac_avg", "val/clipfrac_avg", "policy/approxkl_avg",
           "objective/kl", "objective/scores", "objective/non_score_reward", "objective/rlhf_reward",
           "objective/entropy", "policy/entropy_avg", "val/ratio", "val/num_eos_tokens")  # fmt: skip

# name -> extra flags (8 rollouts per update: 4 per device x 2 accumulation)
CONFIGS = {
    "defaults": [],
    "whiten_rewards": ["--whiten_rewards", "True"],
    "missing_eos_penalty": ["--missing_eos_penalty", "1.0"],
    "two_mini_batches": ["--num_mini_batches", "2"],
    "stop_token_id": ["--stop_token_id", "STOP"],
    "no_stop_token": ["--stop_token", "None"],
    "kl_k3": ["--kl_estimator", "k3", "--kl_coef", "0.2"],
}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    rows = [{OPEN_QUESTION: f"Case {i}: which drug?", GROUND_TRUTH: f"drug {i}"} for i in range(10)]
    p = tmp_path_factory.mktemp("trl_ref") / "rl.json"
    p.write_text(json.dumps(rows))
    return p


def _argv(lm, data, out, extra):
    return ["--model_name_or_path", str(lm), "--dataset_name", str(data), "--verifier", "exact",
            "--output_dir", str(out), "--response_length", "36", "--per_device_train_batch_size", "4",
            "--gradient_accumulation_steps", "2", "--local_rollout_forward_batch_size", "3",
            "--total_episodes", "8", "--num_ppo_epochs", "2", "--num_sample_generations", "0",
            "--report_to", "none", "--save_strategy", "no", "--learning_rate", "3e-3", "--seed", "5",
            "--gradient_checkpointing", "False", "--eval_fraction", "0", *extra]  # fmt: skip


def _responses(tok, rows, stop_id, width):
    """A fixed response per prompt: right, wrong, malformed, past the eos, without eos, and past
    the stop token; each (a list of ids) at most `width` long."""
    eos = tok.eos_token_id
    filler = tok("lorem ipsum dolor sit amet", add_special_tokens=False)["input_ids"]

    def ids(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    table = {}
    for i, r in enumerate(rows):
        kind = i % 6
        if kind == 0:
            resp = ids(WELL.format(r["reference"])) + [eos]
        elif kind == 1:
            resp = ids(WELL.format("drug X")) + [eos]
        elif kind == 2:
            resp = ids("no format here") + [eos] + filler
        elif kind == 3:
            resp = (filler * 10)[:width]  # no eos, fills the response length
        elif kind == 4:
            resp = ids(WELL.format(r["reference"])) + [stop_id] + filler
        else:
            resp = filler[:3] + [eos]
        table[tuple(r["input_ids"])] = resp[:width]
    return table


def _fixed_generation(table, pad, temperature):
    """A stand-in for batch_generation (ours and trl's have one signature): the table's response
    for each left-padded prompt, right-padded, and the policy's logits for it / temperature."""

    @torch.no_grad()
    def generate(policy, queries, chunk, pad_token_id, generation_config):
        ctx = queries.shape[1]
        resps = []
        for q in queries.tolist():
            start = next(i for i, t in enumerate(q) if t != pad)
            resps.append(table[tuple(q[start:])])
        width = max(map(len, resps))
        out = torch.full((queries.shape[0], ctx + width), pad, dtype=queries.dtype)
        out[:, :ctx] = queries
        for i, r in enumerate(resps):
            out[i, ctx : ctx + len(r)] = torch.tensor(r)
        mask = out != pad
        logits = policy(
            input_ids=torch.masked_fill(out, ~mask, 0),
            attention_mask=mask,
            position_ids=mask.cumsum(1) - mask.long(),
        ).logits[:, ctx - 1 : -1]
        return out, logits / (temperature + 1e-7)

    return generate


def _trl_config(args):
    from trl.experimental.ppo import PPOConfig as TrlPPOConfig

    names = ("output_dir", "per_device_train_batch_size", "gradient_accumulation_steps", "num_mini_batches",
             "num_ppo_epochs", "total_episodes", "response_length", "temperature", "stop_token", "stop_token_id",
             "missing_eos_penalty", "whiten_rewards", "kl_coef", "kl_estimator", "cliprange", "vf_coef",
             "cliprange_value", "gamma", "lam", "learning_rate", "seed", "local_rollout_forward_batch_size",
             "num_sample_generations", "gradient_checkpointing", "warmup_steps", "weight_decay",
             "max_grad_norm")  # fmt: skip
    kw = {n: getattr(args, n) for n in names}
    kw.update(
        report_to="none", bf16=False, save_strategy="no", lr_scheduler_type=args.lr_scheduler_type.value
    )
    return TrlPPOConfig(**kw)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_one_update_equals_trl_1_12(name, tmp_path, tiny_lm_dir, data_file, monkeypatch):
    import trl.experimental.ppo.ppo_trainer as trl_mod
    from trl.experimental.ppo import PPOTrainer as TrlPPOTrainer

    from huatuo_o1.rl import ppo, ppo_core
    from huatuo_o1.rl import ppo_trainer as ours_mod
    from huatuo_o1.rl.ppo_trainer import build_ppo_trainer

    stop = 7  # --stop_token_id of the stop_token_id configuration
    extra = [str(stop) if x == "STOP" else x for x in CONFIGS[name]]
    s, a, m = ppo.parse_args(_argv(tiny_lm_dir, data_file, tmp_path / "ours", extra))
    ours = build_ppo_trainer(s, a, m)
    tok = ours.processing_class
    pad = tok.pad_token_id
    assert stop not in (pad, tok.eos_token_id)

    # trl's trainer on copies of the same (untrained) models, the same data and verifier
    policy = copy.deepcopy(ours.policy_model)
    trl = TrlPPOTrainer(
        args=_trl_config(a),
        processing_class=tok,
        model=policy,
        ref_model=copy.deepcopy(ours.ref_model),
        reward_model=ours.reward_hook,
        train_dataset=ours.train_dataset,
        value_model=copy.deepcopy(ours.value_model),
    )

    # the same prompts: trl's loader under our seeded epoch order (trl shuffles with the global RNG,
    # which a resumed run could not reproduce: a documented difference of ours)
    trl.dataloader = ours_mod._EpochBatches(trl.dataloader, a.seed)

    table = _responses(tok, ours.rl_data.train, stop, a.response_length)
    fake = _fixed_generation(table, pad, a.temperature)
    monkeypatch.setattr(ours_mod, "batch_generation", fake)
    monkeypatch.setattr(trl_mod, "batch_generation", fake)

    # trl's advantages (raw -> whitened) and values, read where its loop computes them
    seen = {}
    real_whiten, real_reward = trl_mod.masked_whiten, trl_mod.get_reward

    def whiten_spy(values, mask, shift_mean=True):
        out = real_whiten(values, mask, shift_mean)
        if shift_mean:
            seen["raw_advantages"], seen["advantages"] = values.clone(), out.clone()
        return out

    def reward_spy(model, query_responses, pad_token_id, context_length):
        out = real_reward(model, query_responses, pad_token_id, context_length)
        if model is not trl.reward_model:
            seen.setdefault("values", []).append(out[0][:, context_length - 1 : -1].squeeze(-1))
        return out

    monkeypatch.setattr(trl_mod, "masked_whiten", whiten_spy)
    monkeypatch.setattr(trl_mod, "get_reward", reward_spy)

    initial = {
        "policy": {k: v.clone() for k, v in ours.policy_model.state_dict().items()},
        "value": {k: v.clone() for k, v in ours.value_model.state_dict().items()},
    }
    for trainer in (ours, trl):
        np.random.seed(11)  # the mini-batch permutations
        torch.manual_seed(11)
        trainer.train()

    ro = ours.last_rollout
    assert ro.scores.unique().numel() >= 3  # right, wrong and malformed rows all took part
    whitened = torch.masked_fill(seen["advantages"], ro.padding_mask, 0)
    torch.testing.assert_close(ro.advantages, whitened, **TOL)
    values = torch.masked_fill(torch.cat(seen["values"]), ro.padding_mask_p1, 0)
    torch.testing.assert_close(ro.returns, seen["raw_advantages"] + values, **TOL)
    assert ppo_core.INVALID_LOGPROB == trl_mod.INVALID_LOGPROB

    mine = next(h for h in ours.state.log_history if "loss/policy_avg" in h)
    theirs = next(h for h in trl.state.log_history if "loss/policy_avg" in h)
    for key in METRICS:
        assert mine[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-7), key
    assert mine["policy/clipfrac_avg"] > 0 or name != "defaults"  # the clip was exercised

    # the updated weights: policy and value model
    pairs = {"policy": (ours.policy_model, trl.policy_model), "value": (ours.value_model, trl.value_model)}
    for what, (mine_model, their_model) in pairs.items():
        their_sd = their_model.state_dict()
        for k, v in mine_model.state_dict().items():
            torch.testing.assert_close(v, their_sd[k], **TOL, msg=lambda msg, k=k, w=what: f"{w} {k}: {msg}")
        assert any(not torch.equal(v, initial[what][k]) for k, v in mine_model.state_dict().items()), what


def test_every_trl_ppo_config_flag_is_kept_with_its_default():
    """RL_stage2.py's command line: every field of trl 1.12's PPOConfig exists in ours with trl's
    default, except the defaults the project has always changed (docs/differences.md)."""
    import dataclasses

    from trl.experimental.ppo import PPOConfig as TrlPPOConfig

    from huatuo_o1.rl.ppo_config import PPOConfig

    def defaults(cls):
        out = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
        return out

    ours, theirs = defaults(PPOConfig), defaults(TrlPPOConfig)
    assert set(theirs) <= set(ours), set(theirs) - set(ours)
    changed = {k for k in theirs if str(ours[k]) != str(theirs[k])}
    assert changed == {"stop_token", "reward_model_path", "sft_model_path", "report_to"}
