"""Screening data against the evaluation sets (Med-PaLM 2's rule, as HuatuoGPT-o1 used it).

The rule, in plain words: after whitespace normalisation (every run of spaces, tabs and newlines
becomes one space, the ends are trimmed), a text is contaminated when it shares any 64 consecutive
characters with an evaluation question, or when it is identical to one (which also covers questions
shorter than 64 characters). Case and punctuation are kept as they are.

How it stays fast for hundreds of thousands of items:
  - Every 64-character window of every evaluation question gets a 64-bit polynomial hash, computed
    for all windows at once with numpy (prefix sums of c_i * B^i, mod 2^64), and the hashes are kept
    sorted. A bitmap of the hashes' top bits answers "certainly not there" for almost every window.
  - The items are hashed the same way, a few million characters per batch; only windows that pass
    the bitmap are looked up in the sorted hashes, and only a window found there is compared as
    text with the evaluation question it came from (so a hash collision never drops an item).
  - `ignore_common=N` (off by default) ignores windows that occur in N or more different evaluation
    questions: exam boilerplate such as "Which of the following is the most appropriate next step in
    management?" (71 characters) otherwise makes every item that uses it contaminated.

`EvalIndex.from_files` reads evaluation files in the evaluation format ({source: [items]} or a list
of items, each with a "question"); `find(texts)` returns the first match of each contaminated text.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from huatuo_o1.contract import MCQ_QUESTION, OPEN_QUESTION, PAPER_EVAL_FILE, SFT_QUESTION, read_eval_file
from huatuo_o1.io import (
    InputError,
    check_distinct_paths,
    json_bytes,
    load_records,
    require_text,
    write_file_set,
)

WINDOW = 64
_BASE = 0x9E3779B97F4A7C15 | 1  # odd, so it has an inverse mod 2^64
_BASE_INV = pow(_BASE, -1, 1 << 64)
_BATCH_CHARS = 4_000_000

# Fields that hold a question in the pipeline's files (stage-1 input/output, SFT, RL), checked by default.
QUESTION_FIELDS = (MCQ_QUESTION, SFT_QUESTION, OPEN_QUESTION)


def normalize(text: str) -> str:
    """Whitespace runs become one space; ends trimmed."""
    return " ".join(str(text).split())


@dataclasses.dataclass
class Match:
    """Where a text met the evaluation data: the eval question and the shared characters."""

    source: str
    index: int  # 1-based position of the question within its source
    shared: str  # the 64 shared characters, or the whole question when identical
    identical: bool = False

    def reason(self) -> str:
        if self.identical:
            shown = self.shared if len(self.shared) <= 80 else self.shared[:77] + "..."
            return f"identical to evaluation question {self.source} #{self.index}: {shown!r}"
        return f"shares {WINDOW} characters with evaluation question {self.source} #{self.index}: {self.shared!r}"


_pow_cache: dict[str, np.ndarray] = {}


def _powers(n: int, inverse: bool) -> np.ndarray:
    """B^0..B^(n-1) (or the inverse powers) mod 2^64, grown on demand."""
    key = "inv" if inverse else "pow"
    have = _pow_cache.get(key)
    if have is None or len(have) < n:
        size = max(n, 2 * (len(have) if have is not None else 1024))
        steps = np.full(size, _BASE_INV if inverse else _BASE, dtype=np.uint64)
        steps[0] = 1
        with np.errstate(over="ignore"):
            have = np.cumprod(steps, dtype=np.uint64)
        _pow_cache[key] = have
    return have[:n]


def _hash_windows(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hashes, positions, text ends) of every 64-character window inside one of the texts; positions
    count characters in the texts joined end to end (`locate` turns them into text and offset)."""
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    ends = np.cumsum(lengths)
    n = int(ends[-1]) if len(ends) else 0
    if n < WINDOW:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64), ends
    codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    with np.errstate(over="ignore"):
        prefix = np.zeros(n + 1, dtype=np.uint64)
        np.cumsum(codes * _powers(n, False), out=prefix[1:])
        m = n - WINDOW + 1
        hashes = (prefix[WINDOW:] - prefix[:m]) * _powers(m, True)
    # a window is inside its text when the text's end is at least 64 characters after its start
    room = np.repeat(ends, lengths)[:m] - np.arange(m)
    pos = np.flatnonzero(room >= WINDOW)
    return hashes[pos], pos, ends


