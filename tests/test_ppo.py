"""PPO stage: data handling, pad token choice, the reward hook, and a 2-batch run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from huatuo_o1.contract import GROUND_TRUTH, OPEN_QUESTION
from huatuo_o1.io import InputError
from huatuo_o1.rl.data import PromptTable, build_rl_data, prompt_ids, split_eval
from huatuo_o1.rl.rewards import ExactMatchVerifier

ROOT = Path(__file__).resolve().parents[1]
WELL = "## Thinking\n\nReasoning.\n\n## Final Response\n\n{}"


def _records(n: int) -> list[dict]:
    recs = [{OPEN_QUESTION: f"Q{i}: which drug for case {i}?", GROUND_TRUTH: f"drug {i}"} for i in range(n)]
    recs.append({"question": "rejected by the filter", "answer": "x"})  # no open-ended fields
    recs.append({OPEN_QUESTION: "no answer", GROUND_TRUTH: ""})
    return recs


@pytest.fixture()
def data_file(tmp_path):
    p = tmp_path / "problems.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in _records(12)))
    return p


def test_data_drop_split_and_exact_table(data_file, tiny_lm_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    data = build_rl_data(str(data_file), tok, seed=3)
    assert data.dropped_missing == 2
    assert (len(data.train), len(data.eval)) == (11, 1)
    for row in data.train + data.eval:
        assert row["input_ids"] == prompt_ids(tok, row["question"])
        assert tok.decode(row["input_ids"]).endswith("<|im_start|>assistant\n")
        ref = "drug " + row["question"].split(":")[0][1:]
        assert data.table.match_prefixes(row["input_ids"])[0] == (len(row["input_ids"]), ref)
    # same seed, same split; other seed, other split
    again = build_rl_data(str(data_file), tok, seed=3)
    assert [r["question"] for r in again.eval] == [r["question"] for r in data.eval]
    train, ev = split_eval(list(range(5000)), seed=0)
    assert len(ev) == 200 and len(train) == 4800
    with pytest.raises(InputError, match="not found"):
        build_rl_data(str(data_file.parent / "missing.json"), tok)


def test_prompt_table_longest_exact_prefix():
    t = PromptTable()
    assert t.add([1, 2], "a") and t.add([1, 2, 3], "b")
    assert not t.add([1, 2], "different")  # ambiguous duplicate is refused
    assert t.match_prefixes([1, 2, 3, 9]) == [(3, "b"), (2, "a")]  # longest first
    assert t.match_prefixes([1, 2, 9]) == [(2, "a")]
    assert t.match_prefixes([7, 1, 2]) == []


def test_choose_pad_token_llama3_and_qwen_like(tiny_lm_dir):
    from transformers import AutoTokenizer, GenerationConfig

    from huatuo_o1.rl.common import choose_pad_token

    # Llama-3.1-like: pad unset, <|end_of_text|> is a generation stop token -> use the reserved pad token
    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    tok.add_special_tokens({"additional_special_tokens": ["<|end_of_text|>", "<|finetune_right_pad_id|>"]})
    tok.pad_token = tok.eos_token
    gen = GenerationConfig(eos_token_id=[tok.convert_tokens_to_ids("<|end_of_text|>"), tok.eos_token_id])
    assert choose_pad_token(tok, gen) is False
    assert tok.pad_token == "<|finetune_right_pad_id|>"
    # Qwen2.5-like: pad <|endoftext|> is also a stop token -> <|fim_pad|>
    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    tok.add_special_tokens({"additional_special_tokens": ["<|fim_pad|>"]})
    tok.pad_token = "<|endoftext|>"
    gen = GenerationConfig(eos_token_id=[tok.eos_token_id, tok.convert_tokens_to_ids("<|endoftext|>")])
    choose_pad_token(tok, gen)
    assert tok.pad_token == "<|fim_pad|>"
    # already distinct: kept
    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    assert choose_pad_token(tok) is False and tok.pad_token == "<pad>"
    # never bos, nor a token the prompts use
    tok.pad_token = tok.bos_token
    choose_pad_token(tok)
    assert tok.pad_token == "<pad>"
    choose_pad_token(tok, avoid_ids=[tok.convert_tokens_to_ids("<pad>")])
    assert tok.pad_token == "<|endoftext|>"


def test_reward_hook_maps_each_row_to_its_reference(data_file, tiny_lm_dir):
    """Rows in shuffled order, left-padded prompts, right-padded responses: the trainer's
    sequence_scores must return each response's reward against its OWN row's reference."""
    from transformers import AutoTokenizer

    from huatuo_o1.rl.ppo_reward import RewardHook
    from huatuo_o1.rl.ppo_reward import sequence_scores as get_reward

    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    data = build_rl_data(str(data_file), tok, seed=0)
    rows = data.train[:4]
    answers = [rows[0]["reference"], rows[0]["reference"], "garbage", rows[3]["reference"]]
    texts = [WELL.format(answers[0]), WELL.format(answers[1]), answers[2], WELL.format(answers[3])]
    pad = tok.pad_token_id
    ctx = max(len(r["input_ids"]) for r in rows)
    resp_ids = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]
    width = ctx + max(len(r) for r in resp_ids) + 3
    qr = torch.full((4, width), pad)
    for i, (r, resp) in enumerate(zip(rows, resp_ids, strict=True)):
        q = r["input_ids"]
        qr[i, ctx - len(q) : ctx] = torch.tensor(q)
        qr[i, ctx : ctx + len(resp)] = torch.tensor(resp)
    hook = RewardHook(tok, data.table, ExactMatchVerifier())
    _, scores, _ = get_reward(hook, qr, pad, ctx)
    # row 1 answers row 0's question's answer -> wrong for its own row
    assert scores.tolist() == pytest.approx([1.0, 0.1, 0.0, 1.0])
    assert [b["reference"] for b in hook.scorer.last_batch] == [r["reference"] for r in rows]
    assert hook.pop_stats() == {"n": 4, "reward": pytest.approx(2.1), "well_formed": 3, "correct": 2,
                                "length": sum(len(r) for r in resp_ids)}  # fmt: skip
    # a prompt that is not in the dataset is an error, never a guess
    qr[0, ctx - 1] = (qr[0, ctx - 1] + 1) % len(tok)
    with pytest.raises(RuntimeError, match="not one of the dataset's prompts"):
        get_reward(hook, qr, pad, ctx)


def _ppo_args(lm, verifier, data, out, *extra):
    return [
        "--model_name_or_path", str(lm), "--reward_model_path", str(verifier), "--dataset_name", str(data),
        "--output_dir", str(out), "--run_name", "tiny_ppo", "--response_length", "16",
        "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2",
        "--local_rollout_forward_batch_size", "4", "--total_episodes", "8", "--num_ppo_epochs", "1",
        "--num_sample_generations", "0", "--report_to", "none", "--logging_steps", "1",
        "--save_strategy", "no", "--learning_rate", "1e-3", "--seed", "1", *extra,
    ]  # fmt: skip


def test_ppo_two_batches_train_log_and_save(tmp_path, data_file, tiny_lm_dir, tiny_verifier_dir):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from huatuo_o1.rl import ppo
    from huatuo_o1.rl.common import final_dir
    from huatuo_o1.rl.ppo_trainer import build_ppo_trainer
    from huatuo_o1.train.checkpoints import save_final_policy

    script_args, args, model_args = ppo.parse_args(
        _ppo_args(
            tiny_lm_dir,
            tiny_verifier_dir,
            data_file,
            tmp_path / "ckpts",
            "--malformed_reward",
            "0.25",
            "--kl_coef",
            "0.05",
        )
    )
    trainer = build_ppo_trainer(script_args, args, model_args)
    trainer.train()
    out = save_final_policy(trainer, final_dir(args.output_dir, args.run_name))
    assert out == tmp_path / "ckpts" / "tiny_ppo"

    logs = [h for h in trainer.state.log_history if "reward/mean" in h]
    assert len(logs) == 2  # 8 episodes / batch 4 = 2 rollout batches
    for h in logs:
        for key in ("reward/well_formed", "reward/correct", "reward/response_length", "objective/kl",
                    "loss/policy_avg", "loss/value_avg"):  # fmt: skip
            assert key in h
        # random policy: nothing well-formed, so every score is the malformed reward, and PPO used it
        assert h["reward/mean"] == pytest.approx(0.25)
        assert h["objective/scores"] == pytest.approx(0.25)
        # per-token KL penalty -kl_coef * (logp - ref_logp), summed over the response
        assert h["objective/non_score_reward"] == pytest.approx(-0.05 * h["objective/kl"], rel=1e-4, abs=1e-9)
    # every scored rollout carried its own row's reference
    table = trainer.rl_data.table
    by_q = {tuple(r["input_ids"]): r["reference"] for r in trainer.rl_data.train}
    assert trainer.reward_hook.scorer.last_batch
    for b in trainer.reward_hook.scorer.last_batch:
        assert b["reference"] == by_q[tuple(b["prompt_ids"])] == table.match_prefixes(b["prompt_ids"])[0][1]

    # a plain HF folder that loads, with changed weights and a pad distinct from eos
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.pad_token_id != tok.eos_token_id
    before = load_file(Path(tiny_lm_dir) / "model.safetensors")
    after = load_file(out / "model.safetensors")
    assert set(before) == set(after)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert model.generation_config.eos_token_id == tok.eos_token_id


FORMATTED = "## Thinking\n\nReasoning.\n\n## Final Response\n\ndrug A"


def build_formatted_policy(src, dst) -> tuple[Path, int]:
    """The tiny policy plus one added (non-special) token that decodes to a whole well-formed
    response answering "drug A"; returns the folder and the token id. A `sequence_bias` on the
    generation config (set by the caller) makes every rollout that token then eos."""
    from tokenizers import AddedToken
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src)
    tok.add_tokens([AddedToken(FORMATTED, normalized=False, special=False)])
    model = AutoModelForCausalLM.from_pretrained(src)
    model.resize_token_embeddings(len(tok))
    tok.save_pretrained(dst)
    model.save_pretrained(dst)
    return Path(dst), tok.convert_tokens_to_ids(FORMATTED)


def test_ppo_scores_reach_the_pinned_position_for_the_right_rows(tmp_path, tiny_lm_dir, monkeypatch):
    """Well-formed rollouts through the real loop: rows whose own reference is "drug A" score 1.0,
    the others 0.1 (exact-match verifier), and each score is added one past the response's last
    token (sequence_length + 1, trl's position), or on the last token when the response fills
    response_length."""
    from huatuo_o1.rl import ppo, ppo_core
    from huatuo_o1.rl.ppo_trainer import build_ppo_trainer

    recs = [{OPEN_QUESTION: f"Case {i}: which drug?", GROUND_TRUTH: "drug A" if i % 2 else "drug B"}
            for i in range(12)]  # fmt: skip
    data = tmp_path / "ab.json"
    data.write_text(json.dumps(recs))
    policy, tok_id = build_formatted_policy(tiny_lm_dir, tmp_path / "policy")
    s, a, m = ppo.parse_args(
        _ppo_args(
            policy,
            "unused",
            data,
            tmp_path / "o",
            "--verifier",
            "exact",
            "--kl_coef",
            "0",
            "--whiten_rewards",
            "True",
            "--response_length",
            "6",
            "--gradient_accumulation_steps",
            "4",
            "--local_rollout_forward_batch_size",
            "8",
        )
    )  # fmt: skip  (reward whitening needs a minibatch of 8: one rollout batch of 8 rows)
    trainer = build_ppo_trainer(s, a, m)
    eos = trainer.processing_class.eos_token_id
    trainer.policy_model.generation_config.sequence_bias = {(tok_id,): 40.0, (tok_id, eos): 80.0}

    seen = []  # (rewards before whitening, the rows trl scored) per rollout batch
    real_whiten = ppo_core.whiten_rewards

    def spy(rewards, padding_mask_p1, total=None):
        seen.append((rewards.clone(), list(trainer.reward_hook.scorer.last_batch)))
        return real_whiten(rewards, padding_mask_p1, total)

    monkeypatch.setattr(ppo_core, "whiten_rewards", spy)
    trainer.train()
    assert len(seen) == 1
    scores = []
    for rewards, rows in seen:
        assert len(rows) == rewards.shape[0] == 8
        for r, row in zip(rewards, rows, strict=True):
            expected = 1.0 if row["reference"] == "drug A" else 0.1
            assert row["well_formed"] and row["reward"] == expected
            # kl_coef 0: the score is the only non-zero reward, one past the last response token
            # (ppo_core.token_rewards), or on the last token when the response fills response_length
            n = row["response_len"]
            pos = n if n < rewards.shape[1] else n - 1
            assert r[pos].item() == pytest.approx(expected)
            assert r.count_nonzero().item() == 1
            scores.append(expected)
    assert {1.0, 0.1} <= set(scores)  # both outcomes went through the loop
    assert all(rows[0]["response_len"] == 2 for _, rows in seen)  # [formatted token, eos]


class FakeEngine:
    """What accelerator.prepare returns under DeepSpeed: an engine wrapping the trainer's
    PolicyAndValue. Its state dict stands for the gathered ZeRO-3 weights (every tensor + 1,
    so a save from the bare policy's own parameters would be caught)."""

    def __init__(self, module):
        self.module = module
        self.config = {"zero_optimization": {"stage": 3}}
        self.state_dict_calls = 0
        self.checkpoints = []

    def __getattr__(self, k):
        return getattr(self.__dict__["module"], k)

    def state_dict(self, *a, **kw):
        self.state_dict_calls += 1
        return {k: v + 1 for k, v in self.module.state_dict().items()}

    def save_checkpoint(self, save_dir, tag=None, exclude_frozen_parameters=False):
        self.checkpoints.append(save_dir)


def test_save_under_deepspeed_takes_the_policy_from_the_engine(tmp_path, data_file, tiny_lm_dir):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from huatuo_o1.rl import ppo
    from huatuo_o1.rl.ppo_trainer import build_ppo_trainer
    from huatuo_o1.train.checkpoints import save_final_policy

    s, a, m = ppo.parse_args(
        _ppo_args(tiny_lm_dir, "unused", data_file, tmp_path / "o", "--verifier", "exact", "--total_episodes", "4")
    )  # fmt: skip
    trainer = build_ppo_trainer(s, a, m)
    policy = trainer.policy_model
    stop_eos = policy.generation_config.eos_token_id
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    eng = FakeEngine(trainer.model)
    trainer.model = trainer.model_wrapped = trainer.deepspeed = eng
    trainer.is_deepspeed_enabled = True

    out = save_final_policy(trainer, tmp_path / "final")
    assert eng.state_dict_calls == 1
    saved = load_file(out / "model.safetensors")
    assert set(saved) == set(before)  # the policy only: no value model, no "policy." prefix
    for k, v in before.items():
        torch.testing.assert_close(saved[k], v + 1)  # the engine's (gathered) weights
    AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.pad_token_id == trainer.processing_class.pad_token_id
    # the saved generation config keeps the policy's stop tokens; the rollout config is restored
    assert (
        json.loads((out / "generation_config.json").read_text())["eos_token_id"] == trainer.saved_eos_token_id
    )
    assert policy.generation_config.eos_token_id == stop_eos

    # checkpoints take the same path (plus the engine's own optimizer checkpoint)
    trainer.state.global_step = 3
    trainer._save_checkpoint(eng, trial=None)
    ckpt = tmp_path / "o" / "checkpoint-3"
    assert set(load_file(ckpt / "model.safetensors")) == set(before)
    assert (ckpt / "tokenizer.json").exists() and eng.checkpoints == [str(ckpt)]
    # ... and the value model from the same gathered state (one gather per checkpoint)
    assert eng.state_dict_calls == 2
    value = load_file(ckpt / "value_model" / "model.safetensors")
    for k, v in trainer.value_model.state_dict().items():
        torch.testing.assert_close(value[k], v + 1)
    assert (ckpt / "trainer_state.json").exists() and (ckpt / "run_args.json").exists()


def test_every_rank_gathers_once_per_checkpoint_even_when_its_gather_is_none(
    tmp_path, data_file, tiny_lm_dir, monkeypatch
):
    """Under ZeRO-3 the gathered state is a dict on rank 0 and None elsewhere. A None must never
    mean "not gathered yet": a rank that gathered again would wait in a collective rank 0 never
    joins. On a non-main rank a checkpoint gathers exactly once and writes no weights."""
    from accelerate import Accelerator

    from huatuo_o1.rl import ppo
    from huatuo_o1.rl.ppo_trainer import build_ppo_trainer

    s, a, m = ppo.parse_args(
        _ppo_args(tiny_lm_dir, "unused", data_file, tmp_path / "o", "--verifier", "exact", "--total_episodes", "4")
    )  # fmt: skip
    trainer = build_ppo_trainer(s, a, m)
    eng = FakeEngine(trainer.model)
    eng.state_dict = lambda *x, **k: (setattr(eng, "state_dict_calls", eng.state_dict_calls + 1), None)[1]
    trainer.model = trainer.model_wrapped = trainer.deepspeed = eng
    trainer.is_deepspeed_enabled = True
    monkeypatch.setattr(Accelerator, "is_main_process", property(lambda self: False))
    trainer.state.global_step = 1
    ckpt = tmp_path / "o" / "checkpoint-1"
    ckpt.mkdir(parents=True)  # rank 0 makes it before the ranks meet
    trainer._save_checkpoint(eng, trial=None)
    assert eng.state_dict_calls == 1
    assert not (ckpt / "model.safetensors").exists() and not (ckpt / "value_model").exists()


@pytest.mark.gpu
@pytest.mark.parametrize("config", ["deepspeed_zero2.yaml", "deepspeed_zero3.yaml"])
def test_ppo_under_deepspeed_saves_checkpoints_and_final_policy(tmp_path, data_file, tiny_lm_dir,
                                                                tiny_verifier_dir, config):  # fmt: skip
    from transformers import AutoModelForCausalLM

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "configs" / config),
           "--num_processes", "1", str(ROOT / "RL_stage2.py"),
           *_ppo_args(tiny_lm_dir, tiny_verifier_dir, data_file, tmp_path / "ckpts", "--save_strategy", "steps",
                      "--save_steps", "1", "--bf16", "True")]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    for folder in (tmp_path / "ckpts" / "tiny_ppo", tmp_path / "ckpts" / "checkpoint-2"):
        assert (folder / "model.safetensors").exists(), sorted(p.name for p in folder.parent.iterdir())
        AutoModelForCausalLM.from_pretrained(folder)
    assert (tmp_path / "ckpts" / "checkpoint-2" / "value_model" / "model.safetensors").exists()
    # the same command with more episodes resumes (engine state via deepspeed_load_checkpoint)
    i = cmd.index("--total_episodes")
    r = subprocess.run(
        [*cmd[: i + 1], "12", *cmd[i + 2 :]], capture_output=True, text=True, cwd=ROOT, timeout=900
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from" in r.stderr
    state = json.loads((tmp_path / "ckpts" / "checkpoint-3" / "trainer_state.json").read_text())
    assert (state["global_step"], state["episode"]) == (3, 12)
    assert [h["episode"] for h in state["log_history"] if "reward/mean" in h] == [4, 8, 12]


def test_cli_bad_input_exits_2(tmp_path, tiny_lm_dir):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "RL_stage2.py"), "--model_name_or_path", str(tiny_lm_dir),
         "--dataset_name", str(tmp_path / "missing.json"), "--verifier", "exact", "--output_dir",
         str(tmp_path / "o"), "--report_to", "none"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "error: dataset file not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ppo_with_llm_judge_over_loopback_server(tmp_path, data_file, tiny_lm_dir, monkeypatch, caplog):
    import logging

    from huatuo_o1.rl import ppo
    from huatuo_o1.rl.ppo_trainer import build_ppo_trainer
    from huatuo_o1.testing.openai_server import FakeOpenAIServer

    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    caplog.set_level(logging.DEBUG)
    with FakeOpenAIServer(lambda req: "True") as srv:
        s, a, m = ppo.parse_args(
            _ppo_args(tiny_lm_dir, "unused", data_file, tmp_path / "o", "--verifier", "llm", "--judge_model",
                      "fake-model", "--judge_api_url", srv.url, "--total_episodes", "4",
                      "--judge_api_key", "sk-flag-secret")
        )  # fmt: skip
        assert "sk-flag-secret" not in repr(s)
        trainer = build_ppo_trainer(s, a, m)
        trainer.train()
        assert srv.count("/chat/completions") == 4  # one verdict per rollout
        # the flag's key wins over the environment's, and it is never logged
        assert {r.headers.get("authorization") for r in srv.requests} == {"Bearer sk-flag-secret"}
        assert "sk-flag-secret" not in caplog.text
        # each judge prompt carries its own row's reference answer
        refs = {b["reference"] for b in trainer.reward_hook.scorer.last_batch}
        assert all(any(ref in r.prompt for r in srv.requests) for ref in refs)
    # malformed responses get 0 even though the judge said True
    assert [h["reward/mean"] for h in trainer.state.log_history if "reward/mean" in h] == [0.0]


