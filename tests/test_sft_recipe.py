"""SFT training dynamics one flag away from the original (loss averaging, weight decay on norms),
and weights-only checkpoints (--save_only_model) that resume with the LR schedule in place."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

RECORDS = [
    {"Question": "Short?", "Complex_CoT": "Brief.", "Response": "Yes."},
    {"Question": "A much longer question about a patient with fever, cough and chest pain for days?",
     "Complex_CoT": "Consider pneumonia, then check the chest X-ray, then the blood count and cultures. " * 3,
     "Response": "Community-acquired pneumonia, treated with amoxicillin for five days."},
]  # fmt: skip


def _argv(model, data, out, *extra):
    return ["--model_path", str(model), "--data_path", str(data), "--output_dir", str(out), "--log_dir",
            str(Path(out) / "logs"), "--max_seq_len", "512", "--report_to", "none", "--gradient_checkpointing",
            "False", "--packing", "False", *extra]  # fmt: skip


class _Capture:
    def __init__(self):
        from transformers import TrainerCallback

        outer = self

        class CB(TrainerCallback):
            def on_train_begin(self, args, state, control, optimizer=None, **kw):
                outer.groups = [(g["weight_decay"], len(g["params"])) for g in optimizer.param_groups]

        self.callback = CB()


def _stop_after(steps: int):
    """A callback that ends training after `steps` optimizer steps (an interruption)."""
    from transformers import TrainerCallback

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step >= steps:
                control.should_training_stop = True
            return control

    return Stop()


def _run(argv, callbacks=()):
    from huatuo_o1.train.sft import parse_args, train

    return train(parse_args(argv), callbacks=list(callbacks))


def _expected_losses(model_dir):
    """Each record's own mean token loss and its learnt-token count, from the initial model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from huatuo_o1.train.sft_data import ensure_chat_template, tokenize_records

    tok = AutoTokenizer.from_pretrained(model_dir)
    ensure_chat_template(tok)
    examples, _ = tokenize_records(tok, RECORDS, 512)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    out = []
    with torch.no_grad():
        for ex in examples:
            ids = torch.tensor([ex["input_ids"]])
            labels = torch.tensor([ex["labels"]])
            n = int((labels[0, 1:] != -100).sum())
            out.append((model(input_ids=ids, labels=labels, use_cache=False).loss.item(), n))
    return out


@pytest.mark.parametrize("mode", ["token", "micro_batch"])
def test_loss_average_and_decay_rule(mode, tmp_path, tiny_lm_dir):
    """One optimizer step over the two records (1 per micro-batch, 2 accumulated): the logged loss is
    the token-weighted mean ("token") or the mean of the two micro-batch means (the original)."""
    data = tmp_path / "d.json"
    data.write_text(json.dumps(RECORDS))
    cap = _Capture()
    extra = ["--train_bsz_per_gpu", "1", "--gradient_accumulation_steps", "2", "--n_epochs", "1",
             "--loss_average", mode]  # fmt: skip
    if mode == "micro_batch":
        extra += ["--weight_decay_on_norms", "True"]
    run_dir = _run(_argv(tiny_lm_dir, data, tmp_path / "o", *extra), [cap.callback])
    state = json.loads((Path(run_dir) / "checkpoint-1" / "trainer_state.json").read_text())
    logged = next(h["loss"] for h in state["log_history"] if "loss" in h)
    (l1, n1), (l2, n2) = _expected_losses(tiny_lm_dir)
    token_mean, micro_mean = (l1 * n1 + l2 * n2) / (n1 + n2), (l1 + l2) / 2
    assert abs(token_mean - micro_mean) > 1e-3  # the test can tell them apart
    assert logged == pytest.approx(token_mean if mode == "token" else micro_mean, rel=1e-4)
    decays = dict((wd, n) for wd, n in cap.groups)
    if mode == "token":  # norms (and biases) exempt: a non-empty group without decay
        assert decays.get(0.0, 0) > 0
    else:  # the original's name rule matches nothing on Llama: every weight decays
        assert decays.get(0.0, 0) == 0


def test_save_only_model_checkpoints_resume_with_the_schedule(tmp_path, tiny_lm_dir, caplog):
    data = tmp_path / "d.json"
    data.write_text(json.dumps(RECORDS * 4))
    common = ["--train_bsz_per_gpu", "1", "--gradient_accumulation_steps", "1", "--save_steps", "1",
              "--learning_rate", "1e-3", "--warmup_rates", "0.3", "--max_ckpts", "0"]  # fmt: skip
    # uninterrupted: 4 steps
    full = Path(_run(_argv(tiny_lm_dir, data, tmp_path / "full", *common, "--max_steps", "4")))
    # weights only, interrupted after 2 steps, then the same command resumes
    out = tmp_path / "light"
    light_argv = _argv(tiny_lm_dir, data, out, *common, "--max_steps", "4", "--save_only_model", "True")
    _run(light_argv, [_stop_after(2)])
    ckpt = out / "sft_stage1" / "checkpoint-2"
    assert (ckpt / "model.safetensors").exists() and (ckpt / "trainer_state.json").exists()
    assert not (ckpt / "optimizer.pt").exists() and not (ckpt / "scheduler.pt").exists()
    with caplog.at_level(logging.WARNING):
        light = Path(_run(light_argv))
    notes = [r.getMessage() for r in caplog.records if "weights only" in r.getMessage()]
    assert len(notes) == 1 and "not the optimizer's moments" in notes[0] and str(ckpt) in notes[0]

    def lrs(run_dir):
        state = json.loads((run_dir / "checkpoint-4" / "trainer_state.json").read_text())
        return {h["step"]: h["learning_rate"] for h in state["log_history"] if "learning_rate" in h}

    assert lrs(light)[3] == pytest.approx(lrs(full)[3]) and lrs(light)[4] == pytest.approx(lrs(full)[4])
