"""SFT targets (--sft_target): each target's rendered example, its learnt tokens, bad files, identity."""

from __future__ import annotations

import json

import pytest

from huatuo_o1.contract import (
    MCQ_ANSWER,
    MCQ_ANSWER_IDX,
    MCQ_OPTIONS,
    MCQ_QUESTION,
    SEARCH_STEP_KINDS,
    SEARCH_STEPS,
    SEARCH_VERDICTS,
    SFT_COT,
    SFT_QUESTION,
    SFT_RESPONSE,
)
from huatuo_o1.io import InputError
from huatuo_o1.train.sft_data import IGNORE_INDEX, tokenize_chats, tokenize_records
from huatuo_o1.train.sft_targets import build_chats, load_sft_chats

FIRST = [
    {"action": "Inner Thinking", "title": "Symptoms", "content": "Fever and cough."},
    {"action": "Inner Thinking", "title": "Cause", "content": "Likely infection."},
    {"action": "Final Conclusion", "content": "Pneumonia."},
    {"action": "Verification", "content": "Consistent."},
]


def record(i: int = 0, first_correct: bool = True) -> dict:
    return {
        MCQ_QUESTION: f"Which drug {i}?",
        MCQ_OPTIONS: {"A": "Heparin", "B": "Aspirin", "C": "Insulin"},
        MCQ_ANSWER_IDX: "B",
        MCQ_ANSWER: "Aspirin",
        SFT_QUESTION: f"Patient {i} has chest pain. Which drug first?",
        SFT_COT: "Chest pain suggests infarction; aspirin first.",
        SFT_RESPONSE: "Aspirin.",
        SEARCH_STEPS: [FIRST, [{"action": "Verification", "content": "Again."}]],
        SEARCH_STEP_KINDS: ["Init_CoT", "Re_CoT_Correction"],
        SEARCH_VERDICTS: [first_correct, True],
    }


def tok_of(tiny_lm_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_lm_dir)


def learnt_text(tok, example) -> str:
    return tok.decode(
        [t for t, lab in zip(example["input_ids"], example["labels"], strict=True) if lab != IGNORE_INDEX]
    )


def prompt_text(tok, example) -> str:
    return tok.decode(
        [t for t, lab in zip(example["input_ids"], example["labels"], strict=True) if lab == IGNORE_INDEX]
    )


def test_default_target_renders_exactly_as_before(tiny_lm_dir):
    tok = tok_of(tiny_lm_dir)
    recs = [record(0), record(1)]
    chats = build_chats(recs, "complex_cot", "mem")
    assert chats[0] == (
        "Patient 0 has chest pain. Which drug first?",
        "## Thinking\n\nChest pain suggests infarction; aspirin first.\n\n## Final Response\n\nAspirin.",
    )
    new, _ = tokenize_chats(tok, chats, 512)
    old, _ = tokenize_records(
        tok, [{k: r[k] for k in (SFT_QUESTION, SFT_COT, SFT_RESPONSE)} for r in recs], 512
    )
    assert new == old
    assert tok.decode(new[0]["input_ids"]) == (
        "<|im_start|>user\nPatient 0 has chest pain. Which drug first?<|im_end|>\n<|im_start|>assistant\n"
        "## Thinking\n\nChest pain suggests infarction; aspirin first.\n\n## Final Response\n\nAspirin.<|im_end|>\n"
    )
    assert learnt_text(tok, new[0]) == (
        "## Thinking\n\nChest pain suggests infarction; aspirin first.\n\n## Final Response\n\nAspirin.<|im_end|>"
    )


def test_simple_cot_is_the_first_reasoning_and_conclusion(tiny_lm_dir, caplog):
    tok = tok_of(tiny_lm_dir)
    recs = [record(0), record(1, first_correct=False)]
    chats = build_chats(recs, "simple_cot", "mem")
    assert len(chats) == 1  # the first conclusion of item 1 was judged wrong
    assert chats[0] == (
        "Patient 0 has chest pain. Which drug first?",
        "## Thinking\n\nSymptoms: Fever and cough.\n\nCause: Likely infection.\n\n## Final Response\n\nPneumonia.",
    )
    assert len(build_chats(recs, "simple_cot", "mem", simple_cot_first_correct=False)) == 2
    (ex,), _ = tokenize_chats(tok, chats, 512)
    assert learnt_text(tok, ex) == chats[0][1] + "<|im_end|>"
    with pytest.raises(InputError, match=r"item 1 lacks field\(s\) 'response_struct', 'verify' .*simple_cot"):
        build_chats([{SFT_QUESTION: "q", SFT_COT: "c", SFT_RESPONSE: "r"}], "simple_cot", "f.json")
    with pytest.raises(InputError, match="no item qualifies"):
        build_chats([record(0, first_correct=False)], "simple_cot", "f.json")


