"""Screen any data file (stage-1, SFT, RL) against the evaluation sets: Med-PaLM 2's rule, 64 shared characters.

    python scripts/decontaminate.py --data_path data/sft.json \
        [--against evaluation/data/eval_data.json[,more.json]] [--fields Question,...]

Flags, method and outputs: `--help`, and huatuo_o1/datagen/decontam.py (make_parser, main).
"""

from huatuo_o1.cli import run_main
from huatuo_o1.datagen.decontam import main

if __name__ == "__main__":
    run_main(main)
