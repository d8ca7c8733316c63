"""Stage 3, SFT: teach a chat model to write `## Thinking` then `## Final Response` (SFT_stage1.py).

The training loop is transformers' `Trainer`; this module only maps the original script's flags
onto it and adds what the paper's recipe needs:

- `SFTArguments`: the original flags with their defaults (3 epochs, lr 5e-6, batch 2 x 8
  accumulation per GPU, cosine schedule with 5% warmup, weight decay 0.1, AdamW), plus a few
  extras (`--packing`, `--resume`, `--max_steps`, `--report_to`, ...).
- `--sft_target` picks what the assistant turn is (huatuo_o1.train.sft_targets): the default
  `complex_cot`, or the paper's ablations `simple_cot`, `response`, `mcq` (docs/ablations.md).
- Order of work: check the data (exit 2 on bad data) -> tokenizer -> tokenize all records -> build
  `TrainingArguments` (under `accelerate launch` with a DeepSpeed config this sets up ZeRO-3, so
  the model loads partitioned) -> load the model -> train -> save the final model.
- `SFTTrainer` (a thin `Trainer` subclass) adds to the logs: token accuracy on the learnt tokens
  (the original's `acc`), tokens/s, and the share of real (non-padding) tokens per batch.
- Checkpoints are Trainer checkpoints: plain HF folders `<output_dir>/<experiment_name>/checkpoint-N`
  (config, safetensors, tokenizer) plus optimizer/scheduler/RNG/trainer state, the newest
  `--max_ckpts` kept. Resuming restores optimizer, scheduler and RNG and skips the batches already
  seen in the current epoch (data order is fixed by `--seed`), so training continues exactly where
  it stopped. The final model goes to `<output_dir>/<experiment_name>`.
- A rerun resumes by default (the project's rule for interrupted runs), but only a run of the same
  `--model_path`, `--data_path` and result-changing flags (`RESULT_FLAGS`: learning rate, sequence
  length, packing, batch sizes, epochs, seed ...): they are written to `run_args.json` in the run
  folder when the run starts and copied into every checkpoint; a mismatch is a one-line error
  (exit 2) naming the differing flags and suggesting `--resume False` or another
  `--experiment_name`. A torn newest checkpoint is skipped for the newest intact one
  (huatuo_o1.train.checkpoints).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from huatuo_o1.cli import dataclass_parser, print_help_if_asked, setup_training_logging
from huatuo_o1.contract import split_config
from huatuo_o1.formats import DEFAULT_SFT_TARGET, SFT_TARGET_HELP
from huatuo_o1.io import InputError
from huatuo_o1.lock import locked
from huatuo_o1.models import load_pretrained
from huatuo_o1.train.checkpoints import (
    RUN_ARGS_FILE,
    disk_full_stops_cleanly,
    resume_field,
    resume_point,
    run_identity,
    save_final_policy,
    write_identity,
)
from huatuo_o1.train.checks import check_one_step, check_training_flags, parse_dataclasses
from huatuo_o1.train.multi_gpu import accumulation_for, end_distributed, global_batch_line, world_size
from huatuo_o1.train.plots import SFT_CURVES, make_plot_callback
from huatuo_o1.train.preemption import sigterm_callback, sigterm_grace_field
from huatuo_o1.train.run_record import (
    WANDB_ENTITY_HELP,
    WANDB_PROJECT_HELP,
    TrackingArguments,
    setup_wandb,
    write_run_args,
)
from huatuo_o1.train.save_only_model import (
    is_weights_only,
    make_schedule_callback,
    resume_note,
    skip_engine_load,
)
from huatuo_o1.train.sft_data import (
    end_of_turn_ids,
    ensure_chat_template,
    make_collator,
    tokenize_chats,
)
from huatuo_o1.train.sft_targets import check_target, load_sft_chats

log = logging.getLogger("sft")

LOSS_AVERAGES = ("token", "micro_batch")
# The original's no-decay rule (parameter names containing these); on Llama it matches nothing.
ORIGINAL_NO_DECAY = ("bias", "LayerNorm.weight")


@dataclass
class SFTArguments:
    """Flags of SFT_stage1.py (the original's names and defaults first, then our additions)."""

    model_path: str = field(metadata={"help": "HF model folder or hub name of the chat model to fine-tune."})
    data_path: str = field(
        metadata={
            "help": "SFT data: a JSON/JSONL file of {Question, Complex_CoT, Response} records "
            "(docs/data_formats.md §3), a `datasets` folder, or a hub dataset name with an optional "
            "`:config` suffix (e.g. FreedomIntelligence/medical-o1-reasoning-SFT:en)."
        }
    )
    experiment_name: str = field(
        default="sft_stage1", metadata={"help": "Run name: outputs go to <output_dir>/<experiment_name>."}
    )
    output_dir: str = field(
        default="./ckpts", metadata={"help": "Root folder for checkpoints and the final model."}
    )
    max_ckpts: int = field(
        default=2, metadata={"help": "Keep only the newest N checkpoints (<= 0: keep all)."}
    )
    log_dir: str = field(
        default="./train_logs",
        metadata={"help": "Root folder for wandb/tensorboard logs (<log_dir>/<experiment_name>)."},
    )
    max_seq_len: int = field(
        default=8192,
        metadata={
            "help": "Longest example in tokens; longer ones lose the tail of their response (prompt kept)."
        },
    )
    gradient_checkpointing: bool = field(
        default=True,
        metadata={
            "help": "Activation checkpointing. The original parsed this flag but always enabled it; "
            "on by default here too, `--gradient_checkpointing False` turns it off (faster on small models)."
        },
    )
    gradient_accumulation_steps: int = field(
        default=8, metadata={"help": "Micro-batches per optimizer step."}
    )
    train_bsz_per_gpu: int = field(default=2, metadata={"help": "Examples per micro-batch per device."})
    weight_decay: float = field(
        default=0.1,
        metadata={"help": "AdamW weight decay (not on biases and norms unless --weight_decay_on_norms)."},
    )
    learning_rate: float = field(default=5e-6, metadata={"help": "Peak learning rate (cosine schedule)."})
    warmup_rates: float = field(
        default=0.05, metadata={"help": "Share of the optimizer steps used for linear warmup."}
    )
    n_epochs: int = field(default=3, metadata={"help": "Epochs over the data."})
    seed: int = field(default=42, metadata={"help": "Seed for initialisation and data order."})
    # ---- additions
    data_config: str | None = field(
        default=None,
        metadata={
            "help": "Configuration of a hub dataset (the published set: en, zh, en_mix, zh_mix; default en). "
            "An alias: the canonical form is a suffix of --data_path, e.g. org/name:en."
        },
    )
    packing: bool = field(
        default=True,
        metadata={
            "help": "Padding-free batching: a micro-batch's examples are concatenated into one row with "
            "per-example position ids (no cross-example attention, no padding). False: the original "
            "padding to the longest example."
        },
    )
    resume: bool | None = resume_field(
        where="checkpoint in <output_dir>/<experiment_name>",
        restores="optimizer, scheduler, data position",
        same="the same model, data and result-changing flags (a larger --max_steps continues it)",
    )
    max_steps: int = field(
        default=-1, metadata={"help": "Stop after this many optimizer steps (-1: n_epochs)."}
    )
    sigterm_grace: float = sigterm_grace_field()
    save_steps: int = field(
        default=0,
        metadata={
            "help": "Save a checkpoint every N optimizer steps (0: at the end of each epoch, as the original)."
        },
    )
    logging_steps: int = field(default=1, metadata={"help": "Log every N optimizer steps."})
    report_to: str = field(
        default="wandb",
        metadata={
            "help": "none, wandb (online when logged in, else offline; WANDB_MODE wins) or tensorboard."
        },
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping (0: off)."})
    attn_implementation: str = field(
        default="auto",
        metadata={
            "help": "auto (flash_attention_2 on GPU when installed, else sdpa), sdpa, eager, flash_attention_2."
        },
    )
    bf16: bool | None = field(
        default=None,
        metadata={
            "help": "bf16 mixed precision (default: when the GPU supports it; never on CPU).",
            "nargs": "?",
            "const": True,
        },
    )
    global_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Examples per optimizer step over all processes (the paper: 128). Sets the accumulation "
            "to this / (--train_bsz_per_gpu x processes), so the recipe does not change with the GPU count. "
            "Default: --gradient_accumulation_steps as given."
        },
    )
    save_only_model: bool = field(
        default=False,
        metadata={
            "help": "Checkpoints hold the weights only, no optimizer state (an 8B one: ~16 GB instead of "
            "~130 GB). A resume then restores weights, step, data position and LR schedule, not AdamW's moments."
        },
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow model code from the model's repository (the original always passed it)."},
    )
    loss_average: str = field(
        default="token",
        metadata={
            "help": "token: the loss is the mean over every learnt token of the optimizer step (all "
            "micro-batches and processes); micro_batch: the original's mean of per-micro-batch means."
        },
    )
    weight_decay_on_norms: bool = field(
        default=False,
        metadata={
            "help": "False: no weight decay on biases and normalisation weights. True: the original's rule "
            "(exempts only names containing 'bias' or 'LayerNorm.weight', i.e. nothing on Llama)."
        },
    )
    wandb_project: str | None = field(default=None, metadata={"help": WANDB_PROJECT_HELP})
    wandb_entity: str | None = field(default=None, metadata={"help": WANDB_ENTITY_HELP})
    sft_target: str = field(default=DEFAULT_SFT_TARGET, metadata={"help": SFT_TARGET_HELP})
    simple_cot_first_correct: bool = field(
        default=True,
        metadata={
            "help": "--sft_target simple_cot: only items whose first conclusion the search's verifier "
            "judged correct (False: every item with a first reasoning, right or wrong)."
        },
    )


