"""The GRPO script's own flags (RL_stage2_grpo.py): data, reward, verifier, resume.

trl's `GRPOConfig` flags, with our defaults, are `MedicalGRPOConfig` in huatuo_o1/rl/grpo_trainer.py
(it needs trl, which `--help` does not load). Nothing here imports a trainer or the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from huatuo_o1.rl.common import RLScriptArguments
from huatuo_o1.train.checkpoints import resume_field


@dataclass
class GRPOScriptArguments(RLScriptArguments):
    """The PPO script's data and reward flags, the verifier's path and --resume."""

    reward_model_path: str | None = field(
        default=None, metadata={"help": "Verifier: a 2-label sequence classifier folder or hub name."}
    )
    reproducible_sampling: bool = field(
        default=False,
        metadata={
            "help": "Draw each completion's tokens from a hash of (--seed, step, prompt, copy number) "
            "instead of each process's random generator: the same rollouts on any number of GPUs, so a "
            "run can be reproduced or compared on another GPU count (transformers generation only, not "
            "--use_vllm; huatuo_o1/rl/keyed_sampling.py)."
        },
    )
    resume: bool | None = resume_field()
