"""Answer extraction and scores of evaluation (huatuo_o1/eval/scoring.py)."""

import pytest

from huatuo_o1.eval.scoring import format_table, match_choice, score_output, summarize

OPTS = {"A": "Aspirin", "B": "Heparin", "C": "Warfarin", "D": "Insulin"}


@pytest.mark.parametrize(
    "output, ans, step",
    [
        # HuatuoGPT-style: only the text after "## Final Response\n\n" counts (the thinking says A)
        ("## Thinking\n\nMaybe A. Or B.\n\n## Final Response\n\nThe answer is C. Warfarin.", ["C", "C"], 1),
        ("Let me think. The answer is C.", ["C", "C"], 1),
        ("At first the answer is B, but on reflection the answer is D.", ["B", "D"], 1),
        ("The correct choice is **B** because heparin works at once.", ["B", "B"], 2),
        ("答案是D", ["D", "D"], 2),
        ("(A) is wrong; the right one is (C).", ["A", "C"], 2),
        # option text only: first = earliest, last = latest occurrence
        ("Heparin is tempting, but warfarin is the drug to give.", ["B", "C"], 3),
        # the article "A " is never an answer letter; falls back to option text
        ("A patient with diabetes needs insulin", ["D", "D"], 3),
        # "answer is" followed by a word starting with a capital is not a letter
        ("The answer is Insulin therapy", ["D", "D"], 3),
        # nothing matches: the most similar option text
        ("insulim", ["D", "D"], 4),
        ("", [None, None], 0),
        ("   \n", [None, None], 0),
    ],
)
def test_match_choice_paths(output, ans, step):
    assert match_choice(output, OPTS) == (ans, step)


def test_letters_beyond_options_are_not_standalone_answers():
    # E is not an option of a 4-option question: step 2 ignores it and finds C
    assert match_choice("E) is not listed, so C.", OPTS) == (["C", "C"], 2)
    ten = {k: f"option {k.lower()}" for k in "ABCDEFGHIJ"}
    assert match_choice("The final choice: J.", ten) == (["J", "J"], 2)


def test_strict_accepts_only_steps_1_and_2():
    s = score_output("The answer is B.", OPTS, "B")
    assert s["strict_ans"] == "B" and s["correct_strict"] and s["correct_last"]
    # the original's ans_type (1 "answer is" and standalone letters, 2 option text, 3 difflib)
    # beside our finer ans_step
    steps = {o: score_output(o, OPTS, "B") for o in ("The answer is B.", "**B**", "heparin", "hepxrin", "")}
    assert [(v["ans_type"], v["ans_step"]) for v in steps.values()] == [
        (1, 1),
        (1, 2),
        (2, 3),
        (3, 4),
        (0, 0),
    ]
    s = score_output("heparin", OPTS, "B")  # option text: lenient right, strict unanswered
    assert s["correct_first"] and s["correct_last"] and s["strict_ans"] is None and not s["correct_strict"]
    s = score_output("", OPTS, "B")  # empty output: wrong everywhere, unanswered, dropped by the original
    assert not (s["correct_first"] or s["correct_last"] or s["correct_strict"]) and s["strict_ans"] is None
    assert s["dropped_by_original"] and s["ans"] == [None, None]


def test_original_reading_and_fixed_reading_are_kept_apart():
    opts = {"A": "Cardiology", "B": "Neurology", "C": "Dermatology", "D": "Oncology"}
    # the original reads the C of "Cardiology"; our fixed reading finds the option text: A
    s = score_output("The answer is Cardiology", opts, "A")
    assert s["ans"] == ["C", "C"] and not s["correct_last"]
    assert s["fixed_ans"] == ["A", "A"] and s["fixed_correct_last"] and s["strict_ans"] is None
    # two letters: the original takes the first, we take no letter from "CD"
    s = score_output("The answer is CD.", OPTS, "C")
    assert s["ans"] == ["C", "C"] and s["ans_type"] == 1 and s["correct_last"]
    assert s["ans_step"] == 4 and s["strict_ans"] is None and not s["correct_strict"]
    # revised option text: the original's "first" is the latest first mention, ours the earliest
    s = score_output("heparin first, then warfarin", OPTS, "B")
    assert s["ans"] == ["C", "C"] and s["fixed_ans"] == ["B", "C"]


def _rec(source, output, gold="B", samples=None):
    rec = {
        "source": source,
        "answer_idx": gold,
        "options": OPTS,
        "output": output,
        **score_output(output, OPTS, gold),
    }
    if samples:
        rec["samples"] = [{"output": o, **score_output(o, OPTS, gold)} for o in samples]
    return rec


