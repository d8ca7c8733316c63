"""Throughput and MFU of a finished SFT run, read from its own logs."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

# ---------------------------------------------------------------------------------------------
# Command line: scripts/gpu_mfu.py

USAGE = """Throughput and MFU of a finished SFT run, from its own logs (used by scripts/gpu_check.sh).

    python scripts/gpu_mfu.py <SFT run folder> [--peak_tflops 989] [--num_gpus 8]

tokens/s: the mean of the `tokens_per_second` the SFT trainer logs (every token computed, padding
included; with packing there is none; summed over all ranks), over the second half of the run
(warm-up excluded). MFU per GPU = tokens/s summed over ranks x 6 x parameters / (number of GPUs x
one GPU's peak dense bf16 FLOP/s): the usual 6N estimate (forward + backward of the weight
matmuls), attention's own FLOPs left out, so it slightly under-counts at long sequence lengths.
The number of GPUs is the `num_gpus` the trainer logs (1 in logs that predate it) unless given.
The peak comes from the GPU's exact product name (a line names the table entry matched: an H100
PCIe or NVL is not an H100 SXM, an L4 is not an L40) unless given.
"""

# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s of one GPU, from NVIDIA's data sheets. Each
# entry: (label, pattern over the upper-cased name with '-' and '_' as spaces, peak); the first
# match wins, so a form factor (PCIe, NVL) comes before the bare part name.
PEAK_TABLE = (
    ("H100 PCIe", r"\bH100\b.*\bPCIE\b", 756.0),
    ("H100 NVL", r"\bH100\b.*\bNVL\b", 835.0),
    ("H100 SXM", r"\bH100\b", 989.0),
    ("H200 NVL", r"\bH200\b.*\bNVL\b", 835.0),
    ("GH200", r"\bGH200\b", 989.0),
    ("H200 SXM", r"\bH200\b", 989.0),
    ("H800 PCIe", r"\bH800\b.*\bPCIE\b", 756.0),
    ("H800 SXM", r"\bH800\b", 989.0),
    ("H20", r"\bH20\b", 148.0),
    ("B200", r"\bB200\b", 2250.0),
    ("A100 PCIe 80GB", r"\bA100\b.*\bPCIE\b.*\b80GB\b|\bA100\b.*\b80GB\b.*\bPCIE\b", 312.0),
    ("A100 PCIe 40GB", r"\bA100\b.*\bPCIE\b", 312.0),
    ("A100 SXM 80GB", r"\bA100\b.*\b80GB\b", 312.0),
    ("A100 SXM 40GB", r"\bA100\b", 312.0),
    ("A800", r"\bA800\b", 312.0),
    ("L40S", r"\bL40S\b", 362.0),
    ("L40", r"\bL40\b", 181.0),
    ("L4", r"\bL4\b", 121.0),
    ("A10G (estimate: AWS publishes no tensor figure)", r"\bA10G\b", 70.0),
    ("A10", r"\bA10\b", 125.0),
    ("RTX 6000 Ada", r"\bRTX 6000 ADA\b", 364.0),
    ("RTX A6000", r"\bA6000\b", 155.0),
)


def match_peak(name: str) -> tuple[str, float] | None:
    """(table label, peak TFLOP/s) for a GPU product name such as torch reports it, or None."""
    norm = re.sub(r"[-_]", " ", name.upper())
    for label, pattern, value in PEAK_TABLE:
        if re.search(pattern, norm):
            return label, value
    return None


def peak_tflops(name: str) -> float | None:
    m = match_peak(name)
    return m[1] if m else None


def peak_line(name: str) -> str:
    """One line naming the table entry a GPU name matched (or that none did)."""
    m = match_peak(name)
    if m is None:
        return f"GPU {name!r}: no entry in the peak table (pass --peak_tflops)"
    return f"GPU {name!r}: peak table entry {m[0]}, {m[1]:.0f} TFLOP/s dense bf16"


def mfu(tokens_per_second: float, n_params: int, num_gpus: int, peak: float) -> float:
    """Model FLOPs utilisation per GPU: tokens/s summed over ranks x 6N / (GPUs x one GPU's peak)."""
    return tokens_per_second * 6 * n_params / (max(num_gpus, 1) * peak * 1e12)


def make_parser() -> argparse.ArgumentParser:
    """The command line's flags."""
    p = argparse.ArgumentParser(description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="The SFT run folder (its checkpoint-*/trainer_state.json are read).")
    p.add_argument("--peak_tflops", type=float, default=None, help="Override the GPU's bf16 peak (TFLOP/s).")
    p.add_argument(
        "--num_gpus",
        type=int,
        default=None,
        help="GPUs the run used (default: the num_gpus it logged, else 1).",
    )
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
    logged_gpus = [h["num_gpus"] for h in history if "num_gpus" in h]
    num_gpus = a.num_gpus or (logged_gpus[-1] if logged_gpus else 1)
    if num_gpus < 1:
        print(f"error: --num_gpus {num_gpus}: expected at least 1", file=sys.stderr)
        return 2
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
            print(peak_line(gpu))
            peak = peak_tflops(gpu)
    line = (
        f"SFT throughput: {tokens_s:,.0f} tokens/s on {num_gpus} GPU(s) ({gpu}), "
        f"{tokens_s / num_gpus:,.0f} per GPU, {n_params / 1e6:.0f}M parameters"
    )
    if peak:
        line += f"; MFU {100 * mfu(tokens_s, n_params, num_gpus, peak):.1f}% per GPU of {peak:.0f} TFLOP/s bf16 (6N)"
    else:
        line += "; MFU: unknown peak (pass --peak_tflops)"
    print(line)
    return 0


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
