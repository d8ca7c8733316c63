"""Stage 3, SFT: teach a chat model to write `## Thinking` then `## Final Response` (SFT_stage1.py).

The training loop is transformers' `Trainer`; this module only maps the original script's flags
onto it and adds what the paper's recipe needs:

- `SFTArguments`: the original flags with their defaults (3 epochs, lr 5e-6, batch 2 x 8
  accumulation per GPU, cosine schedule with 5% warmup, weight decay 0.1, AdamW), plus a few
  extras (`--packing`, `--resume`, `--max_steps`, `--report_to`, ...).
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
  `--model_path`, `--data_path` and `--data_config`: they are written to `run_args.json` in the
  run folder when the run starts and copied into every checkpoint; a mismatch is a one-line
  error (exit 2) suggesting `--resume False` or another `--experiment_name`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from huatuo_o1.io import RUN_ARGS_FILE, InputError, check_resumable
from huatuo_o1.lock import locked
from huatuo_o1.sft_data import (
    end_of_turn_ids,
    ensure_chat_template,
    load_sft_records,
    make_collator,
    tokenize_records,
)

log = logging.getLogger("sft")


@dataclass
class SFTArguments:
    """Flags of SFT_stage1.py (the original's names and defaults first, then our additions)."""

    model_path: str = field(metadata={"help": "HF model folder or hub name of the chat model to fine-tune."})
    data_path: str = field(
        metadata={
            "help": "SFT data: a JSON/JSONL file of {Question, Complex_CoT, Response} records "
            "(CONTRACTS §3), a `datasets` folder, or a hub dataset name "
            "(e.g. FreedomIntelligence/medical-o1-reasoning-SFT)."
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
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay (not on biases/norms)."})
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
            "help": "Configuration of a hub dataset (the published set: en, zh, en_mix, zh_mix; default en)."
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
    resume: bool | None = field(
        default=None,
        metadata={
            "help": "Continue from the newest complete checkpoint in <output_dir>/<experiment_name> "
            "(optimizer, scheduler, data position). Default: resume when one exists; False: start over.",
            "nargs": "?",
            "const": True,
        },
    )
    max_steps: int = field(
        default=-1, metadata={"help": "Stop after this many optimizer steps (-1: n_epochs)."}
    )
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
            "help": "none, wandb (offline unless WANDB_MODE says otherwise, as the original) or tensorboard."
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


def parse_args(argv: list[str] | None = None) -> SFTArguments:
    from transformers import HfArgumentParser

    parser = HfArgumentParser(SFTArguments, description="SFT stage 1 of HuatuoGPT-o1.")
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    if args.report_to not in ("none", "wandb", "tensorboard"):
        parser.error(f"--report_to must be none, wandb or tensorboard, got {args.report_to!r}")
    return args


def newest_complete_checkpoint(run_dir: str | Path) -> str | None:
    """The highest `checkpoint-N` holding trainer_state.json (written last, so the save finished)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    ckpts = []
    for p in run_dir.glob("checkpoint-*"):
        suffix = p.name.split("-", 1)[1]
        if p.is_dir() and suffix.isdigit() and (p / "trainer_state.json").exists():
            ckpts.append((int(suffix), p))
    return str(max(ckpts)[1]) if ckpts else None


def _source_id(path: str) -> str:
    """A stable name for a model/data source: the absolute path of a local one, else the hub name."""
    return os.path.abspath(os.path.expanduser(path)) if os.path.exists(os.path.expanduser(path)) else path


def run_identity(args: SFTArguments) -> dict:
    """What a checkpoint must have been trained from to be resumed by this run."""
    return {
        "model_path": _source_id(args.model_path),
        "data_path": _source_id(args.data_path),
        "data_config": args.data_config,
    }


def _make_run_args_callback(identity: dict):
    from transformers import TrainerCallback

    from huatuo_o1.io import atomic_write_json

    class RunArgsCallback(TrainerCallback):
        """Copies the run's identity (model and data sources) into every checkpoint."""

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if ckpt.is_dir():
                    atomic_write_json(ckpt / RUN_ARGS_FILE, identity)

    return RunArgsCallback()


def _make_trainer_class():
    import torch
    from transformers import Trainer

    class SFTTrainer(Trainer):
        """Trainer that also logs answer-token accuracy, tokens/s and the share of real tokens."""

        def __init__(self, *a, pad_token_id: int | None = None, **kw):
            super().__init__(*a, **kw)
            self._pad_token_id = pad_token_id
            self._reset_counters()

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
                logs["tokens_per_second"] = round(counts[3] / elapsed, 1)
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


# one run per run folder (lock.py)
@locked("sft", lambda args, *_, **__: os.path.join(args.output_dir, args.experiment_name))
def train(args: SFTArguments, callbacks: list | None = None) -> str:
    """Run SFT; return the folder of the final model. `callbacks`: extra `TrainerCallback`s."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments, set_seed

    # 1. Data first: bad data fails here, before any model is loaded.
    records = load_sft_records(args.data_path, args.data_config)
    run_dir = os.path.join(args.output_dir, args.experiment_name)
    log_dir = os.path.join(args.log_dir, args.experiment_name)

    tokenizer = AutoTokenizer.from_pretrained(args.model_path)
    added_tokens = ensure_chat_template(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    examples, stats = tokenize_records(tokenizer, records, args.max_seq_len)
    log.info("SFT data %s: %s", args.data_path, stats.summary(args.max_seq_len))
    train_dataset = Dataset.from_list(examples)

    # 2. Trainer arguments before the model: under `accelerate launch` with DeepSpeed ZeRO-3 they
    # register the DeepSpeed config, so from_pretrained loads the weights already partitioned.
    os.makedirs(log_dir, exist_ok=True)
    if args.report_to == "wandb":
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_PROJECT", args.experiment_name)
        os.environ.setdefault("WANDB_DIR", log_dir)
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
    )
    set_seed(args.seed)

    # Resume (the default when a checkpoint exists) only from a checkpoint of the same model and data.
    identity = run_identity(args)
    resume_from = None
    if args.resume is not False:
        resume_from = newest_complete_checkpoint(run_dir)
        if resume_from:
            check_resumable(resume_from, run_dir, identity, "use another --experiment_name")
            log.info("resuming from %s", resume_from)
        elif args.resume:
            log.warning("--resume: no complete checkpoint in %s, starting from scratch", run_dir)
    if targs.process_index == 0:
        from huatuo_o1.io import atomic_write_json

        atomic_write_json(Path(run_dir) / RUN_ARGS_FILE, identity)

    # 3. The model.
    model = AutoModelForCausalLM.from_pretrained(
        args.model_path, dtype=torch.float32, attn_implementation=attn
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
        callbacks=[*(callbacks or []), _make_run_args_callback(identity)],
    )
    trainer.train(resume_from_checkpoint=resume_from)

    # 4. Final model: a plain HF folder (weights gathered from ZeRO-3 shards) with the tokenizer.
    trainer.save_model(run_dir)
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(run_dir)
        log.info("final model saved in %s", run_dir)
    return run_dir


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    log.info("args: %s", asdict(args))
    if args.max_seq_len < 2:
        raise InputError(f"--max_seq_len must be >= 2, got {args.max_seq_len}")
    train(args)
    return 0
