"""Every prompt the pipeline sends to an LLM, in English (`en`) and Chinese (`zh`).

Written for this project from the paper's method. The tags and JSON keys are fixed because
parsing, released data and released models depend on them:
  stage 1  : <Multiple-choice Question> ... </Multiple-choice Question>, a `Correct Answer:` line,
             the verdicts Pass / Too Simple / Ambiguous Answer / Not Reformulatable, and the JSON keys
             "Open-ended Verifiable Question" / "Ground-True Answer".
  verifier : <Model Response> ... </Model Response>, <Reference Answer> ... </Reference Answer>,
             answer True or False.
Stage 2 (search) prompts live below the stage-1 ones.

Structured outputs: each prompt whose reply must be JSON or a fixed verdict has a JSON schema here
(the verdicts' `*_SCHEMA`; the `*_schema` functions size the others to the request's max_tokens),
sent as `response_format` by llm.LLMClient with --structured_outputs, so
an endpoint with constrained decoding can only answer in the shape the parsers read. The schemas
use the prompts' own JSON keys; a verdict comes as {"verdict": "<one of the fixed words>"}, which
the free-form parsers read too (parsing.py), as they read replies sent without a schema.
"""

from __future__ import annotations

LANGUAGES = ("en", "zh")

FILTER_VERDICTS = ("Pass", "Too Simple", "Ambiguous Answer", "Not Reformulatable")


def _check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; expected one of {', '.join(LANGUAGES)}")
    return language


def format_options(options: dict) -> str:
    """Options as `A. text` lines, in the order given."""
    return "\n".join(f"{k}. {v}" for k, v in options.items())


def mcq_block(item: dict) -> str:
    """The multiple-choice question with its options and correct answer between the fixed tags."""
    letter = item.get("answer_idx")
    answer = f"{letter}. {item['answer']}" if letter else item["answer"]
    return (
        "<Multiple-choice Question>\n"
        f"{item['question'].strip()}\n"
        f"{format_options(item['options'])}\n"
        f"Correct Answer: {answer}\n"
        "</Multiple-choice Question>"
    )


# ---------------------------------------------------------------------------------------------
# Stage 1: filter and rewrite
# ---------------------------------------------------------------------------------------------

_FILTER = {
    "en": """{mcq}

You are curating medical exam questions for a dataset of verifiable open-ended problems. Judge the multiple-choice question above against three criteria:
1. Depth of reasoning: answering it should take deeper reasoning. A question that looks too simple fails.
2. One unambiguous correct answer: the question has a single, clear correct answer. A question that asks for the incorrect option, or that admits more than one correct answer, fails.
3. Open-ended reformulation: the question can readily be turned into an open-ended problem (no options) with a clear ground-truth answer.

Reply with exactly one of these four verdicts and nothing else:
- Pass (all three criteria hold)
- Too Simple (criterion 1 fails)
- Ambiguous Answer (criterion 2 fails)
- Not Reformulatable (criterion 3 fails)""",
    "zh": """{mcq}

你正在为一个"可验证的开放式医学问题"数据集筛选医学考试题。请按以下三条标准评判上面的选择题：
1. 推理深度：回答它应当需要较深入的推理。看起来过于简单的题目不满足。
2. 唯一明确的正确答案：题目只有一个清楚的正确答案。询问错误选项、或允许多个正确答案的题目不满足。
3. 可改写为开放式问题：题目可以较容易地改写为不带选项的开放式问题，并有明确的标准答案。

只回复以下四个判定之一（保持英文原文），不要输出其他内容：
- Pass（三条标准都满足）
- Too Simple（不满足第1条）
- Ambiguous Answer（不满足第2条）
- Not Reformulatable（不满足第3条）""",
}

_REWRITE = {
    "en": """{mcq}

Rewrite the multiple-choice question above as an open-ended question that can be answered without seeing any options, and give its ground-truth answer.
- Keep every clinical detail needed to reach the answer; do not reveal the answer in the question.
- The ground-truth answer must be short (a diagnosis, a drug, a mechanism, a value...) so that a free-text reply can be matched against it precisely.

Reply with JSON holding exactly these two keys:
```json
{{
  "Open-ended Verifiable Question": "...",
  "Ground-True Answer": "..."
}}
```""",
    "zh": """{mcq}

请把上面的选择题改写为不需要选项即可作答的开放式问题，并给出标准答案。
- 保留得出答案所需的全部临床信息；不要在问题中泄露答案。
- 标准答案必须简短（一个诊断、药物、机制、数值等），以便能与自由文本回答精确比对。

请用 JSON 回复，且只包含以下两个键（键名保持英文原样）：
```json
{{
  "Open-ended Verifiable Question": "...",
  "Ground-True Answer": "..."
}}
```""",
}


