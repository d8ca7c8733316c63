"""DPO preference pairs from the SFT model's own samples (scripts/make_dpo_pairs.py).

The paper's DPO ablation (App. F): sample n = 5 responses per verifiable problem from the SFT
model, pair one the verifier judges correct (chosen) with one it judges incorrect (rejected), and
drop a question without such a pair. Steps:

1. Problems: docs/data_formats.md §2 records (`Open-ended Verifiable Question`, `Ground-True
   Answer`); rows without both are skipped and counted. The prompt is the question as the one user
   turn of the model's chat template, as RL prompts it.
2. Sampling through the generation backends evaluation uses (huatuo_o1.generation): `--backend hf`
   (transformers in-process) or `--backend server` (an OpenAI-compatible completions server,
   e.g. SGLang or vLLM serving the SFT model). Each finished question's samples are saved at once
   under `<output>.samples/<settings hash>/`, so a rerun never samples a finished question again
   (another model or other sampling settings get their own folder).
3. Verdicts with RL's reward rule (huatuo_o1.rl.rewards.score_responses and the verifier chosen by
   `--verifier`, `--sft_target` included): a response is correct when it is well-formed and the
   verifier's P(correct) is above `--reward_threshold`; a malformed one counts as incorrect.
4. Pairs (`make_pair`): the first correct sample is chosen, the first incorrect one rejected.
   A question whose samples are all correct or all incorrect gives no pair; an empty sample (a
   request the server rejected) is left out, so a question may have fewer than n samples.
5. Output: a JSONL file of {prompt, chosen, rejected, reference, n_samples, n_correct} (trl's
   DPO field names, contract.DPO_*), and `<output>.summary.json` with the counts.

"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from huatuo_o1.cli import add_dataclass_args
from huatuo_o1.contract import (
    DPO_CHOSEN,
    DPO_PROMPT,
    DPO_REJECTED,
    GROUND_TRUTH,
    OPEN_QUESTION,
    load_dataset_records,
)
from huatuo_o1.formats import DEFAULT_SFT_TARGET, SFT_TARGET_HELP, SFT_TARGETS
from huatuo_o1.io import InputError, ItemStore, atomic_write_json, atomic_write_jsonl, content_key
from huatuo_o1.prompts import STRUCTURED_OUTPUTS
from huatuo_o1.rl.rewards import (
    DEFAULT_REWARD_THRESHOLD,
    VERIFIER_KINDS,
    RewardConfig,
    Verifier,
    score_responses,
)

log = logging.getLogger(__name__)


@dataclass
class DPOPairsArguments:
    """Flags of scripts/make_dpo_pairs.py."""

    model_path: str = field(
        metadata={"help": "The SFT model: HF folder (its tokenizer's chat template is used)."}
    )
    data_path: str = field(
        metadata={
            "help": "Verifiable problems (docs/data_formats.md §2): JSON/JSONL file or hub name[:config]."
        }
    )
    output: str = field(
        metadata={"help": "The pairs file to write (JSONL); counts go to <output>.summary.json."}
    )
    n_samples: int = field(default=5, metadata={"help": "Responses sampled per question (the paper: 5)."})
    backend: str = field(
        default="hf", metadata={"help": "hf (transformers in-process) or server (OpenAI-compatible)."}
    )
    api_url: str | None = field(
        default=None, metadata={"help": "Server base URL (--backend server), e.g. http://127.0.0.1:30000/v1."}
    )
    served_model_name: str | None = field(default=None, metadata={"help": "Model name sent to the server."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=0.9, metadata={"help": "Nucleus sampling."})
    max_new_tokens: int = field(default=2000, metadata={"help": "Longest response, in tokens."})
    batch_size: int = field(
        default=8, metadata={"help": "hf: prompts per generate() call; server: requests in flight."}
    )
    seed: int | None = field(default=42, metadata={"help": "Sampling seed (None: fresh randomness)."})
    limit: int = field(default=-1, metadata={"help": "Only the first N questions (-1: all)."})
    sft_target: str = field(default=DEFAULT_SFT_TARGET, metadata={"help": SFT_TARGET_HELP})
    verifier: str = field(
        default="classifier",
        metadata={"help": "Verifier: classifier (--reward_model_path), llm (--judge_model) or exact."},
    )
    reward_model_path: str | None = field(
        default=None, metadata={"help": "The classifier verifier's folder or hub name."}
    )
    judge_model: str | None = field(default=None, metadata={"help": "LLM judge model name (--verifier llm)."})
    judge_api_url: str | None = field(
        default=None, metadata={"help": "OpenAI-compatible base URL of the judge."}
    )
    reward_threshold: float = field(
        default=DEFAULT_REWARD_THRESHOLD,
        metadata={"help": "Correct when the verifier's P(True) is above this."},
    )
    structured_outputs: str = field(
        default="auto",
        metadata={
            "help": "The LLM judge's True/False as a strict JSON schema (--verifier llm): auto falls back "
            "to free form where the endpoint refuses schemas, on never falls back, off sends none."
        },
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow model code from the model's repository."}
    )


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="DPO pairs: sample n responses per question from the SFT model, verify them, pair "
        "a correct with an incorrect one (docs/ablations.md).",
    )
    add_dataclass_args(p, DPOPairsArguments, choices={"backend": ("hf", "server"), "sft_target": SFT_TARGETS,
                                                       "verifier": VERIFIER_KINDS,
                                                       "structured_outputs": STRUCTURED_OUTPUTS})  # fmt: skip
    return p


REQUIRED = ("model_path", "data_path", "output")


# ---------------------------------------------------------------------------------------------
# Pairs


def make_pair(samples: list[str], correct: list[bool]) -> tuple[str, str] | None:
    """(chosen, rejected): the first correct and the first incorrect sample; None without both."""
    chosen = next((s for s, ok in zip(samples, correct, strict=True) if ok), None)
    rejected = next((s for s, ok in zip(samples, correct, strict=True) if not ok), None)
    return None if chosen is None or rejected is None else (chosen, rejected)


def build_pairs(
    questions: list[dict],
    samples: dict[str, list[str]],
    verifier: Verifier,
    cfg: RewardConfig,
    n: int,
    verdicts_store: ItemStore | None = None,
) -> tuple[list[dict], dict]:
    """The pairs of the sampled questions and the counts (see the module docstring, steps 3-4).
    With `verdicts_store`, each question's verdicts are saved once made and reused while its samples
    are the same, so a rerun never asks the verifier (an LLM judge: paid) again."""
    counts: Counter = Counter()
    pairs = []
    for q in questions:
        outs = [o for o in samples.get(q["id"], []) if o.strip()]
        if q["id"] not in samples:
            counts["not_sampled"] += 1
            continue
        counts["sampled"] += 1
        if len(outs) < n:
            counts["fewer_than_n_samples"] += 1
        if not outs:
            counts["dropped_no_sample"] += 1
            continue
        verdicts = _verdicts(q, outs, verifier, cfg, verdicts_store)
        pair = make_pair(outs, verdicts)
        if pair is None:
            counts["dropped_all_correct" if all(verdicts) else "dropped_all_incorrect"] += 1
            continue
        pairs.append(
            {
                DPO_PROMPT: q["question"],
                DPO_CHOSEN: pair[0],
                DPO_REJECTED: pair[1],
                "reference": q["reference"],
                "n_samples": len(outs),
                "n_correct": sum(verdicts),
            }  # fmt: skip
        )
    counts["pairs"] = len(pairs)
    return pairs, dict(counts)


def _verdicts(
    q: dict, outs: list[str], verifier: Verifier, cfg: RewardConfig, store: ItemStore | None
) -> list:
    """Whether each sample is correct: from the store when made from these very samples, else judged
    now (and saved)."""
    made_from = content_key(q["reference"], outs)
    if store is not None and store.has(q["id"]):
        saved = store.load(q["id"])
        if saved.get("made_from") == made_from:
            return saved["correct"]
    correct = score_responses(outs, [q["reference"]] * len(outs), verifier, cfg).correct
    if store is not None:
        store.save(q["id"], {"made_from": made_from, "correct": list(correct)})
    return correct


def verdicts_folder(args: DPOPairsArguments) -> Path:
    """Where the verdicts are cached: beside the samples, one folder per verifier and reward rule."""
    settings = [args.verifier, args.reward_model_path, args.judge_model, args.judge_api_url,
                args.reward_threshold, args.sft_target]  # fmt: skip
    key = hashlib.sha1(json.dumps(settings).encode()).hexdigest()[:10]
    return samples_folder(args) / "verdicts" / key


def load_questions(data_path: str, limit: int = -1) -> tuple[list[dict], int]:
    """[{id, question, reference}] of the §2 rows with both fields; and how many rows were skipped."""
    rows = load_dataset_records(data_path, what="verifiable problems")
    out, skipped = [], 0
    for r in rows:
        q, a = (r.get(OPEN_QUESTION), r.get(GROUND_TRUTH)) if isinstance(r, dict) else (None, None)
        if not isinstance(q, str) or not q.strip() or not isinstance(a, str) or not a.strip():
            skipped += 1
            continue
        out.append({"id": content_key(q, a), "question": q, "reference": a})
    if not out:
        raise InputError(f"{data_path}: no row has both {OPEN_QUESTION!r} and {GROUND_TRUTH!r}")
    return (out[:limit] if limit >= 0 else out), skipped


# ---------------------------------------------------------------------------------------------
# Sampling through the generation backends (the ones evaluation uses)


def sample_all(args: DPOPairsArguments, questions: list[dict], store: ItemStore) -> None:
    """Sample the questions the store has not finished (each saved as soon as it is done)."""
    from huatuo_o1.generation import GenerationSettings, PromptBuilder, load_tokenizer

    tok = load_tokenizer(args.model_path, args.trust_remote_code)
    builder = PromptBuilder(tok)
    work = [{"item_id": q["id"], "prompt": builder.template(q["question"]), "user_prompt": q["question"]}
            for q in questions]  # fmt: skip
    gen = GenerationSettings(
        temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens, seed=args.seed,
        n_samples=args.n_samples, batch_size=args.batch_size, show_progress=sys.stderr.isatty(),
    )  # fmt: skip
    if args.backend == "hf":
        from huatuo_o1.generation import HFGenerator, run_hf

        if args.seed is not None:
            from transformers import set_seed

            set_seed(args.seed)
        run_hf(work, store, HFGenerator(args.model_path, tok, trust_remote_code=args.trust_remote_code), gen)
        return
    from huatuo_o1.generation import run_server
    from huatuo_o1.llm import LLMClient, normalize_base_url

    client = LLMClient(
        args.served_model_name or args.model_path, api_url=normalize_base_url(args.api_url),
        max_concurrency=args.batch_size, env_key=False, strict_replies=False,
    )  # fmt: skip
    report = run_server(work, store, client, gen)
    if report.stopped_reason:
        log.warning("sampling stopped early: %s", report.stopped_reason)


def samples_folder(args: DPOPairsArguments) -> Path:
    """Where the samples are cached: one folder per model and sampling settings."""
    settings = [str(Path(args.model_path).resolve()) if Path(args.model_path).exists() else args.model_path,
                args.backend, args.n_samples, args.temperature, args.top_p, args.max_new_tokens, args.seed]  # fmt: skip
    key = hashlib.sha1(json.dumps(settings).encode()).hexdigest()[:10]
    return Path(f"{args.output}.samples") / key


def check_args(args: DPOPairsArguments) -> None:
    if args.n_samples < 2:
        raise InputError(f"--n_samples must be at least 2 to find a pair, got {args.n_samples}")
    if args.backend == "server" and not args.api_url:
        raise InputError("--backend server needs --api_url")
    if args.verifier == "classifier" and not args.reward_model_path:
        raise InputError("--verifier classifier needs --reward_model_path")
    if args.batch_size < 1 or args.max_new_tokens < 1:
        raise InputError("--batch_size and --max_new_tokens must be at least 1")


def main(argv: list[str] | None = None, verifier: Verifier | None = None) -> int:
    """Sample, verify, pair; `verifier` replaces the one the flags name (tests)."""
    from huatuo_o1.rl.rewards import VerifierSettings, build_verifier

    parser = make_parser()
    ns = parser.parse_args(argv)
    missing = [f"--{name}" for name in REQUIRED if getattr(ns, name) is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    args = DPOPairsArguments(**vars(ns))
    check_args(args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    questions, skipped = load_questions(args.data_path, args.limit)
    store = ItemStore(samples_folder(args))
    sample_all(args, questions, store)
    samples = {r["item_id"]: r.get("outputs") or [] for r in store.iter_records()}
    if verifier is None:
        settings = VerifierSettings(
            kind=args.verifier, reward_model_path=args.reward_model_path, judge_model=args.judge_model,
            api_url=args.judge_api_url, trust_remote_code=args.trust_remote_code,
            structured_outputs=args.structured_outputs,
        )  # fmt: skip
        verifier = build_verifier(settings)
    cfg = RewardConfig(reward_threshold=args.reward_threshold, sft_target=args.sft_target)
    pairs, counts = build_pairs(
        questions, samples, verifier, cfg, args.n_samples, ItemStore(verdicts_folder(args))
    )
    counts = {"questions": len(questions), "skipped_rows": skipped, **counts}
    atomic_write_jsonl(args.output, pairs)
    atomic_write_json(
        f"{args.output}.summary.json", {**counts, "settings": {**vars(ns), "output": args.output}}
    )
    print(
        f"{len(pairs)} pairs from {len(questions)} questions -> {args.output}; counts: {json.dumps(counts)}"
    )
    return 0 if counts.get("not_sampled", 0) == 0 else 1
