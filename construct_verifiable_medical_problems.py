"""Stage 1: multiple-choice medical exam questions -> verifiable open-ended problems.

    python construct_verifiable_medical_problems.py --data_path data/demo_data.json --filter_data \
        --model_name gpt-4o --api_key [key]

The paper's steps, in order (cheap first): decontamination against the eval sets, the question
rules, the small-models difficulty filter, the LLM filter (--filter_data), the LLM rewrite:

    python construct_verifiable_medical_problems.py --data_path data/demo_data.json --filter_data \
        --min_question_length 100 \
        --difficulty_models gemma-2-9b-it,Llama-3.1-8B-Instruct,Qwen2.5-7B-Instruct \
        --difficulty_api_url http://127.0.0.1:8000/v1 --model_name gpt-4o --api_key [key]

See huatuo_o1/datagen/construct.py for the method. Output: one file per item under
<output_dir>/<task>/ (resume state), the small models' answers under <output_dir>/<task>_difficulty/,
and the merged <output_dir>/<task>_final_<N>.json with its _summary.json.
"""

import argparse

from huatuo_o1.cli import run_async_stage, run_main, str2bool
from huatuo_o1.datagen.construct import run
from huatuo_o1.llm import add_client_args, parse_price
from huatuo_o1.prompts import LANGUAGES
from huatuo_o1.runner import add_run_args


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data_path", type=str, required=True, help="Multiple-choice questions (JSON list or JSONL)."
    )
    p.add_argument(
        "--filter_data",
        action="store_true",
        help="Ask the LLM to filter questions first; only 'Pass' ones go on.",
    )
    add_client_args(p, default_model="gpt-4", default_num_process=10)
    p.add_argument("--language", choices=LANGUAGES, default="en", help="Prompt language.")
    p.add_argument("--max_tries", type=int, default=2, help="Requests per step when a reply does not parse.")
    s = p.add_argument_group("free steps (before any request)")
    s.add_argument(
        "--decontaminate_against",
        type=str,
        default=None,
        help="Eval files (evaluation format), comma-separated: an item sharing 64 consecutive characters "
        "with one of their questions drops. Default: evaluation/data/eval_data.json when it exists, else "
        "none. 'none' turns it off.",
    )
    s.add_argument(
        "--decontam_ignore_common",
        type=int,
        default=0,
        help="Ignore 64-character windows found in this many or more different eval questions (exam "
        "boilerplate). Default 0: every shared window counts, as the paper's rule.",
    )
    s.add_argument(
        "--min_question_length",
        type=int,
        default=0,
        help="Drop questions shorter than this many characters (default 0: none).",
    )
    s.add_argument(
        "--drop_negative_questions",
        type=str2bool,
        default=True,
        help="True/False: drop questions that ask for the incorrect option (EXCEPT, NOT, false...) or "
        "allow several answers (default True).",
    )
    d = p.add_argument_group("difficulty filter (small models; an item all of them answer correctly drops)")
    d.add_argument(
        "--difficulty_models",
        type=str,
        default=None,
        help="Comma-separated model names served at --difficulty_api_url (the paper: Gemma2-9B, "
        "LLaMA-3.1-8B, Qwen2.5-7B). Default: no difficulty filter.",
    )
    d.add_argument(
        "--difficulty_api_url", type=str, default=None, help="OpenAI-compatible endpoint serving them."
    )
    d.add_argument(
        "--difficulty_api_key",
        type=str,
        default=None,
        help="API key of that endpoint (default: none; the OpenAI key is never sent there).",
    )
    d.add_argument(
        "--difficulty_num_process",
        type=int,
        default=None,
        help="Small-model requests in flight per model (default: --num_process).",
    )
    d.add_argument(
        "--difficulty_temperature", type=float, default=0.0, help="Sampling temperature (default 0: greedy)."
    )
    d.add_argument(
        "--difficulty_max_tokens", type=int, default=2000, help="max_tokens of each answer (the eval's 2000)."
    )
    d.add_argument(
        "--difficulty_price",
        type=parse_price,
        default=None,
        help="IN,OUT USD per 1M tokens of the small models for --max_cost (default: the price table, "
        "else 0 = self-hosted).",
    )
    add_run_args(p, merged_help="Merged output file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run_async_stage(run, parse_args(argv))


if __name__ == "__main__":
    run_main(main)