def _locate(pos: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(text index, offset in that text) of positions in the joined texts."""
    doc = np.searchsorted(ends, pos, side="right")
    return doc, pos - (ends[doc] - np.diff(ends, prepend=0)[doc])


def window_hashes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hashes, text index, start) of every 64-character window of the (normalised) texts."""
    hashes, pos, ends = _hash_windows(texts)
    doc, offset = _locate(pos, ends)
    return hashes, doc, offset


class EvalIndex:
    """The 64-character windows (and whole texts) of a set of evaluation questions."""

    def __init__(self, questions: Sequence[tuple[str, int, str]], ignore_common: int = 0):
        """questions: (source, 1-based index, question text)."""
        self.labels = [(src, idx) for src, idx, _ in questions]
        self.texts = [normalize(q) for _, _, q in questions]
        self.whole = {}
        for i, t in enumerate(self.texts):
            self.whole.setdefault(t, i)
        hashes, doc, _ = window_hashes(self.texts)
        self.ignored_windows = 0
        if ignore_common > 0 and len(hashes):
            # sorted by hash, then question: count the distinct questions holding each window
            order = np.lexsort((doc, hashes))
            h, d = hashes[order], doc[order]
            new_hash = np.ones(len(h), dtype=bool)
            new_hash[1:] = h[1:] != h[:-1]
            new_doc = new_hash.copy()
            new_doc[1:] |= d[1:] != d[:-1]
            starts = np.flatnonzero(new_hash)
            n_docs = np.add.reduceat(new_doc.astype(np.int64), starts)
            common = h[starts[n_docs >= ignore_common]]
            self.ignored_windows = int(len(common))
            keep = ~np.isin(hashes, common)
            hashes, doc = hashes[keep], doc[keep]
        order = np.argsort(hashes)
        self.hashes = hashes[order]  # every window, sorted; equal hashes sit side by side
        self.doc_of = doc[order]
        # prefilter: one bit per value of the hash's top `bits` bits (32 to 64 bits per window)
        bits = max(16, min(34, int(np.ceil(np.log2(max(2, len(self.hashes))))) + 5))
        self._shift = np.uint64(64 - bits)
        top = (self.hashes >> self._shift).astype(np.int64)  # sorted, since the hashes are
        byte, bit = top >> 3, (np.uint8(1) << (top & 7).astype(np.uint8)).astype(np.uint8)
        self._bitmap = np.zeros(1 << (bits - 3), dtype=np.uint8)
        if len(top):
            starts = np.flatnonzero(np.diff(byte, prepend=-1))
            self._bitmap[byte[starts]] = np.bitwise_or.reduceat(bit, starts)

    def _maybe(self, hashes: np.ndarray) -> np.ndarray:
        """Positions of the hashes whose prefilter bit is set (all true matches, and a few others)."""
        top = (hashes >> self._shift).astype(np.int64)
        return np.flatnonzero((self._bitmap[top >> 3] >> (top & 7).astype(np.uint8)) & 1)

    def __len__(self) -> int:
        return len(self.texts)

    @classmethod
    def from_files(cls, paths: Iterable[str | Path], ignore_common: int = 0) -> EvalIndex:
        questions = []
        for path in paths:
            questions.extend(load_eval_questions(path))
        return cls(questions, ignore_common=ignore_common)

    def find(self, texts: Sequence[str]) -> list[Match | None]:
        """For each text, its first match with the evaluation questions, or None."""
        norm = [normalize(t) for t in texts]
        out: list[Match | None] = [None] * len(norm)
        for i, t in enumerate(norm):
            j = self.whole.get(t)
            if j is not None and t:
                out[i] = Match(*self.labels[j], shared=t, identical=True)
        if not len(self.hashes):
            return out
        batch: list[int] = []
        size = 0
        for i, t in enumerate(norm):
            if out[i] is None and len(t) >= WINDOW:
                batch.append(i)
                size += len(t)
            if size >= _BATCH_CHARS:
                self._find_batch(norm, batch, out)
                batch, size = [], 0
        if batch:
            self._find_batch(norm, batch, out)
        return out

    def _find_batch(self, norm: list[str], batch: list[int], out: list[Match | None]) -> None:
        hashes, pos, ends = _hash_windows([norm[i] for i in batch])
        maybe = self._maybe(hashes)
        if not len(maybe):
            return
        maybe = maybe[np.argsort(hashes[maybe])]  # sorted lookups walk the index in order: cache-friendly
        cand = hashes[maybe]
        at = np.minimum(np.searchsorted(self.hashes, cand), len(self.hashes) - 1)
        hit = self.hashes[at] == cand
        if not hit.any():
            return
        ks, ats = maybe[hit], at[hit]
        docs, starts = _locate(pos[ks], ends)
        for k, a, d, s in sorted(zip(ks.tolist(), ats.tolist(), docs.tolist(), starts.tolist(), strict=True)):
            i = batch[d]
            if out[i] is not None:
                continue
            window = norm[i][s : s + WINDOW]
            h = hashes[k]
            # exact text check against each question holding this hash: a collision never drops an item
            while a < len(self.hashes) and self.hashes[a] == h:
                e = int(self.doc_of[a])
                if window in self.texts[e]:
                    out[i] = Match(*self.labels[e], shared=window)
                    break
                a += 1


def load_eval_questions(path: str | Path) -> list[tuple[str, int, str]]:
    """(source, 1-based index, question) of an evaluation file (contract.read_eval_file)."""
    return [(str(source), i, it[MCQ_QUESTION]) for source, items in read_eval_file(path).items()
            for i, it in enumerate(items, 1)]  # fmt: skip


def texts_of(item: dict, fields: Sequence[str] = QUESTION_FIELDS) -> list[str]:
    """The item's question texts to screen: each of `fields` it holds as a non-empty string."""
    return [item[f] for f in fields if isinstance(item.get(f), str) and item[f].strip()]


def screen(
    items: Sequence[dict], index: EvalIndex, fields: Sequence[str] = QUESTION_FIELDS
) -> list[Match | None]:
    """For each item, the first match of any of its question fields, or None."""
    flat: list[str] = []
    owner: list[int] = []
    for i, item in enumerate(items):
        for t in texts_of(item, fields):
            flat.append(t)
            owner.append(i)
    found = index.find(flat)
    out: list[Match | None] = [None] * len(items)
    for i, m in zip(owner, found, strict=True):
        if m is not None and out[i] is None:
            out[i] = m
    return out


# ---------------------------------------------------------------------------------------------
# Command line: scripts/decontaminate.py

USAGE = """Screen any data file (stage-1, SFT, RL) against the evaluation sets: Med-PaLM 2's rule, 64 shared characters.

    python scripts/decontaminate.py --data_path data/sft.json \
        [--against evaluation/data/eval_data.json[,more.json]] [--fields Question,...]

Writes <data stem>_clean.json (the items that pass, in order) and <data stem>_contaminated.json
(each dropped item with `decontamination_reason`) beside the input, or --output / --dropped_output,
and prints the counts. See huatuo_o1/datagen/decontam.py for the rule and how it is computed.
"""


DEFAULT_AGAINST = PAPER_EVAL_FILE


def make_parser() -> argparse.ArgumentParser:
    """The command line's flags."""
    p = argparse.ArgumentParser(description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_path", required=True, help="Items to screen (JSON list or JSONL).")
    p.add_argument(
        "--against",
        default=None,
        help="Eval files in the evaluation format, comma-separated (default: evaluation/data/eval_data.json).",
    )
    p.add_argument(
        "--fields",
        default=",".join(QUESTION_FIELDS),
        help="Comma-separated fields holding question text; each present one is screened "
        f"(default: {','.join(QUESTION_FIELDS)}).",
    )
    p.add_argument(
        "--ignore_common",
        type=int,
        default=0,
        help="Ignore windows found in this many or more eval questions (boilerplate; default 0: none).",
    )
    p.add_argument("--output", default=None, help="Default: <data stem>_clean.json beside the input.")
    p.add_argument(
        "--dropped_output", default=None, help="Default: <data stem>_contaminated.json beside the input."
    )
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = make_parser()
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    files = [f.strip() for f in (args.against or "").split(",") if f.strip()]
    if not files:
        if not DEFAULT_AGAINST.is_file():
            raise InputError(f"no --against given and {DEFAULT_AGAINST} does not exist")
        files = [str(DEFAULT_AGAINST)]
    fields = [f.strip() for f in args.fields.split(",") if f.strip()]
    if not fields:
        raise InputError("--fields names no field")
    if args.ignore_common < 0:
        raise InputError(f"--ignore_common must be 0 or more (got {args.ignore_common})")
    src = Path(args.data_path)
    out = Path(args.output or src.with_name(f"{src.stem}_clean.json"))
    bad = Path(args.dropped_output or src.with_name(f"{src.stem}_contaminated.json"))
    check_distinct_paths(
        [("--data_path", src)] + [("--against", f) for f in files],
        [("--output", out), ("--dropped_output", bad)],
    )
    items = load_records(args.data_path, what="data")
    for i, it in enumerate(items, 1):  # a field to screen that is not text: malformed, never copied unchecked
        for f in fields:
            if not isinstance(it.get(f), str | None):
                require_text(args.data_path, i, it, f)
    index = EvalIndex.from_files(files, ignore_common=args.ignore_common)
    matches = screen(items, index, fields)
    unscreened = sum(1 for it in items if not any(isinstance(it.get(f), str) for f in fields))
    clean = [it for it, m in zip(items, matches, strict=True) if m is None]
    dropped = [
        {**it, "decontamination_reason": m.reason()}
        for it, m in zip(items, matches, strict=True)
        if m is not None
    ]
    write_file_set(
        out.with_name(f"{src.stem}_decontam_set.json"),
        {"clean": (out, json_bytes(clean)), "contaminated": (bad, json_bytes(dropped))},
        {"data_path": str(src), "against": files, "fields": fields},
    )
    report = {
        "items": len(items),
        "clean": len(clean),
        "contaminated": len(dropped),
        "items_without_screened_fields": unscreened,
        "eval_questions": len(index),
        "against": files,
        "fields": fields,
        "output": str(out),
        "dropped_output": str(bad),
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0
