"""PPO flags that do something: --global_batch_size, bf16 loading, --gradient_checkpointing for
policy and value (rollouts unchanged), one warning for the flags the PPO loop ignores."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from huatuo_o1.io import InputError
from huatuo_o1.rl.options import apply_global_batch, model_dtypes


def write_rl_rows(path: Path) -> Path:
    """Eight verifiable problems, one drug each, as an RL data file."""
    rows = [{"Open-ended Verifiable Question": f"Q{i}: which drug for case {i}?", "Ground-True Answer": f"drug {i}"}
            for i in range(8)]  # fmt: skip
    path.write_text(json.dumps(rows))
    return path


@pytest.fixture()
def data_file(tmp_path):
    return write_rl_rows(tmp_path / "rl.json")


def _argv(lm, data, out, *extra):
    return ["--model_name_or_path", str(lm), "--dataset_name", str(data), "--verifier", "exact", "--output_dir",
            str(out), "--response_length", "12", "--per_device_train_batch_size", "2",
            "--gradient_accumulation_steps", "2", "--local_rollout_forward_batch_size", "4", "--total_episodes", "4",
            "--num_ppo_epochs", "1", "--num_sample_generations", "0", "--report_to", "none", "--save_strategy", "no",
            "--seed", "7", *extra]  # fmt: skip


def test_global_batch_sets_accumulation_from_the_world_size(monkeypatch):
    for world, accumulation in ((1, 8), (2, 4), (8, 1)):
        monkeypatch.setenv("WORLD_SIZE", str(world))
        args = SimpleNamespace(
            per_device_train_batch_size=2, gradient_accumulation_steps=1, global_batch_size=16
        )
        line = apply_global_batch(args)
        assert args.gradient_accumulation_steps == accumulation
        assert line.endswith("= 16 examples per optimizer step")
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(InputError, match="not a multiple of --per_device_train_batch_size 2 x 3 process"):
        apply_global_batch(SimpleNamespace(per_device_train_batch_size=2, gradient_accumulation_steps=1,
                                           global_batch_size=16))  # fmt: skip


def test_global_batch_flag_is_wired_into_the_ppo_config(tmp_path, monkeypatch):
    from huatuo_o1.rl import ppo

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    _, a, _ = ppo.parse_args(
        _argv("m", "d", tmp_path, "--global_batch_size", "16", "--num_mini_batches", "2")
    )
    assert a.gradient_accumulation_steps == 8
    assert "2 per device x 8 accumulation x 1 process(es) = 16" in a.global_batch_line
    assert "32 episodes per PPO update (2 mini-batches)" in a.global_batch_line


def test_model_dtypes_under_bf16():
    assert model_dtypes("float32", bf16=False, deepspeed=True) == ("float32", "float32")
    assert model_dtypes(torch.float32, bf16=True, deepspeed=True) == (torch.bfloat16, torch.bfloat16)
    assert model_dtypes(torch.float32, bf16=True, deepspeed=False) == (torch.float32, torch.bfloat16)
    assert model_dtypes(torch.float16, bf16=True, deepspeed=True) == (
        torch.float16,
        torch.float16,
    )  # explicit wins


def test_ignored_flags_get_one_warning(tmp_path, data_file, tiny_lm_dir, caplog):
    from huatuo_o1.rl import ppo
    from huatuo_o1.rl.ppo_trainer import build_ppo_trainer

    _, a, _ = ppo.parse_args(_argv(tiny_lm_dir, data_file, tmp_path))
    assert a.ignored_flags == []
    extra = ["--eval_strategy", "steps", "--eval_steps", "5", "--dataloader_num_workers", "2", "--bf16", "True",
             "--use_cpu", "True", "--attn_implementation", "eager"]  # fmt: skip
    s, a, m = ppo.parse_args(_argv(tiny_lm_dir, data_file, tmp_path, *extra))
    assert a.ignored_flags == ["--eval_strategy", "--eval_steps", "--dataloader_num_workers"]
    with caplog.at_level(logging.WARNING):
        trainer = build_ppo_trainer(s, a, m)
    warnings = [r.getMessage() for r in caplog.records if "ignores" in r.getMessage()]
    assert warnings == ["the PPO loop ignores --eval_strategy, --eval_steps, --dataloader_num_workers: "
                        "no effect on this run"]  # fmt: skip
    # bf16 training without DeepSpeed: the frozen reference in bf16, the trained models in fp32
    assert trainer.ref_model.dtype == torch.bfloat16
    assert trainer.policy_model.dtype == torch.float32 and trainer.value_model.dtype == torch.float32
    # --attn_implementation (trl's ModelConfig flag) reaches the three trained/reference models
    for model in (trainer.policy_model, trainer.ref_model, trainer.value_model):
        assert model.config._attn_implementation == "eager"


def _one_update(tmp_path, data_file, lm, *extra):
    from huatuo_o1.rl import ppo
    from huatuo_o1.rl.ppo_trainer import build_ppo_trainer

    s, a, m = ppo.parse_args(_argv(lm, data_file, tmp_path, *extra))
    trainer = build_ppo_trainer(s, a, m)
    trainer.train()
    return trainer, [r["response"] for r in trainer.reward_hook.scorer.last_batch]


def test_gradient_checkpointing_on_policy_and_value_rollouts_unchanged(tmp_path, data_file, tiny_lm_dir,
                                                                     monkeypatch):  # fmt: skip
    from huatuo_o1.rl import ppo_trainer

    plain, plain_responses = _one_update(
        tmp_path / "a", data_file, tiny_lm_dir, "--gradient_checkpointing", "False"
    )
    assert not plain.policy_model.is_gradient_checkpointing
    modes = []
    original = ppo_trainer.batch_generation

    def spy(model, *a, **kw):
        modes.append(model.training)
        return original(model, *a, **kw)

    monkeypatch.setattr(ppo_trainer, "batch_generation", spy)
    ckpt, ckpt_responses = _one_update(
        tmp_path / "b", data_file, tiny_lm_dir, "--gradient_checkpointing", "True"
    )
    assert ckpt.policy_model.is_gradient_checkpointing and ckpt.value_model.is_gradient_checkpointing
    # rollouts generate in eval mode (a checkpointed layer in train mode drops the KV cache and
    # recomputes every step), with the same responses as without checkpointing
    assert modes and not any(modes)
    assert ckpt_responses == plain_responses and any(ckpt_responses)


def test_ppo_save_only_model_resume_says_what_it_cannot_restore(tmp_path, data_file, tiny_lm_dir, caplog):
    from huatuo_o1.rl import ppo

    out = tmp_path / "o"

    def argv(episodes):
        a = _argv(tiny_lm_dir, data_file, out, "--save_only_model", "True", "--save_steps", "1")
        a[a.index("--total_episodes") + 1] = str(episodes)
        a[a.index("--save_strategy") + 1] = "steps"
        return a

    assert ppo.main(argv(4)) == 0
    ckpt = out / "checkpoint-1"
    assert (ckpt / "model.safetensors").exists() and (ckpt / "value_model" / "model.safetensors").exists()
    assert not (ckpt / "optimizer.pt").exists() and not (ckpt / "scheduler.pt").exists()
    with caplog.at_level(logging.WARNING):
        assert ppo.main(argv(8)) == 0
    notes = [r.getMessage() for r in caplog.records if "weights only" in r.getMessage()]
    assert len(notes) == 1 and "not the optimizer's moments" in notes[0]
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert (state["global_step"], state["episode"]) == (2, 8)
