"""One run per output folder, training side: SFT, PPO, GRPO and verifier training refuse a folder in use by
another run (one line, exit 2) before loading any model."""

from __future__ import annotations

import pytest

from tests.helpers import run_script
from tests.test_lock import finish, holder


@pytest.mark.parametrize(
    "script,argv,folder",
    [
        ("SFT_stage1.py", ["--model_path", "no-model", "--data_path", "no-data", "--experiment_name", "exp"], "exp"),
        ("RL_stage2.py", ["--model_name_or_path", "no-model", "--reward_model_path", "no-model",
                          "--dataset_name", "no-data", "--report_to", "none"], ""),
        ("RL_stage2_grpo.py", ["--model_name_or_path", "no-model", "--reward_model_path", "no-model",
                               "--dataset_name", "no-data", "--report_to", "none"], ""),
        ("train_verifier.py", ["--model_name_or_path", "no-model", "--data_path", "no-data",
                               "--report_to", "none"], ""),
    ],
)  # fmt: skip
def test_training_refuses_a_folder_in_use(tmp_path, script, argv, folder):
    out = tmp_path / "out"
    h = holder(out / folder if folder else out, what="another training run")
    try:
        assert h.stdout.readline().strip() == "locked"
        p = run_script(script, *argv, "--output_dir", out)
    finally:
        finish(h)
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "in use by another training run" in p.stderr