def filter_prompt(item: dict, language: str = "en") -> str:
    return _FILTER[_check_language(language)].format(mcq=mcq_block(item))


def rewrite_prompt(item: dict, language: str = "en") -> str:
    return _REWRITE[_check_language(language)].format(mcq=mcq_block(item))


# ---------------------------------------------------------------------------------------------
# Verification (search stage, RL's LLM judge, verifier training data)
# ---------------------------------------------------------------------------------------------

_VERIFY = {
    "en": """<Model Response>
{response}
</Model Response>

<Reference Answer>
{reference}
</Reference Answer>

Above are a model's response (<Model Response>) and the reference answer (<Reference Answer>). Compare the two and judge whether the model's response is correct. Output only "True" if it is correct and "False" otherwise.""",
    "zh": """<Model Response>
{response}
</Model Response>

<Reference Answer>
{reference}
</Reference Answer>

以上是模型的回答(<Model Response>)和参考答案(<Reference Answer>)。请将二者进行比较，判断模型的回答是否正确。正确则只输出 "True"，否则只输出 "False"。""",
}


def verify_prompt(response: str, reference: str, language: str = "en") -> str:
    return _VERIFY[_check_language(language)].format(response=response, reference=reference)


# ---------------------------------------------------------------------------------------------
# Stage 2: search
# ---------------------------------------------------------------------------------------------
# Fixed by the method (parsing in huatuo_o1/datagen/search.py and released data depend on them): the tags
# <question>, <previous reasoning>, <Thought Process>, <Internal Thinking>, <Question>; the JSON keys
# "CoT" (steps with "action" in "Inner Thinking" (+ "title") / "Final Conclusion" / "Verification",
# and "content") and "NaturalReasoning". The action names stay in English in both languages.

SEARCH_STRATEGIES = ("Backtracking", "Exploring New Paths", "Verification", "Correction")

_COT_FORMAT_INIT = """```json
{
"CoT": [
    {"action": "Inner Thinking", "title": "...", "content": "..."},
    ...,
    {"action": "Final Conclusion", "content": "..."},
    {"action": "Verification", "content": "..."}
]
}
```"""

_COT_FORMAT_CONTINUE = """```json
{
"CoT": [
    {"action": "Verification", "content": "..."},
    {"action": "Inner Thinking", "title": "...", "content": "..."},
    ...,
    {"action": "Final Conclusion", "content": "..."},
    {"action": "Verification", "content": "..."}
]
}
```"""

_STEP_RULES = {
    "en": """Your reasoning is a list of steps. Each step has one of three actions:
- "Inner Thinking": one piece of the actual thinking. Use several of these, each with a short "title" that says what the step does, so the reasoning is thorough and easy to follow.
- "Final Conclusion": sum up what the Inner Thinking steps established and state the final answer. No title.
- "Verification": check the Final Conclusion. If it holds, the reasoning ends here; if it does not, go back to Inner Thinking and continue. No title.""",
    "zh": """你的推理由一系列步骤组成，每个步骤属于以下三种动作之一（动作名称保持英文原样）：
- "Inner Thinking"：真正的思考过程。请使用多个这样的步骤，每个步骤带一个简短的 "title" 说明该步在做什么，使推理充分且清晰。
- "Final Conclusion"：总结前面 Inner Thinking 步骤得出的结论，并给出最终答案。不需要 title。
- "Verification"：检验 Final Conclusion。若成立，推理到此结束；若不成立，回到 Inner Thinking 继续推理。不需要 title。""",
}

_INIT_COT = {
    "en": """<question>
{question}
</question>

Answer the question above (<question>) by reasoning step by step before you answer.

{rules}

Reply with JSON in exactly this structure, and nothing else:
{fmt}""",
    "zh": """<question>
{question}
</question>

请先逐步推理，再回答上面的问题(<question>)。

{rules}

请严格按照以下 JSON 结构回复，不要输出其他内容：
{fmt}""",
}

