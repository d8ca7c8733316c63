"""The original layout reproduces the original evaluation's numbers.

`make_cases` writes a few hundred model outputs in every answer style we know of (strict answers,
option text after "The answer is", two letters, empty and blank outputs, `</s>`, leading spaces,
the thinking format, option text inside other words, revised answers, Chinese particles, letters
beyond the options...). The expected figures below were computed ONCE, outside this repository, by
running the original HuatuoGPT-o1 evaluation/eval.py clean-up and empty-drop plus its scorer.py
on exactly these outputs; only the figures are stored here, never the original's code.
"""

from __future__ import annotations

import random

from huatuo_o1.eval.original import original_extract, original_scores
from huatuo_o1.generation import postprocess_output

SOURCES = {  # source -> list of option sets (texts chosen so some contain others or sit in words)
    "MedQA_USLME_test": [
        ["Aspirin", "Aspirin and heparin", "Iron", "Warfarin", "Observation"],
        ["Cardiology", "Dermatology", "Neurology", "Endocrinology", "Hematology"],
        ["Lithium", "Valproate", "Lamotrigine", "Carbamazepine", "Quetiapine"],
    ],
    "MedMCQA_validation": [
        ["Iron", "Zinc", "Copper", "Selenium"],
        ["Cell", "Cell membrane", "Nucleus", "Mitochondria"],
        ["Ventricular septal defect", "Atrial septal defect", "Tetralogy of Fallot", "PDA"],
    ],
    "PubMedQA_test": [["yes", "no", "maybe"]],
    "MMLU-Pro_Medical_test": [
        [
            "Insulin",
            "Glucagon",
            "Cortisol",
            "Adrenaline",
            "Thyroxine",
            "Oxytocin",
            "Prolactin",
            "Growth hormone",
            "Vasopressin",
            "Melatonin",
        ],
    ],
    "GPQA_Medical_test": [
        ["DNA ligase", "DNA polymerase", "RNA polymerase", "Helicase"],
        ["a", "an", "the", "none"],
    ],
}

FILLER = [
    "Let me think about the mechanism first.",
    "A 45-year-old man presents with chest pain.",
    "Considering the lab values, several options remain.",
    "Is this consistent with the history? Probably.",
    "患者的症状提示",
    "We rule out the unlikely ones.",
]


def _styles(rng: random.Random, letters: str, texts: list[str], gold: int) -> list[str]:
    """One output per style for an item (letters/texts of its options, gold index)."""
    n = len(letters)
    g, gt = letters[gold], texts[gold]
    o = (gold + 1 + rng.randrange(n - 1)) % n  # another option
    ot = texts[o]
    fill = rng.choice(FILLER)
    extra = "NM"[rng.randrange(2)] if n < 13 else "N"
    return [
        f"The answer is {g}.",  # 1 strict
        f"{fill} The answer is {g}",  # 2
        f"The answer is {gt}.",  # 3 option text after "answer is": a letter read from the word
        f"The answer is {ot.capitalize()}.",  # 4
        f"The answer is {g}{letters[o]}.",  # 5 two letters
        "",  # 6 empty: dropped by the original
        " ",  # 7 one space: empty after clean-up
        "</s>",  # 8 end-of-sequence only
        "\n",  # 9 whitespace: scored (difflib)
        f"  {g}",  # 10 two leading spaces
        f" {letters[o]}</s>",  # 11
        f"**{g}**",  # 12
        f"({letters[o]})",  # 13
        f"{g}. {gt}",  # 14
        f"{gt}",  # 15 option text only
        f"I believe it is {ot.lower()}.",  # 16
        f"Ironically the {gt.lower()}ness points elsewhere.",  # 17 option text inside a word
        f"At first {gt.lower()}, but then {ot.lower()}, and finally {gt.lower()} again.",  # 18 revised
        f"First {ot.lower()} seemed right; on reflection {gt.lower()} fits.",  # 19
        f"## Thinking\n\nMaybe {letters[o]}.\n\n## Final Response\n\nThe answer is {g}.",  # 20
        f"## Thinking\n\nThe answer is {letters[o]}.\n\n## Final Response\n\n{gt}",  # 21
        f"## Thinking\n\nHmm.\n## Final Response\n{ot}",  # 22 header without blank line
        f"The answer is {extra}.",  # 23 a letter beyond the options
        f"{fill} So option {g} is best.",  # 24
        f"the answer is {g.lower()}",  # 25 lower-case letter
        f"答案是{g}项",  # 26
        f"正确答案为{letters[o]}。",  # 27
        f"answer is: {g}",  # 28 colon
        f"The answer is A because {fill}",  # 29
        f"The answer is {letters[o]}... wait, the answer is {g}.",  # 30 revised letters
        f"Answer: {g}) {gt}",  # 31
        "xyzzy plugh",  # 32 nothing: difflib
        f"{gt[:-1]}",  # 33 almost the option text
        f"#{g}",  # 34
        f"'{g}'",  # 35
        f"A {ot.lower()} is likely.",  # 36 the article A
        f"Options {letters[0]} and {letters[-1]} are wrong, so {g}",  # 37
        f"The answer is\n{g}",  # 38 newline after "is"
        f"The answer is  {g}",  # 39 two spaces
        f"{gt.upper()} is my pick",  # 40 upper-case option text
        f" The answer is {g}.</s>",  # 41
        f"Dx{g}: {ot}",  # 42 letter glued to a word
    ]


