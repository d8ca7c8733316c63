"""What a training run records about itself, and where: shared by every training script.

- `TrackingArguments`: `--wandb_project` / `--wandb_entity` (else `WANDB_PROJECT` / `WANDB_ENTITY`,
  default project `huatuo-o1`), added to each script's flags.
- `setup_wandb`: puts project and entity in the environment wandb reads, picks online when the
  user is logged in (a `WANDB_API_KEY` or a `wandb login` entry in ~/.netrc) and offline otherwise
  (an explicit `WANDB_MODE` wins), and says which in one line.
- Secrets: a flag whose name contains key, token, secret or password holds a secret when its
  value is text; so do credentials inside URLs (`https://user:pass@host`). redact.py's
  `mask_record` and `scrub_argv` replace them with `***`. `setup_wandb` scrubs `sys.argv` itself, because wandb
  copies the command line into its run files.
- `write_run_args`: `run_args.json` in the run folder, with every flag the run used (secrets
  masked) under `"flags"`, next to the run's identity keys (what resume compares).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import netrc
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from huatuo_o1.redact import mask_record, scrub_argv

log = logging.getLogger(__name__)

DEFAULT_WANDB_PROJECT = "huatuo-o1"


WANDB_PROJECT_HELP = f"wandb project (default: $WANDB_PROJECT, else {DEFAULT_WANDB_PROJECT})."
WANDB_ENTITY_HELP = "wandb entity, a user or team (default: $WANDB_ENTITY)."


@dataclass
class TrackingArguments:
    """Where a run's wandb logs go (used with --report_to wandb)."""

    wandb_project: str | None = field(default=None, metadata={"help": WANDB_PROJECT_HELP})
    wandb_entity: str | None = field(default=None, metadata={"help": WANDB_ENTITY_HELP})


def _jsonable(value):
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def collect_flags(*arg_objects) -> dict:
    """Every field of the given argument dataclasses (or namespaces), by flag name, JSON-safe."""
    flags: dict = {}
    for obj in arg_objects:
        if obj is None:
            continue
        if dataclasses.is_dataclass(obj):
            names = [f.name for f in dataclasses.fields(obj) if f.init]
        else:
            names = sorted(vars(obj))
        for name in names:
            flags[name] = _jsonable(getattr(obj, name, None))
    return flags


def write_run_args(path: str | Path, identity: dict, *arg_objects) -> dict:
    """Write run_args.json: the identity keys at the top (resume compares them) and every flag,
    secrets masked, under "flags". Returns what was written."""
    from huatuo_o1.io import atomic_write_json

    record = {**identity, "flags": mask_record(collect_flags(*arg_objects))}
    atomic_write_json(Path(path), record)
    return record


def is_main_process() -> bool:
    return os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) in ("0", "")


def wandb_logged_in() -> bool:
    """True when wandb has credentials to go online: WANDB_API_KEY, or a `wandb login` entry in
    ~/.netrc for the wandb host (only the presence is checked; nothing is read out)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def uses_wandb(report_to) -> bool:
    if report_to is None:
        return False
    items = [report_to] if isinstance(report_to, str) else list(report_to)
    return any(str(x) in ("wandb", "all") for x in items)


def setup_wandb(report_to, tracking: TrackingArguments | None = None, run_dir: str | Path | None = None):
    """Set project, entity and mode for wandb (see the module docstring); one line says where the run
    goes. Returns (project, entity, mode), or None when the run does not report to wandb. Scrubs
    secrets from sys.argv either way (other loggers copy the command line too)."""
    sys.argv[:] = scrub_argv(sys.argv)
    if not uses_wandb(report_to):
        return None
    tracking = tracking or TrackingArguments()
    project = tracking.wandb_project or os.environ.get("WANDB_PROJECT") or DEFAULT_WANDB_PROJECT
    entity = tracking.wandb_entity or os.environ.get("WANDB_ENTITY") or None
    os.environ["WANDB_PROJECT"] = project
    if entity:
        os.environ["WANDB_ENTITY"] = entity
    if run_dir is not None:
        os.environ.setdefault("WANDB_DIR", str(run_dir))
        os.makedirs(os.environ["WANDB_DIR"], exist_ok=True)
    mode = os.environ.get("WANDB_MODE")
    if mode:
        why = "WANDB_MODE is set"
    elif wandb_logged_in():
        mode, why = "online", "logged in"
    else:
        mode, why = "offline", "not logged in: `wandb login`, or `wandb sync` the run folder later"
    os.environ["WANDB_MODE"] = mode
    if is_main_process():
        where = f"{entity}/{project}" if entity else project
        print(f"wandb: project {where}, {mode} ({why})", file=sys.stderr, flush=True)
    return project, entity, mode
