"""Reading pipeline files and writing results so that nothing is lost.

- `load_records` reads a JSON list or JSONL file and raises `InputError` (one clear line naming
  the file and the item) on anything malformed, before any work starts.
- `atomic_write_json` writes to a temp file in the same folder, fsyncs, then renames: a reader (or
  a resumed run) sees either the old file or the new one, never half of one, even after kill -9.
- `write_file_set` writes several outputs of one run (the SFT and RL splits, verl's train and val
  files) as one set, recorded in a manifest: never a mix of two runs, no stray temp file.
- `ItemStore` is the per-item result folder used for resume: one `<process_id>.json` per item.
- `check_writable_dir` / `check_writable_file` prove an output location can be written before a run
  spends anything (one-line `OutputError` otherwise).

Text that JSON can read but UTF-8 cannot store (a lone surrogate such as "\\ud83d", from an input
file's escape or an LLM reply) is replaced by U+FFFD, and NaN/Infinity (which standard JSON has no
words for) become null: on reading an input file, and in the writers as a last resort, so one broken
character never stops a run and every file we write is standard JSON.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


class InputError(Exception):
    """Bad input: the scripts print the message as one line and exit with code 2."""


class OutputError(Exception):
    """Results could not be written (disk full, no permission): one line and exit code 2, like bad
    input; what was written before stays valid and a rerun resumes from it."""


# Inputs nested deeper than this are refused: no pipeline record needs more than a few levels, and
# deeper ones overflow the recursion of json, copy.deepcopy and the fingerprint further on.
MAX_JSON_DEPTH = 100

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD (a well-formed pair becomes its character)."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def clean_json(obj: Any) -> Any:
    """A copy of a JSON value in which strings (keys too) pass through `clean_text` and NaN or
    Infinity become None (tuples become lists, as JSON has them)."""
    if isinstance(obj, str):
        return clean_text(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {clean_text(k) if isinstance(k, str) else k: clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    return obj


def _too_deep(obj: Any, limit: int) -> bool:
    """Whether lists/objects nest deeper than `limit` (an explicit stack: no recursion)."""
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        elif not isinstance(node, list):
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in node if isinstance(child, (dict, list)))
    return False


def read_text(path: Path, what: str) -> str:
    """The file's text; InputError (one line) when it is missing, a folder, unreadable or not UTF-8."""
    if not path.exists():
        raise InputError(f"{what} file not found: {path}")
    if path.is_dir():
        raise InputError(f"{what} file {path} is a folder, not a file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {what} file {path}: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(
            f"{what} file {path} is not UTF-8 text (byte {raw[e.start]:#04x} at offset {e.start}); "
            "convert it, e.g. iconv -f latin1 -t utf-8"
        ) from None


def _loads(text: str):
    # NaN/Infinity (pandas writes them) are read as None: standard JSON has no such numbers
    return json.loads(text, parse_constant=lambda _: None)


def load_records(path: str | Path, what: str = "input") -> list[dict]:
    """Load a JSON list (or JSONL, or a single JSON object holding a list) of objects.

    Lone surrogates in strings become U+FFFD and NaN/Infinity become null (see the module doc)."""
    path = Path(path)
    text = read_text(path, what)
    if not text.strip():
        raise InputError(f"{what} file is empty: {path}")
    too_deep = f"nested deeper than {MAX_JSON_DEPTH} levels; not a pipeline record"
    try:
        data = _loads(text)
    except RecursionError:
        raise InputError(f"{path}: {too_deep}") from None
    except json.JSONDecodeError as first_err:
        data = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                data.append(_loads(line))
            except RecursionError:
                raise InputError(f"{path}: line {lineno} is {too_deep}") from None
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
        if _too_deep(item, MAX_JSON_DEPTH):
            raise InputError(f"{path}: item {i} is {too_deep}")
    return clean_json(data)


def require_fields(path: str | Path, records: Iterable[dict], fields: Iterable[str]) -> None:
    """Raise InputError naming the first record that lacks one of `fields` (or has it empty)."""
    fields = list(fields)
    for i, rec in enumerate(records, 1):
        missing = [f for f in fields if f not in rec or rec[f] in (None, "")]
        if missing:
            raise InputError(f"{path}: item {i} lacks field(s) {', '.join(repr(m) for m in missing)}")


# The one rule for malformed items, in every script that reads items: a field the script needs that
# is present but of the wrong kind (a question that is a list, an answer that is an object) is an
# error naming the item (InputError: one line, exit code 2), never a silent skip or a copy.
DEFAULT_MAX_RECORD_KB = 256.0  # --max_record_kb: far above any exam question, far below a runaway


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


