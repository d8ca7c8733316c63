"""Train a 2-label medical verifier from the search stage's exported verdicts (docs/data_formats.md §5).

The original released a 3B verifier but no recipe. This one:

1. reads `{"response", "reference", "label"}` records (JSON or JSONL; label true/false, 1/0 or
   "True"/"False"), and holds out a seeded share for evaluation;
2. builds each input with exactly the reward's template, ids and truncation rule
   (`ClassifierVerifier.encode`: no added bos; the answer's ids are trimmed so the template tail
   and eos survive), so the verifier sees at training time what the RL reward will show it;
   the pad is a token distinct from eos (`choose_pad_token`) and the same in tokenizer and
   config, so the classifier reads its decision at the eos;
3. fine-tunes any `AutoModelForSequenceClassification` backbone with 2 labels (1 = True) with
   the HF `Trainer`;
4. on the held-out set, reports accuracy at 0.5 and at the RL reward's default threshold (0.4),
   and a threshold sweep (accuracy, precision, recall, F1), saved to `verifier_eval.json`
   next to the model (a plain HF folder the RL scripts take as `--reward_model_path`).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from huatuo_o1.cli import dataclass_parser, print_help_if_asked, setup_training_logging
from huatuo_o1.contract import VERIFIER_LABEL, VERIFIER_REFERENCE, VERIFIER_RESPONSE
from huatuo_o1.io import InputError, atomic_write_json, load_records, require_fields
from huatuo_o1.lock import locked
from huatuo_o1.models import load_pretrained
from huatuo_o1.rl.common import choose_pad_token
from huatuo_o1.rl.data import split_eval
from huatuo_o1.rl.rewards import (
    DEFAULT_REWARD_THRESHOLD,
    VERIFIER_MAX_LENGTH,
    ClassifierVerifier,
    ensure_pad_token,
)
from huatuo_o1.train.checkpoints import RUN_ARGS_FILE, resume_field, resume_point, run_identity
from huatuo_o1.train.checks import check_one_step, check_training_flags, parse_dataclasses
from huatuo_o1.train.multi_gpu import (
    end_distributed,
    global_batch_line,
    seeded_init,
    use_cpu_without_accelerator,
    world_size,
)
from huatuo_o1.train.plots import VERIFIER_CURVES, make_plot_callback
from huatuo_o1.train.run_record import TrackingArguments, setup_wandb, write_run_args

log = logging.getLogger(__name__)

_TRUE = {"true", "1", "yes", "correct"}
_FALSE = {"false", "0", "no", "incorrect"}


# Flags that change the trained verifier: a checkpoint is resumed only by a run with the same values
# (a larger --max_steps continues a run).
VERIFIER_TRAINING_FLAGS = (
    "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs",
    "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm", "optim", "seed", "bf16", "fp16",
)  # fmt: skip
VERIFIER_SCRIPT_FLAGS = ("max_length", "eval_fraction", "max_eval_samples", "dtype")


@dataclass
class VerifierScriptArguments(TrackingArguments):
    """Data, backbone and evaluation arguments of train_verifier.py."""

    data_path: str = field(
        default="data/verifier_data.json",
        metadata={
            "help": "Verifier examples (docs/data_formats.md §5): JSON/JSONL with response, reference, label."
        },
    )
    model_name_or_path: str = field(
        default="models/SmolLM2-135M-Instruct",
        metadata={
            "help": "Backbone: any model AutoModelForSequenceClassification can load (2-label head added)."
        },
    )
    max_length: int = field(
        default=VERIFIER_MAX_LENGTH, metadata={"help": "Input length cap in the verifier's tokens."}
    )
    eval_fraction: float = field(default=0.1, metadata={"help": "Share of examples held out for evaluation."})
    max_eval_samples: int = field(default=1000, metadata={"help": "At most this many held-out examples."})
    reward_threshold: float = field(
        default=DEFAULT_REWARD_THRESHOLD, metadata={"help": "The RL reward's threshold, reported too."}
    )
    dtype: str | None = field(default=None, metadata={"help": "Load dtype (float32, bfloat16, auto)."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow model code from the backbone's repository."}
    )
    resume: bool | None = resume_field()


def parse_label(value, i: int, path) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return int(value.strip().lower() in _TRUE)
    raise InputError(f"{path}: item {i} has label {value!r}; expected true/false")


def load_examples(path: str) -> list[dict]:
    records = load_records(path, what="verifier data")
    require_fields(path, records, [VERIFIER_RESPONSE, VERIFIER_REFERENCE])
    out = []
    for i, r in enumerate(records, 1):
        if VERIFIER_LABEL not in r:
            raise InputError(f"{path}: item {i} lacks field {VERIFIER_LABEL!r}")
        out.append(
            {
                "response": str(r[VERIFIER_RESPONSE]),
                "reference": str(r[VERIFIER_REFERENCE]),
                "label": parse_label(r[VERIFIER_LABEL], i, path),
            }
        )
    return out


def threshold_sweep(probs: list[float], labels: list[int], thresholds=None) -> list[dict]:
    """Accuracy, precision, recall and F1 of `P(True) > t` for each threshold t."""
    thresholds = thresholds or [round(0.05 * k, 2) for k in range(1, 20)]
    rows = []
    for t in thresholds:
        pred = [p > t for p in probs]
        tp = sum(1 for p, y in zip(pred, labels, strict=True) if p and y)
        fp = sum(1 for p, y in zip(pred, labels, strict=True) if p and not y)
        fn = sum(1 for p, y in zip(pred, labels, strict=True) if not p and y)
        acc = sum(1 for p, y in zip(pred, labels, strict=True) if p == bool(y)) / max(len(labels), 1)
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        rows.append({"threshold": t, "accuracy": acc, "precision": prec, "recall": rec, "f1": f1})
    return rows


def evaluate(
    verifier: ClassifierVerifier, examples: list[dict], reward_threshold: float = DEFAULT_REWARD_THRESHOLD
) -> dict:
    probs = verifier.probabilities([e["response"] for e in examples], [e["reference"] for e in examples])
    labels = [e["label"] for e in examples]
    sweep = threshold_sweep(probs, labels)
    at = {row["threshold"]: row for row in threshold_sweep(probs, labels, [0.5, reward_threshold])}
    best = max(sweep, key=lambda r: (r["accuracy"], -abs(r["threshold"] - 0.5)))
    return {
        "n": len(examples),
        "accuracy@0.5": at[0.5]["accuracy"],
        f"accuracy@{reward_threshold}": at[reward_threshold]["accuracy"],
        "best_threshold": best["threshold"],
        "best_accuracy": best["accuracy"],
        "sweep": sweep,
    }


# one run per output folder (lock.py)
@locked("train_verifier", lambda script_args, training_args: training_args.output_dir)
def train_verifier(script_args: VerifierScriptArguments, training_args) -> dict:
    """Fine-tune, save the verifier to output_dir, and return (and save) the held-out report."""
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
    )

    check_training_flags(
        batch_size=("--per_device_train_batch_size", training_args.per_device_train_batch_size),
        accumulation=("--gradient_accumulation_steps", training_args.gradient_accumulation_steps),
        learning_rate=("--learning_rate", training_args.learning_rate),
        warmup=("--warmup_steps", training_args.warmup_steps),
        seed=("--seed", training_args.seed),
        positive=[("--num_train_epochs", training_args.num_train_epochs)],
    )
    if training_args.process_index == 0:
        log.info(
            global_batch_line(
                training_args.per_device_train_batch_size,
                training_args.gradient_accumulation_steps,
                world_size(),
            )
        )
    examples = load_examples(script_args.data_path)
    if len({e["label"] for e in examples}) < 2:
        raise InputError(f"{script_args.data_path}: needs both true and false examples")
    train, held_out = split_eval(
        examples, training_args.seed, script_args.eval_fraction, script_args.max_eval_samples
    )
    check_training_flags(model_paths=[("--model_name_or_path", script_args.model_name_or_path)])
    check_one_step(
        len(train), training_args.per_device_train_batch_size, training_args.gradient_accumulation_steps,
        world_size(), "examples",
    )  # fmt: skip

    dtype = script_args.dtype if script_args.dtype in (None, "auto") else getattr(torch, script_args.dtype)
    path = script_args.model_name_or_path
    remote = {"trust_remote_code": script_args.trust_remote_code}
    tok = load_pretrained(AutoTokenizer, path, "backbone", **remote)
    model, info = load_pretrained(
        AutoModelForSequenceClassification, path, "backbone", num_labels=2,
        id2label={0: "False", 1: "True"}, label2id={"False": 0, "True": 1}, dtype=dtype,
        output_loading_info=True, **remote,
    )  # fmt: skip
    # the new 2-label head: the same start for the same --seed under ZeRO-3, ZeRO-2 and no DeepSpeed
    seeded_init(model, info.get("missing_keys") or [], training_args.seed)
    # A pad distinct from eos (and bos), the same in tokenizer and config: the classifier then
    # reads its decision at the template's eos, whatever the batch.
    if tok.eos_token is None:
        raise InputError(f"backbone {path!r}: its tokenizer has no eos token, which the template needs")
    if choose_pad_token(tok, getattr(model, "generation_config", None)):
        model.resize_token_embeddings(len(tok))
    ensure_pad_token(tok, model)
    verifier = ClassifierVerifier(model, tok, max_length=script_args.max_length)

    def encode(rows):
        ids = verifier.encode([r["response"] for r in rows], [r["reference"] for r in rows])
        return Dataset.from_dict(
            {
                "input_ids": ids,
                "attention_mask": [[1] * len(x) for x in ids],
                "labels": [r["label"] for r in rows],
            }
        )

    out = Path(training_args.output_dir)
    identity = run_identity(
        {"model_name_or_path": script_args.model_name_or_path, "data_path": script_args.data_path},
        {
            **{name: getattr(training_args, name, None) for name in VERIFIER_TRAINING_FLAGS},
            **{name: getattr(script_args, name) for name in VERIFIER_SCRIPT_FLAGS},
        },
    )
    resume_from = resume_point(out, script_args.resume, identity, "use another --output_dir")
    setup_wandb(training_args.report_to, script_args, run_dir=out)
    if training_args.process_index == 0:
        write_run_args(out / RUN_ARGS_FILE, identity, script_args, training_args)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=encode(train),
        eval_dataset=encode(held_out) if held_out else None,
        data_collator=DataCollatorWithPadding(tok),
        processing_class=tok,
        callbacks=[make_plot_callback(out, VERIFIER_CURVES)],
    )
    trainer.train(resume_from_checkpoint=resume_from)
    trainer.save_model(str(out))
    model.eval()
    report = evaluate(verifier, held_out, script_args.reward_threshold) if held_out else {"n": 0}
    report["n_train"] = len(train)
    if trainer.is_world_process_zero():
        atomic_write_json(out / "verifier_eval.json", report)
        log.info(
            "held-out verifier report: %s", json.dumps({k: v for k, v in report.items() if k != "sweep"})
        )
    return report


# ---------------------------------------------------------------------------------------------
# Command line: train_verifier.py

EPILOG = "Also every transformers TrainingArguments flag (--output_dir, --num_train_epochs, --learning_rate, ...): --help_all lists them."


def make_parser():
    """The script's own flags, for --help without importing transformers."""
    return dataclass_parser(__doc__.split("\n\n")[0], VerifierScriptArguments, epilog=EPILOG)


