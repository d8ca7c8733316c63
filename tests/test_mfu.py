"""MFU of an SFT run: per GPU, and the peak matched on the GPU's exact product name."""

from __future__ import annotations

import json

import pytest

from huatuo_o1.train.mfu import main, match_peak, mfu, peak_line


@pytest.mark.parametrize(
    "name, label, peak",
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM", 989.0),
        ("NVIDIA H100 PCIe", "H100 PCIe", 756.0),
        ("NVIDIA H100 NVL", "H100 NVL", 835.0),
        ("NVIDIA H200", "H200 SXM", 989.0),
        ("NVIDIA H200 NVL", "H200 NVL", 835.0),
        ("NVIDIA GH200 480GB", "GH200", 989.0),
        ("NVIDIA A100-SXM4-80GB", "A100 SXM 80GB", 312.0),
        ("NVIDIA A100-SXM4-40GB", "A100 SXM 40GB", 312.0),
        ("NVIDIA A100-PCIE-40GB", "A100 PCIe 40GB", 312.0),
        ("NVIDIA A100 80GB PCIe", "A100 PCIe 80GB", 312.0),
        ("NVIDIA L40S", "L40S", 362.0),
        ("NVIDIA L40", "L40", 181.0),
        ("NVIDIA L4", "L4", 121.0),
        ("NVIDIA A10G", "A10G (estimate: AWS publishes no tensor figure)", 70.0),
        ("NVIDIA A10", "A10", 125.0),
        ("NVIDIA RTX A6000", "RTX A6000", 155.0),
        ("NVIDIA RTX 6000 Ada Generation", "RTX 6000 Ada", 364.0),
    ],
)
def test_peak_matched_on_exact_product_name(name, label, peak):
    assert match_peak(name) == (label, peak)
    assert peak_line(name) == f"GPU {name!r}: peak table entry {label}, {peak:.0f} TFLOP/s dense bf16"


def test_unknown_gpu_has_no_peak():
    assert match_peak("NVIDIA GeForce GTX 1080") is None
    assert "no entry in the peak table" in peak_line("NVIDIA GeForce GTX 1080")


def test_mfu_is_per_gpu():
    one = mfu(10_000, 135_000_000, 1, 989.0)
    assert mfu(8 * 10_000, 135_000_000, 8, 989.0) == pytest.approx(one)  # 8 GPUs, 8x the summed tokens/s
    assert one == pytest.approx(10_000 * 6 * 135e6 / 989e12)


def test_main_reads_logged_gpus(tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    run = tmp_path / "sft"
    (run / "checkpoint-4").mkdir(parents=True)
    save_file({"w": torch.zeros(1000, 1000)}, str(run / "model.safetensors"))
    history = [{"loss": 1.0, "tokens_per_second": 8e6, "num_gpus": 8} for _ in range(4)]
    (run / "checkpoint-4" / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    assert main([str(run), "--peak_tflops", "100"]) == 0
    out = capsys.readouterr().out
    assert "8,000,000 tokens/s on 8 GPU(s)" in out and "1,000,000 per GPU" in out
    assert "MFU 6.0% per GPU of 100 TFLOP/s" in out  # 1e6 tokens/s x 6 x 1e6 parameters / 100e12
    assert main([str(run), "--peak_tflops", "100", "--num_gpus", "1"]) == 0
    assert "MFU 48.0% per GPU" in capsys.readouterr().out