def require_text(path: str | Path, index: int, item: dict, field: str, optional: bool = False) -> None:
    """InputError unless `item[field]` is non-empty text (`optional`: absent or null is fine too)."""
    value = item.get(field)
    if optional and value is None:
        return
    if not isinstance(value, str) or not value.strip():
        got = "missing" if field not in item else "empty" if value in (None, "") else _kind(value)
        raise InputError(f"{path}: item {index}: {field!r} must be text (got {got})")


def check_record_sizes(path: str | Path, records: list[dict], max_kb: float | None) -> None:
    """InputError naming the first record larger than `max_kb` KB as JSON: a record that large is a
    mistake (a whole file pasted into a field), and sending it would cost a fortune in tokens."""
    if not max_kb:
        return
    for i, rec in enumerate(records, 1):
        size = len(json.dumps(rec, ensure_ascii=False).encode("utf-8"))
        if size > max_kb * 1024:
            raise InputError(
                f"{path}: item {i} is {size / 1024:,.0f} KB, more than --max_record_kb {max_kb:g}; "
                "fix the item or raise the limit"
            )


def json_bytes(obj: Any, indent: int | None = 2) -> bytes:
    """Standard JSON as UTF-8; on a lone surrogate or a NaN, the same after `clean_json`."""
    try:
        return json.dumps(obj, ensure_ascii=False, indent=indent, allow_nan=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError):
        return json.dumps(clean_json(obj), ensure_ascii=False, indent=indent, allow_nan=False).encode()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename. OSError (disk full, no permission, a file where a
    folder should be) becomes OutputError naming the path; the old file, if any, is untouched."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    """Write `obj` as standard JSON, atomically (see the module doc); OutputError when it cannot."""
    atomic_write_bytes(Path(path), json_bytes(obj, indent))  # encoded before any file exists


def atomic_write_jsonl(path: str | Path, rows: Iterable[Any]) -> None:
    """One JSON value per line, atomically, with the same cleaning as `atomic_write_json`."""
    atomic_write_bytes(Path(path), b"".join(json_bytes(r, None) + b"\n" for r in rows))


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _set_tmp(manifest: Path, key: str, path: Path) -> Path:
    """A set member's temp file: beside its destination, named after the set, so a killed write's
    leftover is found and removed by the next write of that set."""
    return path.parent / f".{manifest.name}.{key}.tmp"


def _finish_interrupted_set(manifest: Path) -> dict | None:
    """The previous set this manifest recorded, after completing its renames if a kill stopped it
    between them (every member was written and fsynced before the manifest said "committing")."""
    try:
        old = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(old, dict) or not isinstance(old.get("set_files"), dict):
        return None
    for entry in old["set_files"].values():
        tmp = Path(entry.get("tmp", ""))
        if old.get("set_state") == "committing" and tmp.name and tmp.exists():
            os.replace(tmp, entry["path"])
    return old


def write_file_set(manifest: str | Path, files: dict[str, tuple[str | Path, bytes]], info: dict) -> None:
    """Write several output files of one run so that they are consistent as a set.

    `files` maps a role ("sft", "rl") to (path, bytes); `manifest` is a JSON file that records the
    set (`info` plus each member's path and sha256). Every member is written to a temp file and
    fsynced first; the manifest then says "committing" and the temps are renamed into place; last it
    says "complete". A kill during the renames is finished by the next write of the same set, and a
    kill before them leaves the old set whole (its temps are removed next time). Members of the
    previous set that the new one does not overwrite (another size in a default file name) are
    removed, but only when their bytes are still the ones the manifest recorded: provably ours.
    OutputError (one line) when something cannot be written; the old set is then untouched."""
    manifest = Path(manifest)
    try:
        old = _finish_interrupted_set(manifest)
    except OSError as e:
        raise OutputError(
            f"cannot finish the interrupted write recorded in {manifest}: {e.strerror or e}"
        ) from None
    members = {key: (Path(path), data) for key, (path, data) in files.items()}
    written: list[Path] = []
    try:
        for key, (path, data) in members.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = _set_tmp(manifest, key, path)
            with open(tmp, "wb") as f:
                written.append(tmp)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_UMASK)
    except OSError as e:
        for tmp in written:
            tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    entries = {
        key: {
            "path": str(path),
            "tmp": str(_set_tmp(manifest, key, path)),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        for key, (path, data) in members.items()
    }
    atomic_write_json(manifest, {**info, "set_state": "committing", "set_files": entries})
    try:
        for key, (path, _) in members.items():
            os.replace(_set_tmp(manifest, key, path), path)
    except OSError as e:
        raise OutputError(
            f"cannot rename into {path}: {e.strerror or e} (the next run finishes it)"
        ) from None
    new_paths = {os.path.abspath(e["path"]) for e in entries.values()}
    for entry in (old or {}).get("set_files", {}).values():
        path = Path(entry.get("path", ""))
        if path.name and os.path.abspath(path) not in new_paths and _sha256(path) == entry.get("sha256"):
            path.unlink(missing_ok=True)
    atomic_write_json(manifest, {**info, "set_state": "complete", "set_files": entries})


def _probe(folder: Path) -> None:
    """Create and remove a temp file in `folder` (which exists): OSError if it cannot be written."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".write-probe.", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)


def check_writable_dir(folder: str | Path, what: str = "output folder") -> Path:
    """Create `folder` (and its parents) and prove a file can be written in it, before a run spends
    anything; OutputError (one line) when a file blocks the path, it is read-only, or the disk refuses."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _probe(folder)
    except FileExistsError:
        if folder.is_symlink() and not folder.exists():
            raise OutputError(
                f"{what} {folder} is a symlink to {os.readlink(folder)}, which does not exist"
            ) from None
        raise OutputError(f"{what} {folder} is a file, not a folder") from None
    except NotADirectoryError:
        raise OutputError(f"{what} {folder}: a part of the path is a file, not a folder") from None
    except OSError as e:
        raise OutputError(f"{what} {folder} cannot be written: {e.strerror or e}") from None
    return folder


def check_writable_file(path: str | Path, flag: str) -> Path:
    """Prove the file named by command-line flag `flag` can be written later (its folder is created
    if needed): OutputError naming the flag when it is a folder or its folder cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} {path} is a folder; give a file name")
    check_writable_dir(path.parent, what=f"the folder of {flag} {path}:")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{flag} {path} cannot be overwritten: permission denied")
    return path


