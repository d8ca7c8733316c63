"""A real vLLM OpenAI server on the embedded default model, for the real-engine checks
(tests/vllm_real), bench/bench_structured_outputs.py and the real-teacher demo.

vLLM runs from its own environment (.venv-vllm, scripts/setup_vllm_env.sh); this module only
starts and stops it, so it needs nothing of vLLM itself. In plain words:
  - `VLLMServer(...)` starts `python -m vllm.entrypoints.openai.api_server` in a new process
    group on a free local port, its output going to a log file;
  - `wait_ready()` polls /v1/models until the model is listed, and fails with the log's last lines
    when the server exits or does not come up in time;
  - `stop()` ends the whole process group (the API server and its engine), politely first;
    used as a context manager, it runs whatever happens.

No `seed` is sent by the callers: a seeded request stops the engine of vLLM's CPU build.

Command line (the demo): `python -m huatuo_o1.testing.vllm_server -- COMMAND ...` starts the
server, runs COMMAND with HUATUO_VLLM_URL (the base URL) and HUATUO_VLLM_MODEL (the served name)
in its environment, stops the server, and exits with COMMAND's code.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
DEFAULT_MODEL = REPO / "models" / "SmolLM2-135M-Instruct"
SERVED_NAME = "smol"
# The context the server admits (the embedded model takes 8192): a stage-2 refinement's prompt (the
# instructions, the question, the previous reasoning) plus a 1200-token reply fit in it.
MAX_MODEL_LEN = 4096
READY_TIMEOUT_S = 480.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def engine_env(kv_cache_gib: int = 1) -> dict:
    """The environment of a CPU vLLM process: a small KV cache, offline."""
    return {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }


def engine_args(model: str | Path, served_name: str = SERVED_NAME) -> list[str]:
    """The model flags shared by the server and vLLM's batch runner. --enforce-eager: no torch.compile
    warm-up, which takes minutes on a few CPU cores and gains little for a 135M model."""
    return [
        "--model", str(model), "--served-model-name", served_name,
        "--max-model-len", str(MAX_MODEL_LEN), "--dtype", "bfloat16", "--enforce-eager",
    ]  # fmt: skip


class ServerFailed(RuntimeError):
    """The server exited or did not come up; the message ends with its log's last lines."""


class VLLMServer:
    """One vLLM OpenAI server process (module doc)."""

    def __init__(
        self,
        log_path: str | Path,
        python: str | Path = DEFAULT_PYTHON,
        model: str | Path = DEFAULT_MODEL,
        port: int | None = None,
        served_name: str = SERVED_NAME,
        extra_args: tuple[str, ...] = (),
    ):
        self.python = Path(python)
        self.model = Path(model)
        self.port = port or free_port()
        self.served_name = served_name
        self.log_path = Path(log_path)
        self.extra_args = tuple(extra_args)
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.ready_after_s: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> VLLMServer:
        if not self.python.exists():
            raise ServerFailed(f"{self.python} not found: run bash scripts/setup_vllm_env.sh first")
        if not (self.model / "config.json").exists():
            raise ServerFailed(f"{self.model} not found: run python -m huatuo_o1.models first")
        cmd = [str(self.python), "-m", "vllm.entrypoints.openai.api_server",
               *engine_args(self.model, self.served_name), "--host", "127.0.0.1", "--port", str(self.port),
               *self.extra_args]  # fmt: skip
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=engine_env(), start_new_session=True, cwd=REPO
        )
        log.close()
        atexit.register(self.stop)  # also when the caller exits without stopping it
        return self

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> float:
        """Seconds from start until /v1/models lists the model; ServerFailed otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise ServerFailed(f"vLLM server exited (code {self.proc.returncode}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=5) as r:
                    ids = [m.get("id") for m in json.load(r).get("data", [])]
                if self.served_name in ids:
                    self.ready_after_s = time.monotonic() - self.started_at
                    return self.ready_after_s
            except (OSError, ValueError):
                pass
            time.sleep(2)
        raise ServerFailed(f"vLLM server not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, grace: float = 20.0) -> None:
        """End the server and its engine processes (the whole process group)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        try:  # engine children left in the group after the server itself exited
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc = None

    def __enter__(self) -> VLLMServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Run a command with a vLLM server on the embedded default model (module doc)."
    )
    ap.add_argument("--log", default="demo_out/vllm_server.log", help="Where the server's output goes.")
    ap.add_argument("--python", default=str(DEFAULT_PYTHON), help="Python of the vLLM environment.")
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="The model folder to serve.")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("give the command to run after --")
    server = VLLMServer(args.log, python=args.python, model=args.model)
    print(f"starting vLLM on {server.url} (log: {args.log}) ...", flush=True)
    try:
        with server:
            print(f"vLLM ready after {server.ready_after_s:.0f} s", flush=True)
            env = {**os.environ, "HUATUO_VLLM_URL": server.url, "HUATUO_VLLM_MODEL": server.served_name}
            return subprocess.call(command, env=env)
    except ServerFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