# What each refinement strategy asks the model to do.
_STRATEGY_TEXT = {
    "en": {
        "Backtracking": "backtrack: return to an earlier point of the reasoning where it went astray and reason forward again from there",
        "Exploring New Paths": "explore a new path: approach the problem from a different angle than the one taken so far",
        "Verification": "verify thoroughly: re-examine each claim and step of the reasoning to find the one that does not hold",
        "Correction": "correct: pinpoint the specific errors in the reasoning and fix them precisely",
    },
    "zh": {
        "Backtracking": "回溯:回到推理中出现偏差的较早位置,从那里重新向前推理",
        "Exploring New Paths": "探索新思路:从与此前不同的角度重新分析这个问题",
        "Verification": "全面核查:逐一重新检验推理中的每个论断和步骤,找出不成立的地方",
        "Correction": "纠正:准确指出推理中的具体错误并加以修正",
    },
}

_REFINE = {
    "en": """<question>
{question}
</question>

<previous reasoning>
{reasoning}
</previous reasoning>

<question> is the question to answer and <previous reasoning> is your reasoning so far, up to its Final Conclusion. That Final Conclusion has been checked and judged false.

Continue the reasoning. Start with a new "Verification" step that examines the Final Conclusion and finds that it is wrong (your verification must agree with this judgement). Then {strategy}, and reach a new Final Conclusion.

{rules}

Do not repeat the previous reasoning: begin directly with the new Verification step. Reply with JSON in exactly this structure, and nothing else:
{fmt}""",
    "zh": """<question>
{question}
</question>

<previous reasoning>
{reasoning}
</previous reasoning>

<question> 是需要回答的问题，<previous reasoning> 是你到目前为止的推理（截至其 Final Conclusion）。该 Final Conclusion 已经过核对，被判定为错误。

请继续推理。先写一个新的 "Verification" 步骤，检验该 Final Conclusion 并发现它是错误的（你的检验结论必须与这一判定一致）。然后请{strategy}，并得出新的 Final Conclusion。

{rules}

不要重复之前的推理，直接从新的 Verification 步骤开始。请严格按照以下 JSON 结构回复，不要输出其他内容：
{fmt}""",
}

_LABEL_GUIDED = {
    "en": """<question>
{question}
</question>

<previous reasoning>
{reasoning}
</previous reasoning>

<question> is the question to answer and <previous reasoning> is your reasoning so far, up to its Final Conclusion.

In confidence: the correct answer is "{answer}". Do not mention or hint that you were told it; reason as if you had worked it out yourself.

Continue the reasoning. Start with a new "Verification" step that carefully checks the Final Conclusion. If it is wrong, add new Inner Thinking steps that find the way to the correct answer and a new Final Conclusion that states it, then a last Verification.

{rules}

Do not repeat the previous reasoning: begin directly with the new Verification step. Reply with JSON in exactly this structure, and nothing else:
{fmt}""",
    "zh": """<question>
{question}
</question>

<previous reasoning>
{reasoning}
</previous reasoning>

<question> 是需要回答的问题，<previous reasoning> 是你到目前为止的推理（截至其 Final Conclusion）。

私下告诉你：正确答案是"{answer}"。不要提及或暗示你被告知了答案，要像自己推理得出一样。

请继续推理。先写一个新的 "Verification" 步骤，仔细检验该 Final Conclusion。若它是错误的，请补充新的 Inner Thinking 步骤，找到通往正确答案的推理路径，并给出陈述该答案的新 Final Conclusion，最后再写一个 Verification。

{rules}

不要重复之前的推理，直接从新的 Verification 步骤开始。请严格按照以下 JSON 结构回复，不要输出其他内容：
{fmt}""",
}

