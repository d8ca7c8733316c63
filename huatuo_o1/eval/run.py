"""evaluation/eval.py's logic: load the eval file, generate, score, write results, print the table.

`main` reads as the steps, each a function of its own: check the flags (`check_args`), read the
eval file (`load_eval_file`, `select_items`), check the output folder can be written
(`check_output_dir`), build the prompts (`build_work`), open the resume cache (`open_cache`),
generate (`generate`: backend choice), score (`collect_records`), write the files
(`write_results`) and print (`print_report`). The API key is resolved once
(llm.resolve_api_key: the flag, then OPENAI_API_KEY for OpenAI's own API only).

Steps:
  1. Read the eval file (docs/data_formats.md §6: source -> items, or a plain list = source `normal`) and
     check every item (question a string, options, answer_idx among the options) before any
     request. The file's git blob id is recorded; when it is not the paper's file a line says so.
  2. Build each prompt (prompts.eval_prompt, chat template applied locally, see huatuo_o1/generation.py).
  3. Generate with the chosen backend. Each finished question's outputs (only the outputs, never
     scores) are saved at once in a cache folder named after the run and a hash of every setting
     that changes outputs (for a local model folder, also a fingerprint of its config and weight
     files), so an interrupted run resumes where it stopped and a changed setting or model never
     reuses stale answers. A question is identified by its source, its index within the source
     (stable under --limit_num), its question and options; its cached outputs are reused only
     while its prompt is unchanged.
  4. Score every output with the current eval file (so an edited answer_idx is re-scored without
     a request), write `<model><eval file stem>_<task>[_strict-prompt][_n<k>].json` (the original's
     name: one record per question with the item, its prompt, `output`, both readings of the
     answer and their correctness), `result_<same name>.json` (the original layout, exactly the
     original's numbers: {source: [score, first right, n, last right]}, empty outputs left out;
     with k samples also `result_<same name>_run<j>.json` per run), `<same name>_summary.json`
     (the eval file's identity, lenient, fixed lenient, strict, unanswered, dropped, n-sample
     statistics, settings with credentials masked, missing and rejected questions, generated tokens
     per source: eval/tokens.py) and
     `<same name>_chart.png` (per source: the original layout's lenient beside our strict), and
     print the table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

from huatuo_o1.cli import str2bool
from huatuo_o1.contract import read_eval_file
from huatuo_o1.generation import GenerationSettings
from huatuo_o1.io import InputError, ItemStore, atomic_write_json, check_writable_dir
from huatuo_o1.lock import run_lock
from huatuo_o1.redact import mask_url


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Evaluate a model on multiple-choice medical benchmarks (HuatuoGPT-o1 evaluation)."
    )
    o = p.add_argument_group("original flags")
    o.add_argument(
        "--model_name",
        type=str,
        default="",
        help="Model path/name: its tokenizer's chat template is applied locally; the hf backend loads it.",
    )
    o.add_argument(
        "--eval_file",
        type=str,
        required=True,
        help="Eval file: {source: [items]} or a list of items (docs/data_formats.md §6).",
    )
    o.add_argument("--max_new_tokens", type=int, default=2000, help="Tokens generated per answer.")
    o.add_argument(
        "--max_tokens",
        type=int,
        default=-1,
        help="Cap on prompt tokens (the question is cut from its end); -1 = no cap.",
    )
    o.add_argument(
        "--use_chat_template",
        type=str2bool,
        default=True,
        help="Apply the tokenizer's chat template locally (True/False).",
    )
    o.add_argument(
        "--strict_prompt", action="store_true", help="Ask the model to end with 'The answer is X.'."
    )
    o.add_argument("--task", type=str, default="api", help="Tag in the results file name.")
    o.add_argument(
        "--port", type=int, default=30000, help="Port of the local SGLang server (http://127.0.0.1:PORT/v1)."
    )
    o.add_argument(
        "--batch_size",
        type=int,
        default=None,
        help="server: requests in flight (default 1024, the original's batch); hf: prompts per generate() call (default 8).",
    )
    # Declared here rather than with llm.add_client_args: that helper would change eval's documented
    # defaults (--request_timeout 600 instead of 3600, --model_name "gpt-4" as a request name instead
    # of the model folder) and add flags eval does not honour (--num_process, --price, --max_cost,
    # --dry_run); --api_key keeps the same fallback through llm.resolve_api_key.
    g = p.add_argument_group("generation and endpoint")
    g.add_argument(
        "--backend",
        choices=("server", "hf"),
        default="server",
        help="server: an OpenAI-compatible server; hf: transformers in-process.",
    )
    g.add_argument(
        "--api_url",
        type=str,
        default=None,
        help="Any OpenAI-compatible endpoint instead of the local port (vLLM, OpenAI...).",
    )
    g.add_argument(
        "--api_key",
        type=str,
        default=None,
        help="API key (default: OPENAI_API_KEY when --api_url is OpenAI's API; other servers get none). "
        "Never printed or saved.",
    )
    g.add_argument(
        "--served_model_name",
        type=str,
        default=None,
        help="Model name sent in requests (default: the server's first /v1/models id for a local port, else --model_name).",
    )
    g.add_argument(
        "--use_chat_api",
        action="store_true",
        help="Send the plain question to /chat/completions (the server applies its template).",
    )
    g.add_argument(
        "--tokenizer", type=str, default=None, help="Tokenizer for the chat template (default: --model_name)."
    )
    g.add_argument("--temperature", type=float, default=0.5, help="Sampling temperature (0 = greedy).")
    g.add_argument("--top_p", type=float, default=0.9, help="Nucleus sampling top_p.")
    g.add_argument(
        "--seed", type=int, default=None, help="Sampling seed (sent to the server; seeds the hf backend)."
    )
    g.add_argument(
        "--n_samples",
        type=int,
        default=1,
        help="Samples per question: mean accuracy with 95%% CI, maj@k and pass@k.",
    )
    g.add_argument("--limit_num", type=int, default=None, help="Only the first N questions of each source.")
    g.add_argument(
        "--sources",
        type=str,
        default=None,
        help="Comma-separated sources of the eval file to evaluate (default: all), e.g. GPQA_Medical_test.",
    )
    g.add_argument(
        "--max_retries", type=int, default=6, help="Retries on 429/5xx/timeouts before a question fails."
    )
    g.add_argument(
        "--request_timeout", type=float, default=3600.0, help="Seconds before one request times out."
    )
    g.add_argument(
        "--device", type=str, default=None, help="hf backend device (default: cuda when available, else cpu)."
    )
    g.add_argument(
        "--dtype",
        type=str,
        default="auto",
        help="hf backend dtype: auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16.",
    )
    g.add_argument(
        "--trust_remote_code",
        type=str2bool,
        nargs="?",
        const=True,
        default=False,
        help="Let transformers run the model repository's own code when loading the tokenizer and "
        "(hf backend) the model (the original always did; off unless asked).",
    )
    r = p.add_argument_group("outputs")
    r.add_argument(
        "--output_dir",
        type=str,
        default=".",
        help="Folder for the results and summary files (the original wrote to the current folder).",
    )
    r.add_argument(
        "--cache_dir", type=str, default=None, help="Resume cache (default: <output_dir>/.eval_cache)."
    )
    r.add_argument(
        "--no_resume", action="store_true", help="Ignore finished questions in the cache and generate again."
    )
    r.add_argument("--quiet", action="store_true", help="No progress bar or example prompt.")
    s = p.add_argument_group("serving")
    s.add_argument(
        "--launch_server",
        action="store_true",
        help="Start SGLang for --model_name on --port, wait until it answers, evaluate, stop it.",
    )
    s.add_argument("--server_log", type=str, default="sglang0.log", help="Log file of the launched server.")
    s.add_argument("--mem_fraction_static", type=float, default=0.8, help="SGLang --mem-fraction-static.")
    s.add_argument(
        "--dp",
        type=int,
        default=None,
        help="SGLang data parallel size (--dp-size; default: the visible GPUs divided by --tp).",
    )
    s.add_argument("--tp", type=int, default=1, help="SGLang tensor parallel size (--tp-size).")
    s.add_argument(
        "--sglang_python",
        type=str,
        default=None,
        help="Python interpreter of the environment where SGLang is installed (default: "
        "$HUATUO_SGLANG_PYTHON, else this interpreter if it has SGLang; otherwise an error).",
    )
    s.add_argument(
        "--server_timeout",
        type=float,
        default=1800.0,
        help="Seconds to wait for the launched server to answer.",
    )
    from huatuo_o1.batch import add_batch_args

    add_batch_args(p)  # a model reached through an API (--api_url): half price, results within 24 h
    return p


# ---------------------------------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------------------------------


def check_args(args: argparse.Namespace) -> None:
    """Fill the defaults that depend on other flags; InputError on a value that cannot work."""
    if args.batch_size is None:
        args.batch_size = 8 if args.backend == "hf" else 1024
    if args.batch_size < 1 or args.n_samples < 1:
        raise InputError("--batch_size and --n_samples must be at least 1")
    if args.batch_api:
        from huatuo_o1.batch import check_batch_args

        if args.backend != "server":
            raise InputError("--batch_api needs --backend server (a model reached through an API)")
        check_batch_args(args)
    if args.limit_num is not None and args.limit_num < 1:
        raise InputError(
            f"--limit_num must be at least 1 (got {args.limit_num}); leave it out to evaluate every question"
        )
    if args.max_new_tokens < 1:
        raise InputError(f"--max_new_tokens must be at least 1 (got {args.max_new_tokens})")
    if args.max_retries < 0:
        raise InputError(f"--max_retries must be 0 or more (got {args.max_retries})")
    if args.request_timeout <= 0:
        raise InputError(f"--request_timeout must be positive (got {args.request_timeout})")
    if args.temperature < 0 or not 0 < args.top_p <= 1:
        raise InputError("--temperature must be 0 or more and --top_p in (0, 1]")
    if (args.dp is not None and args.dp < 1) or args.tp < 1:
        raise InputError("--dp and --tp must be at least 1")
    task = args.task
    if not task or task in (".", "..") or any(c in task for c in ("/", "\\", "\0")) or os.sep in task:
        raise InputError(
            f"--task {task!r} must be a plain name (no path parts): it becomes part of file names"
        )
    if args.backend == "hf" and not args.model_name:
        raise InputError("--backend hf needs --model_name (a local model folder)")
    if args.model_name:
        last = os.path.basename(os.path.normpath(args.model_name))
        if last in ("", ".", "..") or last.startswith("."):
            raise InputError(
                f"--model_name {args.model_name!r} ends in no model name ({last!r}): its last path part "
                "names the result files; give the model folder itself (e.g. ./ckpt/my-model)"
            )
    if args.launch_server and (args.backend != "server" or args.api_url):
        raise InputError(
            "--launch_server starts a local SGLang server: it goes with --backend server and no --api_url"
        )
    if args.n_samples > 1 and args.temperature <= 0:
        log_where = "copied" if args.backend == "hf" else "requested"
        print(
            f"warning: --temperature {args.temperature} is greedy: the {args.n_samples} samples per "
            f"question are identical ({log_where} {args.n_samples} times)",
            file=sys.stderr,
        )


def generation_settings(args: argparse.Namespace) -> GenerationSettings:
    return GenerationSettings(
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        n_samples=args.n_samples,
        use_chat_api=args.use_chat_api,
        batch_size=args.batch_size,
        show_progress=not args.quiet,
    )


# ---------------------------------------------------------------------------------------------
# Eval file
# ---------------------------------------------------------------------------------------------

SCALARS = (str, int, float)


def load_eval_file(path: str | Path) -> list[dict]:
    """All items with their `source`, in file order; InputError naming the source and item on bad input."""
    items = []
    for source, lst in read_eval_file(path).items():
        for i, it in enumerate(lst, 1):
            items.append({**_check_item(it, f"{path}: source {source!r} item {i}"), "source": source})
    return items


def _check_item(it, where: str) -> dict:
    """The options and answer key evaluation needs (the question is checked by read_eval_file)."""
    opts = it.get("options")
    if isinstance(opts, list) and opts:  # accept a list of option texts: letters A, B, ...
        opts = {chr(ord("A") + j): v for j, v in enumerate(opts)}
    if not isinstance(opts, dict) or not opts:
        raise InputError(f'{where} has no options (expected an object like {{"A": "..."}})')
    bad = [k for k, v in opts.items() if isinstance(v, bool) or not isinstance(v, SCALARS)]
    if bad:
        raise InputError(f"{where}: option {bad[0]!r} is not a text")
    opts = {k: v if isinstance(v, str) else str(v) for k, v in opts.items()}
    idx = it.get("answer_idx")
    if idx is None or str(idx) == "" or isinstance(idx, bool) or not isinstance(idx, SCALARS):
        raise InputError(f"{where} has no answer_idx (a letter among the options)")
    if str(idx) not in opts:
        raise InputError(f"{where}: answer_idx {idx!r} is not one of the options {', '.join(opts)}")
    return {**it, "options": opts, "answer_idx": str(idx)}


def select_items(
    items: list[dict], limit_num: int | None, sources: str | None = None
) -> list[tuple[int, dict]]:
    """(index within its source, item) for the first `limit_num` items of each chosen source; the
    index is counted before the limit, so an item keeps its id under any --limit_num or --sources."""
    present = list(dict.fromkeys(it["source"] for it in items))
    wanted = None
    if sources:
        wanted = [x.strip() for x in sources.split(",") if x.strip()]
        unknown = [x for x in wanted if x not in present]
        if unknown or not wanted:
            raise InputError(
                f"--sources {sources!r}: {', '.join(unknown) or 'nothing'} not in the eval file "
                f"(its sources: {', '.join(present)})"
            )
    counts: dict[str, int] = {}
    chosen = []
    for it in items:
        counts[it["source"]] = counts.get(it["source"], 0) + 1
        if wanted is not None and it["source"] not in wanted:
            continue
        if limit_num is None or counts[it["source"]] <= limit_num:
            chosen.append((counts[it["source"]], it))
    return chosen


# ---------------------------------------------------------------------------------------------
# Names, cache keys, records
# ---------------------------------------------------------------------------------------------


def results_name(args) -> str:
    """The original's name: model folder name + eval file stem (no separator) + `_<task>`."""
    model = os.path.basename(os.path.normpath(args.model_name)) if args.model_name else ""
    stem = os.path.basename(args.eval_file).replace(".json", "")
    name = f"{model}{stem}_{args.task}" + ("_strict-prompt" if args.strict_prompt else "")
    if args.n_samples > 1:
        name += f"_n{args.n_samples}"
    return name


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".msgpack", ".h5")


