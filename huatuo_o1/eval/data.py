"""The paper's evaluation file: which file a run scored, and fetching the right one.

The paper's Table 1 was computed on the original repository's `evaluation/data/eval_data.json`.
A file is recognised by its git blob id (sha1 of `blob <size>\\0` followed by its bytes, the id git
gives it), so a copy counts as the paper's file only if it is byte for byte the published one,
whatever its name or path. `python evaluation/get_eval_data.py` downloads it from GitHub (or takes
a copy downloaded by hand with `--from_file`), checks the id, and only then writes
`evaluation/data/eval_data.json` (atomically: a temp file renamed into place, so a failed or
interrupted run leaves the previous file, or none, never half a file).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import urllib.error
import urllib.request
from pathlib import Path

from huatuo_o1.contract import PAPER_EVAL_FILE, PAPER_EVAL_RELPATH
from huatuo_o1.io import InputError, atomic_write_bytes

PAPER_EVAL_URL = (
    "https://raw.githubusercontent.com/FreedomIntelligence/HuatuoGPT-o1/main/" + PAPER_EVAL_RELPATH
)
PAPER_EVAL_BLOB = "f437175670f14110c3328ab6d87a031b0ec9646c"
DEFAULT_DEST = PAPER_EVAL_FILE


def git_blob_id(data: bytes) -> str:
    """The id git gives a file with these bytes."""
    h = hashlib.sha1(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


def file_blob_id(path: str | Path) -> str:
    """git_blob_id of a file, read in chunks."""
    path = Path(path)
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def describe_eval_file(path: str | Path) -> dict:
    """What a run's summary records about the file it scored."""
    blob = file_blob_id(path)
    return {"path": str(path), "git_blob_id": blob, "is_paper_file": blob == PAPER_EVAL_BLOB}


def not_paper_file_note(info: dict) -> str:
    """The one line eval prints when it scored another file than the paper's."""
    return (
        f"note: {info['path']} is not the paper's evaluation file (git blob id "
        f"{info['git_blob_id'][:12]}, the paper's is {PAPER_EVAL_BLOB[:12]}): its numbers are not "
        "comparable with the paper's Table 1 (python evaluation/get_eval_data.py fetches that file)"
    )


def download(url: str = PAPER_EVAL_URL, timeout: float = 60.0) -> bytes:
    """The bytes at `url`; InputError naming the URL to fetch by hand when it cannot be reached."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or type(e).__name__
        raise InputError(
            f"cannot download {url} ({reason}): download that file by hand, then run "
            "python evaluation/get_eval_data.py --from_file PATH"
        ) from None


def install(data: bytes, dest: str | Path, origin: str, expected: str = PAPER_EVAL_BLOB) -> Path:
    """Write `data` to `dest` only if its git blob id is `expected`; InputError (nothing written)
    otherwise."""
    blob = git_blob_id(data)
    if blob != expected:
        raise InputError(
            f"{origin} is not the paper's evaluation file: git blob id {blob}, expected {expected} "
            f"({len(data)} bytes); nothing written"
        )
    dest = Path(dest)
    atomic_write_bytes(dest, data)
    return dest


def make_parser() -> argparse.ArgumentParser:
    """The command line's flags."""
    p = argparse.ArgumentParser(
        description="Fetch the paper's evaluation file (HuatuoGPT-o1 evaluation/data/eval_data.json) and "
        "accept it only if it is byte for byte the published one (git blob id check)."
    )
    p.add_argument(
        "--from_file", type=str, default=None, help="Check and install a copy downloaded by hand instead."
    )
    p.add_argument("--url", type=str, default=PAPER_EVAL_URL, help="Where to download it from.")
    p.add_argument("--output", type=str, default=str(DEFAULT_DEST), help="Where to write it.")
    p.add_argument("--timeout", type=float, default=60.0, help="Seconds before the download gives up.")
    return p


def main(argv: list[str] | None = None, expected: str = PAPER_EVAL_BLOB) -> int:
    args = make_parser().parse_args(argv)
    dest = Path(args.output)
    if dest.is_dir():
        raise InputError(f"--output {dest} is a folder; give the file path to write")
    if dest.is_file() and file_blob_id(dest) == expected:
        print(f"{dest} is already the paper's evaluation file (git blob id {expected})")
        return 0
    if args.from_file:
        src = Path(args.from_file)
        if not src.is_file():
            raise InputError(f"--from_file {src}: no such file")
        data, origin = src.read_bytes(), str(src)
    else:
        print(f"downloading {args.url}", file=sys.stderr)
        data, origin = download(args.url, args.timeout), args.url
    install(data, dest, origin, expected)
    print(f"wrote {dest}: the paper's evaluation file (git blob id {expected}, {len(data)} bytes)")
    return 0
