"""The GPU check's shell scripts: valid bash, and a FAILED line naming the step whatever fails."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"


@pytest.mark.parametrize("name", ["gpu_check.sh", "gpu_wheels.sh"])
def test_scripts_are_valid_bash(name):
    r = subprocess.run(["bash", "-n", str(SCRIPTS / name)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_wheels_script_downloads_binaries_for_the_target():
    text = (SCRIPTS / "gpu_wheels.sh").read_text()
    for part in ("pip download", "--only-binary=:all:", "--python-version", "--platform", '-r "$reqs"'):
        assert part in text, part
    check = (SCRIPTS / "gpu_check.sh").read_text()
    assert '--no-index --find-links "$WHEELS"' in check
    assert "grep" not in check  # an empty grep under pipefail ended the check silently


def _check(tmp_path, py):
    env = {"PATH": os.environ["PATH"], "PY": str(py), "OUT": str(tmp_path / "out"), "HOME": str(tmp_path)}
    return subprocess.run(["bash", str(SCRIPTS / "gpu_check.sh")], capture_output=True, text=True, env=env)


def test_missing_packages_without_wheels_is_a_failed_install_line(tmp_path):
    r = _check(tmp_path, tmp_path / "no-python")
    assert r.returncode == 1
    assert "FAILED: install (packages missing" in r.stdout
    assert "FAILED: install" in (tmp_path / "out" / "summary.txt").read_text()


def test_any_failing_command_names_its_step(tmp_path):
    py = tmp_path / "python"  # has the packages, but no GPU: the gpu step's command fails
    py.write_text('#!/bin/sh\ncase "$2" in "import torch, transformers"*) exit 0;; esac\nexit 3\n')
    py.chmod(0o755)
    r = _check(tmp_path, py)
    assert r.returncode != 0
    assert "FAILED: gpu (command at line" in r.stdout and "exited 3)" in r.stdout
