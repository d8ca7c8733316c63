"""Will colocated vLLM fit on the GPU? A pre-flight estimate for GRPO's `--use_vllm`.

In trl's colocate mode, vLLM runs inside each training process and may use only the share
`--vllm_gpu_memory_utilization` (0.3 by default) of the GPU's memory. Inside that share vLLM must
hold, per GPU (divided by `--vllm_tensor_parallel_size` where vLLM splits them):

- the weights: every parameter in 16 bits (vLLM's dtype "auto" serves a float32 checkpoint in
  16 bits too), counted from config.json: embeddings, output head (unless tied), and per layer the
  attention projections (query and output over all heads, key and value over the KV heads), the
  gated MLP (three matrices) and the norms;
- the KV cache for at least one full-length sequence: 2 (key and value) x layers x KV heads x
  head size x 2 bytes per token, times the model length. vLLM refuses to start when even one
  sequence of `max_model_len` tokens does not fit, and without a model length it takes the
  checkpoint's own context (131,072 tokens for Llama-3.1: 16 GiB of cache for the 8B);
- the activations of its profiling pass: trl runs vLLM with 4,096 batched tokens, so that many
  tokens' hidden and MLP states in 16 bits, the float32 logits of up to `max_num_seqs` sequences,
  and a fixed allowance (CUDA graphs, the CUDA context, the allocator's slack).

It is an estimate: the fixed allowance and the activation terms are rounded up, so a "does not
fit" is a real stop and a "fits" leaves a small margin. Quantised and mixture-of-experts
checkpoints are not estimated (the check is skipped with a log line).

The GPU's memory comes from torch.cuda when a GPU is visible, else from the environment variable
HUATUO_GPU_MEMORY_GIB (for tests and for checking a launch from a login node); with neither, the
check is skipped.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from huatuo_o1.io import InputError

log = logging.getLogger(__name__)

GIB = 1024**3
GPU_MEMORY_ENV = "HUATUO_GPU_MEMORY_GIB"
TRL_BATCHED_TOKENS = 4096  # trl (1.12 to 1.16) passes max_num_batched_tokens=4096 to vLLM in colocate mode
FIXED_OVERHEAD_GIB = 1.5  # CUDA graphs, CUDA context, allocator slack (rounded up)
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 2, "half": 2, "float": 2}  # served in 16 bits


@dataclass
class Fit:
    """The estimate, in bytes per GPU, and the budget it must fit in."""

    weights: int
    kv_cache: int
    activations: int
    budget: int
    max_model_len: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.activations

    @property
    def fits(self) -> bool:
        return self.total <= self.budget

    def line(self) -> str:
        def g(b):
            return f"{b / GIB:.1f} GiB"

        return (
            f"weights {g(self.weights)} + KV cache {g(self.kv_cache)} for {self.max_model_len:,} tokens"
            f" + activations {g(self.activations)} = {g(self.total)} per GPU, in a budget of {g(self.budget)}"
        )


def read_config(model_path: str) -> dict | None:
    """The model's config.json as a dict, or None where there is no local file (a hub name)."""
    f = Path(model_path) / "config.json"
    if not f.is_file():
        return None
    cfg = json.loads(f.read_text(encoding="utf-8"))
    return cfg.get("text_config", cfg) if isinstance(cfg.get("text_config"), dict) else cfg


def unsupported(cfg: dict) -> str | None:
    """Why this config cannot be estimated (quantised, mixture of experts, missing sizes), or None."""
    if cfg.get("quantization_config"):
        return "a quantised checkpoint"
    if any(cfg.get(k) for k in ("num_local_experts", "num_experts", "n_routed_experts")):
        return "a mixture-of-experts model"
    missing = [
        k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size") if not cfg.get(k)
    ]
    if missing:
        return f"config.json without {', '.join(missing)}"
    return None


def estimate(
    cfg: dict,
    max_model_len: int,
    gpu_bytes: int,
    memory_utilization: float,
    tensor_parallel: int = 1,
    max_num_seqs: int = 256,
) -> Fit:
    """Weights + KV cache + activations per GPU for `max_model_len`, against the memory share."""
    hidden = int(cfg["hidden_size"])
    layers = int(cfg["num_hidden_layers"])
    heads = int(cfg["num_attention_heads"])
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    vocab = int(cfg["vocab_size"])
    inter = int(cfg.get("intermediate_size") or 4 * hidden)
    width = DTYPE_BYTES.get(str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16"), 2)
    tp = max(int(tensor_parallel), 1)

    attn = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
    per_layer = attn + 3 * hidden * inter + 2 * hidden
    embed = vocab * hidden
    head = 0 if cfg.get("tie_word_embeddings") else vocab * hidden
    params = embed + head + layers * per_layer + hidden
    weights = params * width // tp

    kv_heads_per_gpu = max(kv_heads // tp, 1)  # vLLM replicates KV heads when tp > kv heads
    kv_per_token = 2 * layers * kv_heads_per_gpu * head_dim * width
    kv_cache = kv_per_token * max_model_len

    tokens = min(TRL_BATCHED_TOKENS, max(max_model_len, 1) * max(max_num_seqs, 1))
    hidden_states = tokens * (4 * hidden + 2 * inter // tp) * width
    logits = max(max_num_seqs, 1) * vocab * 4
    activations = hidden_states + logits + int(FIXED_OVERHEAD_GIB * GIB)

    return Fit(weights, kv_cache, activations, int(gpu_bytes * memory_utilization), max_model_len)


def gpu_memory_bytes() -> int | None:
    """This process's GPU's total memory: torch.cuda, else HUATUO_GPU_MEMORY_GIB, else None."""
    value = os.environ.get(GPU_MEMORY_ENV)
    if value:
        try:
            gib = float(value)
        except ValueError:
            raise InputError(f"{GPU_MEMORY_ENV}={value!r}: expected a number of GiB") from None
        if gib <= 0:
            raise InputError(f"{GPU_MEMORY_ENV}={value!r}: expected a positive number of GiB")
        return int(gib * GIB)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    if not torch.cuda.is_available():
        return None
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    return int(torch.cuda.get_device_properties(local % torch.cuda.device_count()).total_memory)


def check_vllm_fit(
    model_path: str,
    max_model_len: int,
    memory_utilization: float,
    tensor_parallel: int = 1,
    max_num_seqs: int = 256,
    gpu_bytes: int | None = None,
) -> Fit | None:
    """Stop with one line (InputError) when colocated vLLM cannot fit; the estimate, or None if skipped."""
    cfg = read_config(model_path)
    if cfg is None:
        log.info("vLLM memory check skipped: no local config.json in %s", model_path)
        return None
    why = unsupported(cfg)
    if why:
        log.info("vLLM memory check skipped: %s", why)
        return None
    gpu_bytes = gpu_memory_bytes() if gpu_bytes is None else gpu_bytes
    if gpu_bytes is None:
        log.info("vLLM memory check skipped: no GPU visible and %s not set", GPU_MEMORY_ENV)
        return None
    fit = estimate(cfg, max_model_len, gpu_bytes, memory_utilization, tensor_parallel, max_num_seqs)
    if not fit.fits:
        raise InputError(
            f"colocated vLLM will not fit: {fit.line()} ({memory_utilization} of {gpu_bytes / GIB:.0f} GiB); "
            "lower --vllm_max_model_length or --max_completion_length, raise --vllm_gpu_memory_utilization "
            "or --vllm_tensor_parallel_size, or use --vllm_mode server"
        )
    log.info("colocated vLLM fits: %s", fit.line())
    return fit