def make_full_parser():
    """HfArgumentParser over our flags and transformers' TrainingArguments (use_cpu turned on where
    no accelerator is, so a multi-process CPU launch counts its processes)."""
    from transformers import HfArgumentParser

    return HfArgumentParser((VerifierScriptArguments, _training_arguments_class()))


def _training_arguments_class():
    """transformers' TrainingArguments with use_cpu set where no accelerator is (built on first use,
    so --help imports no transformers; a module attribute, so the Trainer can pickle it)."""
    cls = globals().get("VerifierTrainingArguments")
    if cls is None:
        from transformers import TrainingArguments

        @dataclass
        class VerifierTrainingArguments(TrainingArguments):
            def __post_init__(self):
                use_cpu_without_accelerator(self)
                super().__post_init__()

        VerifierTrainingArguments.__qualname__ = "VerifierTrainingArguments"
        cls = globals()["VerifierTrainingArguments"] = VerifierTrainingArguments
    return cls


def __getattr__(name: str):
    if name == "VerifierTrainingArguments":  # unpickling training arguments in a fresh process
        return _training_arguments_class()
    raise AttributeError(name)


def parse_args(argv: list[str] | None = None):
    """(script_args, training_args); unknown flags: argparse usage and exit 2."""
    return tuple(parse_dataclasses(make_full_parser(), argv))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if print_help_if_asked(argv, make_parser, make_full_parser):
        return 0
    setup_training_logging()
    script_args, training_args = parse_args(argv)
    report = train_verifier(script_args, training_args)
    summary = {k: v for k, v in report.items() if k != "sweep"}
    print(f"verifier saved to {training_args.output_dir}; held-out: {summary}")
    end_distributed()  # a finished distributed run closes its process group before exiting
    return 0
