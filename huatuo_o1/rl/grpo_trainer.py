"""GRPO with the same medical-verifier reward and dataset handling as PPO (a cheaper alternative).

GRPO (trl `GRPOTrainer`) samples `num_generations` responses per prompt and uses the group's
reward mean/std as the baseline, so it needs no value model; the paper used PPO only.

- Dataset: the same docs/data_formats.md §2 loading, dropping, seed split and policy pad choice as
  PPO (huatuo_o1.rl.data, huatuo_o1.rl.common); trl's experimental PPO is not imported. Prompts are one user turn in
  conversational form, so trl applies the policy's chat template; each row carries its own
  "reference" column, which trl passes to the reward function row by row (exact by design).
- Reward: `MedicalRewardFunc` decodes nothing itself (trl hands it the completion text) and
  calls `huatuo_o1.rl.rewards.score_responses`, the exact rule PPO uses, with the verifier chosen by
  `--verifier`. It logs the share well-formed and the share correct through trl's `log_metric`.
- Generation with vLLM is trl's `--use_vllm` (colocate or server mode), where vLLM is installed.
  Unless `--vllm_max_model_length` is given, it is set to the prompt length (`--max_prompt_length`,
  else the longest prompt in the data) plus `--max_completion_length`, so vLLM does not size its
  KV cache for the checkpoint's whole context; in colocate mode huatuo_o1.rl.vllm_fit then checks
  that weights + KV cache + activations fit in `--vllm_gpu_memory_utilization` of the GPU and
  stops with one line before any model is loaded when they do not.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path

from trl import GRPOConfig

from huatuo_o1.io import InputError
from huatuo_o1.lock import locked
from huatuo_o1.models import check_model_path, load_pretrained
from huatuo_o1.rl.common import (
    REPORT_TO_HELP,
    SCRIPT_RESULT_FLAGS,
    WARMUP_RATIO_HELP,
    apply_compat_defaults,
    choose_pad_token,
    load_tokenizer_and_data,
    make_verifier,
    prompt_token_ids,
    set_pad_id,
    torch_dtype,
    train_and_save,
)
from huatuo_o1.rl.grpo_args import GRPOScriptArguments
from huatuo_o1.rl.options import apply_global_batch, check_one_rl_step, check_rl_flags, model_dtypes
from huatuo_o1.rl.rewards import RewardConfig, Verifier, score_responses
from huatuo_o1.train.checkpoints import resume_point, run_identity

log = logging.getLogger(__name__)


class MedicalRewardFunc:
    """trl reward function: one reward per completion against its own row's `reference`."""

    __name__ = "medical_verifier"

    def __init__(self, verifier: Verifier, cfg: RewardConfig | None = None):
        self.verifier = verifier
        self.cfg = cfg or RewardConfig()

    def __call__(self, prompts, completions, reference, log_metric=None, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        res = score_responses(texts, reference, self.verifier, self.cfg)
        if log_metric is not None:
            s = res.summary()
            log_metric("reward/well_formed", s["reward/well_formed"])
            log_metric("reward/correct", s["reward/correct"])
        return res.rewards


# GRPO's loss settings, declared by our config rather than taken from trl's defaults
PINNED_GRPO = {"loss_type": "dapo", "epsilon": 0.2, "scale_rewards": "group"}


@dataclass
class MedicalGRPOConfig(GRPOConfig):
    """trl's GRPOConfig plus the original's --warmup_ratio; bf16 on by default only on GPU. The loss
    settings are declared here (trl 1.12 to 1.16's defaults), so a later trl default cannot change them."""

    loss_type: str = field(
        default=PINNED_GRPO["loss_type"],
        metadata={"help": "GRPO loss: dapo (token mean over the global batch), grpo, dr_grpo, bnpo, ..."},
    )
    epsilon: float = field(
        default=PINNED_GRPO["epsilon"],
        metadata={"help": "Ratio clip: 1 - epsilon (and 1 + epsilon unless --epsilon_high)."},
    )
    scale_rewards: str = field(
        default=PINNED_GRPO["scale_rewards"],
        metadata={"help": "Advantage scaling: group (by the group's std), batch, or none."},
    )
    warmup_ratio: float | None = field(default=None, metadata={"help": WARMUP_RATIO_HELP})
    report_to: None | str | list[str] = field(default="wandb", metadata={"help": REPORT_TO_HELP})

    def __post_init__(self):
        apply_compat_defaults(self)
        super().__post_init__()


def build_grpo_trainer(script_args: GRPOScriptArguments, args, model_args):
    from trl import GRPOTrainer

    return build_group_trainer(GRPOTrainer, script_args, args, model_args)


def build_group_trainer(trainer_cls, script_args: GRPOScriptArguments, args, model_args):
    """A trl trainer that samples a group of completions per prompt and scores them with
    `MedicalRewardFunc` (GRPOTrainer here, RLOOTrainer in rl/rloo.py: the same constructor)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    if args.use_vllm and script_args.reproducible_sampling:
        raise InputError(
            "--reproducible_sampling draws in transformers' generate; vLLM samples itself: "
            "drop one of --use_vllm and --reproducible_sampling"
        )
    if args.use_vllm and importlib.util.find_spec("vllm") is None:
        raise InputError(
            "--use_vllm True needs vLLM, which is not installed: pip install -r requirements-vllm.txt "
            "(vllm 0.30.0; trl 1.16 supports 0.22.0-0.31.0)"
        )
    policy_path = model_args.model_name_or_path
    if not policy_path:
        raise InputError("--model_name_or_path is required")
    check_model_path(policy_path, "policy model")
    check_model_path(script_args.reward_model_path, "reward model")
    check_rl_flags(args, model_args)
    batch_line = apply_global_batch(args)  # every rank: it may set the accumulation
    if args.process_index == 0:
        log.info(batch_line)
    dtype = torch_dtype(model_args.dtype)
    _, frozen_dtype = model_dtypes(dtype, args.bf16, deepspeed=False)
    remote = {"trust_remote_code": args.trust_remote_code}  # GRPOConfig's own flag

    tokenizer, data = load_tokenizer_and_data(policy_path, script_args, args.seed, **remote)
    check_one_rl_step(len(data.train), args)  # a run of 0 steps is refused, exit 2
    if args.use_vllm:
        prepare_vllm(args, script_args, policy_path, data)

    def to_ds(rows):
        return Dataset.from_dict(
            {
                "prompt": [[{"role": "user", "content": r["question"]}] for r in rows],
                "reference": [r["reference"] for r in rows],
            }
        )

    # the verifier is loaded whole (not ZeRO-3-partitioned): trl never runs a reward function
    # through an engine that would gather its weights
    verifier = make_verifier(script_args, script_args.reward_model_path, dtype=frozen_dtype, **remote)
    attn = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    policy = load_pretrained(AutoModelForCausalLM, policy_path, "policy model", dtype=dtype, **remote, **attn)
    if choose_pad_token(tokenizer, policy.generation_config, avoid_ids=prompt_token_ids(data)):
        policy.resize_token_embeddings(len(tokenizer))
    set_pad_id(policy, tokenizer.pad_token_id)

    use_eval = data.eval and args.eval_strategy != "no"
    trainer = trainer_cls(
        model=policy,
        reward_funcs=[MedicalRewardFunc(verifier, script_args.reward_config())],
        args=args,
        train_dataset=to_ds(data.train),
        eval_dataset=to_ds(data.eval) if use_eval else None,
        processing_class=tokenizer,
    )
    vmodel = getattr(verifier, "model", None)
    if vmodel is not None:
        vmodel.to(trainer.accelerator.device)
    if script_args.reproducible_sampling:
        from huatuo_o1.rl import keyed_sampling

        keyed_sampling.install(trainer)
    trainer.rl_data = data
    return trainer


def vllm_model_length(args, script_args, data) -> int | None:
    """--vllm_max_model_length if given, else prompt length + --max_completion_length (None if unknown)."""
    if args.vllm_max_model_length:
        return args.vllm_max_model_length
    if not args.max_completion_length:
        return None
    longest = max((len(r["input_ids"]) for r in [*data.train, *data.eval]), default=0)
    return (script_args.max_prompt_length or longest) + args.max_completion_length


def prepare_vllm(args, script_args, policy_path: str, data) -> None:
    """Set vLLM's model length from the data and, in colocate mode, check that vLLM fits (one-line stop)."""
    from huatuo_o1.rl.vllm_fit import check_vllm_fit, read_config

    length = vllm_model_length(args, script_args, data)
    if length and not args.vllm_max_model_length:
        args.vllm_max_model_length = length
        if args.process_index == 0:
            log.info("vLLM max model length: %d tokens (prompt + --max_completion_length)", length)
    if args.vllm_mode != "colocate":
        return
    if not length:  # vLLM will take the checkpoint's own context
        length = int((read_config(policy_path) or {}).get("max_position_embeddings") or 0)
        if not length:
            return
    steps = args.steps_per_generation or args.gradient_accumulation_steps
    check_vllm_fit(
        policy_path,
        length,
        args.vllm_gpu_memory_utilization,
        tensor_parallel=args.vllm_tensor_parallel_size,
        max_num_seqs=args.per_device_train_batch_size * args.vllm_tensor_parallel_size * steps,
    )


# trl GRPOConfig flags that change the trained policy (a larger --max_steps continues a run)
GRPO_RESULT_FLAGS = (
    "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_generations",
    "max_completion_length", "temperature", "top_p", "beta", "epsilon", "loss_type", "num_iterations",
    "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm", "optim", "seed", "bf16", "fp16",
)  # fmt: skip


def grpo_identity(script_args: GRPOScriptArguments, args, model_args) -> dict:
    """What a checkpoint must have been trained from to be resumed by this run: policy, data,
    verifier and the result-changing flags (as PPO's identity)."""
    return group_identity(GRPO_RESULT_FLAGS, script_args, args, model_args)


def group_identity(result_flags: tuple, script_args, args, model_args) -> dict:
    """The run identity of a group-sampling trainer (GRPO, RLOO) from its result-changing flags.
    With --global_batch_size the global batch is the recipe, not the accumulation the GPU count
    derives from it (so a run resumes on another number of GPUs)."""
    settings = {name: getattr(args, name, None) for name in result_flags}
    if settings.get("global_batch_size"):
        settings["gradient_accumulation_steps"] = None
    settings.update({name: getattr(script_args, name, None) for name in SCRIPT_RESULT_FLAGS})
    settings["dtype"] = model_args.dtype
    if getattr(script_args, "reproducible_sampling", False):  # recorded only when on: older runs resume
        settings["reproducible_sampling"] = True
    return run_identity(
        {
            "model_name_or_path": model_args.model_name_or_path,
            "dataset_name": script_args.dataset_name,
            "reward_model_path": script_args.reward_model_path,
        },
        settings,
    )


# one run per output folder (lock.py)
@locked("grpo", lambda script_args, args, model_args: args.output_dir)
def train_grpo(script_args: GRPOScriptArguments, args, model_args) -> Path:
    identity = grpo_identity(script_args, args, model_args)
    resume_from = resume_point(args.output_dir, script_args.resume, identity, "use another --output_dir")
    trainer = build_grpo_trainer(script_args, args, model_args)  # checks flags first
    return train_and_save(trainer, identity, resume_from, script_args, args, model_args)
