"""run_record: secrets masked in run_args.json and the command line; wandb project, entity and mode."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import pytest

from huatuo_o1.redact import MASK, mask_record, scrub_argv
from huatuo_o1.train.run_record import (
    TrackingArguments,
    setup_wandb,
    wandb_logged_in,
    write_run_args,
)


def test_mask_secrets_by_name_and_url_credentials():
    flags = {
        "judge_api_key": "sk-SECRET",
        "hub_token": "hf_SECRET",
        "db_password": "SECRET",
        "client_secret": "SECRET",
        "judge_api_url": "https://user:SECRET@judge.example/v1",
        "max_new_tokens": 512,  # a number is no secret
        "stop_token_id": None,
        "nested": {"api_key": "SECRET", "urls": ["http://a:SECRET@h", "http://plain/h"]},
        "learning_rate": 1e-5,
    }
    masked = mask_record(flags)
    assert "SECRET" not in json.dumps(masked)
    assert masked["judge_api_key"] == MASK and masked["hub_token"] == MASK
    assert masked["judge_api_url"] == "https://***@judge.example/v1"
    assert masked["nested"]["urls"] == ["http://***@h", "http://plain/h"]
    assert masked["max_new_tokens"] == 512 and masked["learning_rate"] == 1e-5
    assert flags["judge_api_key"] == "sk-SECRET"  # a copy: the run still has its key


def test_scrub_argv_masks_values_of_secret_flags_in_both_spellings():
    argv = ["RL_stage2.py", "--judge_api_key", "sk-SECRET", "--hub_token=hf_SECRET", "--judge_api_url",
            "http://u:SECRET@host:1/v1", "--seed", "3", "--password"]  # fmt: skip
    out = scrub_argv(argv)
    assert "SECRET" not in " ".join(out)
    assert out == ["RL_stage2.py", "--judge_api_key", MASK, f"--hub_token={MASK}", "--judge_api_url",
                   "http://***@host:1/v1", "--seed", "3", "--password"]  # fmt: skip


@dataclass
class _Flags:
    model_path: str = "m"
    judge_api_key: str | None = "sk-SECRET"
    lr: float = 0.1


def test_write_run_args_keeps_identity_on_top_and_every_flag_masked(tmp_path):
    rec = write_run_args(tmp_path / "run_args.json", {"model_path": "/abs/m"}, _Flags())
    on_disk = json.loads((tmp_path / "run_args.json").read_text())
    assert on_disk == rec
    assert on_disk["model_path"] == "/abs/m"
    assert on_disk["flags"] == {"model_path": "m", "judge_api_key": MASK, "lr": 0.1}


@pytest.fixture()
def clean_wandb_env(monkeypatch, tmp_path):
    for k in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_API_KEY", "WANDB_DIR", "WANDB_BASE_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setattr(sys, "argv", ["x.py", "--judge_api_key", "sk-SECRET"])
    return tmp_path


def test_setup_wandb_offline_when_not_logged_in_default_project(clean_wandb_env, capsys):
    import os

    assert not wandb_logged_in()
    assert setup_wandb("wandb") == ("huatuo-o1", None, "offline")
    assert os.environ["WANDB_MODE"] == "offline" and os.environ["WANDB_PROJECT"] == "huatuo-o1"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "huatuo-o1" in err[0] and "offline" in err[0] and "wandb login" in err[0]
    assert sys.argv == ["x.py", "--judge_api_key", MASK]  # wandb copies sys.argv into its files


def test_setup_wandb_online_when_logged_in_flags_beat_environment(clean_wandb_env, monkeypatch, capsys):
    (clean_wandb_env / "netrc").write_text("machine api.wandb.ai\n  login user\n  password x\n")
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    monkeypatch.setenv("WANDB_ENTITY", "team-env")
    assert wandb_logged_in()
    assert setup_wandb(["wandb"], TrackingArguments(wandb_project="p")) == ("p", "team-env", "online")
    assert "team-env/p, online (logged in)" in capsys.readouterr().err


def test_setup_wandb_explicit_mode_wins_and_other_loggers_untouched(clean_wandb_env, monkeypatch):
    import os

    monkeypatch.setenv("WANDB_API_KEY", "k")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert setup_wandb("wandb")[2] == "disabled"
    monkeypatch.delenv("WANDB_PROJECT")
    assert setup_wandb(["tensorboard"]) is None and "WANDB_PROJECT" not in os.environ
