"""GRPO, RLOO and DPO compute the same update on the installed trl as on a reference trl (the
release before the update, docs/differences.md#grpo-rloo-and-dpo-on-trl-116).

The reference is a folder holding another trl package, named by TRL_REFERENCE, e.g.

    pip install --no-deps --target /tmp/trl-1.12 trl==1.12.0
    TRL_REFERENCE=/tmp/trl-1.12 pytest tests/test_trl_update.py

Without it the comparison is skipped; the probe still runs under the installed trl.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

PROBE = REPO / "tests" / "trl_update_probe.py"
# float32 on CPU: the fused LM head of newer trl computes the same log-probabilities; the gradient
# differs only in float rounding
GRAD_RTOL = 1e-5


def run_probe(tmp_path, policy, name: str, reference: str | None = None) -> dict:
    env = dict(os.environ)
    if reference:
        env["PYTHONPATH"] = os.pathsep.join([reference, str(REPO)])
    work = tmp_path / name
    work.mkdir()
    out = work / "result.json"
    r = subprocess.run(
        [sys.executable, str(PROBE), str(policy), str(work), str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(out.read_text())


def max_relative(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    scale = max(abs(x) for x in a) or 1.0
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) / scale


@pytest.fixture(scope="module")
def installed(tmp_path_factory, tiny_lm_dir):
    return run_probe(tmp_path_factory.mktemp("trl_installed"), tiny_lm_dir, "installed")


def test_the_probe_runs_on_the_installed_trl(installed):
    import trl

    assert installed["trl"] == trl.__version__
    for algo in ("grpo", "rloo", "dpo"):
        assert installed[algo]["loss"] == installed[algo]["loss"]  # not NaN
        assert any(g != 0 for g in installed[algo]["grad"]), algo


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("TRL_REFERENCE"), reason="TRL_REFERENCE names no reference trl")
def test_same_update_as_the_reference_trl(installed, tmp_path, tiny_lm_dir):
    ref = run_probe(tmp_path, tiny_lm_dir, "reference", reference=os.environ["TRL_REFERENCE"])
    assert ref["trl"] != installed["trl"], "TRL_REFERENCE holds the installed trl"
    for algo in ("grpo", "rloo"):
        new, old = installed[algo], ref[algo]
        assert new["loss"] == pytest.approx(old["loss"], rel=1e-6), algo
        assert max_relative(sum(old["logps"], []), sum(new["logps"], [])) < 1e-6, algo
        assert max_relative(old["grad"], new["grad"]) < GRAD_RTOL, algo
        # the tiny policy's generation config lists only the tokenizer's eos: the same stop set
        assert new["stop_tokens"] == old["stop_tokens"], algo
    new, old = installed["dpo"], ref["dpo"]
    assert new["input_ids"] == old["input_ids"]  # the same prompt/completion split
    assert new["loss"] == pytest.approx(old["loss"], rel=1e-6)
    assert max_relative(old["grad"], new["grad"]) < GRAD_RTOL
    for name, value in old["metrics"].items():
        assert new["metrics"][name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


@pytest.mark.parametrize(
    "module, config, pinned",
    [
        ("grpo_trainer", "MedicalGRPOConfig", "PINNED_GRPO"),
        ("rloo_trainer", "MedicalRLOOConfig", "PAPER_RLOO"),
        ("dpo_trainer", "MedicalDPOConfig", "PAPER_DPO"),
    ],
)
def test_our_settings_are_declared_by_our_configs(module, config, pinned, tmp_path):
    """The paper's and our settings are defaults of our own config classes, not trl's: a trl whose
    defaults change cannot change them."""
    import importlib

    plumbing = importlib.import_module(f"huatuo_o1.rl.{module}")
    cls, settings = getattr(plumbing, config), getattr(plumbing, pinned)
    args = cls(output_dir=str(tmp_path), report_to="none")
    for name, value in settings.items():
        assert name in cls.__annotations__, f"{config} takes --{name} from trl"
        assert getattr(args, name) == value, name
        assert "help" in cls.__dataclass_fields__[name].metadata, name