def make_cases(seed: int = 13) -> list[dict]:
    """Items with one raw output each, in a fixed order (deterministic for a seed)."""
    rng = random.Random(seed)
    cases = []
    for source, option_sets in SOURCES.items():
        for round_ in range(2):
            for texts in option_sets:
                letters = "ABCDEFGHIJ"[: len(texts)]
                gold = rng.randrange(len(texts))
                options = dict(zip(letters, texts, strict=True))
                for out in _styles(rng, letters, texts, gold):
                    cases.append(
                        {
                            "question": f"{source} question {round_}",
                            "options": options,
                            "answer_idx": letters[gold],
                            "source": source,
                            "raw_output": out,
                        }
                    )
    return cases


# Computed once with the original code on make_cases(13) (see the module docstring).
EXPECTED_RESULT = {
    "MedQA_USLME_test": [0.6581196581196581, 137, 234, 154],
    "MedMCQA_validation": [0.6752136752136753, 143, 234, 158],
    "PubMedQA_test": [0.7051282051282052, 50, 78, 55],
    "MMLU-Pro_Medical_test": [0.6538461538461539, 45, 78, 51],
    "GPQA_Medical_test": [0.7161290322580646, 95, 155, 111],
}
# one `<first><last><type>` per output the original keeps (779 of 840), space-separated
EXPECTED_EXTRACTIONS = (
    "CC1 CC1 II1 AA1 CC1 EE3 CC1 AA1 CC1 AA1 CC1 CC2 AA2 CC2 AC2 CC2 CC1 CC2 AA2 NN1 CC1 EE3 CC1 AA1 "
    "CC1 AA1 AC1 CC1 BB3 CC3 CC1 CC1 AA2 EC1 CC1 CC1 CC2 CC1 AA2 BB1 BB1 DD1 EE1 BB1 EE3 BB1 DD1 BB1 "
    "DD1 BB1 BB2 DD2 BB2 DB2 BB2 BB1 BB2 DD2 NN1 BB1 DD3 BB1 DD1 BB1 AA1 DB1 BB1 CC3 BB3 BB1 BB1 DD2 "
    "EB1 BB1 BB1 BB2 BB1 DD2 BB1 BB1 BB2 LL1 BB1 EE3 BB1 CC1 BB1 CC1 BB1 BB2 CC2 BB2 CB2 BB2 BB1 BB2 "
    "CC2 NN1 BB1 AA3 BB1 CC1 BB1 AA1 CB1 BB1 AA3 BB3 BB1 BB1 CC2 EB1 BB1 BB1 BB2 BB1 CC2 CC1 CC1 II1 "
    "DD2 CC1 EE3 CC1 DD1 CC1 DD1 CC1 CC2 DD2 CC2 DC2 CC2 CC1 CC2 DD2 NN1 CC1 EE3 CC1 DD1 CC1 AA1 DC1 "
    "CC1 BB3 CC3 CC1 CC1 DD2 EC1 CC1 CC1 CC2 CC1 DD2 EE1 EE1 HH1 CC1 EE1 EE3 EE1 AA1 EE1 AA1 EE1 EE2 "
    "AA2 EE2 AE2 EE2 EE1 EE2 AA2 NN1 EE1 DD3 EE1 AA1 EE1 AA1 AE1 EE1 CC3 EE3 EE1 EE1 AA2 EE1 EE1 EE1 "
    "EE2 EE1 AA2 AA1 AA1 LL1 CC1 AA1 EE3 AA1 DD1 AA1 DD1 AA1 AA2 DD2 AA2 DA2 AA2 AA1 AA2 DD2 MM1 BB3 "
    "AA3 AA1 DD1 AA1 AA1 DA1 AA1 AA3 AA3 AA1 AA1 DD2 EA1 AA1 AA1 AA2 AA1 DD2 BB1 BB1 BB2 DD2 BB1 DD3 "
    "BB1 DD1 BB1 DD1 BB1 BB2 DD2 BB2 DB2 BB2 BB1 BB2 DD2 NN1 BB1 DD3 BB1 DD1 BB1 AA1 DB1 BB1 DD3 BB3 "
    "BB1 BB1 DD2 DB1 BB1 BB1 BB2 BB1 DD2 DD1 DD1 MM1 NN1 DD1 DD3 DD1 CC1 DD1 CC1 DD1 DD2 CC2 DD2 CD2 "
    "DD2 DD1 DD2 CC2 MM1 DD1 BB3 DD1 CC1 DD1 AA1 CD1 DD1 AA3 DD3 DD1 DD1 CC2 DD1 DD1 DD1 DD2 DD1 CC2 "
    "CC1 CC1 CC2 AA2 CC1 DD3 CC1 AA1 CC1 AA1 CC1 CC2 AA2 CC2 AC2 CC2 CC1 CC2 AA2 MM1 CC1 AA3 CC1 AA1 "
    "CC1 AA1 AC1 CC1 CC3 CC3 CC1 CC1 AA2 DC1 CC1 CC1 CC2 CC1 AA2 AA1 AA1 II1 CC1 AA1 DD3 AA1 CC1 AA1 "
    "CC1 AA1 AA2 CC2 AA2 CA2 AA2 AA1 AA2 CC2 MM1 AA3 DD3 AA1 CC1 AA1 AA1 CA1 AA1 DD3 AA3 AA1 AA1 CC2 "
    "DA1 AA1 AA1 AA2 AA1 CC2 DD1 DD1 MM1 NN1 DD1 DD3 DD1 CC1 DD1 CC1 DD1 DD2 CC2 DD2 CD2 DD2 DD1 DD2 "
    "CC2 NN1 DD1 BB3 DD1 CC1 DD1 AA1 CD1 DD1 AA3 DD3 DD1 DD1 CC2 DD1 DD1 DD1 DD2 DD1 CC2 DD1 DD1 DD2 "
    "CC2 DD1 DD3 DD1 CC1 DD1 CC1 DD1 DD2 CC2 DD2 CD2 DD2 DD1 DD2 CC2 MM1 DD1 AA3 DD1 CC1 DD1 AA1 CD1 "
    "DD1 CC3 DD3 DD1 DD1 CC2 DD1 DD1 DD1 DD2 DD1 CC2 CC1 CC1 CC2 AA2 CC1 CC3 CC1 AA1 CC1 AA1 CC1 CC2 "
    "AA2 CC2 AC2 CC2 CC1 CC2 AA2 NN1 CC1 AA3 CC1 AA1 CC1 AA1 AC1 CC1 AA3 CC3 CC1 CC1 AA2 CC1 CC1 CC1 "
    "CC2 CC1 AA2 AA1 AA1 AA2 MM1 AA1 CC3 AA1 CC1 AA1 CC1 AA1 AA2 CC2 AA2 CA2 AA2 AA1 AA2 CC2 MM1 CC3 "
    "AA3 AA1 CC1 AA1 AA1 CA1 AA1 AA3 AA3 AA1 AA1 CC2 CA1 AA1 AA1 AA2 AA1 CC2 HH1 HH1 GG1 CC1 HH1 JJ3 "
    "HH1 CC1 HH1 CC1 HH1 HH2 II1 HH2 CH2 HH2 HH1 HH2 CC2 MM1 HH1 JJ3 HH1 CC1 HH1 AA1 CH1 HH1 BB3 HH3 "
    "HH1 HH1 CC2 JH1 HH1 HH1 HH2 HH1 CC2 GG1 GG1 GG2 MM1 GG1 JJ3 GG1 JJ1 GG1 JJ1 GG1 GG2 II1 GG2 JG2 "
    "GG2 GG1 GG2 JJ2 MM1 GG1 JJ3 GG1 JJ1 GG1 AA1 JG1 GG1 BB3 GG3 GG1 GG1 JJ2 JG1 GG1 GG1 GG2 GG1 JJ2 "
    "BB1 BB1 DD1 DD1 BB1 DD3 BB1 AA1 BB1 AA1 BB1 BB2 AA2 BB2 AB2 BB2 BB1 BB2 AA2 NN1 BB1 DD3 BB1 AA1 "
    "BB1 AA1 AB1 BB1 AA3 BB3 BB1 BB1 AA2 DB1 BB1 BB1 BB2 BB1 AA2 CC1 CC1 AC2 NN1 CC1 DD3 CC1 DD1 CC1 "
    "DD1 CC1 CC2 DD2 CC2 BA2 CC2 CC1 CC2 DD2 MM1 CC1 AA2 CC1 DD1 CC1 AA1 DC1 CC1 CC3 CC3 CC1 CC1 DD2 "
    "DC1 CC1 CC1 CC2 CC1 DD2 DD1 DD1 HH1 DD1 DD1 DD3 DD1 BB1 DD1 BB1 DD1 DD2 BB2 DD2 BD2 DD2 DD1 DD2 "
    "BB2 MM1 DD1 DD3 DD1 BB1 DD1 AA1 BD1 DD1 AA3 DD3 DD1 DD1 BB2 DD1 DD1 DD1 DD2 DD1 BB2 AA1 AA1 AA2 "
    "AA1 AA1 DD3 AA1 BB1 AA1 BB1 AA1 AA2 AA2 BA2 BA2 AA2 AA1 AA2 BA2 MM1 BA2 AA2 AA1 BB1 AA1 AA1 BA1 "
    "AA1 CC3 AA1 AA1 BA2 DA1 AA1 AA1 AA2 AA1 BA2"
)