def model_fingerprint(path: str | None) -> str | None:
    """For a local model folder: a hash of config.json and the name/size/mtime of its weight files
    (retrained weights in the same folder change it); None for a hub id or a hosted model name."""
    if not path or not os.path.isdir(path):
        return None
    root = Path(path)
    h = hashlib.sha1()
    cfg = root / "config.json"
    try:
        h.update(cfg.read_bytes() if cfg.is_file() else b"")
        # a model folder (config.json) is walked for its weights; any other folder only at its top,
        # so a folder that is not a model (a home, the root) is never scanned whole
        files = root.rglob("*") if cfg.is_file() else root.iterdir()
        for f in sorted(files):
            if f.name.endswith(WEIGHT_SUFFIXES) and f.is_file():
                st = f.stat()
                h.update(f"{f.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}".encode())
    except OSError as e:
        raise InputError(f"--model_name {path}: cannot read the model folder ({e.strerror or e})") from None
    return h.hexdigest()[:16]


def settings_of(args) -> dict:
    """Every setting that changes the generated text (the cache key); credentials in the URL masked."""
    return {
        "cache_format": 2,  # records hold outputs only
        "model_name": args.model_name,
        "model_fingerprint": model_fingerprint(args.model_name),
        "backend": args.backend,
        "api_url": mask_url(args.api_url) if args.backend == "server" else None,
        "served_model_name": args.served_model_name,
        "use_chat_template": args.use_chat_template,
        "use_chat_api": args.use_chat_api,
        "tokenizer": args.tokenizer,
        "strict_prompt": args.strict_prompt,
        "max_new_tokens": args.max_new_tokens,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "seed": args.seed,
        "n_samples": args.n_samples,
    }


