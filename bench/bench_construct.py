"""Stage-1 throughput against a loopback OpenAI-protocol server with a fixed latency per request.

Ours: construct_verifiable_medical_problems' async pipeline at --num_process N (requests in flight).
Baseline, measured in the same run: the original design, a pool of 10 blocking threads, each
running one item's filter + rewrite calls with the synchronous openai client.
Prints achieved requests/s as a ratio of the ideal bound (in-flight / latency) for both.
Each design first runs once on a few items, so one-time costs (imports, the TLS context) are
paid by both before timing; with --repeats N the median of N timed runs is printed.

    .venv/bin/python bench/bench_construct.py [--items 500 --latency 0.2 --num_process 64]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from construct_verifiable_medical_problems import main as stage1_main
from huatuo_o1.datagen.construct import load_mcq_items
from huatuo_o1.parsing import extract_json, parse_filter_verdict
from huatuo_o1.prompts import filter_prompt, rewrite_prompt
from huatuo_o1.testing.openai_server import FakeOpenAIServer


def responder(req):
    if "four verdicts" in req.prompt:
        return "Pass"
    return json.dumps({"Open-ended Verifiable Question": "What is the diagnosis?", "Ground-True Answer": "X"})


def make_data(path: Path, n: int) -> None:
    items = [
        {
            "question": f"Case {i}: which diagnosis?",
            "options": {"A": "X", "B": "Y"},
            "answer_idx": "A",
            "answer": "X",
        }
        for i in range(n)
    ]
    path.write_text(json.dumps(items))


LOOP_CPU: list[float] = []  # CPU seconds of the event-loop thread in each timed run of ours


def ours(data: Path, out: Path, url: str, num_process: int) -> float:
    """The script's own main() (what `python construct_verifiable_medical_problems.py ...` runs)."""
    argv = ["--data_path", str(data), "--filter_data", "--model_name", "gpt-4o", "--api_key", "sk-bench",
            "--api_url", url, "--num_process", str(num_process), "--output_dir", str(out)]  # fmt: skip
    t, cpu = time.perf_counter(), time.thread_time()  # asyncio.run drives the loop on this thread
    with contextlib.redirect_stdout(io.StringIO()):
        code = stage1_main(argv)
    elapsed = time.perf_counter() - t
    LOOP_CPU.append(time.thread_time() - cpu)
    if code != 0:
        raise SystemExit(f"stage 1 exited with {code}")
    return elapsed


def original(data: Path, out: Path, url: str, threads: int = 10) -> float:
    """The original pattern: ThreadPoolExecutor of blocking clients, one item per thread at a time."""
    import openai

    def one(item):
        reply = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": filter_prompt(item)}]
        )
        if parse_filter_verdict(reply.choices[0].message.content) != "Pass":
            return
        reply = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": rewrite_prompt(item)}]
        )
        item.update(extract_json(reply.choices[0].message.content) or {})
        (out / f"{item['process_id']}.json").write_text(json.dumps(item))

    t = time.perf_counter()  # timed from the start, like ours: client, input, threads
    client = openai.OpenAI(api_key="sk-bench", base_url=url, max_retries=3)
    items = load_mcq_items(data)
    out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, items))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", type=int, default=500)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--num_process", type=int, default=64)
    ap.add_argument(
        "--repeats", type=int, default=3, help="Timed runs of each design; the median is printed."
    )
    a = ap.parse_args()
    requests = 2 * a.items
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeOpenAIServer(responder, latency=a.latency, in_process=False) as srv,
    ):
        tmp = Path(tmp)
        warm = tmp / "warmup.json"
        make_data(warm, a.num_process)
        ours(warm, tmp / "warm_ours", srv.url, a.num_process)  # one-time costs (imports, TLS context)
        original(warm, tmp / "warm_orig", srv.url)  # are paid by both designs before timing
        data = tmp / "bench.json"
        make_data(data, a.items)
        LOOP_CPU.clear()
        t_ours = [ours(data, tmp / f"ours{i}", srv.url, a.num_process) for i in range(a.repeats)]
        t_orig = [original(data, tmp / f"orig{i}", srv.url) for i in range(a.repeats)]
    ideal_ours = a.num_process / a.latency
    ideal_orig = 10 / a.latency
    r_ours, r_orig = requests / statistics.median(t_ours), requests / statistics.median(t_orig)
    print(f"stage 1 benchmark: {a.items} items, {requests} requests, latency {a.latency}s per request")
    each_ours = " ".join(f"{requests / t / ideal_ours:.2f}" for t in t_ours)
    each_orig = " ".join(f"{requests / t / ideal_orig:.2f}" for t in t_orig)
    print(
        f"ours     (async, {a.num_process} in flight): {r_ours:7.1f} req/s = {r_ours / ideal_ours:.2f} of ideal "
        f"{ideal_ours:.0f} req/s (median of runs: {each_ours})"
    )
    print(
        f"original (10 blocking threads)    : {r_orig:7.1f} req/s = {r_orig / ideal_orig:.2f} of its ideal "
        f"{ideal_orig:.0f} req/s (median of runs: {each_orig})"
    )
    print(f"speed-up ours / original: {r_ours / r_orig:.1f}x")
    cpu_ms = 1000 * statistics.median(LOOP_CPU) / requests
    print(
        f"event-loop CPU per request (ours): {cpu_ms:.2f} ms; the ratio falls as it rises "
        "(replies that arrive together wait on this one thread: a slower or busier machine)"
    )


if __name__ == "__main__":
    main()
