"""Start and stop an SGLang server for evaluation, touching nothing else.

SGLang is an external program here (never imported): `<python> -m sglang.launch_server ...` (the
interpreter of SGLang's own environment, `--sglang_python`) runs in a new session, so it leads its
own process group, and the group id and the leader's start time (/proc/PID/stat field 22) are
written to a pid file (`$HUATUO_RUN_DIR` or ~/.cache/huatuo_o1, file `sglang_<port>.pid`). We then
poll GET /v1/models until it answers (or the process dies: the error quotes the log's last lines).
Anything that interrupts the wait (timeout, Ctrl-C, SIGTERM: a handler turns SIGTERM into SystemExit
while a server is held) stops the group before propagating. Stopping sends SIGTERM to that process
group (SGLang's scheduler and detokenizer workers are in it), waits, then SIGKILL, and removes the
pid file.

Which recorded group is still ours: when its leader is alive, its start time must match the
recorded one (else the pid was reused: nothing is killed); when the leader is gone but the group
still has members (workers left behind), the group is ours (Linux does not hand out a pid that is
still a live process group's id). A group with no member is stale.

`evaluation/kill_sglang_server.sh` does the same from the shell for every recorded server, so it
never kills an unrelated process that merely has "sglang" in its name.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from huatuo_o1.io import InputError


def run_dir() -> Path:
    return Path(os.environ.get("HUATUO_RUN_DIR") or Path.home() / ".cache" / "huatuo_o1")


def pid_file(port: int) -> Path:
    return run_dir() / f"sglang_{port}.pid"


def sglang_command(
    model_path: str,
    port: int,
    mem_fraction_static: float = 0.8,
    dp: int = 1,
    tp: int = 1,
    extra: list[str] | None = None,
    python: str | None = None,
) -> list[str]:
    """The README's launch command (same flags and defaults)."""
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
        "--dp",
        str(dp),
        "--tp",
        str(tp),
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


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot); None if no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 onwards
    return int(fields[19])


def recorded_group_is_ours(rec: dict) -> bool:
    """Whether the process group of a pid-file record is still the server we started."""
    pgid = int(rec["pgid"])
    if not _group_alive(pgid):
        return False
    now = start_time(pgid)
    if now is None:  # leader gone, members left: its id cannot have been reused
        return True
    if rec.get("start_time") is not None:
        return int(rec["start_time"]) == now
    return "sglang.launch_server" in _cmdline(pgid)  # older pid files: no start time recorded


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
        self._old_sigterm = None

    def start(self) -> SGLangServer:
        if server_ready(self.port):
            raise InputError(
                f"port {self.port} already serves /v1/models: stop that server or drop --launch_server"
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        try:
            pf = pid_file(self.port)
            pf.parent.mkdir(parents=True, exist_ok=True)
            rec = {
                "pgid": self.proc.pid,
                "start_time": start_time(self.proc.pid),
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


def stop_recorded(port: int | None = None) -> list[int]:
    """Stop the servers recorded in pid files (one port or all); return the groups signalled."""
    files = [pid_file(port)] if port is not None else sorted(run_dir().glob("sglang_*.pid"))
    stopped = []
    for pf in files:
        try:
            rec = json.loads(pf.read_text())
            pgid = int(rec["pgid"])
        except (OSError, ValueError, KeyError, TypeError):
            pf.unlink(missing_ok=True)
            continue
        if recorded_group_is_ours(rec) and stop_group(pgid):
            stopped.append(pgid)
        pf.unlink(missing_ok=True)
    return stopped


if __name__ == "__main__":
    # python -m huatuo_o1.serving stop [PORT]
    if len(sys.argv) >= 2 and sys.argv[1] == "stop":
        got = stop_recorded(int(sys.argv[2]) if len(sys.argv) > 2 else None)
        print(f"stopped process group(s): {got}" if got else "no recorded SGLang server is running")
    else:
        print("usage: python -m huatuo_o1.serving stop [PORT]", file=sys.stderr)
        sys.exit(2)
