"""Test double: a stateless scripted "GPT-4o" for the search stage, the responder behind
`huatuo_o1.testing.openai_server.FakeOpenAIServer` in the tests and the search benchmark (never used by a real run).

It recognises each stage-2 request by its fixed tags and answers like a well-behaved model:
  - <question> without <previous reasoning>: initial reasoning whose conclusion is
    `answer to [<question>] #0`;
  - <previous reasoning> holding k Final Conclusions: a refinement concluding `... #k`;
    with the reference answer in the prompt (label guidance): a refinement concluding it;
  - <Model Response>/<Reference Answer>: "True" iff the two are identical, else "False";
  - <Thought Process>: {"NaturalReasoning": "..."} with line breaks; <Internal Thinking>: an answer.
So an item whose Ground-True Answer is `scripted_answer(question, d)` is judged right after exactly d
refinements (d = 0: at the first try; d larger than the depth: never). Tests wrap `reply` to
inject malformed replies, errors or latency.
"""

from __future__ import annotations

import json
import re

_TAG = {
    "question": re.compile(r"<question>\n(.*?)\n</question>", re.S),
    "previous": re.compile(r"<previous reasoning>\n(.*?)\n</previous reasoning>", re.S),
    "response": re.compile(r"<Model Response>\n(.*?)\n</Model Response>", re.S),
    "reference": re.compile(r"<Reference Answer>\n(.*?)\n</Reference Answer>", re.S),
}


def scripted_answer(question: str, depth: int) -> str:
    """The conclusion the scripted model reaches after `depth` refinements of `question`."""
    return f"answer to [{question}] #{depth}"


def cot_reply(conclusion: str, refinement: bool = False, title: str = "Look at the question") -> str:
    steps = [{"action": "Verification", "content": "The previous conclusion is wrong."}] if refinement else []
    steps += [
        {"action": "Inner Thinking", "title": title, "content": "Reasoning about the case."},
        {"action": "Final Conclusion", "content": conclusion},
        {"action": "Verification", "content": "The conclusion holds."},
    ]
    return "```json\n" + json.dumps({"CoT": steps}, ensure_ascii=False, indent=2) + "\n```"


def request_kind(prompt: str) -> str:
    """init / refine / label / verify / natural / response / other."""
    if "<Model Response>" in prompt:
        return "verify"
    if "<Thought Process>" in prompt:
        return "natural"
    if "<Internal Thinking>" in prompt:
        return "response"
    if "<previous reasoning>" in prompt:
        return "label" if ("In confidence" in prompt or "私下告诉你" in prompt) else "refine"
    if "<question>" in prompt:
        return "init"
    return "other"


def _label_from_prompt(prompt: str) -> str:
    m = re.search(r'correct answer is "(.*?)"\.', prompt, re.S) or re.search(
        r"正确答案是\"(.*?)\"", prompt, re.S
    )
    return m.group(1) if m else "label"


def reply(prompt: str) -> str:
    """The scripted model's reply to one stage-2 prompt."""
    kind = request_kind(prompt)
    if kind == "verify":
        got, ref = _TAG["response"].search(prompt), _TAG["reference"].search(prompt)
        return "True" if got and ref and got.group(1).strip() == ref.group(1).strip() else "False"
    if kind == "natural":
        return json.dumps({"NaturalReasoning": "Hmm, let me think.\nOh, I see.\nSo that is the answer."})
    if kind == "response":
        return "The answer, with a short explanation."
    q = _TAG["question"].search(prompt)
    question = q.group(1) if q else ""
    if kind == "init":
        return cot_reply(scripted_answer(question, 0))
    if kind == "label":
        return cot_reply(_label_from_prompt(prompt), refinement=True, title="Reconsider")
    if kind == "refine":
        prev = _TAG["previous"].search(prompt)
        k = prev.group(1).count('"Final Conclusion"') if prev else 0
        return cot_reply(scripted_answer(question, k), refinement=True, title=f"Refinement {k}")
    return "OK"


def responder(req) -> str:
    """FakeOpenAIServer responder (FakeRequest -> reply text)."""
    return reply(req.prompt)
