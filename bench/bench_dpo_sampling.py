"""Benchmark: the DPO pair maker's sampling throughput against the evaluation backend it samples through.

    .venv/bin/python bench/bench_dpo_sampling.py [--questions 400] [--n_samples 5] [--latency 0.2]
                                                 [--in_flight 64] [--hf_questions 32] [--repeats 3]

Both sides get the same prompts (the question as the one user turn of the tiny model's chat
template) and the same sampling settings, and are timed from loading the tokenizer:
  ours     : scripts/make_dpo_pairs.py's main (huatuo_o1.rl.dpo_pairs): load the problems, sample n
             per question through the backend (each finished question saved at once), verify every
             sample with RL's reward rule (--verifier exact), write the pairs and the summary.
  eval     : the evaluation backend alone on the same work items (huatuo_o1.generation:
             run_server, or run_hf), nothing verified or written besides its resume cache.
Two backends, same run:
  server   : the loopback OpenAI-protocol server (huatuo_o1.testing.openai_server, its own
             process) answers every sample request after a fixed --latency; half the samples are
             right, so every question gives a pair. Ideal: in_flight / latency samples/s.
  hf       : transformers in-process on a tiny random model (--hf_max_new_tokens new tokens).
Printed: seconds and samples/s of each (best of --repeats, the two alternating) and the ratio
ours / eval (1.0: the pair step costs nothing beyond its verification).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from huatuo_o1.contract import GROUND_TRUTH, OPEN_QUESTION  # noqa: E402
from huatuo_o1.testing.openai_server import FakeOpenAIServer, FakeResponse  # noqa: E402

WELL = "## Thinking\n\nConsider the case.\n\n## Final Response\n\n{}"


def write_problems(path: Path, n: int) -> Path:
    rows = [{OPEN_QUESTION: f"[Q{i}] Which drug treats case {i}?", GROUND_TRUTH: "aspirin"} for i in range(n)]
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def make_responder(latency: float):
    def respond(req):  # one request per sample, seeded seed, seed + 1, ... (eval's server backend)
        right = (req.body.get("seed") or 0) % 2 == 0
        return FakeResponse(WELL.format("aspirin" if right else "heparin"), delay=latency)

    return respond


def run_ours(argv: list[str]) -> float:
    import contextlib
    import io

    from huatuo_o1.rl.dpo_pairs import main

    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its one summary line
        assert main(argv) == 0
    return time.perf_counter() - t


def run_eval(backend: str, model: str, data: Path, a, url: str | None) -> float:
    """The evaluation backend on the pair maker's prompts and settings."""
    from huatuo_o1.generation import GenerationSettings, PromptBuilder, load_tokenizer
    from huatuo_o1.io import ItemStore
    from huatuo_o1.rl.dpo_pairs import load_questions

    n_q = a.questions if backend == "server" else a.hf_questions
    new_tokens = a.max_new_tokens if backend == "server" else a.hf_max_new_tokens
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        tok = load_tokenizer(model)
        builder = PromptBuilder(tok)
        questions, _ = load_questions(str(data))
        work = [{"item_id": q["id"], "prompt": builder.template(q["question"]), "user_prompt": q["question"]}
                for q in questions[:n_q]]  # fmt: skip
        gen = GenerationSettings(temperature=0.7, top_p=0.9, max_new_tokens=new_tokens, seed=42,
                                 n_samples=a.n_samples, batch_size=a.in_flight if backend == "server" else 8,
                                 show_progress=False)  # fmt: skip
        store = ItemStore(d)
        if backend == "server":
            from huatuo_o1.generation import run_server
            from huatuo_o1.llm import LLMClient, normalize_base_url

            client = LLMClient(model, api_url=normalize_base_url(url), max_concurrency=a.in_flight,
                               env_key=False, strict_replies=False)  # fmt: skip
            report = run_server(work, store, client, gen)
            assert report.done == len(work), report.errors[:3]
        else:
            from transformers import set_seed

            from huatuo_o1.generation import HFGenerator, run_hf

            set_seed(42)
            run_hf(work, store, HFGenerator(model, tok), gen)
        n_done = sum(len(r.get("outputs") or []) for r in store.iter_records())
        dt = time.perf_counter() - t
    assert n_done == len(work) * a.n_samples, n_done
    return dt