def item_id(index_in_source: int, item: dict) -> str:
    """`<index within its source>-<hash of source, question, options>`: stable under --limit_num."""
    h = hashlib.sha1(
        json.dumps(
            [item["source"], item["question"], item["options"]], ensure_ascii=False, sort_keys=True
        ).encode()
    ).hexdigest()
    return f"{index_in_source}-{h[:10]}"


def make_record(work: dict, outputs: list[str], error: str | None = None) -> dict:
    """One results-file record: the item, its prompt, the output(s) scored against the item now."""
    from huatuo_o1.eval.scoring import score_output

    item = work["item"]
    scored = [{"output": o, **score_output(o, item["options"], item["answer_idx"])} for o in outputs]
    rec = {
        **item,
        "item_id": work["item_id"],
        "option_str": "\n".join(f"{k}. {v}" for k, v in item["options"].items()),
        "input_str": work["user_prompt"],
        **scored[0],
    }
    if len(scored) > 1:
        rec["samples"] = scored
    if error:
        rec["error"] = error
    return rec


def generation_input(work: dict) -> dict:
    """What a cached output depends on (besides the settings): its id and the prompt sent."""
    return {"item_id": work["item_id"], "prompt": work["prompt"], "user_prompt": work["user_prompt"]}


# ---------------------------------------------------------------------------------------------
# Steps of main
# ---------------------------------------------------------------------------------------------


