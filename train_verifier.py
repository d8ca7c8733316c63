"""Train a 2-label medical verifier (label 1 = True) from exported verdicts (docs/data_formats.md §5).

    python train_verifier.py --data_path data/verifier_data.json \
        --model_name_or_path meta-llama/Llama-3.2-3B-Instruct --output_dir ckpts/medical_verifier \
        --num_train_epochs 2 --learning_rate 1e-5 --per_device_train_batch_size 8

Reports held-out accuracy and a threshold sweep (verifier_eval.json next to the model). The
result is a plain HF folder for RL_stage2.py --reward_model_path. Logic: huatuo_o1/rl/verifier_train.py.
"""

from huatuo_o1.cli import run_main
from huatuo_o1.rl.verifier_train import main

if __name__ == "__main__":
    run_main(main)