class ItemStore:
    """One JSON file per finished item under `root`, named by the item's `process_id`.

    A file exists only once its item is finished (atomic write), so the set of files is the
    resume state: a rerun skips those ids. Unreadable leftovers are treated as unfinished.
    """

    def __init__(self, root: str | Path, clean: bool = True):
        self.root = Path(root)
        if not clean:  # a reader only (dry run): touches nothing
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create the result folder {self.root}: {e.strerror or e}") from None
        # half-written files of a killed run (never renamed); the run lock (lock.py) is held by now,
        # so none of them belongs to a live run
        for tmp in self.root.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)

    @staticmethod
    def existing_ids(
        root: str | Path, items: list[dict] | None = None, id_key: str = "process_id"
    ) -> set[str]:
        """Finished ids under `root` without creating or cleaning it (for dry runs); with `items`, only
        those whose stored result was made from the item as it is now (see `finished_ids`)."""
        if not Path(root).is_dir():
            return set()
        store = ItemStore(root, clean=False)
        return store.finished_ids(items, id_key) if items is not None else store.done_ids()

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
        return self.drop_if(lambda rec: rec.get("status") == status)

    def drop_if(self, unfinished: Callable[[dict], bool]) -> int:
        """Forget the finished items whose record `unfinished(record)` calls unfinished, so this run
        redoes them; how many."""
        dropped = 0
        for p in list(self.root.glob("*.json")):
            try:
                rec = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(rec, dict) and unfinished(rec):
                p.unlink(missing_ok=True)
                dropped += 1
        return dropped

    def finished_ids(self, items: Iterable[dict], id_key: str = "process_id") -> set[str]:
        """Ids of `items` whose stored result was made from the item as it is now: a result whose
        `input_fingerprint` differs (the input was edited since) is stale, so its item is unfinished
        until redone. A result without a fingerprint (older runs) is trusted."""
        done = self.fingerprints()
        out = set()
        for it in items:
            key = str(it[id_key])
            if key in done and done[key] in (None, fingerprint(it)):
                out.add(key)
        return out

    def load_finished(self, items: Iterable[dict], id_key: str = "process_id") -> list[dict]:
        """The stored records of `items` that are finished (stale ones excluded), in the items' order."""
        items = list(items)
        ok = self.finished_ids(items, id_key)
        return [self.load(it[id_key]) for it in items if str(it[id_key]) in ok]

    def iter_records(self) -> Iterator[dict]:
        for p in sorted(self.root.glob("*.json"), key=lambda p: (len(p.stem), p.stem)):
            yield json.loads(p.read_text(encoding="utf-8"))