def test_hub_dataset_name_goes_through_datasets(monkeypatch):
    from huatuo_o1.rl.data import load_verifiable_problems

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # offline and not cached: a clear one-line InputError naming the dataset, not a traceback
    with pytest.raises(InputError, match="cannot load dataset 'no-such-org/no-such-dataset'"):
        load_verifiable_problems("no-such-org/no-such-dataset")


def test_hook_split_uses_the_common_prompt_end(tiny_lm_dir):
    """A response that happens to continue one prompt into a longer registered prompt is still cut
    at the batch's common prompt end (trl's context_length)."""
    from transformers import AutoTokenizer

    from huatuo_o1.rl.ppo_trainer import RewardHook

    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    t = PromptTable()
    t.add([11, 12, 13], "A")
    t.add([11, 12, 13, 17, 18], "B")
    t.add([14, 15, 16, 17, 19], "C")
    hook = RewardHook(tok, t, ExactMatchVerifier())
    ids = torch.tensor([[14, 15, 16, 17, 19, 30, 31, 0], [0, 0, 11, 12, 13, 17, 18, 30]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1, 1, 1]])
    rows = hook.scorer.split(ids, mask)
    assert rows == [([14, 15, 16, 17, 19], [30, 31], "C"), ([11, 12, 13], [17, 18, 30], "A")]


