"""CPU smoke of recipes/paper/ablations/: the recipe scripts themselves, run end to end on tiny models.

Each script takes its models, data, output folder, launcher config (ACCELERATE_CONFIG) and GPU
count (NUM_GPUS) from environment variables with the paper's values as defaults, and appends its
arguments to the command, where a later flag wins; so the smoke runs each script unchanged with
the CPU config, one process, and small sizes appended:

- the Table 2 chain: sft_response.sh (1 step) -> ppo_response.sh (1 step) -> eval.sh (2 items,
  in-process hf backend); each step reads the previous one's saved model;
- the other trainers: make_dpo_pairs.sh (in-process sampling) then dpo.sh (1 step) and rloo.sh
  (1 step);
- the recipes that differ from those only in --sft_target (sft_mcq.sh, sft_simple_cot.sh,
  ppo_simple_cot.sh): their commands, captured by an `accelerate` stand-in on PATH, parse with the
  training scripts' real parsers and carry the paper's settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_launch import ENV, ROOT, assert_loadable, write_json

pytestmark = pytest.mark.slow
RECIPES = ROOT / "recipes" / "paper" / "ablations"
# the tiny runs' sizes, appended to the recipes' own flags (a later flag wins)
SFT_SMALL = ["--max_steps", "1", "--global_batch_size", "2", "--train_bsz_per_gpu", "2", "--max_seq_len", "128",
             "--gradient_checkpointing", "False", "--report_to", "none"]  # fmt: skip
RL_SMALL = [
    "--bf16",
    "False",
    "--gradient_checkpointing",
    "False",
    "--report_to",
    "none",
    "--warmup_ratio",
    "0",
]


def recipe(name: str, tmp_path: Path, *args, **env) -> subprocess.CompletedProcess:
    """bash recipes/paper/ablations/<name> with this interpreter's `accelerate` and `python` first on PATH."""
    full = {**ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{ENV.get('PATH', '')}",
            "ACCELERATE_CONFIG": str(ROOT / "configs" / "cpu_single_process.yaml"), "NUM_GPUS": "1",
            "OUTPUT_DIR": str(tmp_path / "ckpts"), **{k: str(v) for k, v in env.items()}}  # fmt: skip
    r = subprocess.run(["bash", str(RECIPES / name), *map(str, args)], capture_output=True, text=True,
                       cwd=tmp_path, env=full, timeout=600)  # fmt: skip
    assert r.returncode == 0, (name, r.stdout[-2000:], r.stderr[-4000:])
    return r


@pytest.fixture()
def problems(tmp_path):
    rows = [{"Open-ended Verifiable Question": f"Q{i}: which drug for case {i}?", "Ground-True Answer": f"drug {i}"}
            for i in range(4)]  # fmt: skip
    return write_json(tmp_path / "problems.json", rows)


def test_sft_ppo_eval_chain_of_the_response_target(tmp_path, tiny_lm_dir, tiny_verifier_dir, problems):
    sft = write_json(tmp_path / "sft.json", [{"Question": f"Patient {i} has fever. Diagnosis?",
                                              "Complex_CoT": "Consider pneumonia.", "Response": "Pneumonia."}
                                             for i in range(4)])  # fmt: skip
    ckpts = tmp_path / "ckpts"
    r = recipe(
        "sft_response.sh", tmp_path, *SFT_SMALL, "--log_dir", tmp_path / "logs", MODEL=tiny_lm_dir, DATA=sft
    )
    assert "effective global batch: 2 per device x 1 accumulation x 1 process(es) = 2" in r.stderr
    assert json.loads((ckpts / "sft_response" / "run_args.json").read_text())["sft_target"] == "response"
    assert_loadable(ckpts / "sft_response")

    r = recipe("ppo_response.sh", tmp_path, *RL_SMALL, "--response_length", "8", "--total_episodes", "2",
               "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1", "--global_batch_size", "2",
               "--local_rollout_forward_batch_size", "2", "--num_ppo_epochs", "1", "--num_sample_generations", "0",
               SFT_MODEL=ckpts / "sft_response", VERIFIER=tiny_verifier_dir, VALUE_MODEL=tiny_lm_dir,
               DATA=problems)  # fmt: skip
    run_args = json.loads((ckpts / "run_args.json").read_text())
    assert (run_args["sft_target"], run_args["model_name_or_path"]) == (
        "response",
        str(ckpts / "sft_response"),
    )
    assert (run_args["learning_rate"], run_args["kl_coef"]) == (5e-7, 0.03)  # the paper's, from the recipe
    assert_loadable(ckpts / "ppo_response")

    eval_file = write_json(tmp_path / "eval.json", {"SrcA": [
        {"question": f"Q{i} anticoagulant?", "options": {"A": "Aspirin", "B": "Heparin"}, "answer_idx": "B"}
        for i in range(3)]})  # fmt: skip
    recipe("eval.sh", tmp_path, "--max_new_tokens", "4", "--limit_num", "2", "--quiet", NAME="ppo_response",
           CKPTS=ckpts, BACKEND="hf", EVAL_FILE=eval_file, RESULTS_DIR=tmp_path / "results")  # fmt: skip
    (summary,) = (tmp_path / "results" / "ppo_response").glob("*_summary.json")
    summary = json.loads(summary.read_text())
    assert summary["sources"]["SrcA"]["count"] == 2 and "generated_tokens" in summary


