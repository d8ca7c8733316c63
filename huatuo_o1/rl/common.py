"""What the RL scripts share (PPO, GRPO) and verifier training borrows: flags, data, models, pad token.

- `RLScriptArguments`: the dataset and reward flags of RL_stage2.py and RL_stage2_grpo.py (the
  reward values and threshold are `rewards.RewardConfig`'s own fields, declared once there).
- `apply_compat_defaults`: the original's `--warmup_ratio`, bf16 only where a GPU is.
- `load_tokenizer_and_data`: the policy tokenizer (left padding) and the RL rows built with it.
- `make_verifier`: the reward's verifier chosen by `--verifier`.
- Pad token: trl treats the first pad in a response as its end, so the pad must differ from every
  stop token (and from bos and every token of the prompts). `choose_pad_token` keeps a distinct
  pad, else takes a reserved token the family ships (Llama-3.1 `<|finetune_right_pad_id|>`,
  Llama-3 `<|reserved_special_token_0|>`, Qwen2.5 `<|fim_pad|>`, SmolLM `<|endoftext|>` ...), and
  only adds a new token as a last resort. The verifier trainer uses it too (a pad distinct from eos,
  so its classifier reads the decision at the eos).

Nothing here imports trl: GRPO and verifier training do not load trl's experimental PPO.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from huatuo_o1.models import load_pretrained
from huatuo_o1.rl.rewards import VERIFIER_MAX_LENGTH, RewardConfig
from huatuo_o1.train.multi_gpu import outside_zero3_init, use_cpu_without_accelerator
from huatuo_o1.train.preemption import sigterm_grace_field
from huatuo_o1.train.run_record import TrackingArguments

log = logging.getLogger(__name__)

PAD_CANDIDATES = (
    "<|finetune_right_pad_id|>",  # Llama-3.1 / 3.2
    "<|reserved_special_token_0|>",  # Llama-3
    "<|fim_pad|>",  # Qwen2.5
    "<|pad|>",
    "<pad>",
    "[PAD]",
    "<|endoftext|>",  # SmolLM2, Qwen base
    "<unk>",
)


def _as_ids(x) -> set[int]:
    if x is None:
        return set()
    if isinstance(x, int):
        return {x}
    return {int(i) for i in x}


def choose_pad_token(tokenizer, generation_config=None, avoid_ids=()) -> bool:
    """Make tokenizer.pad_token a token that is no stop token, not bos, and not in `avoid_ids`
    (e.g. every token of the RL prompts, where a pad would be taken for padding). Returns True
    if a token was added to the vocabulary (the caller resizes the embeddings)."""
    stop = _as_ids(tokenizer.eos_token_id)
    if generation_config is not None:
        stop |= _as_ids(getattr(generation_config, "eos_token_id", None))
    banned = stop | _as_ids(tokenizer.bos_token_id) | _as_ids(avoid_ids)
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id not in banned:
        return False
    vocab = tokenizer.get_vocab()
    for cand in PAD_CANDIDATES:
        if cand in vocab and vocab[cand] not in banned:
            tokenizer.pad_token = cand
            return False
    tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
    return True


def set_pad_id(model, pad_token_id: int) -> None:
    model.config.pad_token_id = pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = pad_token_id


# ---------------------------------------------------------------------------------------------
# Flags


@dataclass
class RLScriptArguments(RewardConfig, TrackingArguments):
    """Dataset and reward arguments shared by RL_stage2.py (PPO) and RL_stage2_grpo.py."""

    dataset_name: str = field(
        default="data/demo_data.json",
        metadata={
            "help": "Verifiable problems (docs/data_formats.md §2): a local JSON/JSONL file or a hub "
            "dataset name, with an optional `:config` suffix (e.g. org/name:en)."
        },
    )
    sigterm_grace: float = sigterm_grace_field()
    verifier: str = field(
        default="classifier",
        metadata={"help": "Reward verifier: classifier (--reward_model_path), llm (--judge_model) or exact."},
    )
    judge_model: str | None = field(default=None, metadata={"help": "LLM judge model name (--verifier llm)."})
    judge_api_url: str | None = field(
        default=None, metadata={"help": "OpenAI-compatible base URL of the judge (default: OpenAI)."}
    )
    judge_api_key: str | None = field(
        default=None,
        repr=False,  # never printed with the arguments
        metadata={
            "help": "API key of the judge (default: the OPENAI_API_KEY environment variable; never logged)."
        },
    )
    judge_max_concurrency: int = field(default=10, metadata={"help": "Parallel judge requests."})
    verifier_max_length: int = field(
        default=VERIFIER_MAX_LENGTH, metadata={"help": "Verifier input length cap, in its tokens."}
    )
    verifier_batch_size: int = field(default=8, metadata={"help": "Verifier forward batch size."})
    eval_fraction: float = field(default=0.1, metadata={"help": "Share of rows held out for evaluation."})
    max_eval_samples: int = field(default=200, metadata={"help": "At most this many held-out rows."})
    max_prompt_length: int | None = field(
        default=None, metadata={"help": "Drop rows whose prompt is longer (policy tokens); None keeps all."}
    )

    def reward_config(self) -> RewardConfig:
        return RewardConfig.of(self)


# RL script flags that change the trained policy (PPO and GRPO resume only a run made with the same).
SCRIPT_RESULT_FLAGS = (
    "verifier", "judge_model", "correct_reward", "incorrect_reward", "malformed_reward", "reward_threshold",
    "verifier_max_length", "eval_fraction", "max_eval_samples", "max_prompt_length", "sft_target",
)  # fmt: skip
REPORT_TO_HELP = (
    "Loggers: wandb (default; online when logged in, else offline; WANDB_MODE wins), tensorboard, none ..."
)
WARMUP_RATIO_HELP = (
    "Share of training steps for linear warmup (the original's flag; transformers 5 removed it, so it is "
    "passed on as a fractional --warmup_steps)."
)


def apply_compat_defaults(cfg) -> None:
    """--warmup_ratio as a fractional warmup_steps; bf16 on by default only where a GPU is; use_cpu on
    a machine without an accelerator (a multi-process CPU launch then counts its processes); wandb's
    project and mode: `run_record.setup_wandb`, called by each script's train function."""
    import torch

    use_cpu_without_accelerator(cfg)
    if cfg.warmup_ratio is not None:
        if cfg.warmup_ratio < 0:  # a ValueError here becomes one line, exit 2 (train_checks)
            raise ValueError(f"--warmup_ratio must be >= 0, got {cfg.warmup_ratio}")
        cfg.warmup_steps = cfg.warmup_ratio
    if cfg.bf16 is None and not cfg.fp16 and not torch.cuda.is_available():
        cfg.bf16 = False