_NATURAL = {
    "en": """<Thought Process>
{thought}
</Thought Process>

<Question>
{question}
</Question>

The <Thought Process> above is a model's reasoning about the <Question>. Rewrite it as the natural, free-flowing thinking of a person working the problem out:
1. One thought per line, lines separated by line breaks, step by step.
2. No titles, headings or structure; move between thoughts with natural, casual transitions ("hmm", "oh", "wait", "also", "let me check").
3. Keep every idea, check and correction of the original, in the same order, and make the reasoning richer, more detailed and logically clear, while staying conversational.

Reply with JSON only:
```json
{{
  "NaturalReasoning": "..."
}}
```""",
    "zh": """<Thought Process>
{thought}
</Thought Process>

<Question>
{question}
</Question>

上面的 <Thought Process> 是模型针对 <Question> 的推理。请把它改写成一个人在思考这道题时自然、流畅的思维过程：
1. 逐步推理，每个想法单独一行，用换行分隔。
2. 不要标题、小标题或结构化格式；想法之间用自然、口语化的过渡（"嗯"、"哦"、"等等"、"另外"、"我再确认一下"）。
3. 按原顺序保留原推理中的每个想法、检验和修正，并使推理更丰富、更详细、逻辑更清晰，同时保持口语化。

只用 JSON 回复（键名保持英文原样）：
```json
{{
  "NaturalReasoning": "..."
}}
```""",
}

_FINAL_RESPONSE = {
    "en": """<Internal Thinking>
{thinking}
</Internal Thinking>

<Question>
{question}
</Question>

<Internal Thinking> is your own private thinking about the <Question>. Based on it, write a rich, high-quality final response to the user. If there is a clear answer, give it first. Stay close to what the <Question> asks, in the clear, well-organised style of a strong AI assistant. Output only the final response, nothing else.""",
    "zh": """<Internal Thinking>
{thinking}
</Internal Thinking>

<Question>
{question}
</Question>

<Internal Thinking> 是你针对 <Question> 的内部思考。请基于它给用户写一个内容充实、高质量的最终回复。如果有明确的答案，请先给出答案。紧扣 <Question> 的要求，采用优秀 AI 助手清晰、有条理的风格。只输出最终回复，不要输出其他内容。""",
}


def init_cot_prompt(question: str, language: str = "en") -> str:
    """Initial reasoning: answer <question> as {"CoT": [...]} ending Inner Thinking, Final Conclusion,
    Verification."""
    lang = _check_language(language)
    return _INIT_COT[lang].format(question=question, rules=_STEP_RULES[lang], fmt=_COT_FORMAT_INIT)


def refine_prompt(question: str, reasoning: str, strategy: str, language: str = "en") -> str:
    """A refinement with one of SEARCH_STRATEGIES; `reasoning` is the trace minus its last Verification."""
    lang = _check_language(language)
    if strategy not in SEARCH_STRATEGIES:
        raise ValueError(f"unknown search strategy {strategy!r}; expected one of {SEARCH_STRATEGIES}")
    return _REFINE[lang].format(
        question=question,
        reasoning=reasoning,
        strategy=_STRATEGY_TEXT[lang][strategy],
        rules=_STEP_RULES[lang],
        fmt=_COT_FORMAT_CONTINUE,
    )


def label_guided_prompt(question: str, reasoning: str, answer: str, language: str = "en") -> str:
    """The last-resort refinement that is told the reference answer (--efficient_search)."""
    lang = _check_language(language)
    return _LABEL_GUIDED[lang].format(
        question=question,
        reasoning=reasoning,
        answer=answer,
        rules=_STEP_RULES[lang],
        fmt=_COT_FORMAT_CONTINUE,
    )


def natural_reasoning_prompt(thought: str, question: str, language: str = "en") -> str:
    """Rewrite the `### title` trace as natural thinking: reply {"NaturalReasoning": "..."}."""
    return _NATURAL[_check_language(language)].format(thought=thought, question=question)


def final_response_prompt(thinking: str, question: str, language: str = "en") -> str:
    """The user-facing answer written from the natural thinking."""
    return _FINAL_RESPONSE[_check_language(language)].format(thinking=thinking, question=question)


# ---------------------------------------------------------------------------------------------
# Evaluation (evaluation/eval.py): one instruction line, the question, the options as `A. text`
# ---------------------------------------------------------------------------------------------

# The original's two prompts, verbatim (the strict one repeats its first sentence, as the original did)
EVAL_PROMPT = "Please answer the following multiple-choice question:\n{question}\n{option_str}"
EVAL_PROMPT_STRICT = (
    "Please answer the following multiple-choice questions. Please answer the following "
    "multiple-choice questions, ensuring your response concludes with the correct option in the "
    "format: 'The answer is A.'.\n{question}\n{option_str}"
)


