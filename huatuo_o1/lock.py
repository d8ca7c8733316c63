"""One run per output folder: `with run_lock(folder, what="construct"):` around a run's work, or
`@locked("sft", lambda args: args.output_dir)` on a training function (held while it runs).

In plain words:
  - The lock is a small JSON file `<folder>/.huatuo_run.lock` naming its owner: host, process id,
    the process's start time (field 22 of /proc/PID/stat, as serving.py records SGLang servers),
    the boot it ran in, what runs (construct, search, sft, ...) and since when.
  - A second run on the same folder while the owner lives is refused: `LockBusy` (an `InputError`,
    so the scripts print one line and exit with code 2) saying who holds it since when.
  - A lock whose owner is gone is stale and taken over: the process does not exist, or its id now
    belongs to another process (other start time), or the machine rebooted since (other boot id).
    An unreadable lock file (a run killed while writing it) is stale too. A lock written on another
    host cannot be checked from here: it is refused, and the message says to delete the file if that
    run is gone.
  - Check and take-over are atomic: they run under an flock on `<folder>/.huatuo_run.lock.guard`
    (released by the kernel even after kill -9, so it never goes stale), and a new lock is created
    with link(2), which fails if a lock appeared meanwhile. Where the filesystem has no flock (some
    network filesystems) the link still makes creation atomic; only two runs taking over the same
    stale lock in the same instant could both win there.
  - Leaving the `with` block removes the lock if it is still ours. A killed run leaves its lock
    behind; the next run sees the owner is gone and takes it over. Folders the lock created are
    removed again if the run left nothing in them (bad data found after the lock was taken).
  - Under a distributed launch (accelerate/torchrun set RANK) only global rank 0 takes the lock: the
    other ranks of the same run belong to it. A refused rank 0 exits, and the launcher stops its peers.
  - Items keyed by content (the API stages) are shared by every input file name in one output
    folder, so the folder lock of `<output_dir>/<task>` does not cover them: `item_claims` records
    the content ids a run works on in `<output_dir>/.huatuo_claims_<stage>/<host>-<pid>.json`, and a
    run that would work on an item a live run claimed is refused (LockBusy, one line). Claims of a
    run that is gone are removed; runs on different items share the folder freely.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from huatuo_o1.io import InputError, OutputError, check_writable_dir

LOCK_NAME = ".huatuo_run.lock"


class LockBusy(InputError):
    """The folder is in use by a live run: one line, exit code 2."""


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot); None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


def boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except (OverflowError, ValueError):
        return False
    return True


def owner_record(what: str) -> dict:
    pid = os.getpid()
    return {
        "what": what,
        "host": socket.gethostname(),
        "pid": pid,
        "start_time": start_time(pid),
        "boot_id": boot_id(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def owner_alive(rec: dict) -> bool | None:
    """True/False whether the lock's owner still runs; None when that cannot be known from here
    (a lock written on another host). A record without a pid (unreadable) is stale."""
    if not rec.get("pid"):
        return False
    if rec.get("host") != socket.gethostname():
        return None
    if rec.get("boot_id") and boot_id() and rec["boot_id"] != boot_id():
        return False  # the machine rebooted since: no process of that time survives
    try:
        pid = int(rec["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    if pid <= 0 or not _pid_exists(pid):
        return False
    if rec.get("start_time") is not None:
        return start_time(pid) in (None, int(rec["start_time"]))  # another start time: id reused
    return True


def _read(path: Path) -> dict | None:
    """The lock's record; {} when the file exists but is unreadable (a killed writer); None if absent."""
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return rec if isinstance(rec, dict) else {}


