"""Throughput and MFU of a finished SFT run, read from its own logs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# ---------------------------------------------------------------------------------------------
# Command line: scripts/gpu_mfu.py

USAGE = """Throughput and MFU of a finished SFT run, from its own logs (used by scripts/gpu_check.sh).

    python scripts/gpu_mfu.py <SFT run folder> [--peak_tflops 989]

tokens/s: the mean of the `tokens_per_second` the SFT trainer logs (every token computed, padding
included; with packing there is none), over the second half of the run (warm-up excluded).
MFU = tokens/s x 6 x parameters / peak bf16 FLOP/s of one GPU: the usual 6N estimate (forward +
backward of the weight matmuls), attention's own FLOPs left out, so it slightly under-counts at
long sequence lengths. The peak comes from the GPU's name (dense bf16, no sparsity) unless given.
"""


PEAK_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 125.0,
    "L4": 121.0,
    "A6000": 155.0,
}


def peak_tflops(name: str) -> float | None:
    for key, value in PEAK_TFLOPS.items():
        if key.lower() in name.lower():
            return value
    return None


def make_parser() -> argparse.ArgumentParser:
    """The command line's flags."""
    p = argparse.ArgumentParser(description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="The SFT run folder (its checkpoint-*/trainer_state.json are read).")
    p.add_argument("--peak_tflops", type=float, default=None, help="Override the GPU's bf16 peak (TFLOP/s).")
    return p


def main(argv=None) -> int:
    a = make_parser().parse_args(argv)
    run = Path(a.run_dir)
    states = sorted(
        run.glob("checkpoint-*/trainer_state.json"), key=lambda f: int(f.parent.name.split("-")[1])
    )
    if not states:
        print(f"error: no checkpoint-*/trainer_state.json in {run}", file=sys.stderr)
        return 2
    history = json.loads(states[-1].read_text())["log_history"]
    tps = [h["tokens_per_second"] for h in history if "tokens_per_second" in h]
    if not tps:
        print(f"error: {states[-1]} has no tokens_per_second", file=sys.stderr)
        return 2
    tail = tps[len(tps) // 2 :]
    tokens_s = sum(tail) / len(tail)
    from safetensors import safe_open

    n_params = 0
    for f in run.glob("*.safetensors"):
        with safe_open(f, "pt") as st:
            n_params += sum(_numel(st.get_slice(k).get_shape()) for k in st.keys())  # noqa: SIM118
    peak = a.peak_tflops
    gpu = "unknown GPU"
    if peak is None:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
            peak = peak_tflops(gpu)
    line = f"SFT throughput: {tokens_s:,.0f} tokens/s on one GPU ({gpu}), {n_params / 1e6:.0f}M parameters"
    if peak:
        mfu = tokens_s * 6 * n_params / (peak * 1e12)
        line += f"; MFU {100 * mfu:.1f}% of {peak:.0f} TFLOP/s bf16 (6N estimate)"
    else:
        line += "; MFU: unknown peak (pass --peak_tflops)"
    print(line)
    return 0


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
