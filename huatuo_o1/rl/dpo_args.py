"""The DPO script's own flags (RL_stage2_dpo.py): the pairs file, the held-out share, resume.

trl's `DPOConfig` flags, with the paper's DPO defaults, are `MedicalDPOConfig` in
huatuo_o1/rl/dpo_trainer.py (it needs trl, which `--help` does not load). Nothing here imports a
trainer or the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from huatuo_o1.train.checkpoints import resume_field
from huatuo_o1.train.preemption import sigterm_grace_field
from huatuo_o1.train.run_record import TrackingArguments


@dataclass
class DPOScriptArguments(TrackingArguments):
    """The preference pairs, the share held out for evaluation, --resume and --sigterm_grace."""

    dataset_name: str = field(
        default="data/dpo_pairs.jsonl",
        metadata={
            "help": "Preference pairs {prompt, chosen, rejected} (JSON/JSONL) from scripts/make_dpo_pairs.py."
        },
    )
    eval_fraction: float = field(default=0.0, metadata={"help": "Share of pairs held out for evaluation."})
    resume: bool | None = resume_field()
    sigterm_grace: float = sigterm_grace_field()
