"""Rollouts that do not depend on the number of processes (`--reproducible_sampling`, GRPO and RLOO).

Sampling in transformers' `generate` draws from each process's random generator, over the rows
that process holds. The same global batch split over 1 or 8 GPUs therefore samples other
completions, and a run cannot be compared with, or reproduced on, another GPU count. With this
switch each token of each completion is drawn from a number keyed by what the completion is:

  - the key of a row is (--seed, the optimizer step, the prompt's tokens, its copy number among the
    rows with the same prompt in the whole global batch, counted in process order: a group of
    `num_generations` copies holds the copy numbers 0 to num_generations - 1 however the processes
    split it), plus the position of the token in the completion;
  - the key is hashed (blake2b) to a uniform number u in [0, 1), and the token is the first one whose
    cumulative probability passes u (inverse-CDF sampling, after temperature, top-k, top-p and min-p,
    as generate would apply them): a draw from the same distribution as generate's own;
  - the processor then leaves only that token possible, so generate's own draw takes it.

The copy numbers need the prompts of every process: one gather of their hashes when a generation
starts (every process starts each generation, so the collective matches). One hash and one cumulative
sum per row and token: cheap beside the forward pass. Not with --use_vllm (vLLM samples itself).
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections import Counter

import torch
from transformers import LogitsProcessor, LogitsProcessorList
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)


def uniform(*key: int | bytes) -> float:
    """A number in [0, 1) that depends only on `key` (integers and bytes)."""
    h = hashlib.blake2b(digest_size=8)
    for part in key:
        h.update(part if isinstance(part, bytes) else struct.pack("<q", part))
    return (int.from_bytes(h.digest(), "little") >> 11) / float(1 << 53)


def prompt_digest(ids: list[int], pad_id: int | None) -> bytes:
    """The prompt's tokens without the left padding, hashed."""
    start = 0
    while pad_id is not None and start < len(ids) and ids[start] == pad_id:
        start += 1
    return hashlib.blake2b(struct.pack(f"<{len(ids) - start}q", *ids[start:]), digest_size=16).digest()


def copy_numbers(digests_per_process: list[list[bytes]], process_index: int) -> list[int]:
    """For this process's rows: how many rows with the same prompt come before it in the global batch
    (every process's rows in process order)."""
    seen: Counter = Counter()
    mine = []
    for p, digests in enumerate(digests_per_process):
        for d in digests:
            if p == process_index:
                mine.append(seen[d])
            seen[d] += 1
    return mine


def warpers(temperature: float, top_k: int | None, top_p: float | None, min_p: float | None) -> list:
    """What generate applies before sampling (its order), for the processor to draw from the same
    distribution."""
    out = []
    if temperature and temperature != 1.0:
        out.append(TemperatureLogitsWarper(temperature))
    if top_k:
        out.append(TopKLogitsWarper(top_k))
    if top_p is not None and top_p < 1.0:
        out.append(TopPLogitsWarper(top_p))
    if min_p:
        out.append(MinPLogitsWarper(min_p))
    return out


class KeyedSampler(LogitsProcessor):
    """The processor of one generate call: draws each row's token from its key (module doc)."""

    def __init__(self, seed: int, step: int, row_keys: list[tuple[bytes, int]], prompt_len: int, warp: list):
        self.seed, self.step, self.row_keys = seed, step, row_keys
        self.prompt_len, self.warp = prompt_len, warp

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for w in self.warp:
            scores = w(input_ids, scores)
        position = input_ids.shape[1] - self.prompt_len
        u = [uniform(self.seed, self.step, digest, copy, position) for digest, copy in self.row_keys]
        probs = torch.softmax(scores.float(), dim=-1)
        cdf = probs.cumsum(dim=-1)
        threshold = torch.tensor(u, dtype=cdf.dtype, device=cdf.device).unsqueeze(1) * cdf[:, -1:]
        chosen = torch.searchsorted(cdf, threshold).clamp(max=scores.shape[-1] - 1)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter(1, chosen, 0.0)


def install(trainer) -> None:
    """Make the trainer's policy sample with keyed draws (module doc): its `generate` gets a
    KeyedSampler for each call, keyed by the trainer's optimizer step."""
    from accelerate.utils import gather_object

    model = trainer.model
    args, pad_id = trainer.args, trainer.processing_class.pad_token_id
    warp = warpers(args.temperature, args.top_k, args.top_p, getattr(args, "min_p", None))
    plain_generate = model.generate

    @functools.wraps(plain_generate)
    def generate(*a, **kw):
        input_ids = kw["input_ids"] if "input_ids" in kw else a[0]
        digests = [prompt_digest(row, pad_id) for row in input_ids.tolist()]
        everyone = gather_object([digests]) if trainer.accelerator.num_processes > 1 else [digests]
        copies = copy_numbers(everyone, trainer.accelerator.process_index)
        sampler = KeyedSampler(
            args.seed,
            trainer.state.global_step,
            list(zip(digests, copies, strict=True)),
            input_ids.shape[1],
            warp,
        )
        given = kw.get("logits_processor") or []
        kw["logits_processor"] = LogitsProcessorList([*given, sampler])
        return plain_generate(*a, **kw)

    model.generate = generate