def ours_argv(backend: str, model: str, data: Path, out: Path, a, url: str | None) -> list[str]:
    common = ["--model_path", model, "--data_path", str(data), "--output", str(out), "--n_samples",
              str(a.n_samples), "--verifier", "exact", "--seed", "42", "--temperature", "0.7", "--top_p", "0.9"]  # fmt: skip
    if backend == "server":
        return [*common, "--backend", "server", "--api_url", url, "--batch_size", str(a.in_flight),
                "--max_new_tokens", str(a.max_new_tokens)]  # fmt: skip
    return [*common, "--backend", "hf", "--batch_size", "8", "--max_new_tokens", str(a.hf_max_new_tokens),
            "--limit", str(a.hf_questions)]  # fmt: skip


def main() -> None:
    import logging

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=400, help="Questions of the server runs.")
    ap.add_argument("--n_samples", type=int, default=5, help="Samples per question (the paper: 5).")
    ap.add_argument("--latency", type=float, default=0.2, help="Seconds per sample request at the server.")
    ap.add_argument("--in_flight", type=int, default=64, help="Server requests in flight (both sides).")
    ap.add_argument("--max_new_tokens", type=int, default=1300, help="Sent to the server (it ignores it).")
    ap.add_argument("--hf_questions", type=int, default=32, help="Questions of the hf runs (0: skip hf).")
    ap.add_argument("--hf_max_new_tokens", type=int, default=16, help="New tokens per hf sample.")
    ap.add_argument("--repeats", type=int, default=3, help="Timed runs of each side (best is printed).")
    a = ap.parse_args()
    logging.disable(logging.INFO)  # the pair maker's per-run log lines
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    from huatuo_o1.testing.tiny_models import build_tiny_causal_lm

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        model = str(build_tiny_causal_lm(d / "tiny_lm"))
        data = write_problems(d / "problems.json", a.questions)
        print(f"{a.n_samples} samples per question, {os.cpu_count()} CPUs")
        print(f"{'backend':<7} {'side':<5} {'questions':>9} {'seconds':>8} {'samples/s':>10} {'ratio':>6}")
        backends = ["server"] + (["hf"] if a.hf_questions > 0 else [])
        for backend in backends:
            n_q = a.questions if backend == "server" else a.hf_questions
            with FakeOpenAIServer(make_responder(a.latency), in_process=False) as srv:
                url = srv.url if backend == "server" else None
                best = {"ours": float("inf"), "eval": float("inf")}
                for r in range(a.repeats + 1):  # the first round is an untimed warm-up
                    out = d / f"pairs_{backend}_{r}.jsonl"  # a fresh output: nothing cached
                    t_ours = run_ours(ours_argv(backend, model, data, out, a, url))
                    t_eval = run_eval(backend, model, data, a, url)
                    if r:
                        best["ours"], best["eval"] = min(best["ours"], t_ours), min(best["eval"], t_eval)
                summary = json.loads(Path(f"{out}.summary.json").read_text())
                assert summary["sampled"] == n_q, summary
            for side in ("ours", "eval"):
                sps = n_q * a.n_samples / best[side]
                ratio = f"{best['eval'] / best['ours']:6.2f}" if side == "ours" else ""
                print(f"{backend:<7} {side:<5} {n_q:>9} {best[side]:8.2f} {sps:10.1f} {ratio:>6}", flush=True)
            if backend == "server":
                print(
                    f"        ideal {a.in_flight / a.latency:.1f} samples/s; pairs {summary['pairs']}/{n_q}"
                )


if __name__ == "__main__":
    main()
