"""Multi-process training helpers: the global batch, and what ZeRO-3 changes about models.

- Global batch. Under `accelerate launch` every process runs the script; the batch of one
  optimizer step is per-device batch x gradient accumulation x processes. `--global_batch_size`
  fixes that product, so the recipe (the paper's 128) stays the same on 1, 8 or 16 GPUs:
  `accumulation_for` derives the accumulation from the world size and stops with one line when the
  global batch is not a multiple of per-device batch x processes. `global_batch_line` is what each
  training script prints at the start.
- CPU-only machines (`use_cpu_without_accelerator`). transformers' `TrainingArguments` counts the
  processes of a launch only on an accelerator, or with `use_cpu=True`; otherwise a 2-process CPU
  launch believes it is alone, fills DeepSpeed's batch for one process and stops at init. Every
  training script's arguments call this before transformers reads them, so users never pass a
  CPU flag: on a machine without an accelerator `use_cpu` is turned on.
- Seeded new heads (`seeded_init`). A head a checkpoint lacks (the verifier's 2-label classifier,
  PPO's 1-logit value head) is initialised by transformers from the global RNG, whose state at
  that point differs between ZeRO-3's partitioned load, ZeRO-2 and no DeepSpeed; re-drawn here
  from a generator seeded by `--seed` (gathered and written whole under ZeRO-3), the same seed
  gives the same start under all three.
- ZeRO-3. With a ZeRO-3 config, creating the `TrainingArguments` makes every later
  `from_pretrained` load its weights partitioned across processes: a weight's `.shape` then reads
  0 and only a ZeRO-3 engine gathers it for a forward. `embedding_rows` reads the real vocabulary
  size; `outside_zero3_init` loads a model whole (a verifier called outside trl's engines, which
  would otherwise run on empty weights).
"""

from __future__ import annotations

import contextlib
import os
import sys

from huatuo_o1.io import InputError


def world_size() -> int:
    """Processes of this run (accelerate/torchrun set WORLD_SIZE; 1 for a plain `python` run)."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


def has_accelerator() -> bool:
    """Whether torch sees a device to train on (CUDA or another accelerator)."""
    import torch

    if torch.cuda.is_available():
        return True
    acc = getattr(torch, "accelerator", None)
    return bool(acc is not None and acc.is_available())


def launched_processes() -> int:
    """Processes of a real multi-process launch (a launcher sets WORLD_SIZE and the rendezvous
    address MASTER_ADDR), else 1."""
    return world_size() if os.environ.get("MASTER_ADDR") else 1


def use_cpu_without_accelerator(args) -> None:
    """Turn `use_cpu` on in a `TrainingArguments` (before its `__post_init__` runs) in a launch of
    several processes on a machine without an accelerator, so that it counts all its processes (a
    single process runs on the CPU there anyway)."""
    if hasattr(args, "use_cpu") and not args.use_cpu and launched_processes() > 1 and not has_accelerator():
        args.use_cpu = True


def accumulation_for(global_batch: int, per_device: int, processes: int, per_device_flag: str) -> int:
    """Gradient accumulation steps giving `global_batch` examples per optimizer step."""
    if global_batch <= 0:
        raise InputError(f"--global_batch_size must be > 0, got {global_batch}")
    step = per_device * processes
    if global_batch % step:
        raise InputError(
            f"--global_batch_size {global_batch} is not a multiple of {per_device_flag} {per_device} x "
            f"{processes} process(es) = {step}; use a multiple of {step} or change {per_device_flag}"
        )
    return global_batch // step


def global_batch_line(per_device: int, accumulation: int, processes: int, extra: str = "") -> str:
    """'effective global batch: 2 per device x 8 accumulation x 8 processes = 128 examples per
    optimizer step' (+ `extra`)."""
    total = per_device * accumulation * processes
    line = (
        f"effective global batch: {per_device} per device x {accumulation} accumulation x "
        f"{processes} process(es) = {total} examples per optimizer step"
    )
    return line + (f"; {extra}" if extra else "")


def embedding_rows(model) -> int:
    """Rows of the input embedding, also when ZeRO-3 has partitioned the weight (shape 0)."""
    emb = model.get_input_embeddings()
    n = getattr(emb, "num_embeddings", None)
    if isinstance(n, int):
        return n
    weight = emb.weight
    shape = getattr(weight, "ds_shape", None) or weight.shape
    return int(shape[0])


def seeded_init(model, names, seed: int) -> list[str]:
    """Re-draw the parameters `names` of `model` (newly initialised ones, e.g. the missing keys of a
    load) from a generator seeded by `seed`: weights normal(0, config.initializer_range), biases 0,
    whatever ZeRO stage partitioned them. Every rank computes the same values. Names re-drawn."""
    import torch

    wanted = set(names)
    params = [(n, p) for n, p in model.named_parameters() if n in wanted]
    std = float(getattr(model.config, "initializer_range", 0.02) or 0.02)
    gen = torch.Generator().manual_seed(int(seed))
    for name, param in sorted(params):
        partitioned = hasattr(param, "ds_id")
        if partitioned:
            import deepspeed

            ctx = deepspeed.zero.GatheredParameters([param], modifier_rank=0)
        else:
            ctx = contextlib.nullcontext()
        with ctx, torch.no_grad():
            values = (
                torch.zeros(param.shape)
                if name.endswith("bias")
                else torch.randn(param.shape, generator=gen) * std
            )
            param.data.copy_(values.to(param.dtype))
    return [n for n, _ in sorted(params)]


@contextlib.contextmanager
def outside_zero3_init():
    """Within this block, `from_pretrained` loads whole models even when a ZeRO-3 config is active
    (the active config is set aside and put back after)."""
    from transformers.integrations import deepspeed as hf_ds

    ref = getattr(hf_ds, "_hf_deepspeed_config_weak_ref", None)
    active = ref() if ref is not None else None
    if active is None:
        yield
        return
    hf_ds.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_ds.set_hf_deepspeed_config(active)


def end_distributed() -> None:
    """Tear down the process group a distributed launch opened, before the interpreter exits.
    Left open, gloo's worker threads can still be running during interpreter shutdown and abort the
    process ("terminate called without an active exception", SIGABRT after a finished 2-process CPU
    run); the launcher then reports the whole run as failed."""
    dist = sys.modules.get("torch.distributed")  # never imports torch for the API stages
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
