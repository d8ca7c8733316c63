"""Reading pipeline files and writing results so that nothing is lost.

- `load_records` reads a JSON list or JSONL file and raises `InputError` (one clear line naming
  the file and the item) on anything malformed, before any work starts.
- `atomic_write_json` writes to a temp file in the same folder, fsyncs, then renames: a reader (or
  a resumed run) sees either the old file or the new one, never half of one, even after kill -9.
- `ItemStore` is the per-item result folder used for resume: one `<process_id>.json` per item.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


class InputError(Exception):
    """Bad input: the scripts print the message as one line and exit with code 2."""


class OutputError(Exception):
    """Results could not be written (disk full, no permission): one line and exit code 2, like bad
    input; what was written before stays valid and a rerun resumes from it."""


def load_records(path: str | Path, what: str = "input") -> list[dict]:
    """Load a JSON list (or JSONL, or a single JSON object holding a list) of objects."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise InputError(f"{what} file is empty: {path}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as first_err:
        data = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                data.append(json.loads(line))
            except json.JSONDecodeError:
                if lineno == 1:
                    raise InputError(
                        f"{path}: not valid JSON or JSONL ({first_err.msg} at line {first_err.lineno})"
                    ) from None
                raise InputError(f"{path}: line {lineno} is not valid JSON") from None
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
    for i, item in enumerate(data, 1):
        if not isinstance(item, dict):
            raise InputError(f"{path}: item {i} is not a JSON object (got {type(item).__name__})")
    return data


def require_fields(path: str | Path, records: Iterable[dict], fields: Iterable[str]) -> None:
    """Raise InputError naming the first record that lacks one of `fields` (or has it empty)."""
    fields = list(fields)
    for i, rec in enumerate(records, 1):
        missing = [f for f in fields if f not in rec or rec[f] in (None, "")]
        if missing:
            raise InputError(f"{path}: item {i} lacks field(s) {', '.join(repr(m) for m in missing)}")


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    path = Path(path)
    data = json.dumps(obj, ensure_ascii=False, indent=indent).encode("utf-8")  # fails before any file exists
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ItemStore:
    """One JSON file per finished item under `root`, named by the item's `process_id`.

    A file exists only once its item is finished (atomic write), so the set of files is the
    resume state: a rerun skips those ids. Unreadable leftovers are treated as unfinished.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        for tmp in self.root.glob(".*.tmp"):  # half-written files of a killed run (never renamed)
            tmp.unlink(missing_ok=True)

    @staticmethod
    def existing_ids(root: str | Path) -> set[str]:
        """Finished ids under `root` without creating it (for dry runs)."""
        return ItemStore(root).done_ids() if Path(root).is_dir() else set()

    def path(self, process_id: int | str) -> Path:
        return self.root / f"{process_id}.json"

    def done_ids(self) -> set[str]:
        return set(self.fingerprints())

    def fingerprints(self) -> dict[str, str | None]:
        """id -> the `input_fingerprint` each finished record was made from (None if it has none)."""
        done = {}
        for p in self.root.glob("*.json"):
            try:
                rec = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            done[p.stem] = rec.get("input_fingerprint") if isinstance(rec, dict) else None
        return done

    def has(self, process_id: int | str) -> bool:
        return self.path(process_id).exists()

    def save(self, process_id: int | str, record: dict) -> None:
        atomic_write_json(self.path(process_id), record)

    def load(self, process_id: int | str) -> dict:
        return json.loads(self.path(process_id).read_text(encoding="utf-8"))

    def drop_status(self, status: str) -> int:
        """Forget finished items with this `status` (e.g. "failed") so a rerun redoes them."""
        dropped = 0
        for p in list(self.root.glob("*.json")):
            try:
                rec = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if rec.get("status") == status:
                p.unlink(missing_ok=True)
                dropped += 1
        return dropped

    def load_finished(self, items: Iterable[dict], id_key: str = "process_id") -> list[dict]:
        """The stored records of `items` that are finished, in the items' order."""
        return [self.load(it[id_key]) for it in items if self.has(it[id_key])]

    def iter_records(self) -> Iterator[dict]:
        for p in sorted(self.root.glob("*.json"), key=lambda p: (len(p.stem), p.stem)):
            yield json.loads(p.read_text(encoding="utf-8"))


def fingerprint(item: dict) -> str:
    """A stable hash of an input item: resume redoes an item whose input changed since its result."""
    return hashlib.sha256(
        json.dumps(item, sort_keys=True, ensure_ascii=False, default=str).encode()
    ).hexdigest()[:16]


def write_merged(records: list[dict], out_dir: str | Path, task: str, output_path: str | None = None) -> Path:
    """Write a stage's merged output to `output_path` or <out_dir>/<task>_final_<N>.json (N records).

    Older merges of the same task (and their `_summary.json`) are removed: after a resumed run they
    are subsets of the new file, and leaving them would invite using a stale one.
    """
    out_dir = Path(out_dir)
    path = Path(output_path) if output_path else out_dir / f"{task}_final_{len(records)}.json"
    atomic_write_json(path, records)
    own = re.compile(re.escape(task) + r"_final_\d+\.json")  # exactly this task's merges, no other stage's
    for old in out_dir.glob(f"{task}_final_*.json"):
        if old != path and own.fullmatch(old.name):
            old.unlink(missing_ok=True)
            old.with_name(old.stem + "_summary.json").unlink(missing_ok=True)
    return path
