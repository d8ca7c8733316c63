"""Stage 3 (SFT): label mask, truncation, padding-free batching, training, checkpoints, resume, bad data."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from huatuo_o1.formats import format_response
from huatuo_o1.train.sft_data import (
    IGNORE_INDEX,
    PaddedCollator,
    end_of_turn_ids,
    ensure_chat_template,
    load_sft_records,
    make_collator,
    render,
    tokenize_example,
    tokenize_records,
)

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false"}


def make_records(n: int = 6) -> list[dict]:
    return [
        {
            "Question": f"Patient {i} has fever and cough. What is the diagnosis?",
            "Complex_CoT": "The patient presents with fever and cough. Consider pneumonia."
            + " Verify." * (i % 3),
            "Response": f"The most likely diagnosis is pneumonia ({chr(65 + i % 4)}).",
        }
        for i in range(n)
    ]


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def tokenizer_of(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


# ----------------------------------------------------------------------------- data


@pytest.mark.parametrize("own_template", [True, False])
def test_label_mask_covers_exactly_the_assistant_turn(tiny_lm_dir, own_template):
    tok = tokenizer_of(tiny_lm_dir)
    if not own_template:
        tok.chat_template = None
        assert ensure_chat_template(tok) == ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    eot = "<|im_end|>" if own_template else "<|eot_id|>"
    q, answer = "What causes fever?", format_response("Infection is common.", "An infection.")
    ids, labels, mismatch = tokenize_example(tok, q, answer, end_of_turn_ids(tok))
    assert not mismatch and len(ids) == len(labels)

    prompt_ids = tok(render(tok, q), add_special_tokens=False)["input_ids"]
    turn_ids = tok(answer + eot, add_special_tokens=False)["input_ids"]
    assert ids[: len(prompt_ids)] == prompt_ids  # the prompt is tokenized as at inference
    start, end = len(prompt_ids), len(prompt_ids) + len(turn_ids)
    assert ids[start:end] == turn_ids
    for i, (tid, lab) in enumerate(zip(ids, labels, strict=True)):  # token by token
        assert lab == (tid if start <= i < end else IGNORE_INDEX), (i, tok.decode([tid]))
    assert labels[end - 1] == tok.convert_tokens_to_ids(eot)  # end-of-turn token is learnt
    if own_template:  # ChatML's newline after <|im_end|> is not part of the turn
        assert end == len(ids) - 1 and tok.decode(ids[end:]) == "\n"


def test_truncation_keeps_the_prompt_and_counts(tiny_lm_dir):
    tok = tokenizer_of(tiny_lm_dir)
    recs = load_sft_records_from(make_records(3))
    full, _ = tokenize_records(tok, recs, max_seq_len=10_000)
    n_prompt = [next(i for i, lab in enumerate(ex["labels"]) if lab != IGNORE_INDEX) for ex in full]
    max_len = max(n_prompt) + 5
    cut, stats = tokenize_records(tok, recs, max_seq_len=max_len)
    assert stats.truncated == sum(len(ex["input_ids"]) > max_len for ex in full) > 0
    for before, after, n in zip(full, cut, n_prompt, strict=True):
        assert len(after["input_ids"]) == min(len(before["input_ids"]), max_len)
        assert after["input_ids"] == before["input_ids"][: len(after["input_ids"])]  # head kept, tail cut
        assert after["labels"][:n] == [IGNORE_INDEX] * n
    _, stats = tokenize_records(tok, recs + [{**recs[0], "Question": "fever " * 400}], max_seq_len=max_len)
    assert stats.dropped == 1


def load_sft_records_from(records):
    from huatuo_o1.train.sft_data import _check_records

    return _check_records(records, "mem")


def test_question_falls_back_to_open_ended_field(tmp_path):
    rec = make_records(1)[0]
    q = rec.pop("Question")
    recs = load_sft_records(
        str(write_json(tmp_path / "d.json", [{**rec, "Open-ended Verifiable Question": q}]))
    )
    assert recs[0]["Question"] == q


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("", "is empty"),
        ("[]", "no records"),
        ("{not json", "not valid JSON"),
        (
            json.dumps(make_records(2) + [{"Question": "q", "Response": "r"}]),
            "item 3 lacks field(s) 'Complex_CoT'",
        ),
    ],
)
def test_bad_data_fails_before_loading_the_model(tmp_path, capsys, content, message):
    from huatuo_o1.cli import run_main
    from huatuo_o1.train.sft import main

    data = tmp_path / "data.json"
    if content is not None:
        data.write_text(content, encoding="utf-8")
    # The model path does not exist: failing on the data proves no model was loaded first.
    argv = [
        "--model_path",
        str(tmp_path / "no_model"),
        "--data_path",
        str(data),
        "--output_dir",
        str(tmp_path),
    ]
    with pytest.raises(SystemExit) as exc:
        run_main(lambda: main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_bad_data_exit_code_2_from_the_command_line(tmp_path):
    data = write_json(tmp_path / "d.json", [{"Question": "q", "Complex_CoT": "c"}])
    r = subprocess.run(
        [sys.executable, str(ROOT / "SFT_stage1.py"), "--model_path", "nowhere", "--data_path", str(data)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=ENV,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert "item 1 lacks field(s) 'Response'" in r.stderr
    assert not (tmp_path / "ckpts").exists()


# ----------------------------------------------------------------------------- batching


def test_packed_examples_do_not_attend_to_each_other(tiny_lm_dir, tmp_path):
    """Through the trainer's own compute_loss (the training path): the logits of a packed row equal
    each example's logits computed alone, so no example attends to another."""
    import torch
    from transformers import AutoModelForCausalLM, TrainingArguments

    from huatuo_o1.train.sft import _make_trainer_class

    tok = tokenizer_of(tiny_lm_dir)
    examples, _ = tokenize_records(tok, load_sft_records_from(make_records(3)), max_seq_len=512)
    model = AutoModelForCausalLM.from_pretrained(
        tiny_lm_dir, dtype=torch.float32, attn_implementation="sdpa"
    ).eval()
    targs = TrainingArguments(output_dir=str(tmp_path / "t"), report_to=[], use_cpu=True)
    trainer = _make_trainer_class()(model=model, args=targs, pad_token_id=tok.pad_token_id)
    # Trainer turns config.use_cache off at init (TrainingArguments.use_cache=False); compute_loss
    # must not depend on that (a KV cache makes transformers ignore the packed position ids).
    model.config.use_cache = True
    batch = make_collator(True, tok.pad_token_id)(examples)
    assert batch["input_ids"].shape == (1, sum(len(e["input_ids"]) for e in examples))
    assert "attention_mask" not in batch
    with torch.no_grad():
        _, out = trainer.compute_loss(model, dict(batch), return_outputs=True)
        packed = out.logits[0]
        off = 0
        for ex in examples:
            alone = model(input_ids=torch.tensor([ex["input_ids"]])).logits[0]
            n = len(ex["input_ids"])
            torch.testing.assert_close(packed[off : off + n], alone, atol=1e-4, rtol=1e-4)
            off += n
    # each example's first label is masked so no token predicts the next example
    starts = [0, len(examples[0]["input_ids"])]
    assert all(batch["labels"][0, s].item() == IGNORE_INDEX for s in starts)