def _records(cases):
    return [{**c, "output": postprocess_output(c["raw_output"])} for c in cases]


def test_cases_cover_many_outputs():
    cases = make_cases()
    assert len(cases) >= 300
    assert len({c["raw_output"] for c in cases}) > 250


def test_original_layout_equals_original_figures():
    result = original_scores(_records(make_cases()))
    assert result == EXPECTED_RESULT
    assert list(result) == list(EXPECTED_RESULT)  # source order too


def test_each_extraction_equals_original():
    got = []
    for r in _records(make_cases()):
        if r["output"]:
            (first, last), kind = original_extract(r["output"], r["options"])
            got.append(f"{first}{last}{kind}")
    assert " ".join(got) == EXPECTED_EXTRACTIONS


def test_the_results_pipeline_writes_the_original_figures():
    """score_output -> summarize / original_layout, as eval_run writes result_*.json."""
    from huatuo_o1.eval.scoring import original_layout, score_output, summarize

    records = [
        {**r, **score_output(r["output"], r["options"], r["answer_idx"])} for r in _records(make_cases())
    ]
    assert original_layout(records) == EXPECTED_RESULT
    summary = summarize(records)
    assert {s: v["score_list"] for s, v in summary.items()} == EXPECTED_RESULT
    assert all(v["lenient"] == EXPECTED_RESULT[s][0] for s, v in summary.items())
    # our fixed columns differ from the original's on these styles, and count every output
    assert sum(v["dropped"] for v in summary.values()) == 840 - 779
    assert any(v["fixed_lenient"] != v["lenient"] for v in summary.values())
