"""Weights-only checkpoints (`--save_only_model`) and what resuming from one can and cannot restore.

An 8B checkpoint with its AdamW state is ~130 GB (bf16 weights 16 GB + fp32 master weights and
two moments, 96 GB, + gradients' buffers), and two are kept. With `--save_only_model` a checkpoint
holds the model weights, `trainer_state.json` (step, epoch, logs) and, for PPO, the value model.

Resuming from such a checkpoint restores the weights, the step and the data position; the
learning-rate schedule is recomputed for that step (it is a function of the step); what cannot
be restored is the optimizer's moments (AdamW starts afresh, so the first updates after resume
are larger than they would have been) and the random-number state. `resume_note` is the one line
that says so. Under DeepSpeed, transformers insists on loading an engine checkpoint
(`global_step*/`) and `scheduler.pt`, which a weights-only checkpoint lacks: `skip_engine_load` lets
the Trainer resume from the HF weights instead (the model is loaded from the checkpoint folder
beforehand), and the SFT trainer skips the optimizer/scheduler load for such a checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def is_weights_only(ckpt: str | Path) -> bool:
    """A checkpoint without optimizer state: no optimizer.pt and no DeepSpeed engine folder."""
    ckpt = Path(ckpt)
    return not (ckpt / "optimizer.pt").exists() and not any(ckpt.glob("global_step*"))


def resume_note(ckpt: str | Path) -> str:
    return (
        f"{ckpt} holds model weights only (--save_only_model): resuming restores the weights, the step, "
        "the data position and the learning-rate schedule, but not the optimizer's moments (AdamW "
        "starts afresh) nor the random-number state"
    )


def fast_forward_scheduler(scheduler, step: int) -> None:
    """Put a LambdaLR-style scheduler (transformers' schedules) at `step`, its lr recomputed."""
    import torch

    sched = getattr(scheduler, "scheduler", scheduler)  # accelerate's AcceleratedScheduler wraps it
    if not isinstance(sched, torch.optim.lr_scheduler.LambdaLR) or step <= 0:
        return
    sched.last_epoch = step
    lrs = [base * f(step) for base, f in zip(sched.base_lrs, sched.lr_lambdas, strict=True)]
    for group, lr in zip(sched.optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr
    sched._last_lr = lrs


def make_schedule_callback():
    """A TrainerCallback that, at the start of a resumed run, moves the LR schedule to the restored
    step (the Trainer found no scheduler.pt and created it at step 0)."""
    from transformers import TrainerCallback

    class ScheduleAtStep(TrainerCallback):
        def on_train_begin(self, args, state, control, lr_scheduler=None, **kwargs):
            if lr_scheduler is not None and state.global_step > 0:
                fast_forward_scheduler(lr_scheduler, state.global_step)

    return ScheduleAtStep()


@contextlib.contextmanager
def skip_engine_load():
    """While active, the Trainer's DeepSpeed engine load on resume does nothing (the weights were
    already loaded from the checkpoint's HF files)."""
    import transformers.trainer as hf_trainer

    original = hf_trainer.deepspeed_load_checkpoint
    hf_trainer.deepspeed_load_checkpoint = lambda *a, **kw: None
    try:
        yield
    finally:
        hf_trainer.deepspeed_load_checkpoint = original
