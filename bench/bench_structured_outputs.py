"""Structured outputs with an open teacher: stages 1 and 2 on the demo data against a real vLLM
server (the CPU build, .venv-vllm) serving the embedded default model, run twice in the same run:
without schemas (--structured_outputs off, the baseline: free-form JSON instructions only) and with
them (on). Prints, for both, the requests each kept record cost, the share of replies that did not
parse and the share cut at max_tokens (asked again), and the ratio of kept records per request.
Stage 2 searches the demo file's own verifiable problems in both modes (the same input).

    bash scripts/setup_vllm_env.sh && .venv/bin/python -m huatuo_o1.models
    .venv/bin/python bench/bench_structured_outputs.py [--items 24 --search_items 2]

--api_url uses a server already running (serving the model as "smol"); else one is started for the
benchmark and stopped at its end. No seed is sent (vLLM's CPU build stops on seeded requests), so
the numbers vary a little from run to run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from construct_verifiable_medical_problems import main as stage1_main  # noqa: E402
from huatuo_o1.testing.vllm_server import SERVED_NAME, VLLMServer  # noqa: E402
from search_for_complex_reasoning_path import main as stage2_main  # noqa: E402

DEMO = REPO / "data" / "demo_data.json"


def _quiet(fn, argv: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(argv)


def _summary(out: Path, pattern: str) -> dict:
    [path] = out.glob(pattern)
    return json.loads(path.read_text())


def stage1(url: str, out: Path, mode: str, items: int) -> dict:
    t = time.perf_counter()
    _quiet(stage1_main, ["--data_path", str(DEMO), "--filter_data", "--limit_num", str(items),
                         "--model_name", SERVED_NAME, "--api_url", url, "--output_dir", str(out),
                         "--num_process", "8", "--max_tokens", "400", "--structured_outputs", mode])  # fmt: skip
    s = _summary(out, "demo_data_verifiable_final_*_summary.json")
    requests, cut = s["usage"]["requests"], s["usage"]["retries"]
    # a reply was used when it gave the item's verdict or its rewrite
    used = sum((s.get("filter_verdicts") or {}).values()) + s["kept"]
    return _result(requests, s["kept"], used, cut, time.perf_counter() - t)


def stage2(url: str, out: Path, mode: str, items: int, max_tokens: int) -> dict:
    """On the demo file's own verifiable problems: the same input in both modes."""
    t = time.perf_counter()
    _quiet(stage2_main, ["--data_path", str(DEMO), "--limit_num", str(items), "--max_search_depth", "0",
                         "--max_tokens", str(max_tokens), "--model_name", SERVED_NAME, "--api_url", url,
                         "--output_dir", str(out), "--num_process", str(items), "--structured_outputs", mode])  # fmt: skip
    s = _summary(out, "*_CoT_search_final_*_summary.json")
    usage = s["usage_this_run"]["search"]
    records = [json.loads(p.read_text()) for p in out.glob("*_CoT_search/*.json")]
    # the replies that came back whole and did not parse (each trace counts its own)
    unparsed = sum(int(r.get("invalid_replies") or 0) for r in records)
    kept = sum(1 for r in records if r.get("status") == "kept")
    used = usage["requests"] - usage["retries"] - unparsed
    return _result(usage["requests"], kept, used, usage["retries"], time.perf_counter() - t)


def _result(requests: int, kept: int, used: int, cut: int, seconds: float) -> dict:
    """Counts of one run; `cut`: replies cut at max_tokens (asked again); the other replies the stage
    did not use did not parse."""
    return {
        "requests": requests,
        "kept": kept,
        "cut": cut,
        "unparsed": max(0, requests - used - cut),
        "s": seconds,
    }


def row(name: str, r: dict) -> str:
    per_kept = f"{r['requests'] / r['kept']:.1f}" if r["kept"] else "inf (none kept)"
    unparsed = r["unparsed"] / r["requests"] if r["requests"] else 0.0
    cut = r["cut"] / r["requests"] if r["requests"] else 0.0
    return f"{name:<22} {r['requests']:>8} {r['kept']:>5} {per_kept:>16} {unparsed:>9.0%} {cut:>6.0%} {r['s']:>8.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--api_url", default=None, help="A vLLM server already serving the model as 'smol'.")
    ap.add_argument("--items", type=int, default=24, help="Stage-1 items (the demo file has 24).")
    ap.add_argument(
        "--search_items",
        type=int,
        default=2,
        help="Stage-2 items (of the demo file's own verifiable problems).",
    )
    ap.add_argument("--max_tokens", type=int, default=800, help="Stage 2's --max_tokens (stage 1 sends 400).")
    args = ap.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.api_url
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if url is None:
            server = stack.enter_context(VLLMServer(tmp / "server.log"))
            url = server.url
            print(f"vLLM server ready after {server.ready_after_s:.0f} s")
        results = {}
        for mode in ("off", "on"):
            s1 = stage1(url, tmp / mode, mode, args.items)
            s2 = stage2(url, tmp / mode / "s2", mode, args.search_items, args.max_tokens)
            results[mode] = (s1, s2)
    print(
        f"{'run':<22} {'requests':>8} {'kept':>5} {'requests/kept':>16} {'unparsed':>9} {'cut':>6} {'seconds':>8}"
    )
    for mode in ("off", "on"):
        s1, s2 = results[mode]
        print(row(f"stage 1, schemas {mode}", s1))
        print(row(f"stage 2, schemas {mode}", s2))
    for i, stage in enumerate(("stage 1", "stage 2")):
        off, on = results["off"][i], results["on"][i]
        k_off = off["kept"] / off["requests"] if off["requests"] else 0.0
        k_on = on["kept"] / on["requests"] if on["requests"] else 0.0
        ratio = f"{k_on / k_off:.1f}x" if k_off else "from none"
        print(
            f"{stage}: kept records per request with schemas / without: {ratio} ({k_on:.2f} vs {k_off:.2f})"
        )


if __name__ == "__main__":
    main()
