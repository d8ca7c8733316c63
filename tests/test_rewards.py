"""The RL reward: format rule, thresholds, the three verifiers behind one interface."""

from __future__ import annotations

import pytest

from huatuo_o1.rewards import (
    UNKNOWN_ANSWER,
    ClassifierVerifier,
    ExactMatchVerifier,
    LLMJudgeVerifier,
    RewardConfig,
    Verifier,
    normalize_answer,
    score_responses,
    verifier_input,
)

WELL = "## Thinking\n\nFever and cough suggest pneumonia.\n\n## Final Response\n\n{}"


class FixedVerifier(Verifier):
    """Returns given probabilities and records what it was asked."""

    def __init__(self, p):
        self.p = p
        self.calls = []

    def probabilities(self, answers, references):
        self.calls.append((list(answers), list(references)))
        return [self.p] * len(answers)


@pytest.mark.parametrize(
    "response, reference, reward",
    [
        (WELL.format("Community-acquired pneumonia."), "community acquired pneumonia", 1.0),
        (WELL.format("Asthma"), "community acquired pneumonia", 0.1),
        ("Fever.\n\n## Final Response\n\npneumonia", "pneumonia", 0.0),  # no ## Thinking
        (WELL.format("pneumonia\n\n## Final Response\n\npneumonia"), "pneumonia", 0.0),  # two final headers
        ("## Thinking\n\nx\n\n## Final Response\npneumonia", "pneumonia", 0.0),  # no blank line
        ("## Thinking\n\n## Thinking\n\n## Final Response\n\npneumonia", "pneumonia", 0.0),  # two thinking
    ],
)
def test_reward_table(response, reference, reward):
    res = score_responses([response], [reference], ExactMatchVerifier())
    assert res.rewards == [reward]
    assert res.well_formed == [reward > 0]
    assert res.correct == [reward == 1.0]


def test_threshold_is_strict_and_values_are_flags():
    cfg = RewardConfig(correct_reward=2.0, incorrect_reward=-1.0, malformed_reward=-5.0, threshold=0.4)
    ok = WELL.format("x")
    assert score_responses([ok], ["y"], FixedVerifier(0.4), cfg).rewards == [-1.0]
    assert score_responses([ok], ["y"], FixedVerifier(0.4001), cfg).rewards == [2.0]
    # malformed: reward is malformed_reward even when the verifier says True
    assert score_responses(["no format"], ["y"], FixedVerifier(0.99), cfg).rewards == [-5.0]


def test_malformed_goes_to_verifier_as_unknown_answer():
    v = FixedVerifier(0.9)
    res = score_responses(["garbage", WELL.format("  Aspirin  ")], ["A", "B"], v)
    assert v.calls == [([UNKNOWN_ANSWER, "Aspirin"], ["A", "B"])]
    assert res.rewards == [0.0, 1.0]
    assert res.summary() == {"reward/mean": 0.5, "reward/well_formed": 0.5, "reward/correct": 0.5}


def test_normalized_exact_match():
    assert normalize_answer("The  Warfarin!") == "warfarin"
    assert normalize_answer("Community-acquired") == "community acquired"
    v = ExactMatchVerifier()
    assert v.probabilities(["warfarin.", "heparin", ""], ["Warfarin", "warfarin", ""]) == [1.0, 0.0, 0.0]


def test_verifier_template_exact():
    text = verifier_input("A", "B", "</s>")
    assert text == (
        "<Model Response>\nA\n</Model Response>\n\n<Reference Answer>\nB\n</Reference Answer>\n\n"
        "Your task is to evaluate the model response by comparing it to the reference answer. If the model "
        'response is correct and aligns with the reference answer, output "True" . If it is incorrect or fails to '
        'select the correct option (if options are provided), output "False" . </s>'
    )


def test_classifier_uses_its_own_tokenizer_template_and_eos(tiny_verifier_dir, tiny_lm_dir):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    policy_tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    v = ClassifierVerifier.from_pretrained(str(tiny_verifier_dir))
    assert len(v.tokenizer) != len(policy_tok)  # really a different tokenizer
    texts = v.texts(["Aspirin", "Heparin"], ["Aspirin", "Warfarin"])
    assert texts[0] == verifier_input("Aspirin", "Aspirin", v.tokenizer.eos_token)
    assert texts[0].endswith(" " + v.tokenizer.eos_token)
    probs = v.probabilities(["Aspirin", "Heparin"], ["Aspirin", "Warfarin"])
    # same numbers as running the classifier by hand on the template, one text at a time (no padding)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_verifier_dir)
    tok = AutoTokenizer.from_pretrained(tiny_verifier_dir)
    for text, p in zip(texts, probs, strict=True):
        enc = tok(text, return_tensors="pt")
        assert enc["input_ids"][0, -1].item() == tok.eos_token_id  # eos appended, read last
        with torch.no_grad():
            ref = torch.softmax(model(**enc).logits, -1)[0, 1].item()
        assert p == pytest.approx(ref, abs=1e-5)


def test_classifier_truncation_keeps_template_tail(tiny_verifier_dir):
    v = ClassifierVerifier.from_pretrained(str(tiny_verifier_dir))
    overhead = len(v.tokenizer(verifier_input("", "pneumonia", v.tokenizer.eos_token))["input_ids"])
    v.max_length = overhead + 20
    (text,) = v.texts(["pneumonia " * 200], ["pneumonia"])
    ids = v.tokenizer(text)["input_ids"]
    assert v.max_length - 10 < len(ids) <= v.max_length
    assert ids[-1] == v.tokenizer.eos_token_id
    assert "<Reference Answer>\npneumonia\n</Reference Answer>" in text
    assert len(v.probabilities(["pneumonia " * 200], ["pneumonia"])) == 1


def test_llm_judge_through_loopback_server():
    from huatuo_o1.testing import FakeOpenAIServer

    def responder(req):
        # The verification prompt carries both answers; judge True when they agree.
        p = req.prompt
        if "Aspirin" in p and p.count("Aspirin") >= 2:
            return "True"
        if "unparseable" in p:
            return "I cannot tell"
        return "False"

    with FakeOpenAIServer(responder) as srv:
        judge = LLMJudgeVerifier("fake-model", api_key="sk-test", api_url=srv.url)
        res = score_responses(
            [WELL.format("Aspirin"), WELL.format("Heparin"), "malformed", WELL.format("unparseable")],
            ["Aspirin", "Aspirin", "Aspirin", "x"],
            judge,
        )
        assert srv.count("/chat/completions") == 4
        prompts = [r.prompt for r in srv.requests]
    assert res.rewards == [1.0, 0.1, 0.0, 0.1]
    assert any(UNKNOWN_ANSWER in p for p in prompts)
    assert judge.failures == 1
    assert "sk-test" not in repr(judge)