DESCRIPTION = """SFT stage 1 of HuatuoGPT-o1: teach a chat model to answer as `## Thinking` / `## Final Response`.

    python SFT_stage1.py --model_path <model> --data_path <sft.json>
    accelerate launch --config_file ./configs/deepspeed_zero3.yaml --num_processes 8 SFT_stage1.py ..."""


def make_parser():
    """The flags, for --help without importing transformers (parse_args uses HfArgumentParser)."""
    return dataclass_parser(DESCRIPTION, SFTArguments)


def make_full_parser():
    """HfArgumentParser over SFTArguments: the parser that reads the command line."""
    from transformers import HfArgumentParser

    return HfArgumentParser(SFTArguments, description=DESCRIPTION)


def parse_args(argv: list[str] | None = None) -> SFTArguments:
    parser = make_full_parser()
    (args,) = parse_dataclasses(parser, argv)
    if args.report_to not in ("none", "wandb", "tensorboard"):
        parser.error(f"--report_to must be none, wandb or tensorboard, got {args.report_to!r}")
    if args.loss_average not in LOSS_AVERAGES:
        parser.error(f"--loss_average must be one of {', '.join(LOSS_AVERAGES)}, got {args.loss_average!r}")
    return args


# Flags that change the trained model: a checkpoint is resumed only by a run with the same values.
# (Logging, saving, --resume, --gradient_checkpointing and --attn_implementation change how, not what.
# --max_steps is left out on purpose: a larger value continues a finished run, as a larger PPO
# --total_episodes does; the schedule then follows the new total.)
RESULT_FLAGS = (
    "data_config", "max_seq_len", "packing", "train_bsz_per_gpu", "gradient_accumulation_steps",
    "learning_rate", "weight_decay", "warmup_rates", "n_epochs", "max_grad_norm", "seed", "bf16",
    "loss_average", "weight_decay_on_norms", "sft_target", "simple_cot_first_correct",
)  # fmt: skip


