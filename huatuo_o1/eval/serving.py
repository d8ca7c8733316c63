"""Start and stop an SGLang server for evaluation, touching nothing else.

SGLang is an external program here (never imported): `<python> -m sglang.launch_server ...` runs
with the interpreter of SGLang's own environment, found by `find_sglang_python`: `--sglang_python`,
else `$HUATUO_SGLANG_PYTHON`, else this interpreter only if it can import sglang (said in one
line); none with SGLang is a one-line error naming both settings. The launch command spells the
parallelism flags as SGLang 0.5 declares them (`--tp-size`, `--dp-size`); data parallelism
defaults to the visible GPUs (`CUDA_VISIBLE_DEVICES`, else `nvidia-smi -L`, else 1) divided by
the tensor-parallel size.

The server runs in a new session, so it leads its own process group. The pid file
(`$HUATUO_RUN_DIR` or ~/.cache/huatuo_o1, file `sglang_<port>.pid`) records the group id, the
leader's start time (/proc/PID/stat field 22) and a random token placed in the server's
environment (`HUATUO_SGLANG_TOKEN`), which every process it starts inherits. We then poll GET
/v1/models until it answers (or the process dies: the error quotes the log's last lines).
Anything that interrupts the wait (timeout, Ctrl-C, SIGTERM: a handler turns SIGTERM into
SystemExit while a server is held) stops the group before propagating. Stopping sends SIGTERM to
that process group (SGLang's scheduler and detokenizer workers are in it), waits, then SIGKILL,
and removes the pid file.

A recorded group is signalled only when it is proven ours (`why_not_ours` says why not):
  * a group id of 0 or 1, or our own group, is never signalled (kill(0) would hit the caller);
  * leader alive: its start time must equal the recorded one (else the pid was reused);
  * leader gone (workers left behind): group ids can be reused, so the group counts as ours only
    if one of its live members carries the recorded token in its environment;
  * a group with no member is stale.
Otherwise nothing is signalled, the pid file is removed and one line says why.

`evaluation/kill_sglang_server.sh` does the same from the shell for every recorded server, so it
never kills an unrelated process that merely has "sglang" in its name.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from huatuo_o1.io import InputError
from huatuo_o1.lock import start_time  # field 22 of /proc/PID/stat, as run locks record it


def run_dir() -> Path:
    return Path(os.environ.get("HUATUO_RUN_DIR") or Path.home() / ".cache" / "huatuo_o1")


def pid_file(port: int) -> Path:
    return run_dir() / f"sglang_{port}.pid"


TOKEN_ENV = "HUATUO_SGLANG_TOKEN"
PYTHON_ENV = "HUATUO_SGLANG_PYTHON"


def visible_gpu_count() -> int:
    """GPUs this process may use: CUDA_VISIBLE_DEVICES when set, else `nvidia-smi -L`, else 1."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None and env.strip():
        ids = [x for x in env.split(",") if x.strip()]
        if ids and ids[0].strip() != "-1":
            return len(ids)
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30).stdout
            n = sum(line.startswith("GPU ") for line in out.splitlines())
            if n:
                return n
        except (OSError, subprocess.SubprocessError):
            pass
    return 1


def default_dp(tp: int = 1) -> int:
    """Data-parallel replicas filling the visible GPUs with `tp` GPUs each (at least 1)."""
    return max(1, visible_gpu_count() // max(1, tp))


def _has_sglang(python: str) -> str | None:
    """None when `python` can import sglang, else why not."""
    probe = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('sglang') else 3)"
    try:
        rc = subprocess.run([python, "-c", probe], capture_output=True, timeout=120).returncode
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot be run ({type(e).__name__})"
    return None if rc == 0 else "cannot import sglang"


