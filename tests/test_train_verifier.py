"""Verifier training: a tiny classifier learns a separable toy set; bad labels exit cleanly."""

from __future__ import annotations

import json

import pytest

from huatuo_o1.io import InputError


def _toy(n: int) -> list[dict]:
    # Separable: correct answers repeat the reference word, wrong ones say something else.
    out = []
    for i in range(n):
        ok = i % 2 == 0
        out.append(
            {"response": "pneumonia" if ok else "asthma attack", "reference": "pneumonia", "label": ok}
        )
    return out


def _backbone_with_pad_eos(src, dst):
    """The tiny classifier backbone with pad == eos (as many chat tokenizers ship)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src)
    tok.pad_token = tok.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(src)
    model.config.pad_token_id = tok.eos_token_id
    tok.save_pretrained(dst)
    model.save_pretrained(dst)
    return dst


def test_tiny_verifier_learns_toy_set(tmp_path, tiny_verifier_dir):
    from transformers import AutoConfig, AutoTokenizer

    from huatuo_o1.rl import verifier_train
    from huatuo_o1.rl.rewards import ClassifierVerifier
    from huatuo_o1.rl.verifier_train import train_verifier as run

    tiny_verifier_dir = _backbone_with_pad_eos(tiny_verifier_dir, tmp_path / "backbone")
    data = tmp_path / "v.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in _toy(40)))
    out = tmp_path / "ver"
    s, t = verifier_train.parse_args(
        ["--data_path", str(data), "--model_name_or_path", str(tiny_verifier_dir), "--output_dir", str(out),
         "--num_train_epochs", "8", "--learning_rate", "3e-3", "--per_device_train_batch_size", "8",
         "--eval_fraction", "0.25", "--report_to", "none", "--save_strategy", "no", "--seed", "0",
         "--logging_steps", "5"]
    )  # fmt: skip
    report = run(s, t)
    assert report["n"] == 10 and report["n_train"] == 30
    assert report["accuracy@0.5"] == 1.0
    assert len(report["sweep"]) == 19 and (out / "verifier_eval.json").exists()
    # pad chosen distinct from eos (and bos), the same in tokenizer and config: the classifier
    # reads its decision at the template's eos
    tok, cfg = AutoTokenizer.from_pretrained(out), AutoConfig.from_pretrained(out)
    assert tok.pad_token_id not in (tok.eos_token_id, tok.bos_token_id)
    assert cfg.pad_token_id == tok.pad_token_id
    # the saved folder is a verifier the RL reward can load
    v = ClassifierVerifier.from_pretrained(str(out))
    p_ok, p_bad = v.probabilities(["pneumonia", "asthma attack"], ["pneumonia", "pneumonia"])
    assert p_ok > 0.5 > p_bad


def test_threshold_sweep_numbers():
    from huatuo_o1.rl.verifier_train import threshold_sweep

    (row,) = threshold_sweep([0.9, 0.6, 0.3, 0.1], [1, 0, 1, 0], [0.5])
    assert row == {"threshold": 0.5, "accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5}


def test_bad_label_is_input_error(tmp_path):
    from huatuo_o1.rl.verifier_train import load_examples

    p = tmp_path / "v.json"
    p.write_text(json.dumps([{"response": "a", "reference": "b", "label": "maybe"}]))
    with pytest.raises(InputError, match="item 1 has label 'maybe'"):
        load_examples(str(p))
    p.write_text(json.dumps([{"response": "a", "reference": "b", "label": "True"}, {"response": "a"}]))
    with pytest.raises(InputError, match="item 2 lacks"):
        load_examples(str(p))