def check_output_dir(out_dir: Path, folders: list[Path], names: list[str]) -> None:
    """One line before any request when results (in out_dir, named `names`), the cache or the
    server log (in `folders`) could not be written (io.check_writable_dir for each folder)."""
    for folder in (out_dir, *folders):
        check_writable_dir(folder, "results folder")
    for n in names:
        if (out_dir / n).is_dir():
            raise InputError(f"cannot write results: {out_dir / n} is a folder")


def build_work(indexed: list[tuple[int, dict]], args, tok) -> list[dict]:
    """One work item per question: its id, the item, the user turn and the text sent."""
    from huatuo_o1.generation import PromptBuilder

    builder = PromptBuilder(
        tok, use_chat_template=args.use_chat_template and not args.use_chat_api, max_tokens=args.max_tokens
    )
    work = []
    for i, it in indexed:
        user, text = builder.build(it, args.strict_prompt)
        work.append({"item_id": item_id(i, it), "item": it, "user_prompt": user, "prompt": text})
    if builder.uncapped:
        print(
            f"warning: {builder.uncapped} of {len(work)} prompts stay longer than --max_tokens "
            f"{args.max_tokens} even with the whole question cut (instruction, options and template "
            "alone are longer); they are sent as they are",
            file=sys.stderr,
        )
    if not args.quiet and work:
        print(
            "Example prompt:\n" + (work[0]["user_prompt"] if args.use_chat_api else work[0]["prompt"]),
            file=sys.stderr,
        )
    return work