def test_lenient_is_better_of_first_and_last_per_source_and_strict_counts_unanswered():
    recs = [
        _rec("X", "The answer is A. No wait, the answer is B."),  # first wrong, last right
        _rec("X", "The answer is B."),
        _rec("X", "heparin"),  # right by option text: lenient only
        _rec("X", ""),  # empty: wrong, unanswered, not dropped
        _rec("Y", "B. No, A."),  # first right, last wrong
        _rec("Y", "C"),
    ]
    s = summarize(recs)
    assert s["X"]["count"] == 4 and s["Y"]["count"] == 2
    # the original layout leaves the empty output out: 3 outputs, last letter right in all 3
    assert s["X"]["score_list"] == [1.0, 2, 3, 3] and s["X"]["lenient"] == 1.0 and s["X"]["dropped"] == 1
    # fixed: the empty output is wrong
    assert s["X"]["fixed_first"] == 0.5 and s["X"]["fixed_last"] == 0.75 and s["X"]["fixed_lenient"] == 0.75
    assert s["X"]["strict"] == 0.5 and s["X"]["unanswered"] == 0.5
    assert s["Y"]["lenient"] == 0.5 and s["Y"]["strict"] == 0.0 and s["Y"]["unanswered"] == 0.0
    table = format_table(s)
    for column in (
        "lenient (original)",
        "fixed lenient",
        "strict",
        "unanswered",
        "dropped",
        "ALL (weighted)",
    ):
        assert column in table
    assert "100.0" in table and "75.0" in table


def test_n_samples_statistics():
    recs = [
        _rec("S", "", samples=["The answer is B.", "The answer is B.", "The answer is A."]),  # maj right
        _rec("S", "", samples=["The answer is A.", "The answer is C.", "The answer is B."]),  # pass only
        _rec("S", "", samples=["The answer is A.", "The answer is A.", "The answer is A."]),  # all wrong
        _rec("S", "", samples=["The answer is B.", "The answer is B.", "The answer is B."]),  # all right
    ]
    s = summarize(recs)["S"]
    assert s["n_samples"] == 3
    st = s["strict_samples"]
    assert st["mean"] == pytest.approx((2 / 3 + 1 / 3 + 0 + 1) / 4)
    assert st["maj@3"] == 0.5  # questions 1 and 4 (question 2 ties: A first -> wrong)
    assert st["pass@3"] == 0.75
    lo, hi = st["ci95"]
    assert 0 <= lo < st["mean"] < hi <= 1
    assert s["fixed_lenient_samples"]["pass@3"] == 0.75
    # the original layout per run (sample j of every question), averaged as the paper did on GPQA
    assert [r[0] for r in s["original_runs"]] == [0.5, 0.5, 0.5]
    assert s["lenient"] == 0.5
    assert "maj@3" in format_table(summarize(recs)) and "per run" in format_table(summarize(recs))


def test_max_tokens_cuts_the_question_not_the_options(tiny_lm_dir):
    from transformers import AutoTokenizer

    from huatuo_o1.generation import PromptBuilder

    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    item = {"question": "The patient presents with fever and cough. " * 30 + "Which drug?", "options": OPTS}
    _, full = PromptBuilder(tok).build(item)
    user, capped = PromptBuilder(tok, max_tokens=120).build(item)
    assert (
        len(tok.encode(full, add_special_tokens=False))
        > 120
        >= len(tok.encode(capped, add_special_tokens=False))
    )
    assert capped.endswith("D. Insulin<|im_end|>\n<|im_start|>assistant\n") and "Which drug?" not in capped
    assert user.startswith("Please answer the following multiple-choice question:\nThe patient presents")
    _, raw = PromptBuilder(tok, use_chat_template=False).build({**item, "question": " Q? "}, strict=True)
    # the original's strict prompt verbatim (its first sentence repeated), the question not stripped
    assert raw == (
        "Please answer the following multiple-choice questions. Please answer the following "
        "multiple-choice questions, ensuring your response concludes with the correct option in the "
        "format: 'The answer is A.'.\n Q? \nA. Aspirin\nB. Heparin\nC. Warfarin\nD. Insulin"
    )
    # a cap shorter than instruction + options + template cannot be met: counted for the warning
    tiny = PromptBuilder(tok, max_tokens=10)
    tiny.build(item)
    assert tiny.uncapped == 1 and builder_ok(tok) == 0


def builder_ok(tok) -> int:
    from huatuo_o1.generation import PromptBuilder

    b = PromptBuilder(tok, max_tokens=120)
    b.build({"question": "short?", "options": OPTS})
    return b.uncapped
