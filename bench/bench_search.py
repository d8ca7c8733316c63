"""Benchmark of stage 2 (search): throughput as a ratio of the ideal, against the original design.

    .venv/bin/python bench/bench_search.py [--items 200] [--latency 0.05] [--concurrency 5 50]

Harness (same as stage 1): a loopback OpenAI-protocol server in its own process answers every
request after a fixed latency with the scripted search model (huatuo_o1/testing/search.py). The
200 items need a scripted mix of depths: right at once (4 calls), after 1 refinement (6), after 2
(8), never -> label-guided (9). With C requests in flight and latency L, the ideal throughput is
items / (total calls * L / C); each design's items/s is reported as a ratio of that ideal.

  - ours: the real script's main() (async client, run_items workers, per-item atomic saves);
  - original design: C blocking threads (ThreadPoolExecutor), each handling one item at a time
    with the synchronous `openai` client, same prompts, parsing and call sequence, one json.dump
    per item. Both run in the same process run, against the same server; best of --repeats runs
    each (the machine's CPU is shared).

What it measures is the client-side overhead per request and per item: with real GPT-4o latencies
(seconds per request) both designs sit at ~1.0 of the ideal at the same concurrency.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

from huatuo_o1.datagen import search as script
from huatuo_o1.datagen.search import (
    GT,
    OPEN_Q,
    draw_strategy,
    item_rng,
    parse_cot,
    parse_natural_reasoning,
    previous_reasoning,
    stream_of_search,
)
from huatuo_o1.parsing import parse_verdict
from huatuo_o1.prompts import (
    final_response_prompt,
    init_cot_prompt,
    label_guided_prompt,
    natural_reasoning_prompt,
    refine_prompt,
    verify_prompt,
)
from huatuo_o1.testing import search as sm
from huatuo_o1.testing.openai_server import FakeOpenAIServer

DEPTH_MIX = (0, 0, 1, 2, 9)  # 9 > max depth 2: label-guided
CALLS = {0: 4, 1: 6, 2: 8, 9: 9}


def make_items(n: int) -> tuple[list[dict], int]:
    rows, calls = [], 0
    for i in range(n):
        d = DEPTH_MIX[i % len(DEPTH_MIX)]
        q = f"Case {i + 1}: which diagnosis?"
        rows.append({OPEN_Q: q, GT: sm.scripted_answer(q, d)})
        calls += CALLS[d]
    return rows, calls


def original_item(client: openai.OpenAI, d: dict, out_dir: Path, depth: int = 2) -> None:
    """The original's per-item flow with blocking calls (attempts=1, efficient search on)."""

    def call(prompt):
        r = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": prompt}], max_tokens=8192
        )
        return r.choices[0].message.content

    q, a, rng = d[OPEN_Q], d[GT], item_rng(0, d["process_id"])
    cot = parse_cot(call(init_cot_prompt(q)))
    ok = parse_verdict(call(verify_prompt(cot[-2]["content"], a)))
    for k in range(depth):
        if ok:
            break
        steps = parse_cot(call(refine_prompt(q, previous_reasoning(cot), draw_strategy(rng, k))))
        cot = cot[:-1] + steps
        ok = parse_verdict(call(verify_prompt(cot[-2]["content"], a)))
    if not ok:
        cot = cot[:-1] + parse_cot(call(label_guided_prompt(q, previous_reasoning(cot), a)))
    d["Complex_CoT"] = parse_natural_reasoning(call(natural_reasoning_prompt(stream_of_search(cot), q)))
    d["Response"] = call(final_response_prompt(d["Complex_CoT"], q))
    with open(out_dir / f"{d['process_id']}.json", "w", encoding="utf-8") as f:
        json.dump(d, f, ensure_ascii=False, indent=2)


def run_original(url: str, items: list[dict], concurrency: int, out_dir: Path) -> float:
    out_dir.mkdir(parents=True)
    client = openai.OpenAI(base_url=url, api_key="sk-bench", max_retries=0)
    data = [dict(it, process_id=i) for i, it in enumerate(items, 1)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(lambda d: original_item(client, d, out_dir), data))
    elapsed = time.perf_counter() - t0
    assert len(list(out_dir.glob("*.json"))) == len(items)
    return elapsed


def run_ours(url: str, data_path: Path, concurrency: int, out_dir: Path) -> float:
    argv = [
        "--data_path", str(data_path), "--api_url", url, "--api_key", "sk-bench", "--model_name", "gpt-4o",
        "--num_process", str(concurrency), "--output_dir", str(out_dir), "--seed", "0",
    ]  # fmt: skip
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the run's own summary table
        rc = script.main(argv)
    elapsed = time.perf_counter() - t0
    [merged] = [p for p in out_dir.glob("*_final_*.json") if not p.stem.endswith("_summary")]
    assert rc == 0 and len(json.loads(merged.read_text())) == len(json.loads(data_path.read_text()))
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.05, help="Seconds the server waits per request.")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[5, 50])
    ap.add_argument(
        "--repeats", type=int, default=2, help="Runs per design, alternating; the best is kept (shared CPU)."
    )
    args = ap.parse_args()
    items, calls = make_items(args.items)
    print(
        f"{args.items} items, {calls} calls ({calls / args.items:.2f} per item; depth mix {DEPTH_MIX}), "
        f"latency {args.latency * 1000:.0f} ms per request"
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeOpenAIServer(sm.responder, latency=args.latency, in_process=False) as srv,
    ):
        tmp = Path(tmp)
        data_path = tmp / "bench.json"
        data_path.write_text(json.dumps(items))
        for c in args.concurrency:
            ideal = args.items / (calls * args.latency / c)
            t_orig = t_ours = float("inf")
            for r in range(args.repeats):
                t_orig = min(t_orig, run_original(srv.url, items, c, tmp / f"orig_{c}_{r}"))
                t_ours = min(t_ours, run_ours(srv.url, data_path, c, tmp / f"ours_{c}_{r}"))
            r_orig, r_ours = args.items / t_orig / ideal, args.items / t_ours / ideal
            print(
                f"concurrency {c:>3}: ideal {ideal:7.1f} items/s | original design (threads, sync client) "
                f"{args.items / t_orig:7.1f} items/s = {r_orig:.2f} of ideal | ours {args.items / t_ours:7.1f} "
                f"items/s = {r_ours:.2f} of ideal | ours/original {t_orig / t_ours:.2f}x"
            )


if __name__ == "__main__":
    main()