def find_sglang_python(flag: str | None = None) -> str:
    """The interpreter to launch SGLang with: `--sglang_python`, else $HUATUO_SGLANG_PYTHON, else
    this interpreter if it has SGLang. InputError (one line naming both settings) otherwise."""
    env = os.environ.get(PYTHON_ENV) or None
    hint = (
        f"pass the interpreter of the environment where SGLang is installed with --sglang_python "
        f"PATH or the environment variable {PYTHON_ENV}"
    )
    if flag:
        why = _has_sglang(flag)
        if why:
            raise InputError(f"--sglang_python {flag!r} {why}: {hint}")
        return flag
    if env:
        why = _has_sglang(env)
        if why:
            raise InputError(f"{PYTHON_ENV}={env!r} {why} (and --sglang_python is not given): {hint}")
        return env
    if _has_sglang(sys.executable) is None:
        print(f"launching SGLang with this Python ({sys.executable}), which has it", file=sys.stderr)
        return sys.executable
    raise InputError(
        f"no Python with SGLang: --sglang_python is not given, {PYTHON_ENV} is not set, and this "
        f"Python ({sys.executable}) cannot import sglang; {hint}"
    )


def sglang_command(
    model_path: str,
    port: int,
    mem_fraction_static: float = 0.8,
    dp: int | None = 1,
    tp: int = 1,
    extra: list[str] | None = None,
    python: str | None = None,
) -> list[str]:
    """The README's launch command (same flags and defaults), parallelism flags spelled as SGLang
    0.5 declares them; dp None = the visible GPUs divided by tp."""
    return [
        python or sys.executable,
        "-m",
        "sglang.launch_server",
        "--model-path",
        str(model_path),
        "--port",
        str(port),
        "--mem-fraction-static",
        str(mem_fraction_static),
        "--tp-size",
        str(tp),
        "--dp-size",
        str(default_dp(tp) if dp is None else dp),
        *(extra or []),
    ]