def check_flags(args: SFTArguments) -> None:
    """One-line errors (exit 2) for flags that cannot train, before anything is loaded (the model
    path is checked after the data, so bad data is reported first)."""
    if args.max_seq_len < 2:
        raise InputError(f"--max_seq_len must be >= 2, got {args.max_seq_len}")
    check_target(args.sft_target)
    check_training_flags(
        batch_size=("--train_bsz_per_gpu", args.train_bsz_per_gpu),
        accumulation=("--gradient_accumulation_steps", args.gradient_accumulation_steps),
        learning_rate=("--learning_rate", args.learning_rate),
        warmup=("--warmup_rates", args.warmup_rates),
        seed=("--seed", args.seed),
        positive=[("--n_epochs", args.n_epochs), ("--global_batch_size", args.global_batch_size)],
        attn_implementation=("--attn_implementation", args.attn_implementation),
    )


def set_global_batch(args: SFTArguments) -> str:
    """Derive the accumulation from --global_batch_size (if given); the effective-batch line."""
    processes = world_size()
    if args.global_batch_size:
        args.gradient_accumulation_steps = accumulation_for(
            args.global_batch_size, args.train_bsz_per_gpu, processes, "--train_bsz_per_gpu"
        )
    return global_batch_line(args.train_bsz_per_gpu, args.gradient_accumulation_steps, processes)


