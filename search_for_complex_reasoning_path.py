"""Stage 2: verifier-guided search for complex reasoning paths (verifiable problems -> SFT data).

    python search_for_complex_reasoning_path.py --data_path data/demo_data.json --efficient_search True \
        --max_search_attempts 1 --max_search_depth 2 --model_name gpt-4o --api_key [key]

The paper's search (depth 3, 3 attempts) is one flag away: add --paper_settings (explicit
--max_search_depth / --max_search_attempts still win). Without it the original code's defaults hold:
depth 2, 1 attempt, label guidance on.

See huatuo_o1/datagen/search.py for the method. Output: one trace file per item under
<output_dir>/<task>/ (resume state; task = <data file stem>_CoT_search), the merged SFT file
<output_dir>/<task>_final_<N>.json (N kept items) and <...>_summary.json beside it.
"""

import argparse

from huatuo_o1.cli import add_dataclass_args, run_async_stage, run_main
from huatuo_o1.datagen.search import SearchConfig, run
from huatuo_o1.llm import add_client_args
from huatuo_o1.prompts import LANGUAGES
from huatuo_o1.runner import add_run_args

# The original code's defaults, and the paper's search (arXiv 2412.18925 §4: depth 3, 3 attempts)
ORIGINAL_SETTINGS = {k: getattr(SearchConfig, k) for k in ("max_search_depth", "max_search_attempts")}
PAPER_SETTINGS = {"max_search_depth": 3, "max_search_attempts": 3}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data_path",
        type=str,
        required=True,
        help="Verifiable problems (JSON list or JSONL, docs/data_formats.md §2).",
    )
    add_client_args(p, default_model="gpt-4", default_num_process=5)
    add_dataclass_args(p, SearchConfig, exclude={"gen_kwargs"}, choices={"language": LANGUAGES})
    p.add_argument(
        "--paper_settings",
        action="store_true",
        help="Search as the paper did: --max_search_depth 3 --max_search_attempts 3 (flags given "
        "explicitly still win; label guidance stays as --efficient_search says).",
    )
    # None marks "not given", so --paper_settings can tell an explicit flag from the default.
    p.set_defaults(**dict.fromkeys(PAPER_SETTINGS))
    p.add_argument(
        "--max_tokens", type=int, default=8192, help="max_tokens sent with every request (0: not sent)."
    )
    g = p.add_argument_group("verifier (default: the search model and endpoint)")
    g.add_argument("--verifier_model_name", type=str, default=None, help="Model that judges conclusions.")
    g.add_argument("--verifier_api_url", type=str, default=None, help="Endpoint of the verifier model.")
    g.add_argument(
        "--verifier_api_key",
        type=str,
        default=None,
        help="API key of the verifier endpoint (default: --api_key).",
    )
    p.add_argument(
        "--export_verifier_data",
        type=str,
        default=None,
        help="Also write every verification as {response, reference, label} (.json list or .jsonl).",
    )
    add_run_args(p, merged_help="Merged SFT file")
    args = p.parse_args(argv)
    for name, value in (PAPER_SETTINGS if args.paper_settings else ORIGINAL_SETTINGS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main(argv=None) -> int:
    return run_async_stage(run, parse_args(argv))


if __name__ == "__main__":
    run_main(main)
