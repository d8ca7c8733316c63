"""Training runs and their checkpoints: what a run is, where it stops, whether a rerun may continue it.

Shared by SFT (SFT_stage1.py), PPO (RL_stage2.py), GRPO (RL_stage2_grpo.py) and verifier training
(train_verifier.py); one implementation of each rule:

- Run identity: the sources a run was trained from (model and data, local paths made absolute
  so `./x` and `/abs/x` agree) plus the result-changing settings (learning rate, batch sizes,
  sequence length, packing, epochs, seed, reward values ...) that must match to continue it. It is
  written to `run_args.json` in the run folder when the run starts and copied into every
  checkpoint (`write_identity`). A key an older `run_args.json` lacks is not compared.
- Complete checkpoint: a `checkpoint-N` folder holding `trainer_state.json`, which transformers
  writes last, so its presence means the save finished; PPO also asks for its value model
  (`is_complete=`). `newest_complete_checkpoint` is the highest such N that is also intact: a
  complete-looking checkpoint whose files were torn afterwards (a truncated `trainer_state.json`,
  an empty or cut weights file, e.g. a disk that filled up or a copy that stopped) is skipped
  with one warning line naming it, and the next older intact one is used. Nothing is deleted.
- Resume decision (`resume_point`): by default a rerun continues from the newest complete
  checkpoint, but only one whose identity matches this run's (else `InputError`: one line naming
  the differing flags, exit 2), and only on the number of processes that wrote it when it holds a
  DeepSpeed engine state (`check_process_count`: ZeRO's optimizer state is partitioned per process); `--resume False` starts over (old checkpoints are left alone, with a
  warning).
- Final model (`save_final_policy`): the trainer's model as a plain HF folder with its tokenizer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path

from huatuo_o1.io import InputError, OutputError, atomic_write_json
from huatuo_o1.train.multi_gpu import world_size

log = logging.getLogger(__name__)

RUN_ARGS_FILE = "run_args.json"
TRAINER_STATE_FILE = "trainer_state.json"


def source_id(path: str | None) -> str | None:
    """A stable name for a model/data source: the absolute path of a local one, else the hub name."""
    if not path:
        return path
    local = os.path.expanduser(path)
    return os.path.abspath(local) if os.path.exists(local) else path


def _plain(value):
    """A setting as it reads back from JSON (enums by value, tuples as lists)."""
    if isinstance(value, Enum):
        value = value.value
    return json.loads(json.dumps(value, default=str))


PROCESSES_KEY = "num_processes"


def run_identity(sources: dict[str, str | None], settings: dict | None = None) -> dict:
    """What a checkpoint must have been trained from to be resumed by this run: `sources` (flag name
    -> model/data path or hub name, made stable by `source_id`), `settings` (flag name -> value of
    a flag that changes the result) and the number of processes of the launch (`num_processes`,
    compared by `check_process_count`)."""
    return {
        **{k: source_id(v) for k, v in sources.items()},
        **{k: _plain(v) for k, v in (settings or {}).items()},
        PROCESSES_KEY: world_size(),
    }


def write_identity(folder: str | Path, identity: dict) -> None:
    """Record a run's identity in its run folder or in one of its checkpoints."""
    atomic_write_json(Path(folder) / RUN_ARGS_FILE, identity)


def has_trainer_state(ckpt: Path) -> bool:
    return (ckpt / TRAINER_STATE_FILE).exists()


