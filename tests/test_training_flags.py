"""Training scripts: unknown flags get argparse's usage and an error naming them (exit 2); flags
that cannot train stop with one line naming the flag (exit 2), before any model is loaded."""

from __future__ import annotations

import json

import pytest

from huatuo_o1.cli import run_main


def _exit(main, argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        run_main(lambda: main(argv))
    return e.value.code, capsys.readouterr().err


def _sft_main():
    from huatuo_o1.train.sft import main

    return main


def _ppo_main():
    from huatuo_o1.rl import ppo

    return ppo.main


def _grpo_main():
    from huatuo_o1.rl import grpo

    return grpo.main


def _verifier_main():
    from huatuo_o1.rl import verifier_train

    return verifier_train.main


MAINS = {"sft": _sft_main, "ppo": _ppo_main, "grpo": _grpo_main, "verifier": _verifier_main}


@pytest.mark.parametrize("script", list(MAINS))
def test_unknown_flag_is_rejected_with_usage_and_exit_2(script, tmp_path, capsys):
    base = ["--model_path", "m", "--data_path", "d"] if script == "sft" else ["--output_dir", str(tmp_path)]
    code, err = _exit(MAINS[script](), [*base, "--lerning_rate", "1e-5"], capsys)
    assert code == 2
    assert "usage:" in err and "unrecognized arguments: --lerning_rate 1e-5" in err
    assert "Traceback" not in err


@pytest.fixture()
def sft_files(tmp_path, tiny_lm_dir):
    data = tmp_path / "d.json"
    data.write_text(json.dumps([{"Question": "q", "Complex_CoT": "c", "Response": "r"}]))
    return ["--model_path", str(tiny_lm_dir), "--data_path", str(data), "--output_dir", str(tmp_path / "o"),
            "--report_to", "none"]  # fmt: skip


SFT_BAD = [
    (["--train_bsz_per_gpu", "0"], "--train_bsz_per_gpu must be >= 1"),
    (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps must be >= 1"),
    (["--learning_rate=-1e-5"], "--learning_rate must be >= 0"),
    (["--warmup_rates", "-0.1"], "--warmup_rates must be >= 0"),
    (["--seed", "-1"], "--seed must be >= 0"),
    (["--n_epochs", "0"], "--n_epochs must be > 0"),
    (["--attn_implementation", "fast"], "--attn_implementation must be one of"),
    (["--global_batch_size", "3", "--train_bsz_per_gpu", "2"], "--global_batch_size 3 is not a multiple"),
    (["--loss_average", "sum"], "--loss_average must be one of"),
]


@pytest.mark.parametrize(("extra", "message"), SFT_BAD)
def test_sft_bad_flags_one_line_exit_2(extra, message, sft_files, capsys, tmp_path):
    code, err = _exit(_sft_main(), [*sft_files, *extra], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert message in lines[-1]
    if message != "--loss_average must be one of":  # a choice error is argparse's own (usage + error)
        assert len(lines) == 1
    assert not (tmp_path / "o").exists()  # nothing written


def test_sft_missing_model_path_one_line(sft_files, tmp_path, capsys):
    argv = [*sft_files]
    argv[1] = str(tmp_path / "no_model")
    code, err = _exit(_sft_main(), argv, capsys)
    assert code == 2 and err.count("\n") == 1 and "--model_path: model folder not found" in err


@pytest.fixture()
def rl_files(tmp_path, tiny_lm_dir):
    data = tmp_path / "rl.json"
    data.write_text(json.dumps([{"Open-ended Verifiable Question": "q?", "Ground-True Answer": "a"}] * 4))
    return ["--model_name_or_path", str(tiny_lm_dir), "--dataset_name", str(data), "--verifier", "exact",
            "--output_dir", str(tmp_path / "o"), "--report_to", "none"]  # fmt: skip


RL_BAD = [
    (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be >= 1"),
    (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps must be >= 1"),
    (["--learning_rate", "-1"], "--learning_rate must be >= 0"),
    (["--warmup_ratio", "-0.5"], "--warmup_ratio must be >= 0"),
    (["--seed", "-3"], "--seed must be >= 0"),
    (["--attn_implementation", "fast"], "--attn_implementation must be one of"),
]


@pytest.mark.parametrize("script", ["ppo", "grpo"])
@pytest.mark.parametrize(("extra", "message"), RL_BAD)
def test_rl_bad_flags_one_line_exit_2(script, extra, message, rl_files, capsys, tmp_path):
    argv = [*rl_files, *extra]
    if script == "grpo":
        argv += ["--num_generations", "2", "--per_device_train_batch_size", extra[1] if "per_device" in extra[0]
                 else "2"]  # fmt: skip
    code, err = _exit(MAINS[script](), argv, capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and message in err, err


def test_ppo_total_episodes_0_and_bad_global_batch(rl_files, capsys):
    code, err = _exit(_ppo_main(), [*rl_files, "--total_episodes", "0"], capsys)
    assert code == 2 and "--total_episodes must be > 0" in err and err.count("\n") == 1
    code, err = _exit(_ppo_main(), [*rl_files, "--global_batch_size", "5"], capsys)
    assert code == 2 and "--global_batch_size 5 is not a multiple of --per_device_train_batch_size" in err


def test_rl_missing_model_path_one_line(rl_files, tmp_path, capsys):
    argv = [*rl_files]
    argv[1] = str(tmp_path / "nope")
    for script in ("ppo", "grpo"):
        code, err = _exit(MAINS[script](), argv, capsys)
        assert code == 2 and err.count("\n") == 1 and "policy model: model folder not found" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be >= 1"),
        (["--learning_rate", "-1"], "--learning_rate must be >= 0"),
        (["--seed", "-1"], "--seed must be >= 0"),
        (["--num_train_epochs", "0"], "--num_train_epochs must be > 0"),
        (["--model_name_or_path", "./missing_backbone"], "model folder not found"),
    ],
)
def test_verifier_bad_flags_one_line_exit_2(extra, message, tmp_path, tiny_lm_dir, capsys):
    data = tmp_path / "v.json"
    data.write_text(json.dumps([{"response": "a", "reference": "a", "label": True},
                                {"response": "b", "reference": "a", "label": False}]))  # fmt: skip
    argv = ["--data_path", str(data), "--model_name_or_path", str(tiny_lm_dir), "--output_dir", str(tmp_path / "o"),
            "--report_to", "none", *extra]  # fmt: skip
    code, err = _exit(_verifier_main(), argv, capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err
