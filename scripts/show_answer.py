"""Greedily answer one question with a model folder's chat template and print the answer.

    python scripts/show_answer.py --model_path ckpts/sft_stage1 --question "..."

The demo runs it before and after SFT to show the model learning `## Thinking` / `## Final Response`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from huatuo_o1.cli import run_main  # noqa: E402
from huatuo_o1.io import InputError  # noqa: E402

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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model_path", default="models/SmolLM2-135M-Instruct", help="HF model folder")
    p.add_argument("--question", default=DEFAULT_QUESTION, help="the user question")
    p.add_argument("--max_new_tokens", type=int, default=256, help="generation budget")
    a = p.parse_args()
    if not (Path(a.model_path) / "config.json").exists():
        raise InputError(f"no model folder (config.json) at {a.model_path}")
    print(f"Q: {a.question}\n--- {a.model_path} ---")
    print(answer(a.model_path, a.question, a.max_new_tokens))
    return 0


if __name__ == "__main__":
    run_main(main)
