"""Where does a PPO step's time go? Generation vs reward vs the rest (ref/value forwards + update).

Runs a few PPO steps (trl PPOTrainer + our reward hook) and prints, per step, the time spent in
generation (policy.generate), in the reward (RewardHook: decode, verifier template, classifier),
and in everything else (reference/value forwards, GAE, PPO epochs), each also as a share of
the step. With --grpo, GRPO steps with the same reward follow, split the same way (generation:
model.generate, not timed under vLLM; reward: the reward function), with a samples/s ratio.

    python bench/bench_rl_step.py                       # tiny random models, CPU (~1 min)
    python bench/bench_rl_step.py --policy models/SmolLM2-135M-Instruct --response_length 64
    python bench/bench_rl_step.py --policy <0.5B model> --grpo --use_vllm   # on a GPU

The baseline of the ratio is the step itself (shares sum to 1); GRPO is compared as samples/s.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")


class Timer:
    def __init__(self):
        self.total = 0.0

    def wrap(self, fn):
        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.total += time.perf_counter() - t

        return timed


def make_data(path: Path, n: int) -> None:
    from huatuo_o1.contract import GROUND_TRUTH, OPEN_QUESTION

    recs = [
        {OPEN_QUESTION: f"A {30 + i}-year-old presents with fever and cough for {i + 2} days. Diagnosis?",
         GROUND_TRUTH: f"Pneumonia type {i}"}
        for i in range(n)
    ]  # fmt: skip
    path.write_text(json.dumps(recs))


def bench_ppo(policy, verifier, data, work, a) -> dict:
    from huatuo_o1.rl import ppo
    from huatuo_o1.rl.ppo_trainer import build_ppo_trainer

    argv = [
        "--model_name_or_path", str(policy), "--reward_model_path", str(verifier), "--dataset_name", str(data),
        "--output_dir", str(work / "ppo"), "--response_length", str(a.response_length),
        "--per_device_train_batch_size", str(a.batch), "--gradient_accumulation_steps", "1",
        "--local_rollout_forward_batch_size", str(a.batch), "--total_episodes", str(a.batch * a.steps),
        "--num_ppo_epochs", "1", "--num_sample_generations", "0", "--report_to", "none",
        "--save_strategy", "no", "--logging_steps", "1", "--verifier", a.verifier,
    ]  # fmt: skip
    s, args, m = ppo.parse_args(argv)
    trainer = build_ppo_trainer(s, args, m)
    gen, rew = Timer(), Timer()
    trainer.policy_model.generate = gen.wrap(trainer.policy_model.generate)
    trainer.reward_hook.scorer.forward = rew.wrap(trainer.reward_hook.scorer.forward)
    return train_timed(trainer, gen, rew, a)


def train_timed(trainer, gen: Timer, rew: Timer, a) -> dict:
    """Train, recording each optimizer step's (total, generation, reward) seconds."""
    from transformers import TrainerCallback

    steps = []

    class StepClock(TrainerCallback):
        def on_step_end(self, *_, **__):
            now = time.perf_counter()
            steps.append((now - self.t0, gen.total, rew.total))
            self.t0 = now
            gen.total = rew.total = 0.0

    clock = StepClock()
    trainer.add_callback(clock)
    clock.t0 = time.perf_counter()
    gen.total = rew.total = 0.0
    t = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t
    return {"steps": steps, "samples_per_s": a.batch * a.steps / wall}


def print_split(name: str, steps: list, other: str) -> None:
    """Each step's split and the steady-state shares (steps 2 on)."""
    print(f"# {name}")
    print(f"{'step':>4} {'total_s':>8} {'gen_s':>7} {'reward_s':>8} {'other_s':>7}  gen%  rew%  other%")
    for i, (tot, g, r) in enumerate(steps, 1):
        o = tot - g - r
        print(f"{i:>4} {tot:8.2f} {g:7.2f} {r:8.2f} {o:7.2f}  {g / tot:4.0%} {r / tot:5.0%} {o / tot:6.0%}")
    steady = steps[1:] or steps
    tot = sum(s[0] for s in steady)
    g, r = sum(s[1] for s in steady), sum(s[2] for s in steady)
    print(f"{name} steady-state shares (steps 2+): generation {g / tot:.0%}, reward {r / tot:.0%}, "
          f"other ({other}) {(tot - g - r) / tot:.0%}")  # fmt: skip


def bench_grpo(policy, verifier, data, work, a) -> dict:
    from huatuo_o1.rl import grpo
    from huatuo_o1.rl.grpo_trainer import build_grpo_trainer

    argv = [
        "--model_name_or_path", str(policy), "--reward_model_path", str(verifier), "--dataset_name", str(data),
        "--output_dir", str(work / "grpo"), "--max_completion_length", str(a.response_length),
        "--per_device_train_batch_size", str(a.batch), "--num_generations", "2", "--max_steps", str(a.steps),
        "--report_to", "none", "--save_strategy", "no", "--logging_steps", "1", "--verifier", a.verifier,
        "--use_vllm", str(a.use_vllm),
    ]  # fmt: skip
    s, args, m = grpo.parse_args(argv)
    trainer = build_grpo_trainer(s, args, m)
    gen, rew = Timer(), Timer()
    if not a.use_vllm:  # vLLM generates outside the model: that time lands in "other"
        trainer.model.generate = gen.wrap(trainer.model.generate)
    trainer.reward_funcs = [functools.wraps(f)(rew.wrap(f)) for f in trainer.reward_funcs]
    return train_timed(trainer, gen, rew, a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", default=None, help="policy/value model folder (default: a tiny random one)")
    ap.add_argument(
        "--verifier_path", default=None, help="verifier folder (default: a tiny random classifier)"
    )
    ap.add_argument("--verifier", default="classifier", choices=["classifier", "exact"])
    ap.add_argument("--response_length", type=int, default=16)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--grpo", action="store_true", help="also run GRPO for a samples/s comparison")
    ap.add_argument("--use_vllm", action="store_true")
    a = ap.parse_args()

    import torch

    from huatuo_o1.testing.tiny_models import build_tiny_causal_lm, build_tiny_classifier

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        policy = a.policy or build_tiny_causal_lm(work / "policy")
        verifier = a.verifier_path or build_tiny_classifier(work / "verifier")
        data = work / "data.json"
        make_data(data, 4 * a.batch * a.steps)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        print(f"# PPO step split: policy={policy if a.policy else 'tiny random'} device={device} "
              f"batch={a.batch} response_length={a.response_length} threads={torch.get_num_threads()}")  # fmt: skip
        ppo = bench_ppo(policy, verifier, data, work, a)
        print_split("PPO", ppo["steps"], "ref/value forwards + PPO update")
        print(f"PPO samples/s: {ppo['samples_per_s']:.3f}")
        if a.grpo:
            grpo = bench_grpo(policy, verifier, data, work, a)
            print_split(
                "GRPO", grpo["steps"], "ref forward + update" + (", vLLM generation" if a.use_vllm else "")
            )
            print(
                f"GRPO samples/s: {grpo['samples_per_s']:.3f}  (GRPO/PPO ratio {grpo['samples_per_s'] / ppo['samples_per_s']:.2f}x)"
            )


if __name__ == "__main__":
    main()
