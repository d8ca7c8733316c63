"""`RL_stage2.py --use_vllm True`: colocated vLLM rollouts sample as the trainer's `generate` does.

GPU only (vLLM's engine; scripts/gpu_check.sh runs it), and only where the vllm package is
installed (requirements-vllm.txt). With greedy sampling, vLLM and `generate` give the same tokens on
a tiny model, before and after a PPO update (the updated weights reach vLLM), and a response stops
at the stop token.
"""

from __future__ import annotations

import pytest
import torch

from tests.test_ppo_options import write_rl_rows

pytestmark = pytest.mark.gpu


@pytest.fixture()
def data_file(tmp_path):
    return write_rl_rows(tmp_path / "rl.json")


def test_vllm_rollouts_equal_generate_when_greedy(tmp_path, data_file, tiny_lm_dir):
    pytest.importorskip("vllm")
    from huatuo_o1.rl import ppo
    from huatuo_o1.rl.ppo_trainer import batch_generation, build_ppo_trainer, eval_mode

    argv = ["--model_name_or_path", str(tiny_lm_dir), "--dataset_name", str(data_file), "--verifier", "exact",
            "--output_dir", str(tmp_path / "o"), "--response_length", "12", "--per_device_train_batch_size", "4",
            "--gradient_accumulation_steps", "1", "--local_rollout_forward_batch_size", "4", "--total_episodes",
            "4", "--num_ppo_epochs", "1", "--num_sample_generations", "0", "--report_to", "none",
            "--save_strategy", "no", "--temperature", "0", "--learning_rate", "1e-2", "--use_vllm", "True",
            "--vllm_gpu_memory_utilization", "0.2", "--bf16", "False", "--gradient_checkpointing", "False"]  # fmt: skip
    s, a, m = ppo.parse_args(argv)
    trainer = build_ppo_trainer(s, a, m)
    batch = trainer.data_collator([{"input_ids": r["input_ids"]} for r in trainer.rl_data.train[:4]])
    queries = batch["input_ids"].to(trainer.accelerator.device)
    pad = trainer.processing_class.pad_token_id

    def both():
        trainer.vllm.wake_up(trainer.model, trainer.accelerator)
        fast = trainer.vllm.generate(queries)
        trainer.vllm.sleep()
        policy = trainer.accelerator.unwrap_model(trainer.model).policy
        with eval_mode(policy):
            slow, _ = batch_generation(policy, queries, 4, pad, trainer._generation_config(0.0))
        width = max(fast.shape[1], slow.shape[1])
        pad_to = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]), value=pad)  # noqa: E731
        return pad_to(fast), pad_to(slow)

    fast, slow = both()
    assert torch.equal(fast.cpu(), slow.cpu())
    trainer.train()  # one update; vLLM gets the new weights before the next rollout
    fast, slow = both()
    assert torch.equal(fast.cpu(), slow.cpu())
