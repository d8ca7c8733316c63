"""Stage 3: supervised fine-tuning on reasoning paths (`## Thinking` / `## Final Response`).

    python SFT_stage1.py --model_path <model> --data_path <sft.json>                    # one process (CPU/GPU)
    accelerate launch --config_file ./configs/deepspeed_zero3.yaml --num_processes 8 SFT_stage1.py ...

The flags, parsing and trainer: huatuo_o1/train/sft.py; the data: huatuo_o1/train/sft_data.py.
"""

from huatuo_o1.cli import run_main
from huatuo_o1.train.sft import main

if __name__ == "__main__":
    run_main(main)