def open_cache(args, name: str, cache_root: Path, settings: dict) -> ItemStore:
    """The resume cache of this run: one folder per name and settings hash."""
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    cache = cache_root / f"{name}-{key}"
    if args.no_resume and cache.exists():
        for f in cache.glob("*.json"):
            f.unlink()
    store = ItemStore(cache)
    atomic_write_json(cache.parent / f"{cache.name}.settings.json", settings)
    return store


def generate(gen_work: list[dict], store: ItemStore, args, tok, api_key: str | None) -> list[str]:
    """Generate the unfinished questions with the chosen backend; the failure messages.

    A cached question with fewer outputs than --n_samples (a server that returned fewer, or none)
    is unfinished: it is asked again. One the server rejected (its `error`) stays as it is."""
    gen = generation_settings(args)
    short = store.drop_if(lambda r: not r.get("error") and len(r.get("outputs") or []) < gen.n_samples)
    if short:
        print(
            f"{short} cached question(s) had fewer than {gen.n_samples} output(s): asked again",
            file=sys.stderr,
        )
    if args.backend == "hf":
        from huatuo_o1.generation import HFGenerator, run_hf

        if args.seed is not None:
            from transformers import set_seed

            set_seed(args.seed)
        model = HFGenerator(
            args.model_name,
            tok,
            device=args.device,
            dtype=args.dtype,
            trust_remote_code=args.trust_remote_code,
        )
        run_hf(gen_work, store, model, gen)
        return []
    return _run_server(gen_work, store, args, gen, api_key)


