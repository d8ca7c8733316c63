"""Benchmark: evaluation's request throughput against a loopback OpenAI-protocol server.

    .venv/bin/python bench/bench_eval.py [--questions 2000] [--latency 0.5] [--in_flight 64]

The server (huatuo_o1.testing.openai_server.FakeOpenAIServer, in its own process) answers every question after a
latency; a request holding a batch of questions answers when its slowest question is done (as a
batching inference server does). With N questions in flight and latency L the ideal throughput is
N / L questions/s (Little's law); we print achieved / ideal for:
  ours     : eval.py's server backend (LLMClient + runner: one request per question, N in flight,
             each finished question saved to the resume cache at once, scored).
  original : the original client pattern: one blocking completions request with a batch of N
             prompts at a time (openai sync client), results kept in memory.
Two scenarios, same run: `fixed` (every question takes L, as the issue asks) and `variable`
(question latencies spread uniformly over [0.25 L, 1.75 L], mean L, seeded), where a batch waits
for its slowest question while ours refills a slot as soon as one answer arrives.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time

from huatuo_o1.eval.run import generation_input, item_id, make_record
from huatuo_o1.generation import GenerationSettings, run_server
from huatuo_o1.io import ItemStore
from huatuo_o1.llm import LLMClient
from huatuo_o1.prompts import eval_prompt
from huatuo_o1.testing.openai_server import FakeOpenAIServer, FakeResponse


def make_items(n: int) -> list[dict]:
    opts = {"A": "Aspirin", "B": "Heparin", "C": "Warfarin", "D": "Insulin"}
    return [
        {
            "question": f"[Q{i}] Which drug is the answer to question {i}?",
            "options": opts,
            "answer_idx": "ABCD"[i % 4],
            "source": "bench",
        }
        for i in range(n)
    ]


def make_responder(latencies: list[float]):
    def qid(prompt: str) -> int:
        return int(prompt.split("[Q", 1)[1].split("]", 1)[0])

    def respond(req):
        p = req.body.get("prompt")
        prompts = p if isinstance(p, list) else [p]
        ids = [qid(x) for x in prompts]
        texts = [f"The answer is {'ABCD'[i % 4]}." for i in ids]
        return FakeResponse(
            texts if isinstance(p, list) else texts * req.n, delay=max(latencies[i] for i in ids)
        )

    return respond


def run_ours(url: str, items: list[dict], in_flight: int) -> float:
    work = [
        {"item_id": item_id(i, it), "item": it, "user_prompt": eval_prompt(it), "prompt": eval_prompt(it)}
        for i, it in enumerate(items, 1)
    ]
    gen = GenerationSettings(batch_size=in_flight, show_progress=False)
    with tempfile.TemporaryDirectory() as d:
        store = ItemStore(d)
        client = LLMClient("fake-model", api_url=url, max_concurrency=in_flight)
        t = time.perf_counter()
        report = run_server([generation_input(w) for w in work], store, client, gen)
        outs = {r["item_id"]: r["outputs"] for r in store.iter_records()}
        records = [make_record(w, outs[w["item_id"]]) for w in work]  # scored, as the original did
        dt = time.perf_counter() - t
        assert report.done == len(items) == len(records), report.errors[:3]
    return dt


def run_original(url: str, items: list[dict], batch_size: int) -> float:
    import openai

    from huatuo_o1.eval.scoring import score_output

    client = openai.OpenAI(base_url=url, api_key="EMPTY", max_retries=0, timeout=600)
    results = []
    t = time.perf_counter()
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        resp = client.completions.create(
            model="default",
            prompt=[eval_prompt(it) for it in batch],
            temperature=0.5,
            top_p=0.9,
            max_tokens=2000,
        )
        for it, c in zip(batch, resp.choices, strict=True):
            results.append({**it, "output": c.text, **score_output(c.text, it["options"], it["answer_idx"])})
    dt = time.perf_counter() - t
    client.close()
    assert len(results) == len(items)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=2000, help="Questions per run.")
    ap.add_argument(
        "--latency",
        type=float,
        default=0.5,
        help="Seconds per question at the server (mean for the variable scenario).",
    )
    ap.add_argument(
        "--in_flight",
        type=int,
        default=64,
        help="Questions in flight (our concurrency = the original's batch size).",
    )
    ap.add_argument("--seed", type=int, default=0, help="Seed of the variable latencies.")
    a = ap.parse_args()
    items = make_items(a.questions)
    rng = random.Random(a.seed)
    scenarios = {
        "fixed": [a.latency] * a.questions,
        "variable": [a.latency * rng.uniform(0.25, 1.75) for _ in range(a.questions)],
    }
    print(
        f"{a.questions} questions, {a.in_flight} in flight, mean latency {a.latency}s, {os.cpu_count()} CPUs"
    )
    print(f"{'scenario':<9} {'client':<9} {'seconds':>8} {'q/s':>8} {'ideal q/s':>10} {'ratio':>6}")
    for name, lat in scenarios.items():
        ideal = a.in_flight / (sum(lat) / len(lat))
        with FakeOpenAIServer(make_responder(lat), in_process=False) as srv:
            for client, fn in (("ours", run_ours), ("original", run_original)):
                dt = fn(srv.url, items, a.in_flight)
                qps = a.questions / dt
                print(
                    f"{name:<9} {client:<9} {dt:8.2f} {qps:8.1f} {ideal:10.1f} {qps / ideal:6.2f}", flush=True
                )


if __name__ == "__main__":
    main()