def sft_identity(args: SFTArguments) -> dict:
    """What a checkpoint must have been trained from to be resumed by this run: model, data and the
    result-changing flags. A hub set is named in its canonical form, so `org/name:en` and
    `org/name --data_config en` are the same data."""
    data, config = split_config(args.data_path, args.data_config)
    flags = {name: getattr(args, name) for name in RESULT_FLAGS}
    flags["data_config"] = config
    if args.global_batch_size:  # the accumulation follows the GPU count: the global batch is the recipe
        flags["gradient_accumulation_steps"] = None
    flags["global_batch_size"] = args.global_batch_size
    if args.sft_target != "simple_cot":  # the option only changes what simple_cot trains on
        flags["simple_cot_first_correct"] = None
    return run_identity({"model_path": args.model_path, "data_path": data}, flags)


def _make_run_args_callback(identity: dict):
    from transformers import TrainerCallback

    class RunArgsCallback(TrainerCallback):
        """Copies the run's identity (model and data sources) into every checkpoint."""

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if ckpt.is_dir():
                    write_identity(ckpt, identity)

    return RunArgsCallback()


def _make_trainer_class():
    import torch
    from transformers import Trainer

    class SFTTrainer(Trainer):
        """Trainer that also logs answer-token accuracy, tokens/s and the share of real tokens."""

        def __init__(self, *a, pad_token_id: int | None = None, original_decay: bool = False, **kw):
            self._original_decay = original_decay
            super().__init__(*a, **kw)
            self._pad_token_id = pad_token_id
            self._reset_counters()

        def _load_optimizer_and_scheduler(self, checkpoint):
            # a weights-only checkpoint has neither (under DeepSpeed transformers would insist on
            # scheduler.pt); the schedule is moved to the restored step by make_schedule_callback
            if checkpoint is not None and is_weights_only(checkpoint):
                return
            super()._load_optimizer_and_scheduler(checkpoint)

        def get_decay_parameter_names(self, model):
            if not self._original_decay:
                return super().get_decay_parameter_names(model)
            return [n for n, _ in model.named_parameters() if not any(nd in n for nd in ORIGINAL_NO_DECAY)]

        def _reset_counters(self):
            self._right = self._total = self._real = self._computed = 0
            self._t0 = time.perf_counter()

        def train(self, *a, **kw):
            self._reset_counters()
            return super().train(*a, **kw)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            # No KV cache in training: with one, transformers ignores packed position_ids and lets
            # the examples of a padding-free row attend to each other.
            inputs = {**inputs, "use_cache": False}
            loss, outputs = super().compute_loss(
                model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
            )
            if model.training:
                with torch.no_grad():
                    labels = inputs["labels"][..., 1:]
                    preds = outputs.logits[..., :-1, :].argmax(dim=-1)
                    mask = labels != -100
                    self._right += int(((preds == labels) & mask).sum())
                    self._total += int(mask.sum())
                    ids = inputs["input_ids"]
                    self._computed += ids.numel()
                    am = inputs.get("attention_mask")
                    self._real += int(am.sum()) if am is not None else ids.numel()
            return (loss, outputs) if return_outputs else loss

        def log(self, logs, start_time=None):
            if "loss" in logs and self._computed:
                counts = torch.tensor(
                    [self._right, self._total, self._real, self._computed],
                    dtype=torch.float64,
                    device=self.args.device,
                )
                counts = self.accelerator.reduce(counts, reduction="sum").tolist()
                elapsed = max(time.perf_counter() - self._t0, 1e-9)
                logs["token_accuracy"] = round(counts[0] / max(counts[1], 1), 4)
                logs["real_token_share"] = round(counts[2] / max(counts[3], 1), 4)
                logs["tokens_per_second"] = round(counts[3] / elapsed, 1)  # summed over all ranks
                logs["num_gpus"] = self.accelerator.num_processes  # for MFU per GPU (train/mfu.py)
                self._reset_counters()
            super().log(logs, start_time)

    return SFTTrainer


