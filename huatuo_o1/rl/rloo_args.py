"""The RLOO script's own flags (RL_stage2_rloo.py): the GRPO script's (huatuo_o1/rl/grpo_args.py).

trl's `RLOOConfig` flags, with the paper's RLOO defaults, are `MedicalRLOOConfig` in
huatuo_o1/rl/rloo_trainer.py (it needs trl, which `--help` does not load). Nothing here imports a
trainer or the command line.
"""

from __future__ import annotations

from dataclasses import dataclass

from huatuo_o1.rl.grpo_args import GRPOScriptArguments


@dataclass
class RLOOScriptArguments(GRPOScriptArguments):
    """The GRPO script's flags: data, reward, verifier, resume."""
