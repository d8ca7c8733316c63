"""--reproducible_sampling (huatuo_o1/rl/keyed_sampling.py): each completion's tokens drawn from its
key, so the same global batch gives the same rollouts however the processes split it."""

from __future__ import annotations

import pytest
import torch

from huatuo_o1.rl import keyed_sampling as ks


def test_copy_numbers_count_a_prompts_copies_over_every_process():
    a, b = b"a", b"b"
    assert ks.copy_numbers([[a, a, b, b]], 0) == [0, 1, 0, 1]
    # the same group split over two processes: each copy number once per prompt
    assert ks.copy_numbers([[a, b], [a, b]], 0) == [0, 0]
    assert ks.copy_numbers([[a, b], [a, b]], 1) == [1, 1]


def test_prompt_digest_ignores_left_padding():
    assert ks.prompt_digest([0, 0, 5, 6], pad_id=0) == ks.prompt_digest([5, 6], pad_id=0)
    assert ks.prompt_digest([5, 6], pad_id=0) != ks.prompt_digest([5, 7], pad_id=0)


def test_keyed_draws_follow_the_distribution():
    """Over many keys, the tokens come out at their probabilities after the temperature."""
    logits = torch.log(torch.tensor([[0.2, 0.5, 0.3]]))
    counts = torch.zeros(3)
    n = 3000
    for k in range(n):
        sampler = ks.KeyedSampler(seed=k, step=0, row_keys=[(b"p", 0)], prompt_len=1, warp=[])
        out = sampler(torch.zeros(1, 1, dtype=torch.long), logits.clone())
        assert torch.isfinite(out).sum() == 1  # one token left possible
        counts[out.argmax()] += 1
    assert torch.allclose(counts / n, torch.tensor([0.2, 0.5, 0.3]), atol=0.03)
    # top-k 1 (a warper applied before the draw): only the likeliest token
    sampler = ks.KeyedSampler(0, 0, [(b"p", 0)], 1, ks.warpers(1.0, 1, None, None))
    assert sampler(torch.zeros(1, 1, dtype=torch.long), logits.clone()).argmax() == 1


@pytest.fixture(scope="module")
def model_and_tok(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from huatuo_o1.testing.tiny_models import build_tiny_causal_lm

    path = build_tiny_causal_lm(tmp_path_factory.mktemp("tiny"))
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    return AutoModelForCausalLM.from_pretrained(path).eval(), tok


def _generate(model, tok, prompts: list[str], layout: list[list[int]], seed: int = 3) -> list[list[int]]:
    """Completions of `prompts` when process p holds the rows `layout[p]` (one generate per process)."""
    digests = [
        [ks.prompt_digest(tok(prompts[i])["input_ids"], tok.pad_token_id) for i in rows] for rows in layout
    ]
    out: dict[int, list[int]] = {}
    for p, rows in enumerate(layout):
        enc = tok([prompts[i] for i in rows], return_tensors="pt", padding=True)
        keys = list(zip(digests[p], ks.copy_numbers(digests, p), strict=True))
        sampler = ks.KeyedSampler(seed, 0, keys, enc["input_ids"].shape[1], ks.warpers(0.9, None, 0.95, None))
        torch.manual_seed(1000 + p)  # each process's own generator: it must not matter
        ids = model.generate(**enc, do_sample=True, temperature=0.9, top_p=0.95, max_new_tokens=6,
                             logits_processor=[sampler], pad_token_id=tok.pad_token_id)  # fmt: skip
        for i, row in zip(rows, ids[:, enc["input_ids"].shape[1] :].tolist(), strict=True):
            out[i] = row
    return [out[i] for i in range(len(prompts))]


def test_the_same_rollouts_on_one_process_and_on_two(model_and_tok):
    """A global batch of two groups (prompts of different lengths, so the padding differs by
    layout) sampled on one process and split over two: the same completions for the same copies."""
    model, tok = model_and_tok
    prompts = [
        "Which drug?",
        "Which drug?",
        "A longer question about a rash?",
        "A longer question about a rash?",
    ]
    one = _generate(model, tok, prompts, [[0, 1, 2, 3]])
    two = _generate(model, tok, prompts, [[0, 2], [1, 3]])
    assert one == two
    assert one[0] != one[1] or one[2] != one[3]  # copies of a prompt are sampled apart
    assert _generate(model, tok, prompts, [[0, 1, 2, 3]], seed=4) != one  # the seed matters