def test_padded_collator():
    feats = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    b = PaddedCollator(pad_token_id=0)(feats)
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert b["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


# ----------------------------------------------------------------------------- training


def sft_argv(model_dir, data, out, *extra) -> list[str]:
    return [
        "--model_path", str(model_dir), "--data_path", str(data), "--output_dir", str(out),
        "--log_dir", str(Path(out) / "logs"), "--max_seq_len", "256", "--report_to", "none",
        "--gradient_accumulation_steps", "1", "--gradient_checkpointing", "False", *extra,
    ]  # fmt: skip


def test_sft_teaches_thinking_format_and_saves_loadable_checkpoints(tiny_lm_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from huatuo_o1.train.sft import main

    data = write_json(tmp_path / "d.json", make_records(4))
    argv = sft_argv(tiny_lm_dir, data, tmp_path / "ckpts", "--n_epochs", "40", "--learning_rate", "3e-3",
                    "--warmup_rates", "0", "--save_steps", "20", "--max_ckpts", "2", "--logging_steps", "10")  # fmt: skip
    assert main(argv) == 0
    run = tmp_path / "ckpts" / "sft_stage1"
    ckpts = sorted(p.name for p in run.glob("checkpoint-*"))
    assert ckpts == ["checkpoint-60", "checkpoint-80"]  # newest --max_ckpts kept
    for folder in [run, run / "checkpoint-80"]:
        assert (folder / "config.json").exists() and (folder / "model.safetensors").exists()
        assert (folder / "tokenizer.json").exists()
        AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(run)
    model = AutoModelForCausalLM.from_pretrained(run, dtype=torch.float32).eval()
    enc = tok(render(tok, "Patient 9 has fever and cough. What is the diagnosis?"), add_special_tokens=False,
              return_tensors="pt")  # fmt: skip
    out = model.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    text = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert text.startswith("## Thinking"), text


def test_resume_after_interruption_continues_from_saved_step(tiny_lm_dir, tmp_path):
    from transformers import TrainerCallback

    from huatuo_o1.train.sft import parse_args, train

    data = write_json(tmp_path / "d.json", make_records(8))
    extra = ("--max_steps", "6", "--save_steps", "2", "--learning_rate", "1e-3", "--max_ckpts", "2")

    def losses(run_dir):
        state = json.loads((Path(run_dir) / "checkpoint-6" / "trainer_state.json").read_text())
        return {h["step"]: h["loss"] for h in state["log_history"] if "loss" in h}

    ref = train(parse_args(sft_argv(tiny_lm_dir, data, tmp_path / "ref", *extra)))

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 5:
                raise KeyboardInterrupt

    argv = sft_argv(tiny_lm_dir, data, tmp_path / "run", *extra)
    with pytest.raises(KeyboardInterrupt):
        train(parse_args(argv), callbacks=[Crash()])
    run = tmp_path / "run" / "sft_stage1"
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    # each checkpoint records the model and data it was trained from
    saved = json.loads((run / "checkpoint-4" / "run_args.json").read_text())
    assert saved["model_path"] == str(Path(tiny_lm_dir).resolve()) and saved["data_path"] == str(data)
    train(parse_args([*argv, "--resume"]))
    resumed = losses(run)
    assert min(resumed) == 1 and max(resumed) == 6
    state = json.loads((run / "checkpoint-6" / "trainer_state.json").read_text())
    # steps 5 and 6 were redone after the resume only once, on the same data, with the same result
    assert [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2, 3, 4, 5, 6]
    for step in (5, 6):
        assert resumed[step] == pytest.approx(losses(ref)[step], rel=1e-4)


def test_resume_refuses_a_checkpoint_of_another_model_or_data(tiny_lm_dir, tmp_path, capsys):
    from huatuo_o1.cli import run_main
    from huatuo_o1.train.sft import main, parse_args, sft_identity

    data = write_json(tmp_path / "d.json", make_records(4))
    other = write_json(tmp_path / "other.json", make_records(5))
    argv = sft_argv(tiny_lm_dir, data, tmp_path / "ckpts")
    run = tmp_path / "ckpts" / "sft_stage1"
    ckpt = run / "checkpoint-3"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")
    # the newest checkpoint was trained on other data: refused before any model is loaded
    write_json(ckpt / "run_args.json", sft_identity(parse_args([*argv, "--data_path", str(other)])))
    with pytest.raises(SystemExit) as e:
        run_main(lambda: main(argv))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"--data_path {other}, not --data_path {data}" in err
    assert "--resume False" in err and "--experiment_name" in err
    # another model, recorded only in the run folder (the run started, no checkpoint copy)
    (ckpt / "run_args.json").unlink()
    write_json(run / "run_args.json", {**sft_identity(parse_args(argv)), "model_path": "org/other-model"})
    with pytest.raises(SystemExit) as e:
        run_main(lambda: main([*argv, "--resume"]))
    assert e.value.code == 2 and "--model_path org/other-model" in capsys.readouterr().err


def test_accelerate_launch_single_cpu_process(tiny_lm_dir, tmp_path):
    data = write_json(tmp_path / "d.json", make_records(4))
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file",
        str(ROOT / "configs" / "cpu_single_process.yaml"), str(ROOT / "SFT_stage1.py"),
        *sft_argv(tiny_lm_dir, data, tmp_path / "ckpts", "--max_steps", "2", "--packing", "False"),
    ]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "ckpts" / "sft_stage1" / "model.safetensors").exists()
    # the original padded batching is logged as such: examples of different lengths -> padding
    shares = [float(x) for x in re.findall(r"'real_token_share': '([0-9.e-]+)'", r.stdout + r.stderr)]
    assert shares and min(shares) < 1.0