def eval_prompt(item: dict, strict: bool = False) -> str:
    """The user turn of evaluation (the question as given, not stripped, as the original)."""
    template = EVAL_PROMPT_STRICT if strict else EVAL_PROMPT
    return template.format(question=item["question"], option_str=format_options(item["options"]))


# ---------------------------------------------------------------------------------------------
# Structured outputs: the JSON schema of each reply that must be JSON or a fixed verdict
# ---------------------------------------------------------------------------------------------
# Strict schemas in the subset OpenAI, vLLM and SGLang all take: every property required, no other
# properties, enums for fixed words. The final response is free text and has none.

# --structured_outputs: send the schemas and fall back to free form where refused / always / never
STRUCTURED_OUTPUTS = ("auto", "on", "off")
VERIFY_VERDICTS = ("True", "False")


def _schema(name: str, properties: dict, strict: bool = True) -> dict:
    """A json_schema entry of `response_format`: an object with exactly `properties`. `strict=False`
    for schemas with bounds OpenAI's strict mode does not take (OpenAI then takes them as guidance;
    vLLM and SGLang enforce them)."""
    return {"name": name, "strict": strict, "schema": _object(properties)}


def _object(properties: dict) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


FILTER_SCHEMA = _schema("filter_verdict", {"verdict": {"type": "string", "enum": list(FILTER_VERDICTS)}})
VERIFY_SCHEMA = _schema("verification", {"verdict": {"type": "string", "enum": list(VERIFY_VERDICTS)}})

# ---- Sizing the schemas to max_tokens --------------------------------------------------------
# A constrained reply ends only where its schema lets it. A small model writes each string up to its
# bound and takes every step the schema allows, so a schema whose longest reply is longer than the
# request's max_tokens gets that reply cut on every try (asked again, paid again, then the item
# fails). With a max_tokens, every bound below is sized so that the longest reply the schema allows
# fits in it: the text bounds come from the tokens left after the JSON around them, at
# CHARS_PER_TOKEN (a low estimate of the characters one token carries, so the estimate errs towards
# shorter bounds), and a reasoning reply has fewer steps before any step gets shorter than
# MIN_STEP_CHARS. Without a max_tokens (0 / None) the bounds are the largest ones below.
CHARS_PER_TOKEN = {"en": 3, "zh": 1}
REPLY_TOKENS = 20  # the reply's outer object, its key and the whitespace around them
FIELD_TOKENS = 12  # one string field: its key, quotes, punctuation and whitespace around them
STEP_TOKENS = 30  # one reasoning step's action (a fixed word) and the JSON around its fields
# Longest title and content of one reasoning step, in characters: room for a thorough step
MAX_TITLE_CHARS, MAX_STEP_CHARS = 150, 1500
MIN_STEP_CHARS = 200  # below this a reply has fewer steps instead
# Most Inner Thinking steps a reasoning-steps schema allows in one reply
MAX_THINKING_STEPS = 8
# the natural thinking, one thought per line: most lines, and the shortest line bound before fewer
MAX_THOUGHT_LINES, MIN_LINE_CHARS = 60, 150
MAX_ANSWER_CHARS = 200  # a ground-truth answer is a short phrase


def _chars(tokens: int, language: str) -> int:
    return max(1, tokens) * CHARS_PER_TOKEN[_check_language(language)]


def _bounded(max_chars: int | None, min_chars: int = 1) -> dict:
    """A string of `min_chars` to `max_chars` characters (no upper bound for None); at least one, as
    a constrained reply can otherwise give an empty string, which no stage can use."""
    bound = {"type": "string", "minLength": min_chars}
    return bound if max_chars is None else {**bound, "maxLength": max_chars}


def _step(action: str, title: int | None, content: int) -> dict:
    """One reasoning step: its action (fixed), a title of at most `title` characters (Inner Thinking
    steps; None: no title), the content."""
    props = {"action": {"type": "string", "enum": [action]}}
    if title is not None:
        props["title"] = _bounded(title)
    props["content"] = _bounded(content)
    return _object(props)


