"""The training scripts as users run them: the real `accelerate launch` with the shipped DeepSpeed
configs (only mixed precision overridden to "no" and one process, for the CPU), tiny models.

Each script trains under ZeRO-2 and ZeRO-3, writes checkpoints and a loadable final model; under
ZeRO-3 a second launch resumes from the checkpoint. The verifier gives the same P(True) under
ZeRO-3 as without DeepSpeed, and a 2-process CPU launch with --global_batch_size takes the same
effective batch and the same number of optimizer steps as one process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# DeepSpeed compiles its CPU communication op on the first launch (~1 min); one cache per checkout
# and Python keeps later launches (and parallel checkouts with other paths) from rebuilding it.
_EXT_KEY = hashlib.sha1(f"{ROOT}|{sys.executable}".encode()).hexdigest()[:12]
ENV = {
    **os.environ,
    "TORCH_EXTENSIONS_DIR": os.environ.get(
        "TORCH_EXTENSIONS_DIR", str(Path(tempfile.gettempdir()) / f"huatuo-o1-torch-extensions-{_EXT_KEY}")
    ),
    "PYTHONPATH": str(ROOT),
    "HF_HUB_OFFLINE": "1",
    "WANDB_MODE": "offline",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
    "OPENAI_API_KEY": "",
}
CONFIGS = ["deepspeed_zero2.yaml", "deepspeed_zero3.yaml"]


def launch(
    config: str | Path, script: str, *args, processes: int = 1, cwd: Path
) -> subprocess.CompletedProcess:
    config = config if Path(config).is_absolute() else ROOT / "configs" / config
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
           "--mixed_precision", "no", "--num_processes", str(processes), "--main_process_port", str(free_port()),
           str(ROOT / script), *map(str, args)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=ENV, timeout=600)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
    return r


def free_port() -> int:
    """A port no other launch uses (several tests may launch at once under pytest -n)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def global_step(ckpt: Path) -> int:
    return json.loads((ckpt / "trainer_state.json").read_text())["global_step"]


def assert_loadable(folder: Path, cls_name: str = "AutoModelForCausalLM") -> None:
    import transformers

    getattr(transformers, cls_name).from_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(folder)


@pytest.fixture()
def sft_data(tmp_path):
    return write_json(
        tmp_path / "sft.json",
        [
            {"Question": f"Patient {i} has fever. Diagnosis?", "Complex_CoT": "Consider pneumonia.",
             "Response": f"Pneumonia ({'ABCD'[i % 4]})."}
            for i in range(8)
        ],
    )  # fmt: skip


@pytest.fixture()
def rl_data(tmp_path):
    rows = [{"Open-ended Verifiable Question": f"Q{i}: which drug for case {i}?", "Ground-True Answer": f"drug {i}"}
            for i in range(10)]  # fmt: skip
    return write_json(tmp_path / "rl.json", rows)


# ------------------------------------------------------------------------------------ SFT


@pytest.mark.parametrize("config", CONFIGS)
def test_sft_under_deepspeed(config, tmp_path, tiny_lm_dir, sft_data):
    """ZeRO-3 resumes from a full checkpoint (engine state); ZeRO-2 from a weights-only one
    (--save_only_model), which has no engine folder and no scheduler.pt."""
    weights_only = config == "deepspeed_zero2.yaml"

    def run(steps):
        return launch(config, "SFT_stage1.py", "--model_path", tiny_lm_dir, "--data_path", sft_data,
                      "--output_dir", tmp_path / "ckpts", "--log_dir", tmp_path / "logs", "--max_seq_len", "128",
                      "--report_to", "none", "--gradient_checkpointing", "False", "--train_bsz_per_gpu", "2",
                      "--gradient_accumulation_steps", "1", "--max_steps", steps, "--save_steps", "1",
                      "--save_only_model", str(weights_only), cwd=tmp_path)  # fmt: skip

    run_dir = tmp_path / "ckpts" / "sft_stage1"
    r = run(2)
    assert "effective global batch: 2 per device x 1 accumulation x 1 process(es) = 2" in r.stderr
    assert global_step(run_dir / "checkpoint-2") == 2
    assert any((run_dir / "checkpoint-1").glob("global_step*")) != weights_only
    assert_loadable(run_dir)
    assert (run_dir / "plots" / "loss.png").exists()
    # as if stopped after step 1: the same command resumes from checkpoint-1
    shutil.rmtree(run_dir / "checkpoint-2")
    r = run(2)
    assert "resuming from" in r.stderr and "checkpoint-1" in r.stderr
    assert ("holds model weights only" in r.stderr) == weights_only
    assert global_step(run_dir / "checkpoint-2") == 2
    assert_loadable(run_dir)


