"""One run per output folder (huatuo_o1/lock.py), and its wiring into the API stages."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from huatuo_o1 import lock
from huatuo_o1.io import InputError
from huatuo_o1.testing.openai_server import FakeOpenAIServer
from tests.helpers import REPO, run_script

CONSTRUCT = "construct_verifiable_medical_problems.py"
SEARCH = "search_for_complex_reasoning_path.py"
OPEN_Q, GT = "Open-ended Verifiable Question", "Ground-True Answer"

HOLDER = textwrap.dedent(
    """
    import sys
    from huatuo_o1.lock import run_lock
    try:
        with run_lock(sys.argv[1], what=sys.argv[2]):
            print("locked", flush=True)
            sys.stdin.read()  # hold until the test closes stdin
    except Exception as e:
        print(f"refused: {e}", flush=True)
    """
)


def holder(folder: Path, what: str = "construct") -> subprocess.Popen:
    """A process that takes the lock of `folder` and holds it until its stdin closes."""
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder), what],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def finish(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(30)


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def write_lock(folder: Path, **rec) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    base = {"what": "construct", "host": socket.gethostname(), "since": "earlier", "boot_id": lock.boot_id()}
    path = folder / lock.LOCK_NAME
    path.write_text(json.dumps({**base, **rec}))
    return path


# ---------------------------------------------------------------------------------------------
# the module
# ---------------------------------------------------------------------------------------------


def test_lock_is_taken_and_released(tmp_path):
    folder = tmp_path / "run"
    with lock.run_lock(folder, what="sft") as path:
        rec = json.loads(path.read_text())
        assert rec["pid"] == os.getpid() and rec["what"] == "sft"
        assert rec["start_time"] == lock.start_time(os.getpid())
    assert not path.exists()


def test_folders_the_lock_made_are_removed_if_the_run_left_nothing(tmp_path):
    with pytest.raises(ValueError):
        with lock.run_lock(tmp_path / "a" / "b", what="sft"):
            raise ValueError("bad data")
    assert not (tmp_path / "a").exists()
    with lock.run_lock(tmp_path / "a" / "b", what="sft"):
        (tmp_path / "a" / "b" / "result.json").write_text("{}")
    assert sorted(os.listdir(tmp_path / "a" / "b")) == [lock.LOCK_NAME + ".guard", "result.json"]


def test_live_owner_refuses_a_second_run(tmp_path):
    folder = tmp_path / "run"
    h = holder(folder)
    try:
        assert h.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match=r"in use by construct \(pid \d+ on"):
            with lock.run_lock(folder, what="search"):
                pass
        assert (folder / lock.LOCK_NAME).exists()  # the owner's lock is untouched
    finally:
        finish(h)
    assert not (folder / lock.LOCK_NAME).exists()


@pytest.mark.parametrize(
    "rec",
    [
        {"pid": "DEAD"},  # the process is gone
        {"pid": "SELF_PARENT", "start_time": 1},  # the id belongs to another process now
        {"pid": "SELF_PARENT", "start_time": "NOW", "boot_id": "another-boot"},  # rebooted since
    ],
)
def test_stale_lock_is_taken_over(tmp_path, rec):
    rec = dict(rec)
    rec["pid"] = dead_pid() if rec["pid"] == "DEAD" else os.getppid()
    if rec.get("start_time") == "NOW":
        rec["start_time"] = lock.start_time(os.getppid())
    path = write_lock(tmp_path / "run", **rec)
    with lock.run_lock(tmp_path / "run", what="search"):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()


def test_unreadable_lock_is_stale(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / lock.LOCK_NAME).write_text('{"pid": 12')  # a writer killed mid-write
    with lock.run_lock(tmp_path / "run", what="x") as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_matching_live_owner_is_respected(tmp_path):
    ppid = os.getppid()
    write_lock(tmp_path / "run", pid=ppid, start_time=lock.start_time(ppid))
    with pytest.raises(lock.LockBusy, match=f"pid {ppid}"):
        with lock.run_lock(tmp_path / "run", what="x"):
            pass


def test_lock_from_another_host_is_refused_with_a_way_out(tmp_path):
    path = write_lock(tmp_path / "run", host="some-other-node", pid=1, start_time=1)
    with pytest.raises(lock.LockBusy, match=f"another host; if that run is over, delete {path}"):
        with lock.run_lock(tmp_path / "run", what="x"):
            pass


def test_release_never_removes_a_lock_taken_over_by_another_run(tmp_path):
    folder = tmp_path / "run"
    with lock.run_lock(folder, what="x") as path:
        path.write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname()}))
    assert path.exists()


def test_secondary_ranks_take_no_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "3")
    with lock.run_lock(tmp_path / "run", what="sft") as path:
        assert path is None
        assert not (tmp_path / "run" / lock.LOCK_NAME).exists()


def test_racing_takeovers_of_a_stale_lock_have_one_winner(tmp_path):
    folder = tmp_path / "run"
    write_lock(folder, pid=dead_pid())
    procs = [holder(folder) for _ in range(6)]
    try:
        answers = [p.stdout.readline().strip() for p in procs]
        assert sum(a == "locked" for a in answers) == 1, answers
        assert all(a == "locked" or a.startswith("refused: ") and "in use by" in a for a in answers)
    finally:
        for p in procs:
            finish(p)


def test_locked_decorator_holds_the_lock_while_the_function_runs(tmp_path):
    seen = []

    @lock.locked("sft", lambda args, extra=None: tmp_path / args)
    def train(args, extra=None):
        seen.append(json.loads((tmp_path / args / lock.LOCK_NAME).read_text())["what"])
        return extra

    assert train("run", extra=5) == 5 and seen == ["sft"]
    assert not (tmp_path / "run" / lock.LOCK_NAME).exists()
    h = holder(tmp_path / "busy", what="ppo")
    try:
        assert h.stdout.readline().strip() == "locked"
        with pytest.raises(lock.LockBusy, match="in use by ppo"):
            train("busy")
    finally:
        finish(h)
    assert seen == ["sft"]


def test_lock_in_a_blocked_folder_is_an_output_error(tmp_path):
    from huatuo_o1.io import OutputError

    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        with lock.run_lock(tmp_path / "f", what="x"):
            pass


# ---------------------------------------------------------------------------------------------
# the API stages
# ---------------------------------------------------------------------------------------------


def _construct_data(tmp_path: Path) -> Path:
    items = [
        {"question": f"Question number {i}: what?", "options": {"A": "x", "B": "y"}, "answer": "y"}
        for i in (1, 2)
    ]
    p = tmp_path / "mcq.json"
    p.write_text(json.dumps(items))
    return p


def _search_data(tmp_path: Path) -> Path:
    p = tmp_path / "d.json"
    p.write_text(json.dumps([{OPEN_Q: "Case 1: which?", GT: "x"}]))
    return p


@pytest.mark.parametrize(
    "script,task,make",
    [(CONSTRUCT, "mcq_verifiable", _construct_data), (SEARCH, "d_CoT_search", _search_data)],
)
def test_second_run_on_a_folder_in_use_is_refused(tmp_path, script, task, make):
    data, out = make(tmp_path), tmp_path / "out"
    (out / task).mkdir(parents=True)
    tmp_of_live_run = out / task / ".7.json.abc.tmp"  # a live run's half-written result
    tmp_of_live_run.write_text("{")
    h = holder(out / task, what="the other run")
    try:
        assert h.stdout.readline().strip() == "locked"
        with FakeOpenAIServer(lambda req: "Pass") as srv:
            p = run_script(script, "--data_path", data, "--api_url", srv.url, "--output_dir", out)
            assert srv.count() == 0  # nothing paid twice
        assert p.returncode == 2, p.stdout + p.stderr
        assert p.stderr.strip().splitlines() == [p.stderr.strip()]
        assert "in use by the other run" in p.stderr and "Traceback" not in p.stderr
        assert tmp_of_live_run.exists()  # the other run's temp file was not deleted
    finally:
        finish(h)


def test_construct_takes_over_a_killed_runs_lock_and_frees_it(tmp_path):
    data, out = _construct_data(tmp_path), tmp_path / "out"
    path = write_lock(out / "mcq_verifiable", pid=dead_pid(), start_time=5)
    with FakeOpenAIServer(
        lambda req: json.dumps({OPEN_Q: "Q?", GT: "y"}) if "four verdicts" not in req.prompt else "Pass"
    ) as srv:
        p = run_script(CONSTRUCT, "--data_path", data, "--api_url", srv.url, "--output_dir", out)
    assert p.returncode == 0, p.stdout + p.stderr
    assert not path.exists()


def test_dry_run_neither_locks_nor_cleans(tmp_path):
    data, out = _construct_data(tmp_path), tmp_path / "out"
    (out / "mcq_verifiable").mkdir(parents=True)
    live_tmp = out / "mcq_verifiable" / ".1.json.x.tmp"
    live_tmp.write_text("{")
    h = holder(out / "mcq_verifiable")
    try:
        assert h.stdout.readline().strip() == "locked"
        p = run_script(CONSTRUCT, "--data_path", data, "--output_dir", out, "--dry_run")
        assert p.returncode == 0, p.stderr
        assert live_tmp.exists()
    finally:
        finish(h)