def test_response_target_is_the_final_response_alone(tiny_lm_dir):
    tok = tok_of(tiny_lm_dir)
    chats = build_chats([record(0)], "response", "mem")
    assert chats == [("Patient 0 has chest pain. Which drug first?", "Aspirin.")]
    (ex,), _ = tokenize_chats(tok, chats, 512)
    assert learnt_text(tok, ex) == "Aspirin.<|im_end|>"
    assert prompt_text(tok, ex).startswith("<|im_start|>user\nPatient 0 has chest pain.")
    with pytest.raises(InputError, match=r"item 1 lacks field\(s\) 'Response' that --sft_target response"):
        build_chats([{SFT_QUESTION: "q"}], "response", "f.json")


def test_mcq_target_is_the_correct_option(tiny_lm_dir):
    tok = tok_of(tiny_lm_dir)
    chats = build_chats([record(0)], "mcq", "mem")
    user = "Please answer the following multiple-choice question:\nWhich drug 0?\nA. Heparin\nB. Aspirin\nC. Insulin"
    assert chats == [(user, "The answer is B. Aspirin")]
    (ex,), _ = tokenize_chats(tok, chats, 512)
    assert learnt_text(tok, ex) == "The answer is B. Aspirin<|im_end|>"
    assert prompt_text(tok, ex) == f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n\n"
    # no answer_idx: the letter of the option whose text is the answer
    no_idx = {k: v for k, v in record(0).items() if k != MCQ_ANSWER_IDX}
    assert build_chats([no_idx], "mcq", "mem")[0][1] == "The answer is B. Aspirin"
    with pytest.raises(
        InputError, match=r"item 1 lacks field\(s\) 'question', 'options', 'answer_idx' .*mcq"
    ):
        build_chats([{SFT_QUESTION: "q", SFT_RESPONSE: "r"}], "mcq", "f.json")


def test_bad_target_and_missing_fields_exit_2(tiny_lm_dir, tmp_path, capsys):
    from huatuo_o1.cli import run_main
    from huatuo_o1.train.sft import main

    data = tmp_path / "d.json"
    data.write_text(json.dumps([{SFT_QUESTION: "q", SFT_COT: "c", SFT_RESPONSE: "r"}]))
    base = ["--model_path", str(tiny_lm_dir), "--data_path", str(data), "--output_dir", str(tmp_path / "o"),
            "--report_to", "none"]  # fmt: skip
    for extra, message in [
        (["--sft_target", "cot"], "--sft_target must be one of complex_cot, simple_cot, response, mcq"),
        (["--sft_target", "mcq"], "lacks field(s) 'question', 'options', 'answer_idx'"),
    ]:
        with pytest.raises(SystemExit) as e:
            run_main(lambda extra=extra: main([*base, *extra]))
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and len(err.splitlines()) == 1 and message in err
    assert len(load_sft_chats(str(data))) == 1


def test_target_is_part_of_the_run_identity(tmp_path):
    from huatuo_o1.train.checkpoints import check_resumable
    from huatuo_o1.train.sft import parse_args, sft_identity

    argv = ["--model_path", "m", "--data_path", "d.json"]
    default = sft_identity(parse_args(argv))
    assert default["sft_target"] == "complex_cot"
    mcq = sft_identity(parse_args([*argv, "--sft_target", "mcq"]))
    ckpt = tmp_path / "checkpoint-1"
    ckpt.mkdir()
    (ckpt / "run_args.json").write_text(json.dumps(mcq))
    with pytest.raises(InputError, match="--sft_target mcq, not --sft_target complex_cot"):
        check_resumable(ckpt, tmp_path, default, "use another --experiment_name")
    a = sft_identity(parse_args([*argv, "--sft_target", "simple_cot"]))
    b = sft_identity(parse_args([*argv, "--sft_target", "simple_cot", "--simple_cot_first_correct", "False"]))
    assert a != b


def test_sft_trains_on_a_non_default_target(tiny_lm_dir, tmp_path):
    from huatuo_o1.train.sft import main

    data = tmp_path / "d.json"
    data.write_text(json.dumps([record(i) for i in range(3)]))
    out = tmp_path / "ckpts"
    argv = ["--model_path", str(tiny_lm_dir), "--data_path", str(data), "--output_dir", str(out),
            "--log_dir", str(tmp_path / "logs"), "--report_to", "none", "--max_steps", "1",
            "--gradient_accumulation_steps", "1", "--gradient_checkpointing", "False", "--sft_target", "mcq"]  # fmt: skip
    assert main(argv) == 0
    saved = json.loads((out / "sft_stage1" / "run_args.json").read_text())
    assert saved["sft_target"] == "mcq"
    assert (out / "sft_stage1" / "config.json").exists()
