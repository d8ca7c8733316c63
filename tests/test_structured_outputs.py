"""Structured outputs (--structured_outputs auto|on|off) against the loopback server: which JSON
schema each request carries, replies in the schemas' shapes parsed by the stages, the fallback to
free form where an endpoint refuses schemas, `on` refusing to fall back, and `off` sending the very
requests of runs without schemas (so their caches and Batch API fingerprints stay valid)."""

from __future__ import annotations

import asyncio
import json

import pytest

from huatuo_o1 import prompts
from huatuo_o1.datagen.search import parse_cot, parse_natural_reasoning
from huatuo_o1.llm import FatalAPIError, LLMClient
from huatuo_o1.parsing import parse_filter_verdict, parse_verdict
from huatuo_o1.testing import search as sm
from huatuo_o1.testing.openai_server import FakeOpenAIServer, FakeResponse
from tests.test_api_stages import (
    CONSTRUCT,
    GT,
    OPEN_Q,
    SEARCH,
    assert_one_line_error,
    mcq_items,
    run,
    write_json,
)

SCHEMAS = {
    "filter": prompts.FILTER_SCHEMA,
    "rewrite": prompts.rewrite_schema(),
    "verify": prompts.VERIFY_SCHEMA,
    "init": prompts.cot_schema(),
    "refine": prompts.cot_schema(continued=True),
    "natural": prompts.natural_schema(),
    "response": prompts.response_schema(),
}


def _objects(node):
    """Every object schema inside a schema."""
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield node
        for v in node.values():
            yield from _objects(v)
    elif isinstance(node, list):
        for v in node:
            yield from _objects(v)


def test_schemas_are_closed_objects_with_every_property_required():
    names = [s["name"] for s in SCHEMAS.values()]
    assert len(set(names)) == len(names)
    for s in SCHEMAS.values():
        json.dumps(s)  # sent as JSON
        assert s["schema"]["type"] == "object"
        for obj in _objects(s["schema"]):
            assert obj["additionalProperties"] is False and obj["required"] == list(obj["properties"])
    assert prompts.FILTER_SCHEMA["schema"]["properties"]["verdict"]["enum"] == list(prompts.FILTER_VERDICTS)
    assert set(SCHEMAS["rewrite"]["schema"]["properties"]) == {OPEN_Q, GT}


def test_cot_schemas_fix_the_order_the_stage_reads():
    for schema, opening in ((SCHEMAS["init"], []), (SCHEMAS["refine"], ["Verification"])):
        shapes = schema["schema"]["properties"]["CoT"]["anyOf"]
        assert len(shapes) == prompts.MAX_THINKING_STEPS
        for k, shape in enumerate(shapes, 1):
            actions = [step["properties"]["action"]["enum"][0] for step in shape["prefixItems"]]
            assert actions == [*opening, *["Inner Thinking"] * k, "Final Conclusion", "Verification"]
            assert shape["items"] is False and shape["minItems"] == shape["maxItems"] == len(actions)


def test_replies_in_the_schemas_shapes_parse():
    assert parse_filter_verdict('{"verdict": "Too Simple"}') == "Too Simple"
    assert parse_filter_verdict('{\n  "verdict": \n"Pass"\n}') == "Pass"
    assert parse_verdict('{"verdict": "False"}') is False and parse_verdict('{"verdict":"True"}') is True
    assert parse_natural_reasoning('{"NaturalReasoning": ["Hmm, the leads.", " ", "So the RCA."]}') == (
        "Hmm, the leads.\nSo the RCA."
    )
    assert parse_natural_reasoning('{"NaturalReasoning": ["one line only"]}') is None
    # free-form replies (GPT-4o without schemas, existing caches) still parse
    assert parse_natural_reasoning('{"NaturalReasoning": "Hmm.\\nSo."}') == "Hmm.\nSo."
    assert parse_cot(sm.cot_reply("x")) is not None


def _schema_name(req) -> str | None:
    fmt = req.body.get("response_format")
    return fmt["json_schema"]["name"] if fmt else None


def stage1_reply(req):
    if "four verdicts" in req.prompt:
        return '{"verdict": "Pass"}'
    q = req.prompt.split("\n")[1]
    return json.dumps({OPEN_Q: f"Open: {q}", GT: "Disease B"})


def _stage1(tmp_path, srv, *extra):
    data = write_json(tmp_path / "mcq.json", mcq_items(3))
    return run(
        CONSTRUCT, "--data_path", data, "--filter_data", "--api_url", srv.url, "--model_name", "gpt-4o",
        "--output_dir", tmp_path / "out", "--retry_backoff", "0.01", "--num_process", "1", *extra,
    )  # fmt: skip


