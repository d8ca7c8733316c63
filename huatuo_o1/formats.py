"""The output format the model learns in SFT, is rewarded for in RL and parsed by evaluation.

    ## Thinking

    <free-form reasoning>

    ## Final Response

    <answer for the user>

A response is well-formed when it holds exactly one `## Thinking` and exactly one
`## Final Response\\n\\n` (docs/data_formats.md §4). The answer is the text after that header.
"""

from __future__ import annotations

THINKING_HEADER = "## Thinking"
FINAL_HEADER = "## Final Response"
FINAL_MARKER = FINAL_HEADER + "\n\n"


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


def final_response_or_all(text: str) -> str:
    """Evaluation's rule: keep only what follows `## Final Response\\n\\n` when present."""
    if FINAL_MARKER in text:
        return text.split(FINAL_MARKER)[-1]
    return text
