"""Shared test utilities: run a top-level script as a subprocess, find repo files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_script(
    script: str, *args: str, cwd: str | Path | None = None, env: dict | None = None, timeout: float = 300
):
    """Run `python <repo>/<script> args...`; return the CompletedProcess (text output)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "OPENAI_API_KEY": "", **(env or {})}
    return subprocess.run(
        [sys.executable, str(REPO / script), *map(str, args)],
        cwd=cwd or REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