def test_stage1_sends_each_prompts_schema_by_default(tmp_path):
    with FakeOpenAIServer(stage1_reply) as srv:
        p = _stage1(tmp_path, srv)
        assert p.returncode == 0, p.stderr
        names = [_schema_name(r) for r in srv.requests]
    assert names == ["filter_verdict", "open_ended_question"] * 3
    fmt = srv.requests[0].body["response_format"]
    assert fmt == {"type": "json_schema", "json_schema": prompts.FILTER_SCHEMA}
    assert "kept 3 " in p.stdout


def test_off_sends_the_requests_of_runs_without_schemas(tmp_path):
    with FakeOpenAIServer(stage1_reply) as srv:
        p = _stage1(tmp_path, srv, "--structured_outputs", "off")
        assert p.returncode == 0, p.stderr
        bodies = [r.body for r in srv.requests]
    assert len(bodies) == 6 and all(set(b) == {"model", "messages"} for b in bodies)


def refusing(req):
    if "response_format" in req.body:
        return FakeResponse(status=400, error="response_format json_schema is not supported by this model")
    if "four verdicts" in req.prompt:
        return "Verdict: Pass"
    q = req.prompt.split("\n")[1]
    return "```json\n" + json.dumps({OPEN_Q: f"Open: {q}", GT: "Disease B"}) + "\n```"


def test_auto_falls_back_to_free_form_once_per_schema_with_one_notice(tmp_path):
    with FakeOpenAIServer(refusing) as srv:
        p = _stage1(tmp_path, srv)
        assert p.returncode == 0, p.stderr
        refused = [_schema_name(r) for r in srv.requests if "response_format" in r.body]
    assert refused == ["filter_verdict", "open_ended_question"]  # then free form, never again
    notices = [ln for ln in p.stderr.splitlines() if "refused the JSON schema" in ln]
    assert len(notices) == 2 and "--structured_outputs auto" in notices[0]
    assert "kept 3 " in p.stdout


def test_on_stops_with_one_line_where_schemas_are_refused(tmp_path):
    with FakeOpenAIServer(refusing) as srv:
        p = _stage1(tmp_path, srv, "--structured_outputs", "on")
        assert len(srv.requests) == 1
    assert_one_line_error(p, "HTTP 400", "--structured_outputs on")


def test_a_bad_key_is_not_taken_for_a_refused_schema(tmp_path):
    with FakeOpenAIServer(lambda req: FakeResponse(status=401, error="bad key")) as srv:
        p = _stage1(tmp_path, srv)
        assert len(srv.requests) == 1  # not asked again without the schema
    assert_one_line_error(p, "invalid API key")


def search_reply(req):
    """The scripted search model, answering in the schemas' shapes where a schema is sent."""
    text = sm.reply(req.prompt)
    if _schema_name(req) == "verification":
        return json.dumps({"verdict": text})
    if _schema_name(req) == "natural_reasoning":
        return json.dumps({"NaturalReasoning": ["Hmm, let me think.", "Oh, I see.", "So that is it."]})
    if _schema_name(req) == "final_response":
        return json.dumps({"Response": "The answer, in JSON."})
    return text


def test_stage2_sends_the_schema_of_each_step(tmp_path):
    q = "Case 1: which diagnosis?"
    data = write_json(tmp_path / "data.json", [{OPEN_Q: q, GT: sm.scripted_answer(q, 1)}])
    with FakeOpenAIServer(search_reply) as srv:
        p = run(
            SEARCH, "--data_path", data, "--api_url", srv.url, "--model_name", "gpt-4o",
            "--output_dir", tmp_path / "out", "--seed", "1", "--num_process", "1",
        )  # fmt: skip
        assert p.returncode == 0, p.stderr
        kinds = [(sm.request_kind(r.prompt), _schema_name(r)) for r in srv.requests]
    assert kinds == [
        ("init", "reasoning_steps"),
        ("verify", "verification"),
        ("refine", "reasoning_steps_continued"),
        ("verify", "verification"),
        ("natural", "natural_reasoning"),
        ("response", "final_response"),
    ]
    # each schema sized to the stage's default --max_tokens (8192)
    assert srv.requests[0].body["response_format"]["json_schema"] == prompts.cot_schema(8192)
    [rec] = [json.loads(f.read_text()) for f in (tmp_path / "out" / "data_CoT_search").glob("*.json")]
    assert rec["status"] == "kept" and rec["Complex_CoT"] == "Hmm, let me think.\nOh, I see.\nSo that is it."
    assert rec["Response"] == "The answer, in JSON."


