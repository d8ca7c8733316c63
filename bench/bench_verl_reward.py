"""verl reward throughput: concurrent per-response calls scored together vs one forward pass each.

verl 0.9.1's naive reward manager calls `compute_score` once per response, many at once from a
reward worker's thread pool. Ours: huatuo_o1.rl.verl_reward.compute_score, whose shared classifier
scores the calls that queue up during a pass together in the next one. Baseline, measured in the
same run: the same threads and the same loaded classifier, each call its own forward pass (one
response), taking turns on the model, as a per-call reward function sharing one model would.
Both give the same rewards (checked). Prints responses/s of both, the ratio, and the passes.
torch runs on `--torch_threads` (default 1): on a small shared machine, torch's own thread pool
fighting the other processes swings single passes by 10x and swamps the comparison.

    .venv/bin/python bench/bench_verl_reward.py [--responses 96 --threads 32 --hidden 256 --layers 4]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from huatuo_o1.rl import verl_reward
from huatuo_o1.rl.rewards import score_responses
from huatuo_o1.testing.tiny_models import build_tiny_classifier

WELL = "## Thinking\n\nThe findings point to one diagnosis.\n\n## Final Response\n\n{}"


def workload(n: int) -> tuple[list[str], list[str]]:
    words = "fever cough infiltrate pneumonia aspirin heparin infarction artery".split()
    responses = [
        WELL.format(" ".join(words[(i + j) % len(words)] for j in range(20 + 7 * (i % 9)))) for i in range(n)
    ]
    refs = [words[i % len(words)] for i in range(n)]
    return responses, refs


def run(fn, responses, refs, threads: int) -> tuple[float, list[float]]:
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        out = list(ex.map(fn, responses, refs))
    return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--responses", type=int, default=96)
    ap.add_argument("--threads", type=int, default=32, help="verl's executor: min(32, CPUs + 4) threads")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16, help="verifier_batch_size")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--torch_threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.torch_threads)

    with tempfile.TemporaryDirectory() as tmp:
        vdir = build_tiny_classifier(Path(tmp) / "verifier", hidden_size=args.hidden, num_layers=args.layers)
        kwargs = {"reward_model_path": str(vdir), "verifier_device": "cpu", "verifier_batch_size": args.batch}
        responses, refs = workload(args.responses)
        shared = verl_reward.get_verifier(verl_reward.VerlRewardSettings.from_kwargs(kwargs))
        inner, lock = shared.inner, threading.Lock()

        def ours(r, g):
            return verl_reward.compute_score("s", r, g, **kwargs)

        def baseline(r, g):
            with lock:
                return score_responses([r], [g], inner).rewards[0]

        ours(responses[0], refs[0])  # load once, outside the timing
        baseline(responses[0], refs[0])
        t_ours, t_base, passes = [], [], []
        for _ in range(args.repeats):
            before = shared.calls
            t, got = run(ours, responses, refs, args.threads)
            t_ours.append(t)
            passes.append(shared.calls - before)
            t, want = run(baseline, responses, refs, args.threads)
            t_base.append(t)
            assert got == want, "coalesced and per-call rewards differ"
    ours_rate = args.responses / statistics.median(t_ours)
    base_rate = args.responses / statistics.median(t_base)
    print(
        f"{args.responses} responses, {args.threads} threads, classifier hidden {args.hidden} x {args.layers} layers"
    )
    print(f"ours (coalesced): {ours_rate:.1f} responses/s in {statistics.median(passes):.0f} passes")
    print(f"baseline (one pass per call): {base_rate:.1f} responses/s in {args.responses} passes")
    print(f"ratio ours/baseline: {ours_rate / base_rate:.2f}")


if __name__ == "__main__":
    main()
