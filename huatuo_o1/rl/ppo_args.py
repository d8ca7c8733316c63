"""The PPO script's own flags (RL_stage2.py): data, reward, verifier, value model, resume.

The PPO settings (trl 1.12's `PPOConfig` fields) are huatuo_o1/rl/ppo_config.py. Nothing here
imports a trainer, the command line or a training library.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from huatuo_o1.rl.common import RLScriptArguments
from huatuo_o1.train.checkpoints import resume_field


@dataclass
class PPOScriptArguments(RLScriptArguments):
    value_model_path: str | None = field(
        default=None,
        metadata={
            "help": "Value model initialisation (policy-tokenizer family, 1-logit head added); default: policy."
        },
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow model code from the models' repositories (the original always passed it)."},
    )
    resume: bool | None = resume_field(
        restores="policy, value model, optimizer, scheduler, data position",
        same="the same model, data and result-changing flags (a larger --total_episodes continues it)",
    )