def _attn_implementation(requested: str) -> str:
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        import importlib.util

        if importlib.util.find_spec("flash_attn") is not None:
            return "flash_attention_2"
    return "sdpa"


def run_dir_for(args: SFTArguments) -> str:
    """<output_dir>/<experiment_name>; InputError (one line) unless the name is a plain one, so a run
    never writes outside --output_dir (checked before the run folder's lock is taken)."""
    name = args.experiment_name
    if (
        not name.strip()
        or name.strip() in (".", "..")
        or any(c in name for c in ("/", "\\", "\0"))
        or os.sep in name
    ):
        raise InputError(
            f"--experiment_name {name!r} must be a plain name (no path parts): it names the run folder "
            "inside --output_dir"
        )
    return os.path.join(args.output_dir, name)


# one run per run folder (lock.py)
@locked("sft", lambda args, *_, **__: run_dir_for(args))
def train(args: SFTArguments, callbacks: list | None = None) -> str:
    """Run SFT; return the folder of the final model. `callbacks`: extra `TrainerCallback`s."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments, set_seed

    # 1. Flags and data first: bad ones fail here, before any model is loaded.
    check_flags(args)
    batch_line = set_global_batch(args)
    chats = load_sft_chats(args.data_path, args.data_config, args.sft_target, args.simple_cot_first_correct)
    check_training_flags(model_paths=[("--model_path", args.model_path)])
    run_dir = run_dir_for(args)
    log_dir = os.path.join(args.log_dir, args.experiment_name)

    tokenizer = load_pretrained(
        AutoTokenizer, args.model_path, "model", trust_remote_code=args.trust_remote_code
    )
    added_tokens = ensure_chat_template(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    examples, stats = tokenize_chats(tokenizer, chats, args.max_seq_len)
    log.info("SFT data %s (%s): %s", args.data_path, args.sft_target, stats.summary(args.max_seq_len))
    check_one_step(
        len(examples), args.train_bsz_per_gpu, args.gradient_accumulation_steps, world_size(), "examples"
    )
    train_dataset = Dataset.from_list(examples)

    # 2. Trainer arguments before the model: under `accelerate launch` with DeepSpeed ZeRO-3 they
    # register the DeepSpeed config, so from_pretrained loads the weights already partitioned.
    os.makedirs(log_dir, exist_ok=True)
    if args.report_to == "wandb":
        setup_wandb("wandb", TrackingArguments(args.wandb_project, args.wandb_entity), run_dir=log_dir)
    elif args.report_to == "tensorboard":
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", os.path.join(log_dir, "tensorboard"))
    cuda = torch.cuda.is_available()
    bf16 = args.bf16 if args.bf16 is not None else bool(cuda and torch.cuda.is_bf16_supported())
    attn = _attn_implementation(args.attn_implementation)
    targs = TrainingArguments(
        output_dir=run_dir,
        run_name=args.experiment_name,
        per_device_train_batch_size=args.train_bsz_per_gpu,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        lr_scheduler_type="cosine",
        warmup_steps=args.warmup_rates,  # a float in [0, 1) is a ratio of the total steps
        num_train_epochs=args.n_epochs,
        max_steps=args.max_steps,
        optim="adamw_torch",
        max_grad_norm=args.max_grad_norm,
        seed=args.seed,
        data_seed=args.seed,
        bf16=bf16,
        activation_checkpointing=args.gradient_checkpointing,
        save_strategy="steps" if args.save_steps > 0 else "epoch",
        save_steps=args.save_steps if args.save_steps > 0 else 500,
        save_total_limit=args.max_ckpts if args.max_ckpts > 0 else None,
        logging_steps=args.logging_steps,
        logging_first_step=True,
        report_to=[] if args.report_to == "none" else [args.report_to],
        remove_unused_columns=False,
        dataloader_drop_last=False,
        use_cpu=not cuda,
        save_only_model=args.save_only_model,
    )
    set_seed(args.seed)
    if targs.process_index == 0:
        log.info(batch_line)

    # Resume (the default when a checkpoint exists) only from a checkpoint of the same model and data.
    identity = sft_identity(args)
    resume_from = resume_point(run_dir, args.resume, identity, "use another --experiment_name")
    weights_only = bool(resume_from) and is_weights_only(resume_from)
    if weights_only:
        log.warning(resume_note(resume_from))
    if targs.process_index == 0:
        write_run_args(Path(run_dir) / RUN_ARGS_FILE, identity, args)

    # 3. The model (from a weights-only checkpoint's own weights when resuming from one).
    model = load_pretrained(
        AutoModelForCausalLM,
        resume_from if weights_only else args.model_path,
        "model",
        dtype=torch.float32,
        attn_implementation=attn,
        trust_remote_code=args.trust_remote_code,
    )
    if added_tokens:
        model.resize_token_embeddings(len(tokenizer))
        log.info("added template tokens %s to the vocabulary", added_tokens)
    # Generation must stop at the template's end-of-turn token: add it to the model's stop ids.
    gen = model.generation_config
    if gen is not None:
        stop = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
        stop = {i for i in stop if i is not None} | end_of_turn_ids(tokenizer)
        gen.eos_token_id = next(iter(stop)) if len(stop) == 1 else sorted(stop)

    SFTTrainer = _make_trainer_class()
    trainer = SFTTrainer(
        model=model,
        args=targs,
        train_dataset=train_dataset,
        data_collator=make_collator(
            args.packing, tokenizer.pad_token_id, flash_attn=attn == "flash_attention_2"
        ),
        processing_class=tokenizer,
        pad_token_id=tokenizer.pad_token_id,
        original_decay=args.weight_decay_on_norms,
        callbacks=[
            *(callbacks or []),
            *([sigterm_callback(args.sigterm_grace)] if args.sigterm_grace > 0 else []),
            _make_run_args_callback(identity),
            make_schedule_callback(),
            make_plot_callback(run_dir, SFT_CURVES),
        ],
    )
    if args.loss_average == "micro_batch":
        trainer.model_accepts_loss_kwargs = False  # each micro-batch's own mean, / accumulation
    with disk_full_stops_cleanly(run_dir, main_process=trainer.is_world_process_zero()):
        with skip_engine_load() if weights_only else contextlib.nullcontext():
            trainer.train(resume_from_checkpoint=resume_from)
        # 4. Final model: a plain HF folder (weights gathered from ZeRO-3 shards) with the tokenizer.
        save_final_policy(trainer, run_dir)
    if trainer.is_world_process_zero():
        log.info("final model saved in %s", run_dir)
    return run_dir


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if print_help_if_asked(argv, make_parser, make_full_parser):
        return 0
    setup_training_logging()
    args = parse_args(argv)
    log.info("args: %s", asdict(args))
    train(args)
    end_distributed()  # a finished distributed run closes its process group before exiting
    return 0
