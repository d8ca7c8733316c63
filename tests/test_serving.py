"""--launch_server and evaluation/kill_sglang_server.sh, with a stand-in `sglang` package.

The stand-in `python -m sglang.launch_server --port P ...` serves /v1/models and /v1/completions
on P and forks a worker child (as SGLang's scheduler), so the tests see whether the whole process
group is stopped.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from huatuo_o1.eval import serving
from huatuo_o1.testing.openai_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[1]

FAKE_LAUNCH_SERVER = r"""
import json, os, subprocess, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port = int(sys.argv[sys.argv.index("--port") + 1])
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
open(os.environ["FAKE_SGLANG_WORKER_FILE"], "w").write(str(worker.pid))
if os.environ.get("FAKE_SGLANG_EXIT"):  # dies before answering, its worker left behind
    print("fake sglang: CUDA out of memory", flush=True)
    sys.exit(int(os.environ["FAKE_SGLANG_EXIT"]))
time.sleep(float(os.environ.get("FAKE_SGLANG_SLEEP", "0")))  # a server that never comes up

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def _send(self, obj):
        data = json.dumps(obj).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def do_GET(self):
        self._send({"object": "list", "data": [{"id": "served-model", "object": "model", "created": 0, "owned_by": "x"}]})
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        n = body.get("n") or 1
        self._send({"id": "x", "object": "text_completion", "created": 0, "model": body["model"],
                    "choices": [{"index": i, "text": "The answer is A.", "finish_reason": "stop"} for i in range(n)],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

time.sleep(0.5)  # a real server takes a while to come up
ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"""


@pytest.fixture()
def fake_sglang(tmp_path, monkeypatch):
    pkg = tmp_path / "fakepkgs" / "sglang"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "launch_server.py").write_text(FAKE_LAUNCH_SERVER)
    run_dir = tmp_path / "run"
    worker_file = tmp_path / "worker.pid"
    env = {
        "PYTHONPATH": os.pathsep.join([str(pkg.parent), str(ROOT)]),
        "HUATUO_RUN_DIR": str(run_dir),
        "FAKE_SGLANG_WORKER_FILE": str(worker_file),
        "HUATUO_KILL_GRACE": "2",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return {"run_dir": run_dir, "worker_file": worker_file, "env": {**os.environ, **env}}


def _free_port() -> int:
    with FakeOpenAIServer() as srv:
        return srv.port


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
    return " Z " not in stat  # a zombie is dead


def _wait_dead(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def _unrelated_sglang_process(tmp_path):
    """A process whose name (comm) and command line hold "sglang" but is not our server: `sleep`
    run through a symlink named sglang-helper."""
    link = tmp_path / "sglang-helper"
    if not link.exists():
        link.symlink_to(shutil.which("sleep"))
    p = subprocess.Popen([str(link), "300"], start_new_session=True)
    deadline = time.monotonic() + 5
    while "sglang" not in Path(f"/proc/{p.pid}/comm").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)  # between fork and exec the name is still python's
    assert "sglang" in Path(f"/proc/{p.pid}/comm").read_text()
    return p


def _kill_script(fake_sglang, *args: str) -> subprocess.CompletedProcess:
    """Run evaluation/kill_sglang_server.sh [PORT] in the stand-in sglang environment."""
    return subprocess.run(
        ["bash", str(ROOT / "evaluation/kill_sglang_server.sh"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=fake_sglang["env"],
    )


def _eval_cmd(tiny_lm_dir, tmp_path, port, *extra):
    data = {"S": [{"question": "q?", "options": {"A": "x", "B": "y"}, "answer_idx": "A"}]}
    (tmp_path / "e.json").write_text(json.dumps(data))
    return [
        sys.executable,
        str(ROOT / "evaluation/eval.py"),
        "--model_name",
        str(tiny_lm_dir),
        "--eval_file",
        str(tmp_path / "e.json"),
        "--port",
        str(port),
        "--launch_server",
        "--server_log",
        str(tmp_path / "sglang0.log"),
        "--output_dir",
        str(tmp_path / "out"),
        "--quiet",
        *extra,
    ]


def test_launch_server_evaluates_then_stops_the_group(fake_sglang, tiny_lm_dir, tmp_path):
    port = _free_port()
    proc = subprocess.run(
        _eval_cmd(tiny_lm_dir, tmp_path, port),
        capture_output=True,
        text=True,
        timeout=120,
        env=fake_sglang["env"],
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "out" / f"{Path(tiny_lm_dir).name}e_api_summary.json").read_text())
    assert summary["sources"]["S"]["strict"] == 1.0
    assert not serving.server_ready(port)  # stopped
    assert _wait_dead(int(fake_sglang["worker_file"].read_text()))  # its worker too
    assert not list(fake_sglang["run_dir"].glob("*.pid"))


def test_kill_script_stops_the_recorded_server_only(fake_sglang, tmp_path):
    port = _free_port()
    unrelated = _unrelated_sglang_process(tmp_path)
    srv = serving.SGLangServer(
        "some/model", port=port, log_path=str(fake_sglang["run_dir"] / "log"), timeout=60
    )
    try:
        srv.start()
        pgid = srv.proc.pid
        assert serving.pid_file(port).exists() and serving.server_ready(port)
        out = _kill_script(fake_sglang, str(port))
        assert f"process group {pgid}" in out.stdout
        assert _wait_dead(pgid) and _wait_dead(int(fake_sglang["worker_file"].read_text()))
        assert not serving.pid_file(port).exists()
        assert _alive(unrelated.pid)
    finally:
        srv.stop()
        os.killpg(unrelated.pid, signal.SIGKILL)
        unrelated.wait()


def test_kill_script_stops_a_hand_started_server_but_not_lookalikes(fake_sglang, tmp_path):
    port = _free_port()
    unrelated = _unrelated_sglang_process(tmp_path)
    # a Python process that mentions sglang.launch_server without running it
    lookalike = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)", "sglang.launch_server", "--port", str(port)]
    )
    manual = subprocess.Popen(
        [sys.executable, "-m", "sglang.launch_server", "--model-path", "m", "--port", str(port)],
        env=fake_sglang["env"],
    )
    try:
        deadline = time.monotonic() + 30
        while not serving.server_ready(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        out = _kill_script(fake_sglang, str(port))
        assert f"pid {manual.pid}" in out.stdout, out.stdout + out.stderr
        assert _wait_dead(manual.pid) and _wait_dead(int(fake_sglang["worker_file"].read_text()))
        assert _alive(unrelated.pid) and _alive(lookalike.pid)
    finally:
        for p in (manual, lookalike):
            p.kill()
            p.wait()
        os.killpg(unrelated.pid, signal.SIGKILL)
        unrelated.wait()


def test_kill_script_without_port_stops_hand_started_servers_of_this_repo_only(fake_sglang, tmp_path):
    """The README's plain `bash evaluation/kill_sglang_server.sh` after a manual launch from the repo."""
    here, elsewhere = _free_port(), _free_port()
    cmd = [sys.executable, "-m", "sglang.launch_server", "--model-path", "m", "--port"]
    ours = subprocess.Popen([*cmd, str(here)], env=fake_sglang["env"], cwd=ROOT)
    other = subprocess.Popen([*cmd, str(elsewhere)], env=fake_sglang["env"], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while (
            not (serving.server_ready(here) and serving.server_ready(elsewhere))
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        out = _kill_script(fake_sglang)
        assert f"pid {ours.pid}" in out.stdout, out.stdout + out.stderr
        assert _wait_dead(ours.pid)
        assert _alive(other.pid)  # started elsewhere: untouched without its port
    finally:
        for p in (ours, other):
            p.kill()
            p.wait()


def test_stale_pid_files_kill_nothing(fake_sglang, tmp_path):
    unrelated = _unrelated_sglang_process(tmp_path)
    try:
        gone = serving.pid_file(12345)
        gone.parent.mkdir(parents=True, exist_ok=True)
        gone.write_text(json.dumps({"pgid": 999999999, "port": 12345}))  # group no longer exists
        reused = serving.pid_file(
            12346
        )  # pid reuse: the group now leads something else with "sglang" in its name
        reused.write_text(json.dumps({"pgid": unrelated.pid, "port": 12346}))
        out = _kill_script(fake_sglang)
        assert "stale pid file" in out.stdout and "no SGLang server of this project is running" in out.stdout
        assert not gone.exists() and not reused.exists()
        assert _alive(unrelated.pid)
        reused.write_text(json.dumps({"pgid": unrelated.pid, "port": 12346}))
        assert serving.stop_recorded() == [] and _alive(unrelated.pid)  # the Python path agrees
        # a recorded start time that does not match the live leader: pid reused, nothing killed
        st = serving.start_time(unrelated.pid)
        rec = {"pgid": unrelated.pid, "start_time": st - 1, "port": 12346}
        assert not serving.recorded_group_is_ours(rec)
        assert serving.recorded_group_is_ours({**rec, "start_time": st})
        reused.write_text(json.dumps(rec))
        out = _kill_script(fake_sglang, "12346")
        assert "stale pid file" in out.stdout and "started by hand" not in out.stdout
        assert _alive(unrelated.pid)
    finally:
        os.killpg(unrelated.pid, signal.SIGKILL)
        unrelated.wait()


def test_kill_script_stops_workers_whose_leader_died(fake_sglang, tmp_path):
    port = _free_port()
    srv = serving.SGLangServer("m", port=port, log_path=str(tmp_path / "log"), timeout=60)
    try:
        srv.start()
        worker = int(fake_sglang["worker_file"].read_text())
        os.kill(srv.proc.pid, signal.SIGKILL)  # the leader dies, its worker stays in the group
        srv.proc.wait()
        srv.proc = None
        assert _alive(worker)
        out = _kill_script(fake_sglang, str(port))
        assert "stopping SGLang process group" in out.stdout, out.stdout
        assert _wait_dead(worker)
    finally:
        srv.stop()


def test_server_that_exits_before_answering_is_a_one_line_error(
    fake_sglang, tiny_lm_dir, tmp_path, monkeypatch, capsys
):
    from huatuo_o1.cli import run_main
    from huatuo_o1.eval.run import main

    monkeypatch.setenv("FAKE_SGLANG_EXIT", "1")
    monkeypatch.setattr(sys, "argv", _eval_cmd(tiny_lm_dir, tmp_path, _free_port())[1:])
    with pytest.raises(SystemExit) as exc:
        run_main(main)  # as evaluation/eval.py runs it
    assert exc.value.code == 2
    # which Python launches it (this one, it has the stand-in sglang), "started SGLang ...", the error
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("launching SGLang with this Python") and err[1].startswith("started SGLang")
    assert len(err) == 3 and "exited with code 1 before answering" in err[2] and "out of memory" in err[2]
    assert _wait_dead(int(fake_sglang["worker_file"].read_text()))  # the orphaned worker too
    assert not list(fake_sglang["run_dir"].glob("*.pid"))


class _Guard(Exception):
    pass


def _guard(signum, frame):
    raise _Guard  # what SIGTERM would do here if SGLangServer installed no handler of its own


def test_timeout_and_sigterm_while_waiting_stop_the_server(fake_sglang, tmp_path, monkeypatch):
    import threading

    from huatuo_o1.io import InputError

    monkeypatch.setenv("FAKE_SGLANG_SLEEP", "300")  # the server never answers
    srv = serving.SGLangServer("m", port=_free_port(), log_path=str(tmp_path / "log"), timeout=1.0)
    with pytest.raises(InputError, match="did not answer"):
        srv.start()
    assert _wait_dead(int(fake_sglang["worker_file"].read_text()))
    assert not list(fake_sglang["run_dir"].glob("*.pid"))

    # SIGTERM (a job scheduler cancelling the run) while waiting: SystemExit, the group stopped
    fake_sglang["worker_file"].unlink()

    def term_once_started():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if fake_sglang["worker_file"].exists() and fake_sglang["worker_file"].read_text():
                break
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    old = signal.signal(signal.SIGTERM, _guard)
    try:
        threading.Thread(target=term_once_started, daemon=True).start()
        with pytest.raises(SystemExit):
            with serving.SGLangServer("m", port=_free_port(), log_path=str(tmp_path / "log"), timeout=60):
                pass
        assert signal.getsignal(signal.SIGTERM) is _guard  # the previous handler is back
    finally:
        signal.signal(signal.SIGTERM, old)
    assert _wait_dead(int(fake_sglang["worker_file"].read_text()))
    assert not list(fake_sglang["run_dir"].glob("*.pid"))


def test_sglang_python_that_cannot_import_sglang_is_refused(tmp_path):
    from huatuo_o1.eval.run import main
    from huatuo_o1.io import InputError

    (tmp_path / "e.json").write_text("[]")
    no_site = tmp_path / "python-without-sglang"  # a Python whose environment has no sglang
    no_site.write_text(f'#!/bin/sh\nexec {sys.executable} -I -S "$@"\n')
    no_site.chmod(0o755)
    with pytest.raises(InputError, match="cannot be run"):
        main(
            [
                "--eval_file",
                str(tmp_path / "e.json"),
                "--launch_server",
                "--sglang_python",
                str(tmp_path / "nope"),
            ]
        )
    with pytest.raises(InputError, match="cannot import sglang"):
        main(["--eval_file", str(tmp_path / "e.json"), "--launch_server", "--sglang_python", str(no_site)])


# --- a record is trusted only when it proves the group is ours -------------------


def _orphaned_group():
    """A process group whose leader has exited while a member (sleep) lives on, with no token."""
    p = subprocess.Popen(
        ["sh", "-c", "sleep 300 & echo $!"], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    member = int(p.stdout.readline())
    p.wait()
    return p.pid, member


def test_pgid_zero_one_or_our_own_group_is_never_signalled(fake_sglang, tmp_path):
    for pgid, why in ((0, "0 and 1"), (1, "0 and 1"), (-3, "0 and 1"), (os.getpgrp(), "own group")):
        pf = serving.pid_file(30000 + abs(pgid) % 1000)
        pf.parent.mkdir(parents=True, exist_ok=True)
        rec = {"pgid": pgid, "start_time": 1, "port": 30000}
        pf.write_text(json.dumps(rec))
        out = _kill_script(fake_sglang)  # runs in our process group: it must not signal it
        assert out.returncode == 0 and "nothing signalled" in out.stdout and why in out.stdout, out.stdout
        assert not pf.exists()
        pf.write_text(json.dumps(rec))
        lines = []
        assert serving.stop_recorded(say=lines.append) == []
        assert len(lines) == 1 and why in lines[0]
    # the command-line stop says why as well
    pf.write_text(json.dumps({"pgid": 0, "port": 30000}))
    proc = subprocess.run(
        [sys.executable, "-m", "huatuo_o1.eval.serving", "stop"],
        capture_output=True,
        text=True,
        timeout=60,
        env=fake_sglang["env"],
        cwd=ROOT,
    )
    assert proc.returncode == 0 and "nothing signalled" in proc.stdout and "0 and 1" in proc.stdout


def test_a_group_whose_leader_exited_is_signalled_only_with_our_token(fake_sglang, tmp_path):
    pgid, member = _orphaned_group()
    try:
        assert serving.start_time(pgid) is None and _alive(member)
        pf = serving.pid_file(30999)
        pf.parent.mkdir(parents=True, exist_ok=True)
        for rec in ({"pgid": pgid}, {"pgid": pgid, "start_time": 5, "token": "ab" * 16}):
            pf.write_text(json.dumps(rec))
            out = _kill_script(fake_sglang, "30999")
            assert "cannot be proven ours" in out.stdout, out.stdout
            assert _alive(member)
            assert "cannot be proven ours" in serving.why_not_ours(rec)
    finally:
        os.kill(member, signal.SIGKILL)
    # with the token in a member's environment (what SGLangServer sets): proven ours
    token = "cd" * 16
    p = subprocess.Popen(
        ["sh", "-c", "sleep 300 & echo $!"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, serving.TOKEN_ENV: token},
    )
    member = int(p.stdout.readline())
    p.wait()
    try:
        assert serving.why_not_ours({"pgid": p.pid, "token": token}) is None
        pf.write_text(json.dumps({"pgid": p.pid, "token": token}))
        out = _kill_script(fake_sglang, "30999")
        assert f"stopping SGLang process group {p.pid}" in out.stdout, out.stdout
        assert _wait_dead(member)
    finally:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


# --- SGLang 0.5 flags, the serving Python, data parallelism = visible GPUs ------


def test_launch_command_uses_sglang_05_flags_and_visible_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    cmd = serving.sglang_command("m", 30000, python="py", dp=None, tp=2)
    assert cmd[:3] == ["py", "-m", "sglang.launch_server"]
    assert cmd[cmd.index("--tp-size") + 1] == "2" and cmd[cmd.index("--dp-size") + 1] == "2"
    assert "--tp" not in cmd and "--dp" not in cmd
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    assert serving.default_dp() == 1 and serving.visible_gpu_count() == 1
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("PATH", "/nonexistent")  # no nvidia-smi: unknown -> 1
    assert serving.visible_gpu_count() == 1
    cmd = serving.sglang_command("m", 30000, python="py", dp=3)
    assert cmd[cmd.index("--dp-size") + 1] == "3" and cmd[cmd.index("--tp-size") + 1] == "1"


def test_no_python_with_sglang_is_one_line_naming_both_settings(tmp_path, monkeypatch):
    from huatuo_o1.io import InputError

    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.delenv("HUATUO_SGLANG_PYTHON", raising=False)
    with pytest.raises(InputError) as e:  # this Python has no sglang: not used silently
        serving.find_sglang_python(None)
    assert "--sglang_python" in str(e.value) and "HUATUO_SGLANG_PYTHON" in str(e.value)
    assert "\n" not in str(e.value)
    monkeypatch.setenv("HUATUO_SGLANG_PYTHON", sys.executable)
    with pytest.raises(InputError, match="HUATUO_SGLANG_PYTHON=.*cannot import sglang.*--sglang_python"):
        serving.find_sglang_python(None)
