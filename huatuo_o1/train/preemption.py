"""SIGTERM during training: save a checkpoint first, then stop (what a preempted SLURM job needs).

SLURM (and `kill`) send SIGTERM, wait a grace period (SLURM's KillWait, 30 s by default, or the
`--signal` you give the job), then kill. With `--sigterm_grace S` above 0, a SIGTERM no longer stops
a training run at once: the step in progress finishes, a checkpoint is saved if the step ended within
S seconds of the signal, and the run then stops with exit code 143 and one line naming the checkpoint.
A rerun of the same command resumes from it. A step that ends after S seconds is not saved (the kill
is near; a half-written checkpoint would only be skipped on resume), and a second SIGTERM stops at
once. With S = 0 (the default) SIGTERM stops at once, like Ctrl-C.

Under several processes every rank must save together (DeepSpeed's save is collective): at each step
end the ranks agree, with one all-reduce of a flag, on whether any of them was signalled.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import field

from huatuo_o1.cli import Terminated

log = logging.getLogger(__name__)


def sigterm_grace_field():
    """The `--sigterm_grace` flag of every training script."""
    return field(
        default=0.0,
        metadata={
            "help": "Seconds a SIGTERM (SLURM preemption, kill) leaves for a last checkpoint: the step in "
            "progress finishes, is saved if it ended within this many seconds, and the run stops (exit "
            "143); rerun to resume. 0: stop at once, like Ctrl-C. Set it below the scheduler's grace "
            "(SLURM's KillWait, 30 s by default)."
        },
    )


def _any_rank(flag: bool, device) -> bool:
    """Whether any process has `flag` set (itself when not distributed)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def sigterm_callback(grace_s: float):
    """The callback the training scripts add when --sigterm_grace is above 0 (see the module doc);
    transformers is imported here, not when a script's flags are declared."""
    from transformers import TrainerCallback

    class SaveOnSigterm(TrainerCallback):
        def __init__(self, grace_s: float):
            self.grace_s = grace_s
            self.signalled_at: float | None = None
            self.saving = False
            self._previous = None

        def _on_sigterm(self, signum, frame):
            if self.signalled_at is not None:
                self._stop()  # a second SIGTERM: stop now
            self.signalled_at = time.monotonic()
            log.warning(
                "SIGTERM: finishing this step, then saving a checkpoint (--sigterm_grace %s s)", self.grace_s
            )

        def on_train_begin(self, args, state, control, **kwargs):
            if threading.current_thread() is threading.main_thread():
                self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

        def on_train_end(self, args, state, control, **kwargs):
            self._restore()

        def _restore(self):
            if self._previous is not None:
                signal.signal(signal.SIGTERM, self._previous)
                self._previous = None

        def _stop(self):
            self._restore()
            raise Terminated()

        def on_step_end(self, args, state, control, **kwargs):
            if not _any_rank(self.signalled_at is not None, args.device):
                return control
            waited = time.monotonic() - self.signalled_at if self.signalled_at is not None else 0.0
            if not _any_rank(waited > self.grace_s, args.device):
                self.saving = True
                control.should_save = True
                return control
            log.warning(
                "SIGTERM: this step ended %.0f s after the signal, past --sigterm_grace; not saved", waited
            )
            self._stop()

        def on_save(self, args, state, control, **kwargs):
            if self.saving:
                log.warning(
                    "SIGTERM: saved checkpoint-%d; stopping (rerun the same command to resume)",
                    state.global_step,
                )
                self._stop()
            return control

    return SaveOnSigterm(grace_s)