def longest_reply(node: dict) -> str:
    """The longest JSON text (without whitespace) that a schema allows."""
    if "anyOf" in node:
        return max((longest_reply(n) for n in node["anyOf"]), key=len)
    if "enum" in node:
        return json.dumps(max(node["enum"], key=len))
    if node["type"] == "string":
        return json.dumps("x" * node["maxLength"])
    if node["type"] == "object":
        return (
            "{" + ",".join(f"{json.dumps(k)}:{longest_reply(v)}" for k, v in node["properties"].items()) + "}"
        )
    items = [longest_reply(n) for n in node.get("prefixItems", [])] or [longest_reply(node["items"])] * node[
        "maxItems"
    ]
    return "[" + ",".join(items) + "]"


@pytest.mark.parametrize("max_tokens", [300, 800, 1200, 2048, 8192])
def test_sized_schemas_let_no_reply_run_past_max_tokens(max_tokens):
    """A small teacher writes every string to its bound and takes every step allowed: the longest
    reply each schema allows, at 3 characters a token (a low estimate), fits in max_tokens, so a
    constrained reply is never cut (which would be paid for and asked again)."""
    schemas = [prompts.cot_schema(max_tokens), prompts.cot_schema(max_tokens, continued=True),
               prompts.natural_schema(max_tokens), prompts.response_schema(max_tokens),
               prompts.rewrite_schema(max_tokens)]  # fmt: skip
    for schema in schemas:
        tokens = len(longest_reply(schema["schema"])) / prompts.CHARS_PER_TOKEN["en"]
        assert tokens <= max_tokens, schema["name"]
    # fewer steps before shorter ones: from 800 tokens on, every step has room to say something
    most, _, content = prompts.cot_bounds(max_tokens, opening=1)
    assert 1 <= most <= prompts.MAX_THINKING_STEPS
    assert content >= prompts.MIN_STEP_CHARS or max_tokens < 800
    # the paper's recipe (no small cap) keeps the largest bounds
    assert prompts.cot_bounds(8192) == prompts.cot_bounds(None) == (8, 150, 1500)


def test_the_final_response_parses_from_its_schema_or_free_form():
    from huatuo_o1.datagen.search import parse_final_response

    assert parse_final_response('{"Response": "  Aspirin.\\nTake it daily. "}') == "Aspirin.\nTake it daily."
    assert parse_final_response('{"Response": "  "}') is None
    assert parse_final_response("<think>draft</think>Aspirin daily.") == "Aspirin daily."
    assert parse_final_response("") is None


def test_the_llm_judge_sends_the_verdict_schema():
    from huatuo_o1.rl.rewards import LLMJudgeVerifier

    with FakeOpenAIServer(lambda req: '{"verdict": "True"}' if _schema_name(req) else "False") as srv:
        judge = LLMJudgeVerifier("gpt-4o", api_url=srv.url)
        assert judge.probabilities(["aspirin"], ["aspirin"]) == [1.0]
        off = LLMJudgeVerifier("gpt-4o", api_url=srv.url, structured_outputs="off")
        assert off.probabilities(["aspirin"], ["aspirin"]) == [0.0]
    assert _schema_name(srv.requests[0]) == "verification" and "response_format" not in srv.requests[1].body


def test_client_refuses_an_unknown_mode():
    from huatuo_o1.io import InputError

    with pytest.raises(InputError, match="--structured_outputs"):
        LLMClient("m", api_url="http://127.0.0.1:1/v1", structured_outputs="maybe")


def test_on_keeps_other_errors_as_they_are():
    async def go(url):
        c = LLMClient("m", api_url=url, structured_outputs="on", max_retries=0)
        try:
            await c.chat("hi", schema=prompts.VERIFY_SCHEMA)
        finally:
            await c.close()

    with FakeOpenAIServer(lambda req: FakeResponse(status=404, error="no such model")) as srv:
        with pytest.raises(FatalAPIError) as err:
            asyncio.run(go(srv.url))
    assert "--structured_outputs" not in str(err.value)


def test_stage1_max_tokens_caps_every_request_when_given(tmp_path):
    with FakeOpenAIServer(stage1_reply) as srv:
        p = _stage1(tmp_path, srv, "--max_tokens", "64")
        assert p.returncode == 0, p.stderr
        assert [r.body["max_tokens"] for r in srv.requests] == [64] * 6
    p = _stage1(tmp_path, srv, "--max_tokens", "-1")
    assert_one_line_error(p, "--max_tokens must be 0")


def test_dpo_pairs_take_structured_outputs_and_no_seed():
    """The DPO pair maker against a server that must get no seed (vLLM's CPU build): --seed None."""
    from huatuo_o1.rl.dpo_pairs import make_parser

    ns = make_parser().parse_args(["--seed", "None", "--structured_outputs", "off", "--limit", "3"])
    assert ns.seed is None and ns.structured_outputs == "off" and ns.limit == 3
    assert make_parser().parse_args([]).structured_outputs == "auto"
