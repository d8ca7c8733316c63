"""Every entry point: `--help` exits 0 without a traceback, imports no training library, and its
parser lives in the package as make_parser() beside main(argv)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from tests.helpers import REPO

# top-level script -> the package module that owns its parser and main()
ENTRY_POINTS = {
    "construct_verifiable_medical_problems.py": "huatuo_o1.datagen.construct",
    "search_for_complex_reasoning_path.py": "huatuo_o1.datagen.search",
    "SFT_stage1.py": "huatuo_o1.train.sft",
    "RL_stage2.py": "huatuo_o1.rl.ppo",
    "RL_stage2_grpo.py": "huatuo_o1.rl.grpo",
    "RL_stage2_rloo.py": "huatuo_o1.rl.rloo",
    "RL_stage2_dpo.py": "huatuo_o1.rl.dpo",
    "train_verifier.py": "huatuo_o1.rl.verifier_train",
    "evaluation/eval.py": "huatuo_o1.eval.run",
    "evaluation/get_eval_data.py": "huatuo_o1.eval.data",
    "evaluation/build_rebuilt_eval_data.py": "huatuo_o1.eval.rebuild",
    "scripts/decontaminate.py": "huatuo_o1.datagen.decontam",
    "scripts/split_stage1.py": "huatuo_o1.datagen.stage1_split",
    "scripts/export_verl_data.py": "huatuo_o1.rl.verl_data",
    "scripts/make_dpo_pairs.py": "huatuo_o1.rl.dpo_pairs",
    "scripts/show_answer.py": "huatuo_o1.train.show_answer",
    "scripts/gpu_mfu.py": "huatuo_o1.train.mfu",
}
HEAVY = ("torch", "transformers", "deepspeed", "trl", "accelerate")
# runs the script as `python SCRIPT --help` does, then reports which heavy libraries got imported
PROBE = (
    "import runpy, sys\n"
    "sys.argv = [sys.argv[1], '--help']\n"
    "try:\n"
    "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "except SystemExit as e:\n"
    "    code = e.code or 0\n"
    "else:\n"
    "    code = 0\n"
    f"print('HEAVY:', ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    "sys.exit(code)\n"
)


def test_every_script_is_listed():
    scripts = {p.name for p in REPO.glob("*.py")}
    scripts |= {f"{d}/{p.name}" for d in ("evaluation", "scripts") for p in (REPO / d).glob("*.py")}
    assert scripts == set(ENTRY_POINTS)


@pytest.mark.parametrize("script", sorted(ENTRY_POINTS))
def test_help_is_light_and_clean(script):
    r = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPO / script)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "usage:" in r.stdout
    assert r.stdout.rstrip().splitlines()[-1] == "HEAVY:", f"--help imported {r.stdout.splitlines()[-1]}"


@pytest.mark.parametrize("script", sorted(ENTRY_POINTS))
def test_parser_and_main_live_in_the_package(script):
    module = importlib.import_module(ENTRY_POINTS[script])
    assert callable(module.make_parser) and callable(module.main)
    source = (REPO / script).read_text()
    assert f"from {ENTRY_POINTS[script]} import main" in source
    code = [line for line in source.split('"""', 2)[2].splitlines() if line.strip()]
    assert len(code) <= 4, f"{script} holds more than its launch lines"


