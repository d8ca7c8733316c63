"""Stage 1: multiple-choice medical exam questions -> verifiable open-ended problems.

    python construct_verifiable_medical_problems.py --data_path data/demo_data.json --filter_data \
        --model_name gpt-4o --api_key [key]

See huatuo_o1/construct.py for the method. Output: one file per item under
<output_dir>/<task>/ (resume state) and the merged <output_dir>/<task>_final_<N>.json.
"""

import argparse

from huatuo_o1.cli import run_async_stage, run_main
from huatuo_o1.construct import run
from huatuo_o1.llm import add_client_args
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
    add_run_args(p, merged_help="Merged output file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run_async_stage(run, parse_args(argv))


if __name__ == "__main__":
    run_main(main)