@contextlib.contextmanager
def _guard(folder: Path) -> Iterator[None]:
    """An exclusive flock for the check-and-take-over step (no-op where flock is unsupported)."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    fd = os.open(folder / (LOCK_NAME + ".guard"), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # ENOLCK / EOPNOTSUPP on some network filesystems
            pass
        yield
    finally:
        os.close(fd)  # releases the flock


def _describe(rec: dict) -> str:
    return (
        f"{rec.get('what') or 'a run'} (pid {rec.get('pid')} on {rec.get('host')}, since {rec.get('since')})"
    )


def acquire(folder: str | Path, what: str) -> Path:
    """Take the lock of `folder` (created if needed) for this process; LockBusy if a live run holds it,
    OutputError if the folder cannot be written. Returns the lock file's path."""
    folder = check_writable_dir(folder, "output folder")
    path = folder / LOCK_NAME
    mine = owner_record(what)
    tmp = folder / f"{LOCK_NAME}.{os.getpid()}.new"
    try:
        tmp.write_text(json.dumps(mine), encoding="utf-8")
        with _guard(folder):
            for _ in range(3):
                rec = _read(path)
                if rec is not None:
                    alive = owner_alive(rec)
                    if alive is None:
                        raise LockBusy(
                            f"{folder} is locked by {_describe(rec)}, another host; if that run is over, "
                            f"delete {path}"
                        )
                    if alive and not (rec.get("pid") == mine["pid"] and rec.get("host") == mine["host"]):
                        raise LockBusy(
                            f"{folder} is in use by {_describe(rec)}; wait for it to finish, or use "
                            "another output folder"
                        )
                    path.unlink(missing_ok=True)  # stale (owner gone) or our own leftover
                try:
                    os.link(tmp, path)  # atomic: fails if a lock appeared meanwhile
                    return path
                except FileExistsError:
                    continue
            raise LockBusy(f"{folder} is being locked by another run right now; try again")
    except OSError as e:
        raise OutputError(f"output folder {folder} cannot be written: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)


def release(path: Path) -> None:
    """Remove the lock if it is still this process's (never another run's that took it over)."""
    rec = _read(path)
    if rec and rec.get("pid") == os.getpid() and rec.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


def _is_secondary_rank() -> bool:
    rank = os.environ.get("RANK")
    return rank not in (None, "", "0")


@contextlib.contextmanager
def run_lock(folder: str | Path, what: str) -> Iterator[Path | None]:
    """`with run_lock(folder, what="search"):` holds the folder's lock for the block (see module doc).
    Yields the lock file's path (None on a secondary rank of a distributed run, which takes none)."""
    if _is_secondary_rank():
        yield None
        return
    created = _missing_dirs(Path(folder))
    path = acquire(folder, what)
    try:
        yield path
    finally:
        release(path)
        _remove_if_unused(created)


@contextlib.contextmanager
def item_claims(folder: str | Path, what: str, keys) -> Iterator[Path | None]:
    """`with item_claims(output_dir, "search", content_ids):` claims the items for the block (see
    the module doc); LockBusy naming the other run when a live one claimed any of them."""
    if _is_secondary_rank():
        yield None
        return
    root = Path(folder) / f".huatuo_claims_{what}"
    mine = {**owner_record(what), "keys": sorted(set(keys))}
    path = root / f"{mine['host']}-{mine['pid']}.json"
    try:
        root.mkdir(parents=True, exist_ok=True)
        with _guard(root):
            wanted = set(mine["keys"])
            for other in sorted(root.glob("*.json")):
                rec = _read(other)
                if other == path or rec is None:
                    continue
                alive = owner_alive(rec)
                if alive is False:
                    other.unlink(missing_ok=True)  # its run is gone
                    continue
                shared = wanted.intersection(rec.get("keys") or [])
                if shared:
                    hint = f"; if that run is over, delete {other}" if alive is None else ""
                    raise LockBusy(
                        f"{len(shared)} item(s) of this input are being worked on by {_describe(rec)} "
                        f"(the same questions under another input file name, in {folder}); wait for it "
                        f"to finish, or use another output folder{hint}"
                    )
            tmp = path.with_name(path.name + ".new")
            tmp.write_text(json.dumps(mine), encoding="utf-8")
            os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"output folder {folder} cannot be written: {e.strerror or e}") from None
    try:
        yield path
    finally:
        release(path)


def _missing_dirs(folder: Path) -> list[Path]:
    """The folders `mkdir -p folder` would create, deepest first."""
    out = []
    while not folder.exists() and folder != folder.parent:
        out.append(folder)
        folder = folder.parent
    return out


def _remove_if_unused(dirs: list[Path]) -> None:
    """Remove folders (deepest first) that hold nothing but the lock's guard file; stop at the first
    one in use."""
    for d in dirs:
        try:
            names = os.listdir(d)
            if names not in ([], [LOCK_NAME + ".guard"]):
                return
            (d / (LOCK_NAME + ".guard")).unlink(missing_ok=True)
            d.rmdir()
        except OSError:
            return


def locked(what: str, folder_of: Callable[..., str | Path]):
    """Decorator: run the function under `run_lock(folder_of(*its arguments), what)`, so a training
    entry point takes the lock with one line above its `def` instead of a re-indented `with` block."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            with run_lock(folder_of(*args, **kwargs), what=what):
                return fn(*args, **kwargs)

        return inner

    return wrap