# ------------------------------------------------------------------------------------ PPO


@pytest.mark.parametrize("config", CONFIGS)
def test_ppo_under_deepspeed(config, tmp_path, tiny_lm_dir, tiny_verifier_dir, rl_data):
    """ZeRO-3 used to stop before training: the partitioned embedding read as 0 rows."""
    out = tmp_path / "ppo"

    def run(episodes):
        return launch(config, "RL_stage2.py", "--model_name_or_path", tiny_lm_dir, "--reward_model_path",
                      tiny_verifier_dir, "--dataset_name", rl_data, "--output_dir", out, "--run_name", "final",
                      "--response_length", "8", "--per_device_train_batch_size", "2",
                      "--gradient_accumulation_steps", "2", "--local_rollout_forward_batch_size", "4",
                      "--total_episodes", episodes, "--num_ppo_epochs", "1", "--num_sample_generations", "0",
                      "--report_to", "none", "--logging_steps", "1", "--save_strategy", "steps", "--save_steps", "1",
                      "--seed", "1", cwd=tmp_path)  # fmt: skip

    r = run(4)
    assert "= 4 examples per optimizer step" in r.stderr
    assert (out / "checkpoint-1" / "value_model" / "model.safetensors").exists()
    assert_loadable(out / "final")
    assert_loadable(out / "checkpoint-1")
    if config == "deepspeed_zero3.yaml":
        r = run(8)
        assert "resuming from" in r.stderr
        state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
        assert (state["global_step"], state["episode"]) == (2, 8)
        assert_loadable(out / "final")


# ------------------------------------------------------------------------------------ GRPO


@pytest.mark.parametrize("config", CONFIGS)
def test_grpo_under_deepspeed(config, tmp_path, tiny_lm_dir, tiny_verifier_dir, rl_data):
    """ZeRO-3 used to crash at the first reward: the verifier was loaded partitioned."""
    out = tmp_path / "grpo"

    def run(steps):
        return launch(config, "RL_stage2_grpo.py", "--model_name_or_path", tiny_lm_dir, "--reward_model_path",
                      tiny_verifier_dir, "--dataset_name", rl_data, "--output_dir", out, "--run_name", "final",
                      "--per_device_train_batch_size", "4", "--num_generations", "2", "--max_completion_length", "8",
                      "--max_steps", steps, "--report_to", "none", "--logging_steps", "1", "--save_strategy", "steps",
                      "--save_steps", "1", cwd=tmp_path)  # fmt: skip

    r = run(1)
    assert "effective global batch" in r.stderr
    assert global_step(out / "checkpoint-1") == 1
    assert_loadable(out / "final")
    if config == "deepspeed_zero3.yaml":
        r = run(2)
        assert "resuming from" in r.stderr
        assert global_step(out / "checkpoint-2") == 2
        assert_loadable(out / "final")


# ------------------------------------------------------------------------------------ verifier


@pytest.mark.parametrize("config", CONFIGS)
def test_train_verifier_under_deepspeed(config, tmp_path, tiny_lm_dir):
    data = write_json(
        tmp_path / "v.json",
        [{"response": f"## Thinking\nx\n## Final Response\ndrug {i % 3}", "reference": f"drug {i % 2}",
          "label": i % 3 == i % 2} for i in range(12)],
    )  # fmt: skip
    out = tmp_path / "verifier"

    def run(steps):
        return launch(config, "train_verifier.py", "--data_path", data, "--model_name_or_path", tiny_lm_dir,
                      "--output_dir", out, "--max_steps", steps, "--save_steps", "1", "--per_device_train_batch_size",
                      "2", "--report_to", "none", "--eval_fraction", "0.3", cwd=tmp_path)  # fmt: skip

    r = run(1)
    assert "effective global batch" in r.stderr
    assert global_step(out / "checkpoint-1") == 1
    assert_loadable(out, "AutoModelForSequenceClassification")
    assert json.loads((out / "verifier_eval.json").read_text())["n"] == 3  # 30% of 12 held out
    if config == "deepspeed_zero3.yaml":
        r = run(2)
        assert "resuming from" in r.stderr
        assert global_step(out / "checkpoint-2") == 2


