"""verl 0.9.1's critic loader (verl.utils.model.load_valuehead_model, what its FSDP engine calls for
the value model) on a tiny causal LM: the attention implementation it asks for, whatever the config
says, and the error it gives without flash-attn (the reason ppo_args.sh installs verl's fsdp extra).

Runs in the verl environment only (bash scripts/setup_verl_env.sh); skipped elsewhere.
"""

from __future__ import annotations

import importlib.util

import pytest

pytest.importorskip("verl")

import torch  # noqa: E402


def _value_config(path):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    config.num_labels = 1  # as verl's FSDP engine sets it before loading the value model
    config.classifier_dropout = 0.0
    return config


def test_critic_loader_requests_flash_attention_2(tiny_lm_dir, monkeypatch):
    import transformers
    from verl.utils.model import load_valuehead_model

    asked = []
    original = transformers.AutoModelForTokenClassification.from_pretrained

    def spy(**kwargs):
        asked.append(kwargs["attn_implementation"])
        return original(**{**kwargs, "attn_implementation": "eager"})  # CPU: load it eagerly

    monkeypatch.setattr(transformers.AutoModelForTokenClassification, "from_pretrained", spy)
    model = load_valuehead_model(str(tiny_lm_dir), torch.float32, _value_config(tiny_lm_dir), False)
    assert asked == ["flash_attention_2"]  # hard-coded: not the config's attn_implementation
    assert type(model).__name__ == "LlamaForTokenClassification" and model.score.out_features == 1
    assert model(input_ids=torch.tensor([[1, 5, 6]])).logits.shape == (1, 3, 1)  # one value per token


@pytest.mark.skipif(
    importlib.util.find_spec("flash_attn") is not None or importlib.util.find_spec("trl") is not None,
    reason="flash-attn or trl installed",
)
def test_without_flash_attn_the_critic_loader_says_install_trl(tiny_lm_dir):
    from verl.utils.model import load_valuehead_model

    with pytest.raises(RuntimeError, match="please install trl") as e:
        load_valuehead_model(str(tiny_lm_dir), torch.float32, _value_config(tiny_lm_dir), False)
    assert "flash" in repr(e.value.__cause__).lower()  # the real cause: flash-attn is missing
