"""The rules that make multi-process runs safe, checked in-process (the two-rank launches that prove
them end to end are the multi-rank tier, tests/multirank):

- the run identity records the process count, and a DeepSpeed checkpoint written by another count
  is refused in one line naming both counts before anything is loaded (weights-only checkpoints and
  checkpoints without an engine state resume on any count);
- fewer training rows than one optimizer step is one line (exit 2) on every trainer;
- a CPU-only machine turns `use_cpu` on by itself (so a CPU launch counts its processes);
- a new head is drawn from --seed, whatever the global RNG did before.
"""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from huatuo_o1.io import InputError
from huatuo_o1.train.checkpoints import resume_point, run_identity, write_identity
from huatuo_o1.train.checks import check_one_step

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only detection")


def _checkpoint(run, step: int, processes: int, engine: bool):
    ckpt = run / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    identity = {"model_path": "m", "num_processes": processes}
    write_identity(ckpt, identity)
    if engine:
        (ckpt / f"global_step{step}").mkdir()
    return ckpt


def test_identity_records_the_process_count(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert run_identity({"model_path": "m"}, {"seed": 1})["num_processes"] == 8
    monkeypatch.delenv("WORLD_SIZE")
    assert run_identity({"model_path": "m"})["num_processes"] == 1


def test_a_deepspeed_checkpoint_resumes_only_on_its_process_count(tmp_path):
    run = tmp_path / "run"
    ckpt = _checkpoint(run, 20, processes=8, engine=True)
    with pytest.raises(InputError) as e:
        resume_point(run, None, {"model_path": "m", "num_processes": 4}, "use another --output_dir")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("checkpoint-20 in ")
    assert "written by 8 processes and this launch has 4" in msg
    assert "--num_processes 8" in msg and "--resume False" in msg
    # the same count resumes; --resume False starts over without reading it
    assert resume_point(run, None, {"model_path": "m", "num_processes": 8}, "x") == str(ckpt)
    assert resume_point(run, False, {"model_path": "m", "num_processes": 4}, "x") is None


def test_a_checkpoint_without_engine_state_resumes_on_any_count(tmp_path):
    """Weights-only (--save_only_model) and non-DeepSpeed checkpoints hold whole states."""
    run = tmp_path / "run"
    ckpt = _checkpoint(run, 3, processes=2, engine=False)
    assert resume_point(run, None, {"model_path": "m", "num_processes": 1}, "x") == str(ckpt)
    # an older checkpoint without a recorded count is trusted, as any setting it lacks
    (ckpt / "run_args.json").write_text(json.dumps({"model_path": "m"}))
    (ckpt / "global_step3").mkdir()
    assert resume_point(run, None, {"model_path": "m", "num_processes": 1}, "x") == str(ckpt)


def test_fewer_rows_than_one_step_is_refused():
    check_one_step(8, 2, 2, 2, "examples")  # exactly one step
    with pytest.raises(InputError) as e:
        check_one_step(7, 2, 2, 2, "examples")
    assert "7 training examples are fewer than one optimizer step of 8 examples" in str(e.value)
    assert "2 per device x 2 accumulation x 2 process(es)" in str(e.value)
    with pytest.raises(InputError) as e:  # RLOO's default: 128 completions, 2 per prompt
        check_one_step(15, 2, 64, 1, "prompts", per_group=2, completions=128)
    assert "15 training prompts are fewer than one optimizer step of 64 prompts" in str(e.value)
    assert "/ 2 samples per prompt" in str(e.value)


def test_rloo_with_its_default_batch_on_few_rows_stops_before_loading_a_model(tmp_path, tiny_lm_dir):
    """It used to train 0 steps, exit 0 and save the unchanged policy as the final model."""
    from huatuo_o1.rl import rloo

    rows = [
        {"Open-ended Verifiable Question": f"Q{i}: drug?", "Ground-True Answer": f"drug {i}"}
        for i in range(16)
    ]
    data = tmp_path / "rl.json"
    data.write_text(json.dumps(rows))
    argv = ["--model_name_or_path", str(tiny_lm_dir), "--verifier", "exact", "--dataset_name", str(data),
            "--output_dir", str(tmp_path / "o"), "--report_to", "none"]  # fmt: skip
    with pytest.raises(InputError, match="15 training prompts are fewer than one optimizer step of 64"):
        rloo.main(argv)
    assert not (tmp_path / "o" / "final").exists()


@no_gpu
def test_a_cpu_only_launch_of_several_processes_sets_use_cpu(monkeypatch):
    """transformers counts a launch's processes on CPU only with use_cpu (else DeepSpeed stops at
    init: train_batch_size is not equal to micro_batch_per_gpu * gradient_acc_step * world_size)."""
    from types import SimpleNamespace

    from huatuo_o1.train.multi_gpu import use_cpu_without_accelerator

    def decided(**env) -> bool:
        for k in ("WORLD_SIZE", "MASTER_ADDR"):
            monkeypatch.delenv(k, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        args = SimpleNamespace(use_cpu=False)
        use_cpu_without_accelerator(args)
        return args.use_cpu

    assert decided(WORLD_SIZE="2", MASTER_ADDR="127.0.0.1")
    assert not decided()  # one process: on the CPU anyway, nothing changed
    assert not decided(WORLD_SIZE="2")  # no launcher's rendezvous: not a launch


def test_every_training_script_asks_for_the_cpu_decision():
    """The RL configs (PPO, GRPO, RLOO, DPO) take it in apply_compat_defaults, the verifier's
    arguments in their own __post_init__ (its class pickles, as the Trainer needs)."""
    import inspect

    from huatuo_o1.rl import common
    from huatuo_o1.rl.dpo_trainer import MedicalDPOConfig
    from huatuo_o1.rl.grpo_trainer import MedicalGRPOConfig
    from huatuo_o1.rl.ppo_trainer import MedicalPPOConfig
    from huatuo_o1.rl.rloo_trainer import MedicalRLOOConfig
    from huatuo_o1.rl.verifier_train import _training_arguments_class

    assert "use_cpu_without_accelerator(cfg)" in inspect.getsource(common.apply_compat_defaults)
    for cls in (MedicalPPOConfig, MedicalGRPOConfig, MedicalRLOOConfig, MedicalDPOConfig):
        assert "apply_compat_defaults(self)" in inspect.getsource(cls.__post_init__), cls
    cls = _training_arguments_class()
    assert "use_cpu_without_accelerator(self)" in inspect.getsource(cls.__post_init__)
    assert pickle.loads(pickle.dumps(cls(output_dir="o", report_to="none"))).output_dir == "o"


def test_a_new_head_is_drawn_from_the_seed(tiny_lm_dir):
    from transformers import AutoModelForSequenceClassification

    from huatuo_o1.train.multi_gpu import seeded_init

    def head(seed: int, noise: int):
        torch.manual_seed(noise)  # whatever the global RNG state is before the load
        model, info = AutoModelForSequenceClassification.from_pretrained(
            tiny_lm_dir, num_labels=2, output_loading_info=True
        )
        assert seeded_init(model, info["missing_keys"], seed) == ["score.weight"]
        return model.score.weight.detach().clone()

    torch.testing.assert_close(head(7, 0), head(7, 123))
    assert not torch.equal(head(7, 0), head(8, 0))