# ------------------------------------------------------------------------------------ P(True)


def test_verifier_p_true_under_zero3_equals_plain(tmp_path, tiny_verifier_dir):
    """Under ZeRO-3 a plain load is partitioned (0 rows); the RL scripts' verifier, called directly
    (GRPO) or through a DeepSpeed inference engine (PPO's reward hook), gives the same P(True) as
    without DeepSpeed."""
    from huatuo_o1.rl.common import RLScriptArguments, make_verifier
    from tests.zero3_verifier_probe import REFERENCES, RESPONSES

    out = tmp_path / "probe.json"
    launch("deepspeed_zero3.yaml", "tests/zero3_verifier_probe.py", tiny_verifier_dir, out, cwd=tmp_path)
    probe = json.loads(out.read_text())
    assert probe["zero3"] and probe["plain_load_embedding_shape"] == 0
    plain = make_verifier(RLScriptArguments(verifier="classifier"), str(tiny_verifier_dir))
    assert probe["plain_load_embedding_rows"] == plain.model.get_input_embeddings().weight.shape[0]
    expected = plain.probabilities(RESPONSES, REFERENCES)
    assert probe["p_true"] == pytest.approx(expected, abs=1e-6)
    assert probe["p_true_engine"] == pytest.approx(expected, abs=1e-6)


# ------------------------------------------------------------------------------------ global batch


def test_global_batch_is_the_same_on_one_and_two_processes(tmp_path, tiny_lm_dir, sft_data):
    """--global_batch_size 4 with 1 example per device: accumulation 4 on one process, 2 on two;
    the same 4 examples per step and the same 2 optimizer steps over the 8 examples."""
    from huatuo_o1.train.sft import main

    def argv(out):
        return ["--model_path", str(tiny_lm_dir), "--data_path", str(sft_data), "--output_dir", str(out),
                "--log_dir", str(tmp_path / "logs"), "--max_seq_len", "128", "--report_to", "none",
                "--gradient_checkpointing", "False", "--train_bsz_per_gpu", "1", "--global_batch_size", "4",
                "--n_epochs", "1", "--packing", "False"]  # fmt: skip

    assert main(argv(tmp_path / "one")) == 0
    one = json.loads((tmp_path / "one" / "sft_stage1" / "checkpoint-2" / "trainer_state.json").read_text())

    multi_cpu = tmp_path / "multi_cpu.yaml"  # accelerate's multi-process launch; without CUDA it runs on gloo
    multi_cpu.write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nmixed_precision: 'no'\n"
        "num_machines: 1\nnum_processes: 2\nuse_cpu: false\nmachine_rank: 0\nrdzv_backend: static\n"
        "same_network: true\ndowncast_bf16: 'no'\n"
    )
    r = launch(multi_cpu, "SFT_stage1.py", *argv(tmp_path / "two"), processes=2, cwd=tmp_path)
    assert "1 per device x 2 accumulation x 2 process(es) = 4 examples per optimizer step" in r.stderr
    two = json.loads((tmp_path / "two" / "sft_stage1" / "checkpoint-2" / "trainer_state.json").read_text())
    assert one["global_step"] == two["global_step"] == 2
    assert one["max_steps"] == two["max_steps"] == 2
    assert one["train_batch_size"] == two["train_batch_size"] == 1


def test_a_finished_run_closes_its_process_group(tmp_path):
    """end_distributed (which every training main calls when it finishes: test_cli) tears down the
    process group a launch opened, before the interpreter exits (left open, gloo's threads aborted
    finished 2-process CPU runs with SIGABRT about one run in ten)."""
    code = (
        "import os, torch.distributed as dist\n"
        "from huatuo_o1.cli import run_main\n"
        "from huatuo_o1.train.multi_gpu import end_distributed\n"
        f"dist.init_process_group('gloo', init_method='file://{tmp_path / 'rdzv'}', rank=0, world_size=1)\n"
        "def main():\n"
        "    assert dist.is_initialized()\n"
        "    end_distributed()\n"
        "    return 0\n"
        "import atexit\n"
        "atexit.register(lambda: print('closed' if not dist.is_initialized() else 'open', flush=True))\n"
        "run_main(main)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "closed"