def test_ppo_resumes_at_the_saved_update(tmp_path, data_file, tiny_lm_dir, tiny_verifier_dir):
    """Run 1 update with a checkpoint, rerun with more episodes: policy and value model come from
    checkpoint-1, the reference policy stays the original, optimizer/scheduler/step/episode continue,
    update 2 takes the next (unused) prompts, the result equals an uninterrupted 2-update run, and a
    rerun of the finished run trains nothing."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from huatuo_o1.rl import ppo
    from huatuo_o1.rl.ppo_trainer import build_ppo_trainer, is_complete_checkpoint, train_ppo
    from huatuo_o1.train.checkpoints import newest_complete_checkpoint, save_final_policy

    out, straight = tmp_path / "ckpts", tmp_path / "straight"

    def argv(episodes, data=data_file, out=out):
        return _ppo_args(tiny_lm_dir, tiny_verifier_dir, data, out, "--total_episodes", str(episodes),
                         "--save_strategy", "steps", "--save_steps", "1")  # fmt: skip

    assert ppo.main(argv(4)) == 0  # 1 update of 4 episodes, checkpoint-1
    ckpt1 = out / "checkpoint-1"
    for name in ("model.safetensors", "value_model/config.json", "value_model/model.safetensors", "optimizer.pt",
                 "scheduler.pt", "rng_state.pth", "trainer_state.json", "run_args.json"):  # fmt: skip
        assert (ckpt1 / name).exists(), name
    assert json.loads((ckpt1 / "trainer_state.json").read_text())["episode"] == 4

    # the rerun with more episodes: what train_ppo does, step by step, to look inside
    s, a, m = ppo.parse_args(argv(8))
    assert newest_complete_checkpoint(a.output_dir, is_complete_checkpoint) == str(ckpt1)
    trainer = build_ppo_trainer(s, a, m, resume_from=str(ckpt1))
    for model, path in ((trainer.policy_model, ckpt1), (trainer.value_model, ckpt1 / "value_model"),
                        (trainer.ref_model, tiny_lm_dir)):  # fmt: skip
        saved = load_file(Path(path) / "model.safetensors")
        state = model.state_dict()
        for k, v in saved.items():
            torch.testing.assert_close(state[k], v)
    assert any(not torch.equal(trainer.policy_model.state_dict()[k], trainer.ref_model.state_dict()[k])
               for k in saved)  # fmt: skip
    trainer.train(resume_from_checkpoint=str(ckpt1))
    assert (trainer.state.global_step, trainer.state.episode) == (2, 8)
    assert [h["episode"] for h in trainer.state.log_history if "reward/mean" in h] == [4, 8]
    assert trainer.lr_scheduler.last_epoch == 2  # 1 restored + 1 step
    # the same as one uninterrupted 2-update run: weights, value model, optimizer state
    assert ppo.main(argv(8, out=straight)) == 0
    for name in ("model.safetensors", "value_model/model.safetensors"):
        want = load_file(straight / "checkpoint-2" / name)
        got = load_file(out / "checkpoint-2" / name)
        for k, v in want.items():
            torch.testing.assert_close(got[k], v)
    want = torch.load(straight / "checkpoint-2" / "optimizer.pt")["state"]
    got = torch.load(out / "checkpoint-2" / "optimizer.pt")["state"]
    for i, st in want.items():
        assert got[i]["step"] == st["step"]
        torch.testing.assert_close(got[i]["exp_avg_sq"], st["exp_avg_sq"])
    # update 2 used batch 2 of the seeded epoch order: no prompt of update 1 again
    order = torch.randperm(len(trainer.train_dataset), generator=torch.Generator().manual_seed(1)).tolist()
    rows = trainer.train_dataset["input_ids"]
    used = sorted(tuple(b["prompt_ids"]) for b in trainer.reward_hook.scorer.last_batch)
    assert used == sorted(tuple(rows[i]) for i in order[4:8])
    assert json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["global_step"] == 2
    save_final_policy(trainer, out / "tiny_ppo")

    # another dataset in the same output_dir: a clear error, nothing touched
    other = tmp_path / "other.jsonl"
    other.write_text(data_file.read_text())
    with pytest.raises(InputError, match="--resume False"):
        train_ppo(*ppo.parse_args(argv(8, other)))

    # the finished run again: resumes at update 2 of 2, trains nothing, saves the same final policy
    assert ppo.main(argv(8)) == 0
    assert not (out / "checkpoint-3").exists()
    final = load_file(out / "tiny_ppo" / "model.safetensors")
    for k, v in load_file(out / "checkpoint-2" / "model.safetensors").items():
        torch.testing.assert_close(final[k], v)
    AutoModelForCausalLM.from_pretrained(out / "tiny_ppo")

    # --resume False starts over from --model_name_or_path (here on the other dataset)
    assert ppo.main([*argv(4, other), "--resume", "False"]) == 0
    state = json.loads((out / "checkpoint-1" / "trainer_state.json").read_text())
    assert [h["episode"] for h in state["log_history"] if "reward/mean" in h] == [4]
    assert json.loads((out / "checkpoint-1" / "run_args.json").read_text())["dataset_name"] == str(other)
