"""Stage 1: multiple-choice medical exam questions -> verifiable open-ended problems.

    python construct_verifiable_medical_problems.py --data_path data/demo_data.json --filter_data \
        --model_name gpt-4o --api_key [key]

Flags, method and outputs: `--help`, and huatuo_o1/datagen/construct.py (make_parser, main).
"""

from huatuo_o1.cli import run_main
from huatuo_o1.datagen.construct import main

if __name__ == "__main__":
    run_main(main)
