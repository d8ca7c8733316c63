"""The multi-rank tier: training scripts launched as users launch them, on two CPU processes.

`accelerate launch --config_file configs/deepspeed_zero3.yaml --mixed_precision no --num_processes 2
SCRIPT ...` (or the ZeRO-2 config): two ranks on gloo with DeepSpeed's CPU accelerator, tiny models,
no CPU-only flag (the project detects the CPU machine itself). ZeRO-3 with one rank shards nothing;
two ranks run the gather, save and resume paths that differ between ranks.

The tier is not part of the main suite (`scripts/test.sh`): it runs with `bash
scripts/test_multirank.sh` (which `.ci/run` calls after the main suite), which sets
HUATUO_MULTIRANK=1. Without that variable the files here are not collected.

A hang is a failure: every launch runs under a time limit; when it expires, each rank gets SIGABRT,
which, with PYTHONFAULTHANDLER set, prints every thread's Python stack to the launch's stderr, and
the test fails with those stacks in its message (the next deadlock is diagnosed from the CI log).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# DeepSpeed compiles its CPU communication op on the first launch (~1 min); one cache per checkout
# and Python, shared with tests/test_launch.py, keeps later launches from rebuilding it.
_EXT_KEY = hashlib.sha1(f"{ROOT}|{sys.executable}".encode()).hexdigest()[:12]
ENV = {
    **os.environ,
    "TORCH_EXTENSIONS_DIR": os.environ.get(
        "TORCH_EXTENSIONS_DIR", str(Path(tempfile.gettempdir()) / f"huatuo-o1-torch-extensions-{_EXT_KEY}")
    ),
    "PYTHONPATH": str(ROOT),
    "PYTHONFAULTHANDLER": "1",  # SIGABRT on a hung rank prints its Python stacks
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "offline",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
    "OPENAI_API_KEY": "",
}
CONFIGS = {
    "zero3": ROOT / "configs" / "deepspeed_zero3.yaml",
    "zero2": ROOT / "configs" / "deepspeed_zero2.yaml",
}
LAUNCH_TIMEOUT_S = float(os.environ.get("HUATUO_MULTIRANK_TIMEOUT_S", "240"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (read from /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


class Launch:
    """A running `accelerate launch` (its own session, so it and its ranks are stopped together)."""

    def __init__(self, cmd: list[str], cwd: Path, log: Path):
        self.cmd, self.log = cmd, log
        self.out = log.open("w+", encoding="utf-8")
        self.proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=ENV,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            text=True,
        )

    def ranks(self) -> list[int]:
        """The training processes (the launcher's Python children)."""
        return [p for p in _descendants(self.proc.pid) if _is_python(p)]

    def text(self) -> str:
        if not self.out.closed:
            self.out.flush()
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait(self, timeout: float = LAUNCH_TIMEOUT_S) -> subprocess.CompletedProcess:
        """Wait for the launch; past `timeout`, dump each rank's stacks and fail the test with them."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        if rc is None:
            ranks = self.ranks()
            for pid in ranks:
                with _ignore_gone():
                    os.kill(pid, signal.SIGABRT)  # faulthandler: every thread's stack to stderr
            time.sleep(3)
            with _ignore_gone():
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.out.close()
            pytest.fail(
                f"launch hung for {timeout:.0f} s: {' '.join(self.cmd[3:])}\n"
                f"stacks of ranks {ranks} (SIGABRT + faulthandler), then the end of the log:\n"
                + self.text()[-20000:],
                pytrace=False,
            )
        self.out.close()
        return subprocess.CompletedProcess(self.cmd, rc, self.text(), "")


class _ignore_gone:
    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is ProcessLookupError


def _is_python(pid: int) -> bool:
    try:
        return "python" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return False


_count = {"n": 0}


def start(config: str | None, script: str, *args, processes: int = 2, cwd: Path) -> Launch:
    """Start `accelerate launch` of a training script as users run it (config: "zero3", "zero2"), or a
    plain `python SCRIPT` when `config` is None."""
    if config is None:
        cmd = [sys.executable, str(ROOT / script), *map(str, args)]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS[config]),
               "--mixed_precision", "no", "--num_processes", str(processes), "--main_process_port",
               str(free_port()), str(ROOT / script), *map(str, args)]  # fmt: skip
    _count["n"] += 1
    return Launch(cmd, cwd, Path(cwd) / f"launch-{_count['n']}.log")


def launch(config: str | None, script: str, *args, processes: int = 2, cwd: Path, expect: int = 0):
    """Run a launch to its end (under the time limit); assert its exit code; the CompletedProcess."""
    r = start(config, script, *args, processes=processes, cwd=cwd).wait()
    assert r.returncode == expect, f"exit {r.returncode}, expected {expect}:\n{r.stdout[-6000:]}"
    return r


def preempt(config: str, script: str, *args, cwd: Path, once_logged: str) -> Path:
    """What a scheduler's preemption does: start a launch, SIGTERM the launcher once `once_logged` is
    in its output, and check the ending: the launcher exits 1 (torch's elastic agent turns the signal
    into an exception: docs/multi_gpu.md), each rank printed its one line, one checkpoint was saved,
    named after its step (>= 1) and holding every rank's ZeRO optimizer shard. Its path."""
    run = start(config, script, *args, cwd=cwd)
    deadline = time.monotonic() + 180
    while once_logged not in run.text() and run.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert run.proc.poll() is None, run.text()[-4000:]
    os.kill(run.proc.pid, signal.SIGTERM)
    r = run.wait()
    assert r.returncode == 1, r.stdout[-4000:]
    assert r.stdout.count("terminated (SIGTERM): results written so far are kept") == 2  # both ranks
    ckpts = sorted(Path(cwd).rglob("checkpoint-*"))
    assert len(ckpts) == 1, ckpts
    step = trainer_state(ckpts[0])["global_step"]
    assert step >= 1 and ckpts[0].name == f"checkpoint-{step}"
    assert len(list((ckpts[0] / f"global_step{step}").glob("*optim_states.pt"))) == 2  # one per rank
    return ckpts[0]


def trainer_state(ckpt: Path) -> dict:
    return json.loads((ckpt / "trainer_state.json").read_text())


def logged(state: dict, key: str) -> list[tuple[int, float]]:
    """(step, value) of every log entry of `state` that has `key`."""
    return [(e["step"], e[key]) for e in state["log_history"] if key in e]


def assert_whole_model(folder: Path, cls_name: str = "AutoModelForCausalLM", tokenizer: bool = True):
    """The folder loads as a plain HF model with every tensor whole (no ZeRO-3 shard left empty)."""
    import transformers

    model = getattr(transformers, cls_name).from_pretrained(folder)
    for name, p in model.state_dict().items():
        assert p.numel() > 0, f"{folder}: {name} is empty (a ZeRO-3 shard, not the gathered weight)"
    if tokenizer:
        transformers.AutoTokenizer.from_pretrained(folder)
    return model


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path
