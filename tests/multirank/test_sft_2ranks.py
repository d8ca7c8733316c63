"""SFT (SFT_stage1.py) on two ranks under the shipped ZeRO-3 and ZeRO-2 configs: the same losses as
one process at the same global batch, a checkpoint per step, resume after a kill, a whole final
model, and a one-line refusal to resume a two-process DeepSpeed checkpoint on one process."""

from __future__ import annotations

import shutil

import pytest

from tests.multirank.launching import assert_whole_model, launch, logged, trainer_state, write_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory):
    return write_json(
        tmp_path_factory.mktemp("sft") / "sft.json",
        [{"Question": f"Patient {i} has fever and cough{'.' * i} Diagnosis?", "Complex_CoT": "Consider pneumonia.",
          "Response": f"Pneumonia ({'ABCD'[i % 4]})."} for i in range(8)],
    )  # fmt: skip


def sft_args(model, data, out, tmp_path):
    return ["--model_path", model, "--data_path", data, "--output_dir", out, "--log_dir", tmp_path / "logs",
            "--max_seq_len", "128", "--report_to", "none", "--gradient_checkpointing", "False",
            "--train_bsz_per_gpu", "1", "--global_batch_size", "4", "--n_epochs", "1", "--save_steps", "1",
            "--max_ckpts", "0", "--learning_rate", "1e-3", "--seed", "3"]  # fmt: skip


@pytest.fixture(scope="module")
def one_process_losses(tmp_path_factory, tiny_lm_dir, sft_data):
    """The losses of the same recipe on one process (plain `python`, no launcher)."""
    tmp = tmp_path_factory.mktemp("sft_one")
    launch(None, "SFT_stage1.py", *sft_args(tiny_lm_dir, sft_data, tmp / "out", tmp), cwd=tmp)
    return logged(trainer_state(tmp / "out" / "sft_stage1" / "checkpoint-2"), "loss")


@pytest.mark.parametrize("config", ["zero3", "zero2"])
def test_sft_two_ranks(config, tmp_path, tiny_lm_dir, sft_data, one_process_losses):
    out = tmp_path / "out"
    run_dir = out / "sft_stage1"
    args = sft_args(tiny_lm_dir, sft_data, out, tmp_path)
    r = launch(config, "SFT_stage1.py", *args, cwd=tmp_path)
    assert "1 per device x 2 accumulation x 2 process(es) = 4 examples per optimizer step" in r.stdout
    first = trainer_state(run_dir / "checkpoint-2")
    # Same global batch and seed: the two ranks see the one process's examples per step, and the
    # loss is the token mean over the whole step (all micro-batches and ranks), so the logged losses
    # agree up to float32 summation order (1e-6 relative; a wrong batch or averaging moves them by %).
    assert [s for s, _ in logged(first, "loss")] == [s for s, _ in one_process_losses] == [1, 2]
    for (_, two), (_, one) in zip(logged(first, "loss"), one_process_losses, strict=True):
        assert two == pytest.approx(one, rel=1e-6)
    assert_whole_model(run_dir)

    if config == "zero3":
        # killed after step 1: the same command resumes at step 2 and logs each step once
        shutil.rmtree(run_dir / "checkpoint-2")
        r = launch(config, "SFT_stage1.py", *args, cwd=tmp_path)
        assert "resuming from" in r.stdout and "checkpoint-1" in r.stdout
        again = trainer_state(run_dir / "checkpoint-2")
        assert [s for s, _ in logged(again, "loss")] == [1, 2]
        assert logged(again, "loss")[1][1] == pytest.approx(logged(first, "loss")[1][1], rel=1e-6)
        assert_whole_model(run_dir)
        # the same command on one process: refused before anything is loaded, in one line
        r = launch(None, "SFT_stage1.py", *args, cwd=tmp_path, expect=2)
        err = r.stdout.strip().splitlines()[-1]
        assert err.startswith("error: checkpoint-2") and "written by 2 processes" in err
        assert "this launch has 1" in err and "--num_processes 2" in err


def test_sigterm_to_the_launcher_saves_a_complete_checkpoint_on_every_rank(tmp_path, tiny_lm_dir, sft_data):
    """`kill <launcher>` (what a scheduler's preemption does) with --sigterm_grace: the launcher
    passes SIGTERM to the ranks, which finish the step, save one checkpoint together (every rank's
    ZeRO-3 shard) and exit 143 with one line; `accelerate launch` itself exits 1 (torch's elastic
    agent turns the signal into an exception: docs/multi_gpu.md). The same command then resumes."""
    from tests.multirank.launching import preempt

    out = tmp_path / "out"
    run_dir = out / "sft_stage1"
    args = [*sft_args(tiny_lm_dir, sft_data, out, tmp_path), "--n_epochs", "100", "--save_steps", "1000",
            "--sigterm_grace", "60"]  # fmt: skip
    ckpt = preempt("zero3", "SFT_stage1.py", *args, cwd=tmp_path, once_logged="'loss'")
    assert ckpt.parent == run_dir
    step = trainer_state(ckpt)["global_step"]
    assert_whole_model(ckpt)
    # the same command resumes from it (one more step, then a finished run)
    r = launch("zero3", "SFT_stage1.py", *args[:-2], "--max_steps", str(step + 1), cwd=tmp_path)
    assert f"resuming from {ckpt}" in r.stdout
