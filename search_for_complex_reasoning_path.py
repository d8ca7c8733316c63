"""Stage 2: verifier-guided search for complex reasoning paths (verifiable problems -> SFT data).

    python search_for_complex_reasoning_path.py --data_path data/demo_data.json --efficient_search True \
        --max_search_attempts 1 --max_search_depth 2 --model_name gpt-4o --api_key [key]

Flags, method and outputs: `--help`, and huatuo_o1/datagen/search.py (make_parser, main).
"""

from huatuo_o1.cli import run_main
from huatuo_o1.datagen.search import main

if __name__ == "__main__":
    run_main(main)