def server_ready(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/v1/models", timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is `pgid` (from /proc)."""
    members = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()  # field 3 onwards; field 5 = pgrp
        except (OSError, ValueError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            members.append(int(d.name))
    return members


def _carries_token(pid: int, token: str) -> bool:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"{TOKEN_ENV}={token}".encode() in env


def why_not_ours(rec: dict) -> str | None:
    """None when the process group of a pid-file record is provably the server we started,
    else the reason nothing may be signalled."""
    try:
        pgid = int(rec["pgid"])
    except (KeyError, TypeError, ValueError):
        return "no process group id recorded"
    if pgid <= 1:
        return (
            f"recorded process group {pgid} is not a server's (0 and 1 would signal the caller or everything)"
        )
    if pgid == os.getpgrp():
        return f"recorded process group {pgid} is the caller's own group"
    if not _group_alive(pgid):
        return f"process group {pgid} no longer exists"
    now = start_time(pgid)
    if now is not None:  # the leader is alive
        if rec.get("start_time") is not None:
            if int(rec["start_time"]) == now:
                return None
            return f"process {pgid} started at another time than the recorded server (its pid was reused)"
        if "sglang.launch_server" in _cmdline(pgid):  # older pid files: no start time recorded
            return None
        return f"process {pgid} is not sglang.launch_server (its pid was reused)"
    token = rec.get("token")
    if token and any(_carries_token(p, str(token)) for p in group_members(pgid)):
        return None
    return (
        f"the leader of process group {pgid} has exited and no member of the group carries the "
        "recorded token, so the group cannot be proven ours (group ids are reused)"
    )


def recorded_group_is_ours(rec: dict) -> bool:
    """Whether the process group of a pid-file record is provably still the server we started."""
    return why_not_ours(rec) is None


class SGLangServer:
    """`with SGLangServer(model, port) as srv:` starts SGLang, waits until it answers, stops it."""

    def __init__(
        self,
        model_path: str,
        port: int = 30000,
        log_path: str = "sglang0.log",
        timeout: float = 1800.0,
        command: list[str] | None = None,
        python: str | None = None,
        **launch_kw,
    ):
        self.port = port
        self.log_path = Path(log_path)
        self.timeout = timeout
        self.command = command or sglang_command(model_path, port, python=python, **launch_kw)
        self.proc: subprocess.Popen | None = None
        self.token = secrets.token_hex(16)
        self._old_sigterm = None

    def start(self) -> SGLangServer:
        if server_ready(self.port):
            raise InputError(
                f"port {self.port} already serves /v1/models: stop that server or drop --launch_server"
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, TOKEN_ENV: self.token},
        )
        log.close()
        try:
            pf = pid_file(self.port)
            pf.parent.mkdir(parents=True, exist_ok=True)
            rec = {
                "pgid": self.proc.pid,
                "start_time": start_time(self.proc.pid),
                "token": self.token,
                "port": self.port,
                "cmd": self.command,
            }
            pf.write_text(json.dumps(rec))
            print(
                f"started SGLang (process group {self.proc.pid}, port {self.port}, log {self.log_path})",
                file=sys.stderr,
            )
            deadline = time.monotonic() + self.timeout
            while not server_ready(self.port):
                code = self.proc.poll()
                if code is not None:
                    raise InputError(
                        f"the SGLang server exited with code {code} before answering; "
                        f"last lines of {self.log_path}: {_tail(self.log_path, 5)!r}"
                    )
                if time.monotonic() > deadline:
                    raise InputError(
                        f"the SGLang server did not answer on port {self.port} within {self.timeout:.0f}s (see {self.log_path})"
                    )
                time.sleep(0.5)
        except BaseException:  # timeout, early exit, Ctrl-C, SIGTERM: never leave it running
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_group(self.proc.pid)
        with contextlib.suppress(Exception):
            self.proc.wait(5)
        pid_file(self.port).unlink(missing_ok=True)
        self.proc = None

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            self._old_sigterm = signal.signal(signal.SIGTERM, _sigterm_to_exit)
        try:
            return self.start()
        except BaseException:
            self._restore_sigterm()
            raise

    def __exit__(self, *exc):
        try:
            self.stop()
        finally:
            self._restore_sigterm()

    def _restore_sigterm(self):
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None


def _sigterm_to_exit(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through `with SGLangServer(...)`, which stops it


def stop_group(pgid: int, grace: float = 20.0) -> bool:
    """SIGTERM the process group, SIGKILL it after `grace` seconds; True when something was signalled."""
    if not _group_alive(pgid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pgid, os.WNOHANG)  # reap our own child so it does not linger as a zombie
        if not _group_alive(pgid):
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    return True


def stop_recorded(port: int | None = None, say=None) -> list[int]:
    """Stop the servers recorded in pid files (one port or all) that are provably ours; return the
    groups signalled. `say(line)` gets one line per record that is not signalled, saying why."""
    say = say or (lambda line: None)
    files = [pid_file(port)] if port is not None else sorted(run_dir().glob("sglang_*.pid"))
    stopped = []
    for pf in files:
        if not pf.exists():
            continue
        try:
            rec = json.loads(pf.read_text())
            if not isinstance(rec, dict):
                raise ValueError
        except (OSError, ValueError):
            say(f"{pf}: unreadable pid file, nothing signalled")
            pf.unlink(missing_ok=True)
            continue
        why = why_not_ours(rec)
        if why is None and stop_group(int(rec["pgid"])):
            stopped.append(int(rec["pgid"]))
        elif why is not None:
            say(f"{pf}: nothing signalled: {why}")
        pf.unlink(missing_ok=True)
    return stopped


def main(argv: list[str] | None = None) -> int:
    """python -m huatuo_o1.eval.serving stop [PORT]"""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "stop" or len(argv) > 2 or (len(argv) == 2 and not argv[1].isdigit()):
        print("usage: python -m huatuo_o1.eval.serving stop [PORT]", file=sys.stderr)
        return 2
    got = stop_recorded(int(argv[1]) if len(argv) > 1 else None, say=print)
    print(f"stopped process group(s): {got}" if got else "no recorded SGLang server of ours is running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
