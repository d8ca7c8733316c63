"""RLOO (RL_stage2_rloo.py): the paper's defaults, the GRPO reward object, a few steps that save a policy."""

from __future__ import annotations

import json

from huatuo_o1.contract import GROUND_TRUTH, OPEN_QUESTION


def test_rloo_defaults_are_the_papers():
    from huatuo_o1.rl import rloo

    s, a, _ = rloo.parse_args(["--model_name_or_path", "m", "--output_dir", "o", "--report_to", "none"])
    assert (a.learning_rate, a.beta, a.num_generations, a.global_batch_size) == (5e-7, 0.03, 2, 128)
    assert s.sft_target == "complex_cot" and s.verifier == "classifier"


def test_rloo_few_steps_and_saves(tmp_path, tiny_lm_dir, tiny_verifier_dir):
    from transformers import AutoModelForCausalLM

    from huatuo_o1.rl import rloo
    from huatuo_o1.rl.grpo_trainer import MedicalRewardFunc
    from huatuo_o1.rl.rloo_trainer import build_rloo_trainer, rloo_identity

    data = tmp_path / "d.json"
    data.write_text(json.dumps([{OPEN_QUESTION: f"Q{i}?", GROUND_TRUTH: f"a{i}"} for i in range(8)]))
    out = tmp_path / "ckpts"
    s, a, m = rloo.parse_args(
        ["--model_name_or_path", str(tiny_lm_dir), "--reward_model_path", str(tiny_verifier_dir),
         "--dataset_name", str(data), "--output_dir", str(out), "--run_name", "r",
         "--per_device_train_batch_size", "2", "--global_batch_size", "2", "--max_completion_length", "8",
         "--max_steps", "2", "--report_to", "none", "--logging_steps", "1", "--save_strategy", "no",
         "--malformed_reward", "0.5"]
    )  # fmt: skip
    assert a.gradient_accumulation_steps == 1 and a.num_generations == 2
    trainer = build_rloo_trainer(s, a, m)
    assert isinstance(trainer.reward_funcs[0], MedicalRewardFunc)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "rewards/medical_verifier/mean" in h]
    assert len(logs) == 2 and all(h["rewards/medical_verifier/mean"] == 0.5 for h in logs)  # all malformed
    from huatuo_o1.rl.common import final_dir

    trainer.save_model(str(final_dir(a.output_dir, a.run_name)))
    AutoModelForCausalLM.from_pretrained(out / "r")
    assert rloo_identity(s, a, m)["num_generations"] == 2
