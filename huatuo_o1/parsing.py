"""Reading structure out of free-form LLM replies.

`extract_json` finds the JSON object in a reply however it is wrapped: a bare object, a ```json
fence, prose before and after, or raw newlines/tabs inside string values (which strict JSON
forbids but models emit). It tries, in order: the whole reply, each fenced block, then every `{`
position with a lenient decoder, keeping the first candidate that decodes to an object (and, when
`required_keys` is given, holds them all).

Every parser first drops a reasoning model's draft (`strip_think`): what vLLM/SGLang serve without a
reasoning parser starts with `<think>...</think>`, and a JSON object or verdict inside the draft is
not the answer.
"""

from __future__ import annotations

import json
import re

from huatuo_o1.prompts import FILTER_VERDICTS

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)
_LENIENT = json.JSONDecoder(strict=False)


_THINK_END = re.compile(r"</think(?:ing)?\s*>", re.I)
_THINK_START = re.compile(r"\s*<think(?:ing)?\s*>", re.I)


def strip_think(text: str) -> str:
    """The reply after its `<think>...</think>` draft (the text after the last closing tag; "" for a
    draft never closed, which holds no answer yet); a reply without one, unchanged."""
    if not text:
        return text
    ends = list(_THINK_END.finditer(text))
    if ends:
        return text[ends[-1].end() :].strip()
    if _THINK_START.match(text):
        return ""
    return text


def _decode_prefix(text: str) -> object | None:
    try:
        obj, _ = _LENIENT.raw_decode(text)
        return obj
    except json.JSONDecodeError:
        return None


def _fix_common(text: str) -> str:
    """Typical model slips: trailing commas and smart quotes around keys."""
    text = re.sub(r",\s*([}\]])", r"\1", text)
    return text.replace("\u201c", '"').replace("\u201d", '"')


def extract_json(text: str, required_keys: tuple[str, ...] = ()) -> dict | None:
    """The first JSON object in `text` (holding `required_keys`), or None."""
    text = strip_think(text)
    if not text:
        return None

    def ok(obj) -> bool:
        return isinstance(obj, dict) and all(k in obj for k in required_keys)

    candidates = [text.strip()] + [m.strip() for m in _FENCE.findall(text)]
    for cand in candidates:
        for variant in (cand, _fix_common(cand)):
            obj = _decode_prefix(variant)
            if ok(obj):
                return obj
    for variant in (text, _fix_common(text)):
        for m in re.finditer(r"\{", variant):
            obj = _decode_prefix(variant[m.start() :])
            if ok(obj):
                return obj
    return None


# A verdict named right after one of these words is negated ("not Too Simple", "does not pass",
# "neither Too Simple nor ..."): up to three plain words may sit between, no punctuation.
_NEGATION = re.compile(
    r"(?:\b(?:not|no|never|neither|nor|isn't|isnt|aren't|doesn't|didn't|wouldn't|won't|cannot|can't|"
    r"rather than|instead of|fails? to)|不是|并非|不属于|不算)[\s*\"'`]+(?:[\w-]+[\s*\"'`]+){0,3}$",
    re.I,
)
# "Evaluation: X", "Verdict - X", "**Final answer**: X": the line that gives the verdict
_LABEL = re.compile(
    r"\b(?:evaluation|verdict|decision|result|answer|judgement|judgment|rating)\W{0,6}$", re.I
)


def _verdict_mentions(text: str) -> list[tuple[int, str, bool]]:
    """(position, verdict, negated) for each whole-word mention of a verdict ("Bypass" holds no Pass)."""
    out = []
    for v in FILTER_VERDICTS:
        for m in re.finditer(rf"(?<![\w-]){re.escape(v)}(?![\w-])", text, re.I):
            before = text[max(0, m.start() - 60) : m.start()]
            before = before.splitlines()[-1] if before.splitlines() and not before.endswith("\n") else ""
            out.append((m.start(), v, bool(_NEGATION.search(before))))
    return sorted(out)


def parse_filter_verdict(reply: str) -> str | None:
    """The stage-1 filter verdict a reply gives, or None (the reply is then asked again).

    In plain words, the rules in order:
      - Verdicts count as whole words only ("Bypass" and "compass" hold no Pass), case-insensitive.
      - A negated mention ("not Too Simple", "does not pass", "neither Too Simple nor ...") is an
        explanation, not the verdict, and is ignored.
      - A verdict given after a label ("Evaluation: Pass", "Verdict - Too Simple") wins; the first such.
      - Else, when the remaining mentions name one verdict, that one; when they name several, the
        last line that names exactly one decides ("It could be Too Simple...\nVerdict: Pass").
      - Anything else ("Pass or Too Simple?") is ambiguous: None.
    """
    reply = strip_think(reply)
    if not reply:
        return None
    mentions = [(pos, v) for pos, v, negated in _verdict_mentions(reply) if not negated]
    for pos, v in mentions:
        if _LABEL.search(reply[max(0, pos - 40) : pos].split("\n")[-1]):
            return v
    named = {v for _, v in mentions}
    if len(named) == 1:
        return named.pop()
    if not named:
        return None
    for line in reversed([ln for ln in reply.splitlines() if ln.strip()]):
        on_line = {v for _, v, negated in _verdict_mentions(line) if not negated}
        if len(on_line) == 1:
            return on_line.pop()
        if on_line:
            break
    return None


def parse_verdict(reply: str) -> bool | None:
    """A verifier's True/False reply: the first of the words true/false (or 正确/错误) it contains."""
    reply = strip_think(reply)
    if not reply:
        return None
    m = re.search(r"\b(true|false)\b|(正确|错误|不正确)", reply, re.I)
    if not m:
        return None
    word = (m.group(1) or m.group(2)).lower()
    return word in ("true", "正确")
