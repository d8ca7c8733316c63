"""What padding-free packing costs without flash-attn: packed rows under sdpa vs the original padded batches.

SFT's `--packing` concatenates the examples of a micro-batch into one row with per-example
position ids (`DataCollatorWithFlattening`). With flash-attn, transformers passes the example
boundaries to the varlen kernel, which computes attention per example (about sum(l_i^2)/2 query-key
pairs, causal half only). Without it (`--attn_implementation sdpa` or `eager`, or `auto` with no
flash-attn installed), transformers 5.23 finds the boundaries from the position ids and builds a
dense block-diagonal causal mask of L x L for the row (L = sum l_i): the examples stay isolated
(checked below, per-example losses equal each example run alone), but a masked kernel computes
every one of the L^2 pairs. The original's padded batches under sdpa compute B x max(l_i)^2 pairs
and their linear layers run on the padding too.

Timed here: forward+backward of a small random Llama on CPU (micro-batch 2 as SFT, lognormal
lengths median 700 capped at 2048, the set bench_sft_packing.py assumes), real tokens/s of
(a) packed rows under sdpa (users without flash-attn) vs (b) the original's padded batches under
sdpa (baseline), plus (c) each example alone (the attention work flash-attn's varlen kernel does)
for reference. A computed estimate for Llama-3.1-8B follows (FLOPs, not measured): the tiny model's
attention is a much larger share of its compute than an 8B model's.

    .venv/bin/python bench/bench_packing_attn.py [--pairs 12 --repeats 2 --threads 1]
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from huatuo_o1.train.sft_data import IGNORE_INDEX, make_collator


def lengths(n: int, seed: int, median: float = 700, sigma: float = 0.5, cap: int = 2048) -> list[int]:
    rng = random.Random(seed)
    return [int(min(cap, max(64, rng.lognormvariate(0.0, sigma) * median))) for _ in range(n)]


def build_model(hidden: int, layers: int, vocab: int, attn: str, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=hidden // 64,
        max_position_embeddings=8192,
        use_cache=False,
    )
    cfg._attn_implementation = attn
    return LlamaForCausalLM(cfg).float()


def examples_of(lens: list[int], vocab: int, seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lens:
        ids = torch.randint(3, vocab, (n,), generator=g).tolist()
        labels = [IGNORE_INDEX] * (n // 4) + ids[n // 4 :]  # prompt not learnt, as in SFT
        out.append({"input_ids": ids, "labels": labels})
    return out


def per_example_losses(model, examples: list[dict], packed: bool) -> list[float]:
    """Sum of token losses of each example: from one packed row, or from each example alone."""
    ce = torch.nn.CrossEntropyLoss(reduction="none", ignore_index=IGNORE_INDEX)
    if packed:
        batch = make_collator(True, 0)(examples)
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        tok = ce(logits[:-1].float(), batch["labels"][0, 1:])
        out, off = [], 0
        for ex in examples:
            n = len(ex["input_ids"])
            out.append(float(tok[off : off + n - 1].sum()))  # the row's boundary token is masked
            off += n
        return out
    out = []
    for ex in examples:
        logits = model(input_ids=torch.tensor([ex["input_ids"]])).logits[0]
        out.append(float(ce(logits[:-1].float(), torch.tensor(ex["labels"][1:])).sum()))
    return out


def check_isolation(hidden: int, layers: int, vocab: int) -> None:
    """Packed under sdpa and eager: each example's loss equals the example run alone."""
    exs = examples_of([37, 90, 15], vocab, seed=3)
    for attn in ("sdpa", "eager"):
        model = build_model(hidden, layers, vocab, attn).eval()
        with torch.no_grad():
            a = per_example_losses(model, exs, packed=True)
            b = per_example_losses(model, exs, packed=False)
        worst = max(abs(x - y) / max(abs(y), 1e-9) for x, y in zip(a, b, strict=True))
        verdict = "isolated (same loss as alone)" if worst < 1e-4 else "NOT ISOLATED: BUG"
        print(f"check {attn:5s}: per-example loss packed vs alone, max rel. diff {worst:.1e} -> {verdict}")


def step(model, batch: dict) -> None:
    model.zero_grad(set_to_none=True)
    out = model(**batch)
    out.loss.backward()


def batches_of(feats: list[dict], variant: str) -> list[dict]:
    """The model inputs of one micro-batch in one batching variant."""
    if variant == "alone":  # one example, no padding: plain causal (is_causal) path, no mask
        return [
            {"input_ids": torch.tensor([f["input_ids"]]), "labels": torch.tensor([f["labels"]])}
            for f in feats
        ]
    b = make_collator(variant == "packed", 0)(feats)
    return [{k: v for k, v in b.items() if k in ("input_ids", "labels", "attention_mask", "position_ids")}]


