"""The output format the model learns in SFT, is rewarded for in RL and parsed by evaluation.

    ## Thinking

    <free-form reasoning>

    ## Final Response

    <answer for the user>

A response is well-formed when it holds exactly one `## Thinking` and exactly one
`## Final Response\\n\\n` (docs/data_formats.md §4). The answer is the text after that header.

The paper's ablations train on other SFT targets (docs/ablations.md). `complex_cot` (the default)
and `simple_cot` teach the two-section format above; `response` and `mcq` teach the answer alone,
so for a policy trained on them the whole output is the answer (`answer_for_target`).
"""

from __future__ import annotations

THINKING_HEADER = "## Thinking"
FINAL_HEADER = "## Final Response"
FINAL_MARKER = FINAL_HEADER + "\n\n"

# What SFT trains the assistant turn on (SFT_stage1.py --sft_target; the RL scripts take the same
# flag for the policy they start from). The first is the default, the paper's recipe.
SFT_TARGETS = ("complex_cot", "simple_cot", "response", "mcq")
DEFAULT_SFT_TARGET = SFT_TARGETS[0]
THINKING_TARGETS = ("complex_cot", "simple_cot")  # the targets that write `## Thinking` first
SFT_TARGET_HELP = (
    "What the SFT model was trained to write: complex_cot (the search's Complex_CoT + Response, the "
    "default), simple_cot (the search's first reasoning and conclusion), response (the final response "
    "alone) or mcq (the correct option of the multiple-choice question). See docs/ablations.md."
)


def format_response(complex_cot: str, response: str) -> str:
    """The assistant turn SFT trains on."""
    return f"{THINKING_HEADER}\n\n{complex_cot}\n\n{FINAL_MARKER}{response}"


def is_well_formed(text: str) -> bool:
    return text.count(THINKING_HEADER) == 1 and text.count(FINAL_MARKER) == 1


def extract_final_answer(text: str) -> str | None:
    """The answer after `## Final Response\\n\\n` of a well-formed response, else None."""
    if not is_well_formed(text):
        return None
    return text.split(FINAL_MARKER, 1)[1].strip()


def answer_for_target(text: str, sft_target: str = DEFAULT_SFT_TARGET) -> str | None:
    """The answer a policy trained on `sft_target` gave: after `## Final Response` of a well-formed
    response for the thinking targets (None when malformed), the whole output otherwise."""
    if sft_target in THINKING_TARGETS:
        return extract_final_answer(text)
    if sft_target not in SFT_TARGETS:
        raise ValueError(f"unknown SFT target {sft_target!r}; choose one of {', '.join(SFT_TARGETS)}")
    return text.strip()


def final_response_or_all(text: str) -> str:
    """Evaluation's rule: keep only what follows `## Final Response\\n\\n` when present."""
    if FINAL_MARKER in text:
        return text.split(FINAL_MARKER)[-1]
    return text
