"""Show one model answer: greedy generation with a model folder's chat template (the demo's before/after-SFT view)."""

from __future__ import annotations

import argparse
from pathlib import Path

from huatuo_o1.io import InputError

# ---------------------------------------------------------------------------------------------
# Command line: scripts/show_answer.py

USAGE = """Greedily answer one question with a model folder's chat template and print the answer.

    python scripts/show_answer.py --model_path ckpts/sft_stage1 --question "..."

The demo runs it before and after SFT to show the model learning `## Thinking` / `## Final Response`.
"""


DEFAULT_QUESTION = (
    "A 45-year-old man has crushing chest pain radiating to the left arm for 30 minutes. "
    "What is the most likely diagnosis?"
)


def answer(model_path: str, question: str, max_new_tokens: int = 256) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from huatuo_o1.train.sft_data import ensure_chat_template, render

    tok = AutoTokenizer.from_pretrained(model_path)
    ensure_chat_template(tok)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model.eval()
    enc = tok(render(tok, question), add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        )
    return tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def make_parser() -> argparse.ArgumentParser:
    """The command line's flags."""
    p = argparse.ArgumentParser(description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_path", default="models/SmolLM2-135M-Instruct", help="HF model folder")
    p.add_argument("--question", default=DEFAULT_QUESTION, help="the user question")
    p.add_argument("--max_new_tokens", type=int, default=256, help="generation budget")
    return p


def main(argv=None) -> int:
    a = make_parser().parse_args(argv)
    if not (Path(a.model_path) / "config.json").exists():
        raise InputError(f"no model folder (config.json) at {a.model_path}")
    print(f"Q: {a.question}\n--- {a.model_path} ---")
    print(answer(a.model_path, a.question, a.max_new_tokens))
    return 0