def _safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file is unusable (empty, header or data cut short), read from its header."""
    size = path.stat().st_size
    if size == 0:
        return "is empty"
    try:
        with path.open("rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if size < 8 + n:
                return "is truncated"
            header = json.loads(f.read(n))
    except (OSError, ValueError):
        return "has an unreadable header"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    if 8 + n + max(ends, default=0) > size:
        return "is truncated"
    return None


def torn_reason(ckpt: Path) -> str | None:
    """Why a complete-looking checkpoint cannot be resumed (its files torn after the save), or None.

    Checked without loading anything: trainer_state.json and run_args.json parse as JSON objects,
    every safetensors file's header and data are all there, and no weights/optimizer/RNG file
    (.bin, .pt, .pth) is empty."""
    for name in (TRAINER_STATE_FILE, RUN_ARGS_FILE):
        path = ckpt / name
        if name == RUN_ARGS_FILE and not path.exists():
            continue
        try:
            if not isinstance(json.loads(path.read_text(encoding="utf-8")), dict):
                return f"{name} is not a JSON object"
        except (OSError, ValueError):
            return f"{name} is unreadable or truncated"
    for path in sorted(ckpt.rglob("*.safetensors")):
        problem = _safetensors_problem(path)
        if problem:
            return f"{path.relative_to(ckpt)} {problem}"
    for pattern in ("*.bin", "*.pt", "*.pth"):
        for path in sorted(ckpt.rglob(pattern)):
            if path.is_file() and path.stat().st_size == 0:
                return f"{path.relative_to(ckpt)} is empty"
    return None


def newest_complete_checkpoint(
    run_dir: str | Path, is_complete: Callable[[Path], bool] = has_trainer_state
) -> str | None:
    """The highest `checkpoint-N` in `run_dir` that `is_complete` accepts and is intact, or None.
    A torn one is skipped with a warning naming it (see `torn_reason`)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    found = []
    for p in run_dir.glob("checkpoint-*"):
        suffix = p.name.split("-", 1)[1]
        if p.is_dir() and suffix.isdigit() and is_complete(p):
            found.append((int(suffix), p))
    for _, p in sorted(found, reverse=True):
        reason = torn_reason(p)
        if reason is None:
            return str(p)
        log.warning("skipping torn checkpoint %s (%s); trying the next older one", p, reason)
    return None


# what a write that found the disk full says when it is not an OSError: safetensors and DeepSpeed
# keep the OS's words, torch's zip writer only says that the write failed
_WRITE_FAILED = ("No space left on device", "Disk quota exceeded", "file write failed", "unexpected pos")


def is_write_failure(err: BaseException) -> bool:
    """Whether `err` (or what caused it) is a file write that failed for want of space: an OSError
    with ENOSPC or EDQUOT, or the message torch, safetensors and DeepSpeed wrap it in."""
    e: BaseException | None = err
    for _ in range(8):
        if e is None:
            return False
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(e, (OSError, RuntimeError)) and any(w in str(e) for w in _WRITE_FAILED):
            return True
        e = e.__cause__ or e.__context__
    return False


def remove_torn_saves(run_dir: str | Path, keep: str | None) -> list[str]:
    """Remove what a failed save left in `run_dir`: every `checkpoint-N` newer than `keep` (the newest
    complete, intact one, or None), and top-level safetensors files that are cut short (a final save
    cut off). Names."""
    run_dir = Path(run_dir)
    keep_step = int(Path(keep).name.split("-", 1)[1]) if keep else -1
    removed = []
    for p in sorted(run_dir.glob("checkpoint-*")):
        suffix = p.name.split("-", 1)[1]
        if p.is_dir() and suffix.isdigit() and int(suffix) > keep_step:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
    for p in sorted(run_dir.glob("*.safetensors")):
        if _safetensors_problem(p):
            p.unlink(missing_ok=True)
            removed.append(p.name)
    return removed


@contextlib.contextmanager
def disk_full_stops_cleanly(
    run_dir: str | Path, is_complete: Callable[[Path], bool] = has_trainer_state, main_process: bool = True
) -> Iterator[None]:
    """Training and saving inside this block: a full disk stops the run with one line (OutputError, exit
    code 2) instead of a traceback, and the save it cut off is removed (by the main process), so the
    newest checkpoint left is a complete one and a rerun resumes from it."""
    try:
        yield
    except Exception as e:
        if not is_write_failure(e):
            raise
        keep = newest_complete_checkpoint(run_dir, is_complete)
        removed = remove_torn_saves(run_dir, keep) if main_process else []
        raise OutputError(
            f"cannot write in {run_dir} (no space left on the device): {type(e).__name__}"
            + (f"; removed the partial {', '.join(removed)}" if removed else "")
            + (
                f"; free space and rerun to resume from {Path(keep).name}"
                if keep
                else "; free space and rerun"
            )
        ) from None