def _run_server(work: list[dict], store: ItemStore, args, gen: GenerationSettings, api_key: str | None):
    import asyncio
    import contextlib

    from huatuo_o1.generation import run_server, served_model_id
    from huatuo_o1.io import fingerprint
    from huatuo_o1.llm import LLMClient, normalize_base_url

    finished = store.fingerprints()
    if all(finished.get(w["item_id"], "-") in (None, fingerprint(w)) for w in work):
        return []  # everything cached: no server needed
    base_url = normalize_base_url(args.api_url) if args.api_url else f"http://127.0.0.1:{args.port}/v1"
    server_ctx = contextlib.nullcontext()
    if args.launch_server:
        from huatuo_o1.eval.serving import SGLangServer

        server_ctx = SGLangServer(
            args.model_name,
            port=args.port,
            log_path=args.server_log,
            timeout=args.server_timeout,
            python=args.sglang_python,
            mem_fraction_static=args.mem_fraction_static,
            dp=args.dp,
            tp=args.tp,
        )
    with server_ctx:
        model = args.served_model_name
        sid = asyncio.run(served_model_id(base_url, api_key))
        if model is None:
            model = (sid if not args.api_url else None) or args.model_name or sid or "default"
        batches = None
        if args.batch_api:
            from huatuo_o1.batch import round_from_args

            batches = round_from_args(args, Path(store.root) / "batches")
        make = batches.client if batches is not None else LLMClient
        client = make(
            model=model,
            api_key=api_key,
            api_url=base_url,
            max_concurrency=gen.batch_size,
            max_retries=args.max_retries,
            timeout=args.request_timeout,
            env_key=False,  # resolved once, in main
            strict_replies=False,  # an answer cut at max_tokens is scored as it is: part of the measure
        )
        report = run_server(work, store, client, gen, batches=batches)
        if report.stopped_reason:
            print(f"stopped early: {report.stopped_reason}", file=sys.stderr)
        return report.errors


def collect_records(work: list[dict], gen_work: list[dict], store: ItemStore) -> list[dict]:
    """The scored record of every question with cached outputs for its current prompt."""
    from huatuo_o1.io import fingerprint

    cached = {r.get("item_id"): r for r in store.iter_records()}
    records = []
    for w, g in zip(work, gen_work, strict=True):
        c = cached.get(w["item_id"])
        if c is None or c.get("input_fingerprint") not in (None, fingerprint(g)) or not c.get("outputs"):
            continue
        records.append(make_record(w, c["outputs"], c.get("error")))
    return records


