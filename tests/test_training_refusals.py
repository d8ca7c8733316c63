"""Training runs that refuse or skip what they cannot use: no PPO hang below one batch, no resume of a changed recipe,
torn checkpoints skipped for the newest intact one."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from huatuo_o1.contract import GROUND_TRUTH, OPEN_QUESTION
from huatuo_o1.io import InputError
from tests.helpers import run_script


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def sft_records(n: int) -> list[dict]:
    return [
        {"Question": f"Patient {i} has fever. Diagnosis?", "Complex_CoT": "Consider pneumonia.",
         "Response": f"Pneumonia ({i})."}
        for i in range(n)
    ]  # fmt: skip


def sft_argv(model_dir, data, out, *extra) -> list[str]:
    return [
        "--model_path", str(model_dir), "--data_path", str(data), "--output_dir", str(out),
        "--log_dir", str(Path(out) / "logs"), "--max_seq_len", "128", "--report_to", "none",
        "--gradient_accumulation_steps", "1", "--gradient_checkpointing", "False", *extra,
    ]  # fmt: skip


def ppo_argv(lm, verifier, data, out, *extra) -> list[str]:
    return [
        "--model_name_or_path", str(lm), "--reward_model_path", str(verifier), "--dataset_name", str(data),
        "--output_dir", str(out), "--run_name", "tiny_ppo", "--response_length", "8",
        "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2",
        "--total_episodes", "8", "--num_ppo_epochs", "1", "--num_sample_generations", "0",
        "--report_to", "none", "--save_strategy", "no", "--learning_rate", "1e-3", "--seed", "1", *extra,
    ]  # fmt: skip


def rl_data(path: Path, n: int) -> Path:
    rows = [{OPEN_QUESTION: f"Case {i}: which drug?", GROUND_TRUTH: f"drug {i}"} for i in range(n)]
    return write_json(path, rows)


def save_tiny_safetensors(path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": torch.arange(64, dtype=torch.float32)}, str(path))


# ----------------------------------------------------------------------------- 1. PPO below one batch


def test_ppo_with_fewer_rows_than_one_batch_stops_at_once(tmp_path, tiny_lm_dir, tiny_verifier_dir):
    """2 rows (1 train, 1 held out) and a batch of 8 x 4: one line naming rows, batch and the flags,
    exit 2 (it used to spin forever in trl's batch loop)."""
    data = rl_data(tmp_path / "two.json", 2)
    proc = run_script(
        "RL_stage2.py",
        *ppo_argv(
            tiny_lm_dir,
            tiny_verifier_dir,
            data,
            tmp_path / "o",
            "--per_device_train_batch_size",
            "8",
            "--gradient_accumulation_steps",
            "4",
        ),  # fmt: skip
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "Traceback" not in proc.stderr
    assert "1 training rows (1 more held out for evaluation) are fewer than one PPO batch of 32" in err[0]
    assert "--per_device_train_batch_size 8 x --gradient_accumulation_steps 4" in err[0]
    assert not (tmp_path / "o" / "tiny_ppo").exists()


def test_ppo_batch_check_comes_before_any_model_is_loaded(tmp_path, tiny_lm_dir):
    from huatuo_o1.rl import ppo
    from huatuo_o1.rl.ppo_trainer import build_ppo_trainer

    data = rl_data(tmp_path / "d.json", 6)  # 5 train rows < 2 x 4
    argv = ppo_argv(tiny_lm_dir, tmp_path, data, tmp_path / "o", "--gradient_accumulation_steps", "4")
    s, a, m = ppo.parse_args(argv)
    with pytest.raises(InputError, match="5 training rows .* fewer than one PPO batch of 8"):
        build_ppo_trainer(s, a, m)


def test_empty_epoch_raises_instead_of_spinning():
    from torch.utils.data import DataLoader

    from huatuo_o1.rl.ppo_trainer import _EpochBatches

    batches = _EpochBatches(DataLoader(list(range(3)), batch_size=4, shuffle=True, drop_last=True), seed=0)
    with pytest.raises(InputError, match="no full batch"):
        next(iter(batches))


# ----------------------------------------------------------------------------- 7. changed recipe


def test_sft_refuses_to_resume_with_changed_result_flags(tiny_lm_dir, tmp_path, capsys):
    from huatuo_o1.cli import run_main
    from huatuo_o1.train.sft import main, parse_args, sft_identity

    data = write_json(tmp_path / "d.json", sft_records(4))
    old = sft_argv(tiny_lm_dir, data, tmp_path / "ckpts", "--learning_rate", "1e-3")
    ckpt = tmp_path / "ckpts" / "sft_stage1" / "checkpoint-2"
    ckpt.mkdir(parents=True)
    write_json(ckpt / "trainer_state.json", {"global_step": 2})
    write_json(ckpt / "run_args.json", sft_identity(parse_args(old)))
    new = [*old, "--learning_rate", "2e-3", "--max_seq_len", "64", "--packing", "False"]
    with pytest.raises(SystemExit) as e:
        run_main(lambda: main(new))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the newest checkpoint")
    assert "--max_seq_len 128 --packing True --learning_rate 0.001" in err[0]
    assert "not --max_seq_len 64 --packing False --learning_rate 0.002" in err[0]
    assert "--resume False" in err[0]
    # the same recipe is accepted (the identity is deterministic), and logging flags do not count
    same = sft_identity(parse_args([*old, "--logging_steps", "5", "--save_steps", "3", "--resume"]))
    assert same == sft_identity(parse_args(old))


def test_ppo_refuses_to_resume_with_changed_result_flags(tmp_path, tiny_lm_dir, tiny_verifier_dir):
    from huatuo_o1.rl import ppo
    from huatuo_o1.rl.ppo_trainer import ppo_identity, train_ppo

    data = rl_data(tmp_path / "d.json", 12)
    out = tmp_path / "o"
    old = ppo_argv(tiny_lm_dir, tiny_verifier_dir, data, out)
    ckpt = out / "checkpoint-1"
    (ckpt / "value_model").mkdir(parents=True)
    write_json(ckpt / "value_model" / "config.json", {})
    write_json(ckpt / "trainer_state.json", {"global_step": 1})
    write_json(ckpt / "run_args.json", ppo_identity(*ppo.parse_args(old)))
    with pytest.raises(InputError) as e:
        train_ppo(*ppo.parse_args([*old, "--learning_rate", "5e-4", "--kl_coef", "0.1"]))
    msg = str(e.value)
    assert "\n" not in msg and "--learning_rate 0.001 --kl_coef 0.05" in msg
    assert "not --learning_rate 0.0005 --kl_coef 0.1" in msg
    with pytest.raises(InputError, match="--correct_reward 1.0, not --correct_reward 2.0"):
        train_ppo(*ppo.parse_args([*old, "--correct_reward", "2"]))
    # a larger --total_episodes continues the run (documented), so it is not part of the identity
    longer = ppo_identity(*ppo.parse_args([*old, "--total_episodes", "16"]))
    assert longer == ppo_identity(*ppo.parse_args(old))


def test_an_older_run_args_without_settings_is_still_trusted(tmp_path):
    from huatuo_o1.train.checkpoints import check_resumable, run_identity

    ckpt = tmp_path / "checkpoint-1"
    ckpt.mkdir()
    write_json(ckpt / "run_args.json", {"model_path": "org/m", "data_path": "org/d"})
    check_resumable(
        ckpt, tmp_path, run_identity({"model_path": "org/m", "data_path": "org/d"}, {"seed": 1}), ""
    )
    with pytest.raises(InputError, match="--data_path org/d, not --data_path org/e"):
        check_resumable(ckpt, tmp_path, run_identity({"model_path": "org/m", "data_path": "org/e"}), "")


# ----------------------------------------------------------------------------- 8. torn checkpoints


def make_ckpt(run: Path, step: int, *, state: str | None = None, weights: bytes | None = None) -> Path:
    ckpt = run / f"checkpoint-{step}"
    save_tiny_safetensors(ckpt / "model.safetensors")
    (ckpt / "trainer_state.json").write_text(
        state if state is not None else json.dumps({"global_step": step})
    )
    if weights is not None:
        (ckpt / "model.safetensors").write_bytes(weights)
    return ckpt


def test_torn_newest_checkpoints_are_skipped_with_one_line_each(tmp_path, caplog):
    from huatuo_o1.train.checkpoints import newest_complete_checkpoint

    run = tmp_path / "run"
    good = make_ckpt(run, 1)
    whole = (good / "model.safetensors").read_bytes()
    make_ckpt(run, 2, weights=whole[: len(whole) - 16])  # data cut short
    make_ckpt(run, 3, state='{"global_step": 3, "log_hi')  # truncated trainer_state.json
    make_ckpt(run, 4, weights=b"")  # empty weights
    with caplog.at_level(logging.WARNING, logger="huatuo_o1.train.checkpoints"):
        assert newest_complete_checkpoint(run) == str(good)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "checkpoint-4 (model.safetensors is empty)" in lines[0]
    assert "checkpoint-3 (trainer_state.json is unreadable or truncated)" in lines[1]
    assert "checkpoint-2 (model.safetensors is truncated)" in lines[2]
    caplog.clear()
    assert newest_complete_checkpoint(run / "nothing") is None


def test_ppo_checkpoint_with_an_empty_value_model_is_skipped(tmp_path, caplog):
    from huatuo_o1.rl.ppo_trainer import is_complete_checkpoint
    from huatuo_o1.train.checkpoints import newest_complete_checkpoint

    run = tmp_path / "run"
    for step in (1, 2):
        ckpt = make_ckpt(run, step)
        save_tiny_safetensors(ckpt / "value_model" / "model.safetensors")
        write_json(ckpt / "value_model" / "config.json", {})
    (run / "checkpoint-2" / "value_model" / "model.safetensors").write_bytes(b"")
    (run / "checkpoint-1" / "optimizer.pt").write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="huatuo_o1.train.checkpoints"):
        assert newest_complete_checkpoint(run, is_complete_checkpoint) == str(run / "checkpoint-1")
    assert "value_model/model.safetensors is empty" in caplog.text
    (run / "checkpoint-1" / "optimizer.pt").write_bytes(b"")
    assert newest_complete_checkpoint(run, is_complete_checkpoint) is None


def test_sft_resumes_from_the_newest_intact_checkpoint(tiny_lm_dir, tmp_path, caplog):
    """A real run: its newest checkpoint's trainer_state.json is then cut; the rerun skips it with
    one line, resumes from the one before, and finishes (it used to stop with a traceback)."""
    from huatuo_o1.train.sft import parse_args, train

    data = write_json(tmp_path / "d.json", sft_records(4))
    argv = sft_argv(tiny_lm_dir, data, tmp_path / "ckpts", "--max_steps", "2", "--save_steps", "1",
                    "--train_bsz_per_gpu", "2", "--max_ckpts", "0")  # fmt: skip
    run = Path(train(parse_args(argv)))
    state = run / "checkpoint-2" / "trainer_state.json"
    state.write_text(state.read_text()[:40])
    with caplog.at_level(logging.INFO):
        assert train(parse_args(argv)) == str(run)
    skipped = [r.getMessage() for r in caplog.records if "skipping torn checkpoint" in r.getMessage()]
    assert len(skipped) == 1 and "checkpoint-2" in skipped[0]
    assert any(f"resuming from {run / 'checkpoint-1'}" in r.getMessage() for r in caplog.records)
    assert json.loads(state.read_text())["global_step"] == 2  # step 2 was redone and saved whole


def test_resume_identity_follows_the_recipe_not_the_gpu_count(tmp_path, monkeypatch):
    """With --global_batch_size the accumulation is derived from the process count: the identity
    records the global batch instead, so the same recipe resumes on another GPU count and a
    changed global batch is refused; a hub set named `org/x:en` or `org/x --data_config en` is one."""
    from huatuo_o1.rl import ppo
    from huatuo_o1.rl.ppo_trainer import ppo_identity
    from huatuo_o1.train.sft import parse_args, set_global_batch, sft_identity

    def sft_id(world: int, *extra) -> dict:
        monkeypatch.setenv("WORLD_SIZE", str(world))
        args = parse_args(
            ["--model_path", "m", "--data_path", "org/set:en", "--train_bsz_per_gpu", "2", *extra]
        )
        set_global_batch(args)
        identity = sft_identity(args)
        assert identity.pop("num_processes") == world  # recorded, compared apart (check_process_count)
        return identity

    assert sft_id(1, "--global_batch_size", "16") == sft_id(2, "--global_batch_size", "16")
    assert sft_id(1, "--global_batch_size", "16") != sft_id(1, "--global_batch_size", "32")
    assert sft_id(1) != sft_id(2, "--gradient_accumulation_steps", "4")  # plain accumulation still counts
    monkeypatch.setenv("WORLD_SIZE", "1")
    same = parse_args(
        ["--model_path", "m", "--data_path", "org/set", "--data_config", "en", "--train_bsz_per_gpu", "2"]
    )
    assert {k: v for k, v in sft_identity(same).items() if k != "num_processes"} == sft_id(1)

    def ppo_id(world: int, gb: str) -> dict:
        monkeypatch.setenv("WORLD_SIZE", str(world))
        argv = ppo_argv("lm", "v", tmp_path / "d.json", tmp_path / "o", "--global_batch_size", gb)
        return {k: v for k, v in ppo_identity(*ppo.parse_args(argv)).items() if k != "num_processes"}

    assert ppo_id(1, "8") == ppo_id(2, "8")
    assert ppo_id(1, "8") != ppo_id(1, "16")