def cot_bounds(max_tokens: int | None, language: str = "en", opening: int = 0) -> tuple[int, int, int]:
    """(most Inner Thinking steps, title chars, content chars) of a reasoning reply of at most
    `max_tokens` tokens that starts with `opening` fixed steps (sizing rule above)."""
    if not max_tokens:
        return MAX_THINKING_STEPS, MAX_TITLE_CHARS, MAX_STEP_CHARS
    for steps in range(MAX_THINKING_STEPS, 0, -1):
        per_step = (max_tokens - REPLY_TOKENS) // (opening + steps + 2) - STEP_TOKENS
        text = _chars(per_step, language)
        title = min(MAX_TITLE_CHARS, max(1, text // 5))
        content = min(MAX_STEP_CHARS, text - title)
        if content >= MIN_STEP_CHARS or steps == 1:
            return steps, title, max(1, content)
    raise AssertionError("unreachable")


def cot_schema(max_tokens: int | None = None, language: str = "en", continued: bool = False) -> dict:
    """{"CoT": [...]} in the order the stage reads: (a refinement, `continued`: the Verification that
    finds the last conclusion wrong), 1 to N Inner Thinking steps, a Final Conclusion, a
    Verification; N and the text bounds sized to `max_tokens` (cot_bounds). The order needs
    `prefixItems` (and the text bounds `maxLength`), which vLLM and SGLang enforce and OpenAI's strict
    mode does not take, so the schema is sent with "strict": false (OpenAI then takes it as guidance)."""
    opening = 1 if continued else 0
    most, title, content = cot_bounds(max_tokens, language, opening)
    first = [_step("Verification", None, content)] * opening
    thinking = _step("Inner Thinking", title, content)
    closing = [_step("Final Conclusion", None, content), _step("Verification", None, content)]
    shapes = []
    for k in range(1, most + 1):
        steps = [*first, *[thinking] * k, *closing]
        shapes.append(
            {
                "type": "array",
                "prefixItems": steps,
                "items": False,
                "minItems": len(steps),
                "maxItems": len(steps),
            }
        )
    name = "reasoning_steps_continued" if continued else "reasoning_steps"
    return _schema(name, {"CoT": {"anyOf": shapes}}, strict=False)


def natural_schema(max_tokens: int | None = None, language: str = "en") -> dict:
    """The natural thinking as a list of lines, which the stage joins with line breaks (a constrained
    reply then cannot come as one line, which the stage would not take); with a `max_tokens`, as many
    lines as fit with MIN_LINE_CHARS each at least (sizing rule above)."""
    lines, line = MAX_THOUGHT_LINES, None
    if max_tokens:
        for lines in range(MAX_THOUGHT_LINES, 1, -1):
            line = _chars((max_tokens - REPLY_TOKENS) // lines - FIELD_TOKENS // 2, language)
            if line >= MIN_LINE_CHARS:
                break
    lines_schema = {"type": "array", "items": _bounded(line), "minItems": 2, "maxItems": lines}
    return _schema("natural_reasoning", {"NaturalReasoning": lines_schema}, strict=False)


def response_schema(max_tokens: int | None = None, language: str = "en") -> dict:
    """The final response, {"Response": "<text>"}: free text in JSON, so that a constrained reply ends
    within `max_tokens` (a small model's free-form answer often runs on until it is cut)."""
    text = _chars(max_tokens - REPLY_TOKENS - FIELD_TOKENS, language) if max_tokens else None
    return _schema("final_response", {"Response": _bounded(text)}, strict=False)


def rewrite_schema(max_tokens: int | None = None, language: str = "en") -> dict:
    """Stage 1's open-ended question and its short ground-truth answer, both non-empty; with a
    `max_tokens`, the question takes what the answer (at most MAX_ANSWER_CHARS) leaves."""
    answer, question = MAX_ANSWER_CHARS, None
    if max_tokens:
        text = _chars(max_tokens - REPLY_TOKENS - 2 * FIELD_TOKENS, language)
        answer = min(MAX_ANSWER_CHARS, max(1, text // 4))
        question = max(1, text - answer)
    fields = {"Open-ended Verifiable Question": _bounded(question), "Ground-True Answer": _bounded(answer)}
    return _schema("open_ended_question", fields, strict=False)
