"""Where does a PPO step's time go? Generation, reward, forward passes, update; rollout tokens/s.

Runs a few PPO updates of our trainer (huatuo_o1/rl/ppo_trainer.py, with the verifier reward) and
prints, per update, the seconds spent in generation (the rollouts), the reward (RewardHook: decode,
verifier template, classifier), the rollout's forward passes (reference log-probs, values; the
rollout log-probs too under vLLM) and the PPO update (epochs of forward + backward + optimizer),
each also as a share of the step, and the rollout tokens/s (response tokens generated per second
of generation). With --use_vllm the same updates run a second time with `--use_vllm True`
(colocated vLLM, needs a GPU and the vllm package) and the two tokens/s are compared. With --grpo,
GRPO steps with the same reward follow (generation: model.generate, not timed under vLLM; reward:
the reward function), with a samples/s ratio.

    python bench/bench_rl_step.py                       # tiny random models, CPU (~1 min)
    python bench/bench_rl_step.py --policy models/SmolLM2-135M-Instruct --response_length 64
    python bench/bench_rl_step.py --policy <8B-shaped model> --response_length 1300 --use_vllm   # on a GPU

The baseline of the shares is the step itself (they sum to 1); vLLM is compared as rollout tokens/s.
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


def bench_ppo(policy, verifier, data, work, a, use_vllm: bool = False) -> dict:
    from transformers import TrainerCallback

    from huatuo_o1.rl import ppo
    from huatuo_o1.rl.ppo_trainer import build_ppo_trainer

    argv = [
        "--model_name_or_path", str(policy), "--reward_model_path", str(verifier), "--dataset_name", str(data),
        "--output_dir", str(work / ("ppo_vllm" if use_vllm else "ppo")), "--response_length", str(a.response_length),
        "--per_device_train_batch_size", str(a.batch), "--gradient_accumulation_steps", "1",
        "--local_rollout_forward_batch_size", str(a.batch), "--total_episodes", str(a.batch * a.steps),
        "--num_ppo_epochs", "1", "--num_sample_generations", "0", "--report_to", "none",
        "--save_strategy", "no", "--logging_steps", "1", "--verifier", a.verifier, "--use_vllm", str(use_vllm),
        "--resume", "False",
    ]  # fmt: skip
    s, args, m = ppo.parse_args(argv)
    trainer = build_ppo_trainer(s, args, m)
    pad = trainer.processing_class.pad_token_id
    tokens = [0]
    generate = trainer._generate

    def counting(queries, config):
        query_responses, logits = generate(queries, config)
        tokens[0] += int((query_responses[:, queries.shape[1] :] != pad).sum())
        return query_responses, logits

    trainer._generate = counting
    steps = []  # per update: total, generation, reward, forward, update seconds; response tokens

    class StepClock(TrainerCallback):
        def on_step_end(self, *_, **__):
            now = time.perf_counter()
            t = trainer.timings
            parts = [t[k] - self.seen.get(k, 0.0) for k in ("generation", "reward", "forward", "update")]
            steps.append((now - self.t0, *parts, tokens[0]))
            self.t0, self.seen, tokens[0] = now, dict(t), 0

    clock = StepClock()
    trainer.add_callback(clock)
    clock.seen = {}
    clock.t0 = t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    return {"steps": steps, "samples_per_s": a.batch * a.steps / wall}


def print_ppo_split(name: str, steps: list) -> float:
    """Each update's split, the steady-state shares (updates 2 on); returns rollout tokens/s."""
    print(f"# {name}")
    print(f"{'step':>4} {'total_s':>8} {'gen_s':>7} {'reward_s':>8} {'fwd_s':>6} {'update_s':>8} {'other_s':>7} "
          f"{'tokens':>6}  gen%  rew%  fwd%  upd%")  # fmt: skip
    for i, (tot, g, r, f, u, n) in enumerate(steps, 1):
        o = tot - g - r - f - u
        print(f"{i:>4} {tot:8.2f} {g:7.2f} {r:8.2f} {f:6.2f} {u:8.2f} {o:7.2f} {n:>6}  "
              f"{g / tot:4.0%} {r / tot:5.0%} {f / tot:5.0%} {u / tot:5.0%}")  # fmt: skip
    steady = steps[1:] or steps
    tot = sum(s[0] for s in steady)
    g, r, f, u, n = (sum(s[i] for s in steady) for i in range(1, 6))
    tps = n / g if g else float("nan")
    print(f"{name} steady-state shares (updates 2+): generation {g / tot:.0%}, reward {r / tot:.0%}, "
          f"forward passes {f / tot:.0%}, update {u / tot:.0%}; rollout {tps:.1f} tokens/s")  # fmt: skip
    return tps


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
    ap.add_argument(
        "--use_vllm", action="store_true", help="PPO again with vLLM rollouts (and GRPO with vLLM); GPU"
    )
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
        tps = print_ppo_split("PPO", ppo["steps"])
        print(f"PPO samples/s: {ppo['samples_per_s']:.3f}")
        if a.use_vllm:
            fast = bench_ppo(policy, verifier, data, work, a, use_vllm=True)
            vtps = print_ppo_split("PPO --use_vllm", fast["steps"])
            print(f"PPO --use_vllm samples/s: {fast['samples_per_s']:.3f}")
            print(f"PPO rollout tokens/s: generate {tps:.1f}, vLLM {vtps:.1f} ({vtps / tps:.2f}x)")
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
