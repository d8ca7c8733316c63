"""Benchmark of --batch_api: dollars per kept SFT record, and the rounds a batched search needs.

    .venv/bin/python bench/bench_batch_cost.py [--items 200] [--round_items 1000] [--batch_latency 0.05]

Harness: the loopback OpenAI-protocol server (huatuo_o1/testing/openai_server.py) answers every
request with the scripted search model (huatuo_o1/testing/search.py) and reports token usage; every
cost below is priced from those token counts with the gpt-4o rows of the price table
(huatuo_o1/llm.py: 2.50 / 10.00 USD per 1M input / output tokens live, half through the Batch API).
The same input (a mix of items right at once, after 1 or 2 refinements, and label-guided) goes
through three request flows in one run:

  - original: the original code's flow as bench/bench_search.py models it (blocking threads, one
    request at a time per item, every request live), billed at list price;
  - ours live: search_for_complex_reasoning_path.py as it runs by default;
  - ours batched: the same with --batch_api True (every request through /v1/files and /v1/batches).

It prints the cost per kept SFT record of each and the ratio batched / original (target <= 0.5),
then runs a batched search of --round_items items against batches that take --batch_latency seconds
each and prints the rounds it needed and its wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_search import make_items, original_item  # noqa: E402

from huatuo_o1.datagen import search as script  # noqa: E402
from huatuo_o1.llm import rates_for  # noqa: E402
from huatuo_o1.testing import search as sm  # noqa: E402
from huatuo_o1.testing.openai_server import FakeOpenAIServer  # noqa: E402

MODEL = "gpt-4o"


class CountingClient:
    """A synchronous openai client that adds up the token usage of every reply (the original's flow
    reads only the text)."""

    def __init__(self, url: str):
        self._client = openai.OpenAI(base_url=url, api_key="sk-bench", max_retries=0)
        self.prompt_tokens = self.completion_tokens = self.requests = 0
        self.chat = self
        self.completions = self

    def create(self, **kw):
        r = self._client.chat.completions.create(**kw)
        self.requests += 1
        self.prompt_tokens += r.usage.prompt_tokens
        self.completion_tokens += r.usage.completion_tokens
        return r


def run_original(url: str, items: list[dict], out_dir: Path, concurrency: int = 5) -> tuple[float, int, int]:
    """(cost at list price, kept records, requests) of the original's flow."""
    out_dir.mkdir(parents=True)
    client = CountingClient(url)
    data = [dict(it, process_id=i) for i, it in enumerate(items, 1)]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(lambda d: original_item(client, d, out_dir), data))
    kept = sum(1 for p in out_dir.glob("*.json") if json.loads(p.read_text()).get("Response"))
    cost = rates_for(MODEL).cost(client.prompt_tokens, client.completion_tokens)
    return cost, kept, client.requests


def run_ours(url: str, data_path: Path, out_dir: Path, *extra: str) -> dict:
    argv = [
        "--data_path", str(data_path), "--api_url", url, "--api_key", "sk-bench", "--model_name", MODEL,
        "--num_process", "50", "--output_dir", str(out_dir), "--seed", "0", *extra,
    ]  # fmt: skip
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        rc = script.main(argv)
    assert rc == 0
    [summary] = list(out_dir.glob("*_summary.json"))
    s = json.loads(summary.read_text())
    s["wall_s"] = time.perf_counter() - t0
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=200, help="Items of the cost comparison.")
    ap.add_argument("--round_items", type=int, default=1000, help="Items of the batched rounds run.")
    ap.add_argument("--batch_latency", type=float, default=0.05, help="Seconds each batch takes.")
    ap.add_argument("--poll_interval", type=float, default=0.01, help="--batch_poll_interval of the runs.")
    args = ap.parse_args()
    batch = ("--batch_api", "True", "--batch_poll_interval", str(args.poll_interval))
    items, calls = make_items(args.items)
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeOpenAIServer(sm.responder, batch_latency=args.batch_latency) as srv,
    ):
        tmp = Path(tmp)
        data_path = tmp / "bench.json"
        data_path.write_text(json.dumps(items))
        c_orig, kept_orig, n_orig = run_original(srv.url, items, tmp / "orig")
        live = run_ours(srv.url, data_path, tmp / "live")
        batched = run_ours(srv.url, data_path, tmp / "batched", *batch)
        rows = [
            ("original (live, list price)", c_orig, kept_orig, n_orig),
            ("ours live", live["cost_this_run"], live["kept"], live["usage_this_run"]["search"]["requests"]),
            (
                "ours batched",
                batched["cost_this_run"],
                batched["kept"],
                batched["usage_this_run"]["search"]["requests"],
            ),
        ]
        print(
            f"{args.items} items ({calls} requests in the scripted mix), {MODEL} prices from the server's token counts"
        )
        for name, cost, kept, n in rows:
            print(
                f"  {name:<28} {n:>6} requests  {cost:9.4f} USD  {kept:>5} kept  {cost / max(1, kept):.6f} USD per kept record"
            )
        ratio = (batched["cost_this_run"] / max(1, batched["kept"])) / (c_orig / max(1, kept_orig))
        print(
            f"  batched / original per kept record: {ratio:.3f} (target <= 0.5); batched live-equivalent "
            f"{batched['cost_this_run_live_equivalent']:.4f} USD"
        )
        big, _ = make_items(args.round_items)
        big_path = tmp / "big.json"
        big_path.write_text(json.dumps(big))
        creates = srv.batch_creates
        s = run_ours(srv.url, big_path, tmp / "rounds", *batch)
        print(
            f"batched search of {args.round_items} items, {args.batch_latency:.2f} s per batch: "
            f"{s['batch_api']['rounds']} rounds, {srv.batch_creates - creates} batches, {s['kept']} kept, "
            f"wall {s['wall_s']:.1f} s"
        )


if __name__ == "__main__":
    main()