@pytest.mark.gpu
def test_sft_on_gpu_with_bf16(tiny_lm_dir, tmp_path):
    from huatuo_o1.train.sft import main

    data = write_json(tmp_path / "d.json", make_records(4))
    assert main(sft_argv(tiny_lm_dir, data, tmp_path / "ckpts", "--max_steps", "2", "--bf16")) == 0
    assert (tmp_path / "ckpts" / "sft_stage1" / "model.safetensors").exists()


def test_model_without_chat_template_gets_llama3_template_and_stops_at_eot(tmp_path):
    import json as _json

    from transformers import AutoConfig, AutoTokenizer

    from huatuo_o1.testing.tiny_models import build_tiny_causal_lm
    from huatuo_o1.train.sft import main

    base = build_tiny_causal_lm(tmp_path / "base", chat_template=False)
    data = write_json(tmp_path / "d.json", make_records(2))
    assert main(sft_argv(base, data, tmp_path / "ckpts", "--max_steps", "1")) == 0
    run = tmp_path / "ckpts" / "sft_stage1"
    tok = AutoTokenizer.from_pretrained(run)
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    assert "<|start_header_id|>" in render(tok, "q") and eot != tok.unk_token_id
    assert AutoConfig.from_pretrained(run).vocab_size == len(tok)  # embeddings resized for the new tokens
    stop = _json.loads((run / "generation_config.json").read_text())["eos_token_id"]
    assert eot in (stop if isinstance(stop, list) else [stop])