def time_variants(
    model, pairs: list[list[dict]], variants: tuple[str, ...], repeats: int
) -> dict[str, float]:
    """Seconds of forward+backward over all pairs per variant. The variants are interleaved per
    micro-batch in rotating order and each takes its fastest of `repeats`, so load from other
    processes on the machine hits all variants alike."""
    total = dict.fromkeys(variants, 0.0)
    for i, feats in enumerate(pairs):
        best = dict.fromkeys(variants, float("inf"))
        for r in range(repeats):
            k = (i + r) % len(variants)
            for v in variants[k:] + variants[:k]:
                t0 = time.perf_counter()
                for b in batches_of(feats, v):
                    step(model, b)
                best[v] = min(best[v], time.perf_counter() - t0)
        for v in variants:
            total[v] += best[v]
    return total


def pair_counts(pairs_lens: list[list[int]]) -> dict[str, float]:
    """Query-key pairs an attention kernel computes per micro-batch, summed, by variant."""
    packed = sum(sum(p) ** 2 for p in pairs_lens)  # dense L x L mask: every pair computed
    padded = sum(len(p) * max(p) ** 2 for p in pairs_lens)  # B x max^2, masked too
    varlen = sum(n * (n + 1) / 2 for p in pairs_lens for n in p)  # flash-attn varlen: causal half
    return {"packed": packed, "padded": padded, "varlen": varlen}


def flops_estimate(pairs_lens, layers: int, hidden: int, params: float) -> dict[str, float]:
    """Training FLOPs (fwd+bwd = 3x fwd): 6 x params per token computed + 12 x hidden x layers per pair."""
    real = sum(sum(p) for p in pairs_lens)
    padded_tokens = sum(len(p) * max(p) for p in pairs_lens)
    att = pair_counts(pairs_lens)
    per_pair = 12 * hidden * layers
    return {
        "packed": 6 * params * real + per_pair * att["packed"],
        "padded": 6 * params * padded_tokens + per_pair * att["padded"],
        "varlen": 6 * params * real + per_pair * att["varlen"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=12, help="micro-batches of 2 examples timed per variant")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--vocab", type=int, default=1000)
    p.add_argument(
        "--repeats", type=int, default=2, help="timings per micro-batch and variant (fastest kept)"
    )
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: steadier on a shared machine)"
    )
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    check_isolation(64, 2, 200)

    lens = lengths(2 * a.pairs, a.seed)
    pairs_lens = [lens[i : i + 2] for i in range(0, len(lens), 2)]
    exs = examples_of(lens, a.vocab, a.seed)
    pairs = [exs[i : i + 2] for i in range(0, len(exs), 2)]
    real = sum(lens)
    model = build_model(a.hidden, a.layers, a.vocab, "sdpa").train()
    params = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n)
    time_variants(model, pairs[:1], ("padded", "packed", "alone"), 1)  # warm-up
    s = sorted(lens)
    print(
        f"\n{a.pairs} micro-batches of 2, lengths p50 {s[len(s) // 2]} max {s[-1]}; Llama hidden {a.hidden}, "
        f"{a.layers} layers, {params / 1e6:.1f}M params, sdpa, fp32, {a.threads} CPU threads, fwd+bwd"
    )
    times = time_variants(model, pairs, ("padded", "packed", "alone"), a.repeats)
    names = {
        "padded": "(b) original padded batches (baseline)",
        "packed": "(a) packed row, dense block-diagonal mask",
        "alone": "(c) each example alone (flash-attn's work)",
    }
    for v in ("padded", "packed", "alone"):
        tps = real / times[v]
        print(f"{names[v]:46s} {tps:8.0f} real tokens/s  {times['padded'] / times[v]:5.2f}x baseline")

    att = pair_counts(pairs_lens)
    print(
        f"\nattention query-key pairs computed: packed L^2 = {att['packed'] / att['padded']:.2f}x padded "
        f"B*max^2, {att['packed'] / att['varlen']:.2f}x flash-attn varlen sum l(l+1)/2"
    )
    tiny = flops_estimate(pairs_lens, a.layers, a.hidden, params)
    big_lens = [lengths(2, a.seed + 1000 + i) for i in range(2000)]
    big = flops_estimate(big_lens, 32, 4096, 7.5e9)  # Llama-3.1-8B, lm_head included, embeddings not
    for name, f in ((f"this model ({params / 1e6:.1f}M)", tiny), ("Llama-3.1-8B (2,000 micro-batches)", big)):
        print(
            f"computed FLOPs estimate, {name:34s}: packed/padded {f['packed'] / f['padded']:.2f}, "
            f"packed/flash-attn varlen {f['packed'] / f['varlen']:.2f}"
        )


if __name__ == "__main__":
    main()
