"""GRPO --use_vllm: vLLM's model length from the data, and the colocate memory pre-flight check."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from huatuo_o1.contract import GROUND_TRUTH, OPEN_QUESTION
from huatuo_o1.io import InputError
from huatuo_o1.rl.vllm_fit import GIB, GPU_MEMORY_ENV, check_vllm_fit

LLAMA_8B = {
    "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
    "vocab_size": 128256, "max_position_embeddings": 131072, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}  # fmt: skip
LLAMA_70B = {
    **LLAMA_8B, "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
    "num_attention_heads": 64,
}  # fmt: skip
GPU_80 = 80 * GIB


def model_dir(tmp_path, cfg, name):
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    return str(d)


def test_8b_full_context_does_not_fit(tmp_path):
    with pytest.raises(InputError) as e:
        check_vllm_fit(model_dir(tmp_path, LLAMA_8B, "8b"), 131072, 0.3, gpu_bytes=GPU_80)
    msg = str(e.value)
    assert "\n" not in msg
    assert "will not fit" in msg and "KV cache 16.0 GiB for 131,072 tokens" in msg
    assert "--vllm_max_model_length" in msg


def test_8b_prompt_plus_completion_fits(tmp_path):
    fit = check_vllm_fit(model_dir(tmp_path, LLAMA_8B, "8b"), 1324 + 1300, 0.3, gpu_bytes=GPU_80)
    assert fit.fits
    assert 14.5 * GIB < fit.weights < 15.5 * GIB  # 8.03 B parameters in bf16
    assert fit.kv_cache == 2 * 32 * 8 * 128 * 2 * 2624
    assert fit.total < 0.3 * GPU_80


def test_70b_does_not_fit_and_tensor_parallel_divides(tmp_path):
    d = model_dir(tmp_path, LLAMA_70B, "70b")
    with pytest.raises(InputError, match="will not fit: weights 13[0-9].[0-9] GiB"):
        check_vllm_fit(d, 2624, 0.3, gpu_bytes=GPU_80)
    fit = check_vllm_fit(d, 2624, 0.9, tensor_parallel=8, gpu_bytes=GPU_80)
    assert fit.fits and fit.weights < 20 * GIB


def test_gpu_memory_from_env_and_skips(tmp_path, monkeypatch):
    d = model_dir(tmp_path, LLAMA_8B, "8b")
    monkeypatch.setenv(GPU_MEMORY_ENV, "80")
    with pytest.raises(InputError, match="0.3 of 80 GiB"):
        check_vllm_fit(d, 131072, 0.3)
    monkeypatch.setenv(GPU_MEMORY_ENV, "lots")
    with pytest.raises(InputError, match="expected a number of GiB"):
        check_vllm_fit(d, 2624, 0.3)
    assert check_vllm_fit(str(tmp_path / "hub-name"), 131072, 0.3, gpu_bytes=GPU_80) is None  # no config
    moe = model_dir(tmp_path, {**LLAMA_8B, "num_local_experts": 8}, "moe")
    assert check_vllm_fit(moe, 131072, 0.3, gpu_bytes=GPU_80) is None


def vllm_args(**kw):
    base = dict(
        vllm_max_model_length=None, max_completion_length=1300, vllm_mode="colocate", process_index=0,
        vllm_gpu_memory_utilization=0.3, vllm_tensor_parallel_size=1, per_device_train_batch_size=8,
        steps_per_generation=None, gradient_accumulation_steps=1,
    )  # fmt: skip
    return SimpleNamespace(**{**base, **kw})


def test_prepare_vllm_sets_length_and_checks(tmp_path, monkeypatch):
    from huatuo_o1.rl.grpo_trainer import prepare_vllm

    d = model_dir(tmp_path, LLAMA_8B, "8b")
    data = SimpleNamespace(
        train=[{"input_ids": [1] * 20}, {"input_ids": [1] * 24}], eval=[{"input_ids": [1] * 30}]
    )
    monkeypatch.setenv(GPU_MEMORY_ENV, "80")
    args = vllm_args()
    prepare_vllm(args, SimpleNamespace(max_prompt_length=None), d, data)
    assert args.vllm_max_model_length == 30 + 1300  # the longest prompt + completion
    args = vllm_args()
    prepare_vllm(args, SimpleNamespace(max_prompt_length=1324), d, data)
    assert args.vllm_max_model_length == 1324 + 1300
    args = vllm_args(vllm_max_model_length=131072)  # the user's own length is kept, and checked
    with pytest.raises(InputError, match="will not fit"):
        prepare_vllm(args, SimpleNamespace(max_prompt_length=None), d, data)
    assert args.vllm_max_model_length == 131072
    args = vllm_args(vllm_max_model_length=131072, vllm_mode="server")  # vLLM on its own GPUs: no check
    prepare_vllm(args, SimpleNamespace(max_prompt_length=None), d, data)


def test_grpo_stops_before_loading_models(tmp_path, monkeypatch, tiny_lm_dir):
    import importlib.util

    from trl import GRPOTrainer  # noqa: F401  (imported before vLLM is faked as installed)

    from huatuo_o1.rl import grpo, grpo_trainer

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n == "vllm" else real(n, *a))
    monkeypatch.setattr(grpo_trainer, "make_verifier", lambda *a, **k: pytest.fail("verifier loaded"))
    monkeypatch.setenv(GPU_MEMORY_ENV, "0.001")
    data = tmp_path / "d.json"
    data.write_text(json.dumps([{OPEN_QUESTION: f"Q{i}?", GROUND_TRUTH: f"a{i}"} for i in range(4)]))
    s, a, m = grpo.parse_args(
        ["--model_name_or_path", str(tiny_lm_dir), "--reward_model_path", str(tiny_lm_dir),
         "--dataset_name", str(data), "--output_dir", str(tmp_path / "o"), "--use_vllm", "True",
         "--per_device_train_batch_size", "2", "--num_generations", "2", "--max_completion_length", "16",
         "--report_to", "none"]
    )  # fmt: skip
    with pytest.raises(InputError, match="colocated vLLM will not fit"):
        grpo_trainer.build_grpo_trainer(s, a, m)
    assert a.vllm_max_model_length > 16


def test_the_vllm_pin_is_one_trl_supports(monkeypatch):
    """requirements-vllm.txt pins a vLLM inside the range the installed trl supports (trl warns
    outside it), and the message of a missing vLLM names that pin."""
    import re
    import warnings

    from trl import import_utils

    from tests.helpers import REPO

    pins = re.findall(r"^vllm==(\S+)$", (REPO / "requirements-vllm.txt").read_text(), flags=re.M)
    assert len(pins) == 1
    real = import_utils._is_package_available
    installed = {"vllm": pins[0]}

    def available(name, return_version=False):
        return (True, installed[name]) if name in installed else real(name, return_version=return_version)

    monkeypatch.setattr(import_utils, "_is_package_available", available)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert import_utils.is_vllm_available()
    installed["vllm"] = "99.0.0"  # the check does warn outside the range
    with pytest.warns(UserWarning, match="supports vLLM versions"):
        import_utils.is_vllm_available()
    assert f"vllm {pins[0]}" in (REPO / "huatuo_o1/rl/grpo_trainer.py").read_text()