def count_tokens(records: list[dict], store: ItemStore, tok, args) -> dict:
    """Generated tokens per source (eval/tokens.py): the server's usage, else the model's tokenizer
    (the one loaded for the prompts, else --tokenizer / a local --model_name folder, when it loads)."""
    from huatuo_o1.eval.tokens import NOT_COUNTED, generated_tokens

    cached = {r.get("item_id"): r for r in store.iter_records()}
    tokens = generated_tokens(records, cached, tok)
    source = args.tokenizer or args.model_name
    if tok is None and tokens["counted_from"].get(NOT_COUNTED) and source:
        if args.tokenizer or Path(source).is_dir():
            from huatuo_o1.generation import load_tokenizer

            try:
                tokens = generated_tokens(records, cached, load_tokenizer(source, args.trust_remote_code))
            except InputError:
                pass  # no tokenizer: the summary says the outputs are not counted
    return tokens


COLUMN_NOTES = {
    "lenient": "the original layout's score, the paper's number: the better of first- and last-letter "
    "accuracy with the original's extraction, empty outputs left out (mean over runs with --n_samples)",
    "fixed_lenient": "the same rule with our fixed extraction, every output counted (empty = wrong)",
    "strict": "our last letter from an 'answer is X' or a standalone letter only; anything else wrong",
    "unanswered": "share of outputs without such a letter",
    "dropped": "outputs the original layout leaves out (empty after its clean-up)",
}


def write_results(out_dir: Path, name: str, records: list[dict], summary: dict, extra: dict) -> dict:
    """The results file, the original layout (per run too with k samples), the summary and the
    chart; returns their paths by kind.

    While questions are missing (`extra["missing"]`), the original-layout files are written as
    `result_<name>.partial.json` (and `_run<j>.partial.json`) and a complete `result_<name>.json`
    of an earlier run is removed: a file in the original layout never holds a partial score. Every
    answer stays cached, so the rerun that completes the set writes the complete files."""
    from huatuo_o1.eval.scoring import original_layout, original_runs, overall

    complete = not extra.get("missing")
    tag = "" if complete else ".partial"
    paths = {
        "results": out_dir / f"{name}.json",
        "original_layout": out_dir / f"result_{name}{tag}.json",
        "summary": out_dir / f"{name}_summary.json",
        "chart": out_dir / f"{name}_chart.png",
    }
    # the other kind's original-layout files go: never a complete and a partial score side by side
    for old in [out_dir / f"result_{name}.json", out_dir / f"result_{name}.partial.json",
                *out_dir.glob(f"result_{name}_run[0-9]*.json")]:  # fmt: skip
        if old.name.endswith(".partial.json") == complete:
            old.unlink(missing_ok=True)
    atomic_write_json(paths["results"], records)
    atomic_write_json(paths["original_layout"], original_layout(records))
    runs = original_runs(records)
    if len(runs) > 1:
        for j, run in enumerate(runs, 1):
            atomic_write_json(out_dir / f"result_{name}_run{j}{tag}.json", run)
    from huatuo_o1.eval.chart import write_chart

    chart = write_chart(summary, paths["chart"], title=name)
    if chart is None:
        paths.pop("chart")
    atomic_write_json(
        paths["summary"],
        {
            **extra,
            "complete": complete,
            "sources": summary,
            "overall": overall(summary),
            "columns": COLUMN_NOTES,
            "results_file": str(paths["results"]),
            "original_layout_file": str(paths["original_layout"]),
        },
    )
    return paths