def fingerprint(item: dict) -> str:
    """A stable hash of an input item: resume redoes an item whose input changed since its result."""
    text = json.dumps(item, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(clean_text(text).encode()).hexdigest()[:16]


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


def summary_path_for(merged_path: str | Path | None) -> Path | None:
    """The `_summary.json` a stage writes beside its merged output (None without one)."""
    if not merged_path:
        return None
    merged_path = Path(merged_path)
    return merged_path.with_name(merged_path.stem + "_summary.json")


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same real path (symlinks resolved), or, when both exist,
    the same inode (a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_distinct_paths(
    inputs: Iterable[tuple[str, str | Path | None]], outputs: Iterable[tuple[str, str | Path | None]]
) -> None:
    """Refuse (InputError, one line) an output that is also an input, or two outputs that are one file,
    before any work: writing there would destroy the input or one output would overwrite the other.
    Each pair is (the flag that named it, the path or None when not given)."""
    ins = [(flag, Path(p)) for flag, p in inputs if p]
    outs = [(flag, Path(p)) for flag, p in outputs if p]
    for i, (oflag, out) in enumerate(outs):
        for iflag, src in ins:
            if _same_file(out, src):
                raise InputError(
                    f"{oflag} {out} is the same file as {iflag} {src}: writing it would destroy the input; "
                    "give another file"
                )
        for oflag2, out2 in outs[:i]:
            if _same_file(out, out2):
                raise InputError(
                    f"{oflag2} and {oflag} are the same file ({out}): one would overwrite the other; "
                    "give two different files"
                )


def content_key(*parts: Any) -> str:
    """An item's identity from what a stage reads of it (e.g. question, options and answer): the
    name of its result file, so reordering, filling in or renaming the input never re-pays it."""
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return "c" + hashlib.sha256(clean_text(text).encode()).hexdigest()[:20]


def keyed_by_content(items: list[dict], key_of: Callable[[dict], str | None]) -> list[dict]:
    """The items as the runner keys them: each with its `content_id` (key_of), without its position
    (`process_id`, so a moved item is still finished), one per content."""
    out, seen = [], set()
    for it in items:
        work = {k: v for k, v in it.items() if k != "process_id"}
        work["content_id"] = key_of(it)
        if work["content_id"] not in seen:
            seen.add(work["content_id"])
            out.append(work)
    return out


def duplicate_note(n: int) -> str:
    """The one line every stage prints for items that repeat an earlier item's content: such a copy
    is done once and written once (the first position), and counted in the summary's `duplicates`."""
    return (
        f"{n} item(s) repeat an earlier item's content (same question and answer): each is done and "
        "written once, at its first position"
    )


def adopt_results(
    store: ItemStore,
    items: list[dict],
    key_of: Callable[[dict], str | None],
    folders: Iterable[Path] = (),
    id_key: str = "content_id",
) -> int:
    """Reuse results that earlier runs left under another name: files named by the item's position
    (the older layout) in `store`, and any result in `folders` (the stage's folders for other input
    file names). A result is taken when its content key (`key_of` of the stored record) is an item's
    and it was made from the item as it is now (its fingerprint, with or without the item's old
    position); it is copied under the item's key, the old file left as it was. Returns how many."""
    wanted = {it[id_key]: it for it in items}
    have = store.done_ids()
    adopted = 0
    for folder in [store.root, *folders]:
        if not folder.is_dir():
            continue
        for p in folder.glob("*.json"):
            if folder == store.root and p.stem in wanted:
                continue
            try:
                rec = json.loads(p.read_text(encoding="utf-8"))
                key = key_of(rec) if isinstance(rec, dict) else None
            except (OSError, ValueError, TypeError, KeyError):
                continue
            if key not in wanted or key in have:
                continue
            it = wanted[key]
            bare = {k: v for k, v in it.items() if k != id_key}
            made_from = rec.get("input_fingerprint")
            old_forms = (fingerprint(it), fingerprint({**bare, "process_id": rec.get("process_id")}))
            if made_from is not None and made_from not in old_forms:
                continue  # made from an older version of the item: redone
            store.save(key, {**rec, id_key: key, "input_fingerprint": fingerprint(it)})
            have.add(key)
            adopted += 1
    return adopted