@pytest.mark.parametrize(
    "script",
    [
        "SFT_stage1.py",
        "RL_stage2.py",
        "RL_stage2_grpo.py",
        "RL_stage2_rloo.py",
        "RL_stage2_dpo.py",
        "train_verifier.py",
    ],
)
def test_help_all_lists_the_libraries_flags(script):
    r = subprocess.run(
        [sys.executable, str(REPO / script), "--help_all"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "--seed" in r.stdout


def test_every_training_main_closes_its_process_group(monkeypatch):
    """A finished training run ends through multi_gpu.end_distributed (its teardown: test_launch)."""
    import huatuo_o1.rl.dpo_trainer
    import huatuo_o1.rl.grpo_trainer
    import huatuo_o1.rl.ppo_trainer
    import huatuo_o1.rl.rloo_trainer
    import huatuo_o1.train.multi_gpu
    from huatuo_o1.rl import dpo, grpo, ppo, rloo, verifier_train
    from huatuo_o1.train import sft

    calls = []
    monkeypatch.setattr(huatuo_o1.train.multi_gpu, "end_distributed", lambda: calls.append("ppo/grpo"))
    monkeypatch.setattr(sft, "end_distributed", lambda: calls.append("sft"))
    monkeypatch.setattr(verifier_train, "end_distributed", lambda: calls.append("verifier"))
    for module, trainer, name in ((ppo, huatuo_o1.rl.ppo_trainer, "train_ppo"),
                                  (grpo, huatuo_o1.rl.grpo_trainer, "train_grpo"),
                                  (rloo, huatuo_o1.rl.rloo_trainer, "train_rloo"),
                                  (dpo, huatuo_o1.rl.dpo_trainer, "train_dpo")):  # fmt: skip
        monkeypatch.setattr(module, "parse_args", lambda argv: (None, None, None))
        monkeypatch.setattr(trainer, name, lambda *a: "out")
        assert module.main([]) == 0
    monkeypatch.setattr(sft, "parse_args", lambda argv: sft.SFTArguments(model_path="m", data_path="d"))
    monkeypatch.setattr(sft, "train", lambda args: "out")
    assert sft.main([]) == 0
    monkeypatch.setattr(
        verifier_train, "parse_args", lambda argv: (None, type("T", (), {"output_dir": "o"})())
    )
    monkeypatch.setattr(verifier_train, "train_verifier", lambda *a: {"accuracy": 1.0})
    assert verifier_train.main([]) == 0
    assert calls == ["ppo/grpo"] * 4 + ["sft", "verifier"]


LAUNCHED_RANK = """
import logging, sys
import torch.distributed as dist
from huatuo_o1.cli import run_main
from huatuo_o1.io import InputError

def main():
    dist.init_process_group("gloo", init_method="file://{store}", rank=0, world_size=1)
    logging.basicConfig(filename="{log}", level=logging.INFO)
    logging.info("logged before the exit")
    print("printed before the exit")
    if sys.argv[1] == "bad":
        raise InputError("bad input")
    return 3

run_main(main)
"""


@pytest.mark.parametrize("how, code", [("ends", 3), ("bad", 2)])
def test_a_launched_rank_exits_with_its_code_and_keeps_its_output(tmp_path, how, code):
    """A rank of a distributed launch leaves without the interpreter's teardown (where gloo's threads
    can abort a finished run): its exit code is the script's, and what it printed or logged is flushed
    (stdout to a pipe is block-buffered, so a bare os._exit would lose it)."""
    import os

    script = LAUNCHED_RANK.format(store=tmp_path / "store", log=tmp_path / "log.txt")
    env = {**os.environ, "LOCAL_RANK": "0", "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", script, how], env=env, capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)  # fmt: skip
    assert r.returncode == code, r.stderr
    assert "printed before the exit" in r.stdout
    assert "logged before the exit" in (tmp_path / "log.txt").read_text()
    assert ("error: bad input" in r.stderr) == (how == "bad")


def test_training_logging_drops_only_the_listed_library_notices(caplog):
    import logging

    from huatuo_o1.cli import LIBRARY_NOISE, setup_training_logging

    setup_training_logging()
    name, start = next(iter(LIBRARY_NOISE.items()))
    with caplog.at_level(logging.WARNING):
        logging.getLogger(name).warning(f"{start}=({{'output_scores'}}) is deprecated")
        logging.getLogger(name).warning("something the user must see")
    assert [r.getMessage() for r in caplog.records] == ["something the user must see"]
