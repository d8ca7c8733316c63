"""Packing without flash-attn: a packed row under sdpa or eager gives every example
the loss it gets alone, so users without flash-attn train the same model, only slower (dense mask)."""

from __future__ import annotations

import pytest
import torch

from huatuo_o1.train.sft_data import IGNORE_INDEX, make_collator


def _model(attn: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=200,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    cfg._attn_implementation = attn
    return LlamaForCausalLM(cfg).float().eval()


def _examples():
    g = torch.Generator().manual_seed(1)
    out = []
    for n, prompt in ((23, 5), (61, 20), (9, 3)):
        ids = torch.randint(3, 200, (n,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE_INDEX] * prompt + ids[prompt:]})
    return out


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_row_gives_each_example_its_own_loss(attn):
    model = _model(attn)
    examples = _examples()
    batch = make_collator(True, 0)(examples)  # what SFT uses when flash-attn is absent
    assert "attention_mask" not in batch and "cu_seq_lens_q" not in batch
    ce = torch.nn.CrossEntropyLoss(reduction="sum", ignore_index=IGNORE_INDEX)
    with torch.no_grad():
        out = model(**batch, use_cache=False)
        logits = out.logits[0]
        packed_sums, alone_sums, counts, off = [], [], [], 0
        for ex in examples:
            n = len(ex["input_ids"])
            # the row's labels are the example's labels with the first one masked
            packed_sums.append(ce(logits[off : off + n - 1], batch["labels"][0, off + 1 : off + n]))
            alone = model(input_ids=torch.tensor([ex["input_ids"]]), use_cache=False).logits[0]
            labels = torch.tensor(ex["labels"][1:])
            alone_sums.append(ce(alone[:-1], labels))
            counts.append(int((labels != IGNORE_INDEX).sum()))
            off += n
    torch.testing.assert_close(torch.stack(packed_sums), torch.stack(alone_sums), atol=1e-4, rtol=1e-5)
    # the row's mean loss is the token-weighted mean of the examples' own losses
    torch.testing.assert_close(out.loss, torch.stack(alone_sums).sum() / sum(counts), atol=1e-5, rtol=1e-5)


def test_packed_row_without_position_ids_would_leak():
    """The check above can fail: the same row read as one sequence (no restarting position ids)
    lets the second example attend to the first and changes its logits."""
    model = _model("sdpa")
    examples = _examples()
    batch = make_collator(True, 0)(examples)
    n0, n1 = (len(e["input_ids"]) for e in examples[:2])
    with torch.no_grad():
        leaked = model(input_ids=batch["input_ids"], use_cache=False).logits[0, n0 : n0 + n1]
        alone = model(input_ids=torch.tensor([examples[1]["input_ids"]]), use_cache=False).logits[0]
    assert (leaked - alone).abs().max() > 1e-2
