"""Reading structure out of free-form LLM replies.

`extract_json` finds the JSON object in a reply however it is wrapped: a bare object, a ```json
fence, prose before and after, or raw newlines/tabs inside string values (which strict JSON
forbids but models emit). It tries, in order: the whole reply, each fenced block, then every `{`
position with a lenient decoder, keeping the first candidate that decodes to an object (and, when
`required_keys` is given, holds them all).
"""

from __future__ import annotations

import json
import re

from huatuo_o1.prompts import FILTER_VERDICTS

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)
_LENIENT = json.JSONDecoder(strict=False)


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


def parse_filter_verdict(reply: str) -> str | None:
    """The stage-1 filter verdict a reply gives, or None (the reply is then asked again).

    Verdicts are matched as whole words ("compass" holds no "Pass"). A reply naming one verdict gives
    it; one naming several ("not Too Simple ... Verdict: Pass") gives the verdict of its last line
    that names exactly one; anything else is ambiguous.
    """
    if not reply:
        return None

    def named(text: str) -> set[str]:
        return {v for v in FILTER_VERDICTS if re.search(rf"\b{re.escape(v)}\b", text, re.I)}

    found = named(reply)
    if len(found) == 1:
        return found.pop()
    for line in reversed([ln for ln in reply.splitlines() if ln.strip()]):
        on_line = named(line)
        if len(on_line) == 1:
            return on_line.pop()
        if on_line:
            break
    return None


def parse_verdict(reply: str) -> bool | None:
    """A verifier's True/False reply: the first of the words true/false (or 正确/错误) it contains."""
    if not reply:
        return None
    m = re.search(r"\b(true|false)\b|(正确|错误|不正确)", reply, re.I)
    if not m:
        return None
    word = (m.group(1) or m.group(2)).lower()
    return word in ("true", "正确")
