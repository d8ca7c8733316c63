"""JSON and verdict extraction from LLM replies (huatuo_o1.parsing)."""

from __future__ import annotations

from huatuo_o1.parsing import extract_json, parse_filter_verdict, parse_verdict


def test_extract_json_variants():
    keys = ("a",)
    assert extract_json('{"a": 1}', keys) == {"a": 1}
    assert extract_json('text before ```json\n{"a": 2}\n``` after', keys) == {"a": 2}
    assert extract_json('Sure: {"a": "two\nlines"} thanks', keys) == {"a": "two\nlines"}
    assert extract_json('{"b": 1} then {"a": 3}', keys) == {"a": 3}
    assert extract_json('{"a": [1, 2,],}', keys) == {"a": [1, 2]}
    assert extract_json("no json", keys) is None


def test_verdict_parsers():
    assert parse_filter_verdict("Ambiguous Answer.") == "Ambiguous Answer"
    assert parse_filter_verdict("I think: Pass") == "Pass"
    assert parse_filter_verdict("unsure") is None
    assert parse_filter_verdict("It is not too simple.\nVerdict: Pass") == "Pass"  # last line decides
    assert parse_filter_verdict("As a compass for learners: Too Simple") == "Too Simple"  # whole words
    assert parse_filter_verdict("Pass or Too Simple?") is None  # ambiguous: asked again
    assert parse_verdict("True") is True
    assert parse_verdict("The response is False.") is False
    assert parse_verdict("正确") is True and parse_verdict("不正确") is False
    assert parse_verdict("maybe") is None
