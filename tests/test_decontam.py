"""Decontamination: Med-PaLM 2's 64-character rule, its index and its script."""

from __future__ import annotations

import json
import random

import pytest

from huatuo_o1.datagen.decontam import WINDOW, EvalIndex, load_eval_questions, normalize, screen
from huatuo_o1.io import InputError
from tests.helpers import run_script

EVAL_Q = (
    "A 62-year-old man has sudden painless loss of vision in his right eye; fundoscopy shows a "
    "cherry-red spot at the macula. Which of the following is the most likely diagnosis?"
)


def index_of(*questions: str, **kw) -> EvalIndex:
    return EvalIndex([("src", i + 1, q) for i, q in enumerate(questions)], **kw)


def test_64_shared_characters_drop_63_do_not():
    idx = index_of(EVAL_Q)
    piece = EVAL_Q[10 : 10 + WINDOW]
    found = idx.find([f"Intro text. {piece} outro text.", f"Intro text. {piece[:-1]}| outro text."])
    assert (
        found[0] is not None and found[0].shared == piece and (found[0].source, found[0].index) == ("src", 1)
    )
    assert found[1] is None


def test_whitespace_is_normalised_on_both_sides():
    idx = index_of(EVAL_Q.replace(" ", "\n ", 3))
    piece = EVAL_Q[20 : 20 + WINDOW + 5].replace(" ", "\t\t", 2)
    assert idx.find([f"x {piece} y"])[0] is not None
    assert normalize("  a \n\t b  ") == "a b"


def test_identical_short_question_drops():
    idx = index_of("Drug of choice for absence seizures?")
    m = idx.find(["Drug of choice for  absence seizures?", "Drug of choice for absence seizures"])
    assert m[0] is not None and m[0].identical and "identical" in m[0].reason()
    assert m[1] is None


def test_agrees_with_naive_scan_on_random_data():
    rng = random.Random(3)
    words = ["".join(rng.choice("abcdefgh") for _ in range(rng.randint(2, 7))) for _ in range(300)]

    def sent(n):
        return " ".join(rng.choice(words) for _ in range(n))

    evals = [sent(rng.randint(5, 40)) for _ in range(60)]
    texts = []
    for k in range(400):
        t = sent(rng.randint(3, 40))
        if k % 5 == 0:
            e = normalize(rng.choice(evals))
            if len(e) >= WINDOW:
                s = rng.randint(0, len(e) - WINDOW)
                t = t[:10] + " " + e[s : s + WINDOW] + " " + t[10:]
        texts.append(t)
    windows = {normalize(e)[s : s + WINDOW] for e in evals for s in range(len(normalize(e)) - WINDOW + 1)}
    whole = {normalize(e) for e in evals}

    def naive(t):
        n = normalize(t)
        return n in whole or any(n[s : s + WINDOW] in windows for s in range(len(n) - WINDOW + 1))

    found = index_of(*evals).find(texts)
    assert [m is not None for m in found] == [naive(t) for t in texts]
    assert sum(m is not None for m in found) >= 40


def test_ignore_common_skips_boilerplate_only():
    boiler = "Which of the following is the most appropriate next step in management?"
    evals = [f"Case {i}: a patient with complaint number {i} in clinic {i * 7}. {boiler}" for i in range(3)]
    item = f"A different story about a child with a cough. {boiler}"
    assert index_of(*evals).find([item])[0] is not None  # the paper's rule, literally
    idx = index_of(*evals, ignore_common=3)
    assert idx.ignored_windows > 0
    assert idx.find([item])[0] is None
    assert idx.find([evals[1][:70] + " tail"])[0] is not None  # a window of one question still counts


def test_screen_checks_every_question_field():
    idx = index_of(EVAL_Q)
    items = [{"question": "short"}, {"Open-ended Verifiable Question": "Now: " + EVAL_Q}, {"Question": "x"}]
    assert [m is not None for m in screen(items, idx)] == [False, True, False]


def test_eval_file_formats_and_errors(tmp_path):
    d = tmp_path / "e.json"
    d.write_text(json.dumps({"A": [{"question": "q1", "options": {}}], "B": [{"question": "q2"}]}))
    assert load_eval_questions(d) == [("A", 1, "q1"), ("B", 1, "q2")]
    lst = tmp_path / "l.jsonl"
    lst.write_text('{"question": "q1"}\n{"question": "q2"}\n')
    assert [q for _, _, q in load_eval_questions(lst)] == ["q1", "q2"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"A": [{"text": "no question"}]}))
    with pytest.raises(InputError, match="item 1 has no question"):
        load_eval_questions(bad)
    with pytest.raises(InputError, match="not found"):
        load_eval_questions(tmp_path / "missing.json")


def test_script_screens_an_sft_file(tmp_path):
    ev = tmp_path / "eval.json"
    ev.write_text(json.dumps({"MedQA": [{"question": EVAL_Q, "options": {"A": "x"}, "answer_idx": "A"}]}))
    data = tmp_path / "sft.json"
    rows = [
        {"Question": "Explain: " + EVAL_Q[5:90], "Complex_CoT": "...", "Response": "..."},
        {"Question": "A clean question about renal physiology and sodium handling in the loop of Henle?"},
    ]
    data.write_text(json.dumps(rows))
    proc = run_script("scripts/decontaminate.py", "--data_path", data, "--against", ev)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["contaminated"] == 1 and report["clean"] == 1
    clean = json.loads((tmp_path / "sft_clean.json").read_text())
    dropped = json.loads((tmp_path / "sft_contaminated.json").read_text())
    assert clean == [rows[1]]
    assert "MedQA #1" in dropped[0]["decontamination_reason"]


def test_script_bad_eval_file_exits_2(tmp_path):
    data = tmp_path / "sft.json"
    data.write_text(json.dumps([{"Question": "q"}]))
    proc = run_script("scripts/decontaminate.py", "--data_path", data, "--against", tmp_path / "nope.json")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: evaluation file not found")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "sft_clean.json").exists()