# ---------------------------------------------------------------------------------------------
# Models, data and the verifier


def torch_dtype(name: str | None):
    if name in (None, "auto"):
        return name
    import torch

    return getattr(torch, name)


def final_dir(output_dir: str, run_name: str | None) -> Path:
    return Path(output_dir) / (run_name or "final")


def make_verifier(
    script_args: RLScriptArguments, reward_model_path: str | None, dtype=None, trust_remote_code: bool = False
):
    """The verifier, loaded whole even under ZeRO-3: it is called as a plain module (GRPO's reward
    function; inside PPO's reward hook, which trl's engine partitions again itself), and a model
    loaded partitioned outside an engine would run on empty weights."""
    from huatuo_o1.rl.rewards import VerifierSettings, build_verifier

    with outside_zero3_init():
        return build_verifier(
            VerifierSettings.of(script_args, reward_model_path, trust_remote_code), dtype=dtype
        )


def load_tokenizer_and_data(
    policy_path: str, script_args: RLScriptArguments, seed: int, trust_remote_code: bool = False
):
    """The policy tokenizer (left padding, for generation) and the RL data built with it, logged
    (PPO and GRPO alike)."""
    from transformers import AutoTokenizer

    from huatuo_o1.rl.data import build_rl_data

    tokenizer = load_pretrained(
        AutoTokenizer,
        policy_path,
        "policy tokenizer",
        padding_side="left",
        trust_remote_code=trust_remote_code,
    )
    data = build_rl_data(
        script_args.dataset_name,
        tokenizer,
        seed=seed,
        eval_frac=script_args.eval_fraction,
        max_eval=script_args.max_eval_samples,
        max_prompt_length=script_args.max_prompt_length,
    )
    log.info(
        "RL data: %d train, %d eval, dropped %d without question/answer, %d ambiguous",
        len(data.train), len(data.eval), data.dropped_missing, data.dropped_ambiguous,
    )  # fmt: skip
    return tokenizer, data


def prompt_token_ids(data) -> set[int]:
    """Every token id of the RL prompts (train and eval): a pad must be none of them."""
    return {i for r in data.train + data.eval for i in r["input_ids"]}


def train_and_save(
    trainer, identity: dict, resume_from: str | None, script_args, args, model_args, is_complete=None
) -> Path:
    """The part every RL run (PPO, GRPO) ends with: wandb's project and mode, run_args.json with every
    flag (rank 0), the curves written when training ends, training, and the final policy saved as a
    plain HF folder in <output_dir>/<run_name>."""
    from huatuo_o1.train.checkpoints import (
        RUN_ARGS_FILE,
        disk_full_stops_cleanly,
        has_trainer_state,
        save_final_policy,
    )
    from huatuo_o1.train.plots import RL_CURVES, make_plot_callback
    from huatuo_o1.train.run_record import setup_wandb, write_run_args

    setup_wandb(args.report_to, script_args, run_dir=args.output_dir)
    if args.process_index == 0:
        write_run_args(Path(args.output_dir) / RUN_ARGS_FILE, identity, script_args, args, model_args)
    trainer.add_callback(make_plot_callback(args.output_dir, RL_CURVES))
    if script_args.sigterm_grace > 0:
        from huatuo_o1.train.preemption import sigterm_callback

        trainer.add_callback(sigterm_callback(script_args.sigterm_grace))
    is_complete = (
        is_complete or has_trainer_state
    )  # what a finished checkpoint holds (PPO: a value model too)
    with disk_full_stops_cleanly(args.output_dir, is_complete, main_process=args.process_index == 0):
        trainer.train(resume_from_checkpoint=resume_from)
        return save_final_policy(trainer, final_dir(args.output_dir, args.run_name))


def run_policy_training(argv, make_parser, make_full_parser, parse_args, train) -> int:
    """main() of PPO and GRPO: --help without training libraries, logging, the run, the saved
    policy's path, and the process group closed when it finishes."""
    from huatuo_o1.cli import print_help_if_asked, setup_training_logging
    from huatuo_o1.train.multi_gpu import end_distributed

    argv = sys.argv[1:] if argv is None else list(argv)
    if print_help_if_asked(argv, make_parser, make_full_parser):
        return 0
    setup_training_logging()
    out = train(*parse_args(argv))
    print(f"final policy saved to {out}")
    end_distributed()  # a finished distributed run closes its process group before exiting
    return 0