def check_resumable(
    checkpoint: str | Path, run_dir: str | Path, identity: dict, start_over_hint: str
) -> None:
    """InputError when `checkpoint` was trained from other inputs than `identity` (e.g. another model or
    data set), so a rerun never silently continues someone else's run.

    The identity is read from the checkpoint's own run_args.json, else from the run folder's (written
    when a run starts); a checkpoint without either (older runs) is trusted, and so is a setting an
    older run_args.json does not record.
    """
    for src in (Path(checkpoint) / RUN_ARGS_FILE, Path(run_dir) / RUN_ARGS_FILE):
        try:
            saved = json.loads(src.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(saved, dict):
            break
    else:
        return
    check_process_count(checkpoint, saved.get(PROCESSES_KEY), identity.get(PROCESSES_KEY))
    diff = [k for k in identity if k != PROCESSES_KEY and k in saved and saved[k] != identity[k]]
    if diff:
        was = " ".join(f"--{k} {saved.get(k)}" for k in diff)
        now = " ".join(f"--{k} {identity[k]}" for k in diff)
        raise InputError(
            f"the newest checkpoint {checkpoint} was trained with {was}, not {now}; "
            f"rerun with --resume False to start over, or {start_over_hint}"
        )


def has_engine_state(checkpoint: str | Path) -> bool:
    """Whether a checkpoint holds a DeepSpeed engine checkpoint (`global_stepN/`: ZeRO-partitioned
    optimizer state, one file per process)."""
    return any(p.is_dir() for p in Path(checkpoint).glob("global_step*"))


def check_process_count(checkpoint: str | Path, saved: int | None, now: int | None) -> None:
    """InputError (one line, before anything is loaded) when `checkpoint` holds a DeepSpeed engine
    state written by another number of processes than this launch has: ZeRO partitions the optimizer
    state per process and DeepSpeed loads it only into the same count (else it stops mid-load with a
    traceback). Weights-only checkpoints (`--save_only_model`) and runs without DeepSpeed hold whole
    states and resume on any count."""
    if saved is None or now is None or saved == now or not has_engine_state(checkpoint):
        return
    raise InputError(
        f"{Path(checkpoint).name} in {Path(checkpoint).parent} was written by {saved} processes and this "
        f"launch has {now}: its DeepSpeed optimizer state is partitioned for {saved}; relaunch with "
        f"--num_processes {saved} (e.g. on {saved} GPUs) to resume it, or rerun with --resume False to "
        "start over (checkpoints saved with --save_only_model True resume on any count)"
    )


def resume_point(
    run_dir: str | Path,
    resume: bool | None,
    identity: dict,
    start_over_hint: str,
    is_complete: Callable[[Path], bool] = has_trainer_state,
) -> str | None:
    """The checkpoint this run continues from, or None to start afresh.

    `resume` None (default): the newest complete checkpoint if any; True: the same, with a warning
    when there is none; False: none, with a warning when old checkpoints are there."""
    if resume is False:
        old = sorted(Path(run_dir).glob("checkpoint-*"))
        if old:
            log.warning(
                "--resume False: %d checkpoint(s) in %s (%s ...) are ignored and may be overwritten",
                len(old), run_dir, old[0].name,
            )  # fmt: skip
        return None
    found = newest_complete_checkpoint(run_dir, is_complete)
    if found:
        check_resumable(found, run_dir, identity, start_over_hint)
        log.info("resuming from %s", found)
    elif resume:
        log.warning("--resume: no complete checkpoint in %s, starting from scratch", run_dir)
    return found


def save_final_policy(trainer, out: str | Path) -> Path:
    """The trained model as a plain HF folder (docs/data_formats.md §7): weights (gathered from
    ZeRO-3 shards by the trainer), config, generation config, tokenizer."""
    out = Path(out)
    trainer.save_model(str(out))
    if trainer.accelerator.is_main_process:
        trainer.processing_class.save_pretrained(out)
    return out


def resume_field(
    where: str = "checkpoint-N in --output_dir",
    restores: str = "weights, optimizer, scheduler, data position",
    same: str = "the same model and data",
):
    """The `--resume` flag every training script declares: `--resume`, `--resume True|False`, or absent
    (None: resume when a complete checkpoint exists; see `resume_point`)."""
    return dataclasses.field(
        default=None,
        metadata={
            "help": f"Continue from the newest complete {where} ({restores}) if it was trained from {same}. "
            "Default: resume when one exists; False: start over.",
            "nargs": "?",
            "const": True,
        },
    )