def print_report(
    paths: dict,
    summary: dict,
    eval_info: dict,
    rejected: list,
    missing: int,
    total: int,
    failed_msgs: list[str],
    tokens_line: str | None = None,
) -> int:
    """The table and where the files are; the exit code (1 while questions have no answer)."""
    from huatuo_o1.eval.data import not_paper_file_note
    from huatuo_o1.eval.scoring import format_table

    print(f"*{paths['results'].name}*")
    print(format_table(summary))
    if tokens_line:
        print(tokens_line)
    print(
        f"results: {paths['results']}\nscores (original layout): {paths['original_layout']}\n"
        f"summary: {paths['summary']}" + (f"\nchart: {paths['chart']}" if "chart" in paths else "")
    )
    if not eval_info["is_paper_file"]:
        print(not_paper_file_note(eval_info))
    if rejected:
        print(
            f"{len(rejected)} question(s) rejected by the server (counted wrong and unanswered, "
            f"listed in {paths['summary'].name}): {rejected[0]['error']}",
            file=sys.stderr,
        )
    if missing:
        for m in failed_msgs[:5]:
            print(f"  {m}", file=sys.stderr)
        print(
            f"{missing} of {total} questions have no answer yet (requests failed), so the scores are "
            f"partial ({paths['original_layout'].name}): rerun the same command to retry them",
            file=sys.stderr,
        )
        return 1
    return 0


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from huatuo_o1.eval.data import describe_eval_file
    from huatuo_o1.eval.scoring import summarize
    from huatuo_o1.eval.tokens import describe as describe_tokens
    from huatuo_o1.generation import load_tokenizer
    from huatuo_o1.llm import is_openai_url, resolve_api_key

    args = make_parser().parse_args(argv)
    check_args(args)
    if args.launch_server:
        from huatuo_o1.eval.serving import find_sglang_python

        args.sglang_python = find_sglang_python(args.sglang_python)
    # the one place: the flag, then OPENAI_API_KEY, but only for OpenAI's own API; a local or other
    # server (SGLang, vLLM, a gateway) never receives the user's OpenAI key unless --api_key says so
    api_key = resolve_api_key(args.api_key, use_env=is_openai_url(args.api_url))

    items = load_eval_file(args.eval_file)
    eval_info = describe_eval_file(args.eval_file)
    indexed = select_items(items, args.limit_num, args.sources)
    name = results_name(args)
    out_dir = Path(args.output_dir)
    cache_root = Path(args.cache_dir or out_dir / ".eval_cache")
    folders = [cache_root] + ([Path(args.server_log).resolve().parent] if args.launch_server else [])
    check_output_dir(out_dir, folders, [f"{name}.json", f"result_{name}.json", f"{name}_summary.json"])

    need_tok = (
        args.backend == "hf" or (not args.use_chat_api and args.use_chat_template) or args.max_tokens > 0
    )
    tok = load_tokenizer(args.tokenizer or args.model_name, args.trust_remote_code) if need_tok else None
    work = build_work(indexed, args, tok)
    settings = settings_of(args)
    # one run per results name: a second eval writing the same files is refused (lock.py)
    with run_lock(cache_root / f"{name}.run", what="eval"):
        store = open_cache(args, name, cache_root, settings)
        gen_work = [generation_input(w) for w in work]
        failed_msgs = generate(gen_work, store, args, tok, api_key)
        # score now, against the current items: cached outputs never carry stale scores
        records = collect_records(work, gen_work, store)
        missing = len(work) - len(records)
        rejected = [
            {"item_id": r["item_id"], "source": r["source"], "error": r["error"]}
            for r in records
            if r.get("error")
        ]
        summary = summarize(records)
        tokens = count_tokens(records, store, tok, args)
        extra = {
            "eval_file": eval_info,
            "questions": len(work),
            "missing": missing,
            "rejected": rejected,
            "settings": settings,
            "generated_tokens": tokens,
        }
        paths = write_results(out_dir, name, records, summary, extra)
    return print_report(
        paths, summary, eval_info, rejected, missing, len(work), failed_msgs, describe_tokens(tokens)
    )