def test_dpo_pairs_dpo_and_rloo_recipes(tmp_path, tiny_lm_dir, tiny_verifier_dir, problems):
    ckpts = tmp_path / "ckpts"
    pairs = tmp_path / "pairs.jsonl"
    recipe("make_dpo_pairs.sh", tmp_path, "--n_samples", "2", "--max_new_tokens", "4", "--limit", "2",
           BACKEND="hf", SFT_MODEL=tiny_lm_dir, DATA=problems, VERIFIER=tiny_verifier_dir, PAIRS=pairs)  # fmt: skip
    summary = json.loads(Path(f"{pairs}.summary.json").read_text())
    assert (summary["questions"], summary["sampled"]) == (2, 2)
    assert summary["settings"]["n_samples"] == 2 and summary["settings"]["backend"] == "hf"

    # a random model rarely gives a right and a wrong answer to one question: DPO trains on written pairs
    hand = tmp_path / "hand_pairs.jsonl"
    hand.write_text("\n".join(json.dumps({"prompt": f"Q{i}?", "chosen": "aspirin", "rejected": "heparin"})
                              for i in range(2)))  # fmt: skip
    recipe("dpo.sh", tmp_path, *RL_SMALL, "--global_batch_size", "2", "--per_device_train_batch_size", "2",
           "--max_length", "32", "--max_steps", "1", SFT_MODEL=tiny_lm_dir, PAIRS=hand)  # fmt: skip
    assert_loadable(ckpts / "dpo_medical_o1_8B")
    assert json.loads((ckpts / "run_args.json").read_text())["beta"] == 1.0

    out = tmp_path / "rloo_ckpts"
    recipe("rloo.sh", tmp_path, *RL_SMALL, "--global_batch_size", "2", "--per_device_train_batch_size", "2",
           "--max_completion_length", "4", "--max_steps", "1", "--num_iterations", "1",
           SFT_MODEL=tiny_lm_dir, VERIFIER=tiny_verifier_dir, DATA=problems, OUTPUT_DIR=out)  # fmt: skip
    run_args = json.loads((out / "run_args.json").read_text())
    assert (run_args["num_generations"], run_args["beta"], run_args["learning_rate"]) == (2, 0.03, 5e-7)
    assert_loadable(out / "rloo_medical_o1_8B")


def captured_command(name: str, tmp_path: Path, **env) -> list[str]:
    """The arguments a recipe gives its training script, captured by an `accelerate` stand-in."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stand_in = bin_dir / "accelerate"
    stand_in.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "{tmp_path}/argv.txt"\n')
    stand_in.chmod(0o755)
    full = {**ENV, "PATH": f"{bin_dir}{os.pathsep}{ENV.get('PATH', '')}", **env}
    r = subprocess.run(["bash", str(RECIPES / name)], capture_output=True, text=True, env=full, timeout=60)
    assert r.returncode == 0, r.stderr
    argv = (tmp_path / "argv.txt").read_text().splitlines()
    assert argv[0] == "launch" and argv[argv.index("--config_file") + 1] == "./configs/deepspeed_zero3.yaml"
    assert argv[argv.index("--num_processes") + 1] == "8"  # the paper's defaults
    script = next(i for i, a in enumerate(argv) if a.endswith(".py"))
    return argv[script:]


@pytest.mark.parametrize(
    ("name", "target"),
    [("sft_mcq.sh", "mcq"), ("sft_simple_cot.sh", "simple_cot"), ("ppo_simple_cot.sh", "simple_cot")],
)
def test_recipes_differing_only_in_the_target_parse(name, target, tmp_path):
    script, *argv = captured_command(name, tmp_path, DATA="search_output.json")
    if script == "SFT_stage1.py":
        from huatuo_o1.train.sft import parse_args

        args = parse_args(argv)
        assert (args.sft_target, args.global_batch_size, args.experiment_name) == (target, 128, name[:-3])
    else:
        from huatuo_o1.rl.ppo import parse_args

        s, a, _ = parse_args([*argv, "--bf16", "False"])  # the recipe's --bf16 True needs a GPU to parse
        assert (s.sft_target, a.learning_rate, a.kl_coef, a.num_ppo_epochs) == (target, 5e-7, 0.03, 3)
