"""Flag checks shared by the training scripts: unknown flags and values that cannot train.

- `parse_dataclasses`: HfArgumentParser parsing where an unknown flag gets argparse's usage and an
  error naming it, exit 2 (transformers raises a ValueError for it, a traceback and exit 1); a value
  the argument classes themselves refuse (a ValueError in their checks) is one line, exit 2.
- `check_training_flags`: batch size, accumulation, learning rate, warmup, seed, epochs/episodes,
  attention implementation and model paths; the first bad one is an `InputError` (one line, exit 2
  through `cli.run_main`), before any model is loaded.
- `check_one_step`: training data that cannot fill one optimizer step (one global batch over all
  processes) is one line and exit 2, before any model is loaded, on every trainer and world size,
  instead of a run that trains nothing (or a short step) and still saves a "final" model.
"""

from __future__ import annotations

from huatuo_o1.io import InputError
from huatuo_o1.models import check_model_path

ATTN_IMPLEMENTATIONS = ("auto", "eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")


def parse_dataclasses(parser, argv: list[str] | None):
    """parser.parse_args_into_dataclasses, with unknown flags rejected the argparse way (exit 2)."""
    try:
        *parsed, rest = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    except ValueError as e:  # a value the arguments' own checks (__post_init__) refuse
        raise InputError(str(e).strip().splitlines()[0] if str(e).strip() else repr(e)) from None
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return parsed


def check_training_flags(
    *,
    batch_size: tuple[str, int] | None = None,
    accumulation: tuple[str, int] | None = None,
    learning_rate: tuple[str, float] | None = None,
    warmup: tuple[str, float] | None = None,
    seed: tuple[str, int] | None = None,
    positive: list[tuple[str, float | int | None]] = (),
    attn_implementation: tuple[str, str | None] | None = None,
    model_paths: list[tuple[str, str | None]] = (),
) -> None:
    """Raise InputError naming the first flag whose value cannot give a training run.

    Each check takes (flag name as typed, value); None skips it."""
    for check in (batch_size, accumulation):
        if check is not None and check[1] is not None and check[1] < 1:
            raise InputError(f"{check[0]} must be >= 1, got {check[1]}")
    if learning_rate is not None and learning_rate[1] is not None and learning_rate[1] < 0:
        raise InputError(f"{learning_rate[0]} must be >= 0, got {learning_rate[1]}")
    if warmup is not None and warmup[1] is not None and warmup[1] < 0:
        raise InputError(f"{warmup[0]} must be >= 0, got {warmup[1]}")
    if seed is not None and seed[1] is not None and seed[1] < 0:
        raise InputError(f"{seed[0]} must be >= 0, got {seed[1]}")
    for name, value in positive:
        if value is not None and value <= 0:
            raise InputError(f"{name} must be > 0, got {value} (nothing would be trained)")
    if attn_implementation is not None and attn_implementation[1] is not None:
        name, value = attn_implementation
        if value not in ATTN_IMPLEMENTATIONS and not value.startswith("kernels-community/"):
            raise InputError(f"{name} must be one of {', '.join(ATTN_IMPLEMENTATIONS)}, got {value!r}")
    for name, path in model_paths:
        check_model_path(path, name)


def check_one_step(
    rows: int,
    per_device: int,
    accumulation: int,
    processes: int,
    what: str,
    per_group: int = 1,
    completions: int | None = None,
) -> None:
    """InputError when `rows` training rows cannot fill one optimizer step: per-device batch x
    accumulation x processes examples (or `completions`, trl's generation batch), divided by
    `per_group` samples per prompt for the group-sampling trainers. `what` names the rows."""
    completions = completions or per_device * accumulation * processes
    need = -(-completions // per_group)
    if rows < need:
        how = f"{per_device} per device x {accumulation} accumulation x {processes} process(es)"
        how += f" / {per_group} samples per prompt" if per_group > 1 else ""
        raise InputError(
            f"{rows} training {what} are fewer than one optimizer step of {need} {what} ({how}), so "
            f"nothing would be trained; lower --global_batch_size (or the per-device batch and "
            f"accumulation) or give more {what}"
        )
