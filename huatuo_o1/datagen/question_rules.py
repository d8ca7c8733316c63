"""The paper's free question rules for stage 1: too short, asks for the incorrect option, several answers.

Each rule reads the question text only (not the options) and returns the reason it drops the item,
or None. In plain words:
  - `too_short`: fewer than N characters after whitespace normalisation (--min_question_length).
  - `asks_for_incorrect`: the question asks for the wrong/false/excluded option, in the forms exams
    use: "EXCEPT" / "NOT" written in capitals; "all of the following ... except"; a question ending in
    "except" ("... except:"); "which (of the following) is/are not ..."; "is/are incorrect|false|
    untrue|wrong" and "the incorrect/false statement"; and the Chinese forms 除外, 不正确的是,
    错误的是, 不包括, 不属于, 不符合. Lower-case "not" in a case description ("did not respond")
    and "false positive/negative" do not count.
  - `allows_several_answers`: "select/choose/mark all that apply", "more than one (correct) answer",
    "select two/three", "one or more of the following".
"""

from __future__ import annotations

import re

from huatuo_o1.datagen.decontam import normalize

_INCORRECT_EN = [
    (re.compile(r"\bEXCEPT\b"), "EXCEPT"),
    (re.compile(r"\bNOT\b"), "NOT"),
    (
        re.compile(r"\ball (?:of )?(?:the following|these|are|is)\b.*\bexcept\b", re.I | re.S),
        "all ... except",
    ),
    (re.compile(r"\bexcept\s*[:?.\-_…]*\s*$", re.I), "... except"),
    (
        re.compile(
            r"\bwhich\b(?: (?:one|of the following|of these|statement|option))?(?: \w+)? (?:is|are|was|were|does|do|would|should|can|could)\s+not\b",
            re.I,
        ),
        "which ... not",
    ),
    (
        re.compile(
            r"\b(?:is|are|was|were)\s+(?:most\s+likely\s+|definitely\s+)?(?:incorrect|false|untrue|wrong)\b(?![\s-]*(?:positive|negative))",
            re.I,
        ),
        "is incorrect/false",
    ),
    (
        re.compile(
            r"\b(?:incorrect|false|untrue|wrong)\s+(?:statement|option|answer|choice|one|about|regarding|concerning|match|pair)",
            re.I,
        ),
        "incorrect/false statement",
    ),
]
_INCORRECT_ZH = re.compile(r"除外|不正确的是|错误的是|不包括|不属于|不符合|说法错误|叙述错误|不正确的")
_SEVERAL = [
    (
        re.compile(r"\b(?:select|choose|mark|pick|check|tick)\s+all\s+(?:that|which)\s+apply\b", re.I),
        "all that apply",
    ),
    (re.compile(r"\bmore than one (?:correct )?(?:answer|option|choice)\b", re.I), "more than one answer"),
    (re.compile(r"\b(?:select|choose|pick|mark)\s+(?:two|three|four|2|3|4)\b", re.I), "select N"),
    (re.compile(r"\bone or more of the following\b", re.I), "one or more of the following"),
]


def too_short(question: str, min_length: int) -> str | None:
    n = len(normalize(question))
    if min_length > 0 and n < min_length:
        return f"question has {n} characters, fewer than --min_question_length {min_length}"
    return None


def asks_for_incorrect(question: str) -> str | None:
    text = normalize(question)
    for pattern, name in _INCORRECT_EN:
        m = pattern.search(text)
        if m:
            return f"asks for the incorrect option ({name}: {m.group(0)[-60:]!r})"
    m = _INCORRECT_ZH.search(text)
    if m:
        return f"asks for the incorrect option ({m.group(0)!r})"
    return None


def allows_several_answers(question: str) -> str | None:
    text = normalize(question)
    for pattern, name in _SEVERAL:
        m = pattern.search(text)
        if m:
            return f"allows several answers ({name}: {m.group(0)!r})"
    return None


def check(question: str, min_length: int = 0, drop_negative: bool = True) -> tuple[str, str] | None:
    """(rule, reason) of the first rule that drops the question, or None.

    rule is "min_length" or "question_form" (incorrect option / several answers)."""
    reason = too_short(question, min_length)
    if reason:
        return "min_length", reason
    if drop_negative:
        reason = asks_for_incorrect(question) or allows_several_answers(question)
        if reason:
            return "question_form", reason
    return None
