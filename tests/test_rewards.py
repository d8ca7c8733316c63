"""The RL reward: format rule, thresholds, the three verifiers behind one interface."""

from __future__ import annotations

import pytest

from huatuo_o1.rl.rewards import (
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
    cfg = RewardConfig(correct_reward=2.0, incorrect_reward=-1.0, malformed_reward=-5.0, reward_threshold=0.4)
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
    texts = [
        verifier_input(a, r, v.tokenizer.eos_token)
        for a, r in (("Aspirin", "Aspirin"), ("Heparin", "Warfarin"))
    ]
    assert texts[0].endswith(" " + v.tokenizer.eos_token)
    probs = v.probabilities(["Aspirin", "Heparin"], ["Aspirin", "Warfarin"])
    # same numbers as running the classifier by hand on the template, one text at a time (no padding)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_verifier_dir)
    tok = AutoTokenizer.from_pretrained(tiny_verifier_dir)
    for text, p in zip(texts, probs, strict=True):
        enc = tok(text, return_tensors="pt", add_special_tokens=False)
        assert enc["input_ids"][0, -1].item() == tok.eos_token_id  # eos appended, read last
        with torch.no_grad():
            ref = torch.softmax(model(**enc).logits, -1)[0, 1].item()
        assert p == pytest.approx(ref, abs=1e-5)


def _verifier_with_bos_post_processor(src, dst):
    """The tiny verifier whose tokenizer adds a bos to every encoding (as Llama-3's does)."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src)
    bos = tok.bos_token
    tok._tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tok.bos_token_id)]
    )
    tok.save_pretrained(dst)
    AutoModelForSequenceClassification.from_pretrained(src).save_pretrained(dst)
    return dst


def test_classifier_input_gets_no_extra_bos(tiny_verifier_dir, tmp_path):
    """The template is the whole input (the released reward code tokenised it without special
    tokens): a tokenizer that adds a bos must not add one here, nor in the over-long path."""
    v = ClassifierVerifier.from_pretrained(
        str(_verifier_with_bos_post_processor(tiny_verifier_dir, tmp_path / "v"))
    )
    bos, eos = v.tokenizer.bos_token_id, v.tokenizer.eos_token_id
    text = verifier_input("Aspirin", "Aspirin", v.tokenizer.eos_token)
    assert v.tokenizer(text)["input_ids"][0] == bos  # the tokenizer really adds one by default
    (ids,) = v.encode(["Aspirin"], ["Aspirin"])
    assert ids == v.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[0] != bos and bos not in ids and ids[-1] == eos
    v.max_length = len(ids) + 5
    (long_ids,) = v.encode(["Aspirin " * 50], ["Aspirin"])
    assert bos not in long_ids and long_ids[-1] == eos and len(long_ids) <= v.max_length


def test_classifier_probability_does_not_depend_on_the_batch(tiny_verifier_dir):
    """Right padding with a tokenizer pad different from config.pad_token_id made a row's score
    depend on how much its batch padded it: pads are aligned, batched == one at a time."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    answers = ["Aspirin", "a much longer answer about heparin and warfarin dosing " * 3, "x"]
    refs = ["Aspirin", "Warfarin", "y"]
    tok = AutoTokenizer.from_pretrained(tiny_verifier_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_verifier_dir, dtype=torch.float32).eval()
    model.config.pad_token_id = tok.unk_token_id  # config pad != tokenizer pad ("<pad>")
    v = ClassifierVerifier(model, tok, batch_size=3)
    batched = v.probabilities(answers, refs)
    v.batch_size = 1
    single = v.probabilities(answers, refs)
    assert batched == pytest.approx(single, abs=1e-5)
    assert model.config.pad_token_id == tok.pad_token_id == tok.convert_tokens_to_ids("<pad>")
    # a tokenizer without a pad takes the config's pad
    tok2 = AutoTokenizer.from_pretrained(tiny_verifier_dir)
    tok2.pad_token = None
    model.config.pad_token_id = tok2.unk_token_id
    v2 = ClassifierVerifier(model, tok2, batch_size=3)
    assert tok2.pad_token_id == model.config.pad_token_id == tok2.unk_token_id
    assert v2.probabilities(answers, refs) == pytest.approx(single, abs=1e-5)


@pytest.mark.parametrize("answer", ["pneumonia " * 200, "肺炎球菌性肺炎，需要抗生素治疗。" * 60 + "🩺" * 40])
def test_classifier_truncation_keeps_template_tail(tiny_verifier_dir, answer):
    """Over-long answers (multibyte CJK and emoji too, where a cut id sequence does not decode
    back to the same ids) are cut as ids: the input fits, keeps the reference and ends with eos."""
    v = ClassifierVerifier.from_pretrained(str(tiny_verifier_dir))
    eos = v.tokenizer.eos_token
    ref = "肺炎 pneumonia"
    overhead = len(v.tokenizer(verifier_input("", ref, eos), add_special_tokens=False)["input_ids"])
    v.max_length = overhead + 21
    (ids,) = v.encode([answer], [ref])
    assert v.max_length - 10 < len(ids) <= v.max_length
    assert ids[-1] == v.tokenizer.eos_token_id
    tail = v.tokenizer(f"\n</Model Response>\n\n<Reference Answer>\n{ref}\n</Reference Answer>\n\n",
                       add_special_tokens=False)["input_ids"]  # fmt: skip
    assert any(ids[i : i + len(tail)] == tail for i in range(len(ids)))
    assert len(v.probabilities([answer, "short"], [ref, ref])) == 2
    # a reference longer than the cap still leaves the instruction and the eos
    (ids,) = v.encode(["a"], ["pneumonia " * 300])
    assert len(ids) == v.max_length and ids[-1] == v.tokenizer.eos_token_id


def test_llm_judge_through_loopback_server():
    from huatuo_o1.testing.openai_server import FakeOpenAIServer, FakeResponse

    def responder(req):
        # The verification prompt carries both answers; judge True when they agree.
        p = req.prompt
        if "Aspirin" in p and p.count("Aspirin") >= 2:
            return "True"
        if "unparseable" in p:
            return "I cannot tell"
        if "endless" in p:  # the judge rejects this one request (too long): False, not a crash
            return FakeResponse(status=400, code="context_length_exceeded", error="too long")
        return "False"

    with FakeOpenAIServer(responder) as srv:
        judge = LLMJudgeVerifier("fake-model", api_key="sk-test", api_url=srv.url)
        res = score_responses(
            [WELL.format("Aspirin"), WELL.format("Heparin"), "malformed", WELL.format("unparseable"),
             WELL.format("endless")],
            ["Aspirin", "Aspirin", "Aspirin", "x", "y"],
            judge,
        )  # fmt: skip
        assert srv.count("/chat/completions") == 5
        prompts = [r.prompt for r in srv.requests]
    assert res.rewards == [1.0, 0.1, 0.0, 0.1, 0.1]
    assert any(UNKNOWN_ANSWER in p for p in prompts)
    assert judge.failures == 2
    assert "sk-test" not in repr(judge)
