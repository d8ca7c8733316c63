"""Where generated answers come from: an OpenAI-compatible server, or transformers in-process.

Evaluation (eval/run.py) and the DPO pair maker (rl/dpo_pairs.py) sample through these backends,
each question's outputs cached as soon as they are done. The flags named below are evaluation's.

Prompts: the user turn (prompts.eval_prompt) goes through the chat template of `--model_name`'s
tokenizer locally, and the resulting text is sent to the server's completions endpoint, as the
original did with SGLang. `--use_chat_api` sends the plain user turn to the chat endpoint instead
(hosted APIs, servers that template themselves). `--max_tokens N` caps the templated prompt at N
tokens by cutting the end of the question (the instruction, options and template stay whole).

Server backend: one request per question (`n` = samples per question; with `--seed` and k > 1, k
requests seeded seed, seed+1, ... so the samples differ on every server), at most `--batch_size`
in flight through the shared LLMClient (retries, backoff, fatal errors), driven by
runner.run_items, which saves each finished question's outputs at once (resume) and shows a
progress bar. A request rejected for that question alone (HTTP 400, e.g. prompt too long) saves
the question with empty outputs and an `error`; 401/403/404 stay fatal. The original sent one
blocking request holding a whole batch, so a batch waited for its slowest answer.

hf backend: transformers `generate` in-process, prompts sorted by length and cut into batches of
`--batch_size` (less padding), sampling with the same temperature/top_p and no top-k cut (as the
server), `n` return sequences per prompt (greedy: decoded once and copied); each batch's
questions are saved as soon as it finishes.

Cached records hold only `item_id`, `outputs` (and `error`): eval/run.py scores them against the
current eval file. Backends take their settings explicitly (`GenerationSettings`), never the
command line's namespace.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from huatuo_o1.io import InputError
from huatuo_o1.models import load_pretrained
from huatuo_o1.redact import mask_url

log = logging.getLogger(__name__)


def clean_output(text: str) -> str:
    """The original evaluation's clean-up of a generated text: drop `</s>` and one leading space
    (eval.original scores outputs cleaned this way)."""
    text = (text or "").replace("</s>", "")
    return text[1:] if text[:1] == " " else text


postprocess_output = clean_output  # what every backend applies before saving an output


@dataclass(frozen=True)
class GenerationSettings:
    """How answers are generated, whatever the backend."""

    temperature: float = 0.5
    top_p: float = 0.9
    max_new_tokens: int = 2000
    seed: int | None = None
    n_samples: int = 1
    use_chat_api: bool = False
    batch_size: int = 1024  # server: requests in flight; hf: prompts per generate() call
    show_progress: bool = True

    def request_kwargs(self) -> dict:
        kw = {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_new_tokens}
        if self.seed is not None:
            kw["seed"] = self.seed
        return kw


def load_tokenizer(path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tok = load_pretrained(
        AutoTokenizer,
        path,
        "the tokenizer (for its chat template)",
        hint="pass --tokenizer PATH, or --use_chat_api / --use_chat_template False",
        padding_side="left",
        trust_remote_code=trust_remote_code,
    )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


class PromptBuilder:
    """User turn -> the text actually sent (chat-templated and capped as configured)."""

    def __init__(self, tokenizer=None, use_chat_template: bool = True, max_tokens: int = -1):
        self.tok = tokenizer
        self.use_chat_template = use_chat_template
        self.max_tokens = max_tokens
        self.uncapped = 0  # prompts still over --max_tokens with the whole question cut
        if use_chat_template and tokenizer is not None and not getattr(tokenizer, "chat_template", None):
            raise InputError(
                f"the tokenizer of {tokenizer.name_or_path!r} has no chat template; "
                "pass --use_chat_template False to send raw prompts"
            )

    def template(self, user: str) -> str:
        if not self.use_chat_template or self.tok is None:
            return user
        return self.tok.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
        )

    def build(self, item: dict, strict: bool = False) -> tuple[str, str]:
        """(user turn, text sent); the question is cut from its end while the text is too long."""
        from huatuo_o1.prompts import eval_prompt

        user = eval_prompt(item, strict)
        text = self.template(user)
        if self.max_tokens is None or self.max_tokens <= 0 or self.tok is None:
            return user, text
        question = str(item["question"])
        for _ in range(4):  # re-templating can shift a token or two: re-check
            over = len(self.tok.encode(text, add_special_tokens=False)) - self.max_tokens
            if over <= 0:
                break
            ids = self.tok.encode(question, add_special_tokens=False)
            if not ids:
                break
            question = self.tok.decode(ids[: max(0, len(ids) - over)], skip_special_tokens=True)
            user = eval_prompt({**item, "question": question}, strict)
            text = self.template(user)
        if len(self.tok.encode(text, add_special_tokens=False)) > self.max_tokens:
            self.uncapped += 1  # instruction + options + template alone are longer than the cap
        return user, text


# ---------------------------------------------------------------------------------------------
# Server backend
# ---------------------------------------------------------------------------------------------


async def served_model_id(base_url: str, api_key: str | None, timeout: float = 10.0) -> str | None:
    """The first model id of GET /v1/models; raise InputError when nothing answers there."""
    import openai

    client = openai.AsyncOpenAI(api_key=api_key or "EMPTY", base_url=base_url, max_retries=0, timeout=timeout)
    try:
        page = await client.models.list()
        ids = [m.id for m in page.data]
        return ids[0] if ids else None
    except openai.APIConnectionError:
        raise InputError(
            f"no OpenAI-compatible server answers at {mask_url(base_url)}: start it first "
            "(python -m sglang.launch_server --model-path ... --port ...), or pass --launch_server, "
            "or --backend hf"
        ) from None
    except openai.APIError:
        return None  # e.g. an endpoint without /models: use --model_name as given
    finally:
        await client.close()


class SampleShortfall(Exception):
    """The server returned fewer samples than --n_samples, even when asked again for the rest."""


def make_server_process(client, gen: GenerationSettings):
    """The per-question coroutine for runner.run_items: returns the generated texts.

    k samples are one request with `n=k`, except with a seed: one seeded request with `n=k`
    would give k copies of one sample on servers that seed each choice alike (SGLang), so we
    send k requests with seeds seed, seed+1, ... (reproducible and distinct on every server).
    """
    kw_all = gen.request_kwargs()
    n = gen.n_samples

    async def one(work: dict, k: int, **kw) -> list[str]:
        if gen.use_chat_api:
            if k == 1:
                return [await client.chat(work["user_prompt"], **kw)]
            return await client.chat_n(work["user_prompt"], k, **kw)
        return await client.complete(work["prompt"], n=k, **kw)

    async def generate(work: dict) -> list[str]:
        if gen.seed is not None and n > 1:
            parts = await asyncio.gather(
                *(one(work, 1, **{**kw_all, "seed": gen.seed + j}) for j in range(n))
            )
            outputs = [p[0] for p in parts]
        else:
            outputs = await one(work, n, **kw_all)
            while 0 < len(outputs) < n:  # a server that caps or ignores `n`: ask for the rest
                more = await one(work, n - len(outputs), **kw_all)
                if not more:
                    break
                outputs += more
        if len(outputs) < n:
            raise SampleShortfall(
                f"the server returned {len(outputs)} of the {n} samples asked for (--n_samples); "
                "nothing of this question is kept"
            )
        return outputs[:n]

    return generate


def run_server(work_items: list[dict], store, client, gen: GenerationSettings, batches=None) -> object:
    """Generate the unfinished items; each saved record is {"item_id", "outputs"[, "error"]}.
    `batches`: the run's BatchRound (--batch_api; `client` is then its client): every question at
    once, sent as batches round by round.

    A request the server rejects for this question alone (HTTP 400: prompt too long for the
    context, content filter) saves the question with empty outputs and an `error`: it counts as
    wrong and unanswered instead of stopping the run.
    """
    from huatuo_o1.batch import run_items_live_or_batched
    from huatuo_o1.llm import RequestRejected

    generate = make_server_process(client, gen)

    async def process(work: dict) -> dict:
        try:
            outputs = await generate(work)
        except RequestRejected as e:
            msg = f"{e}; a too-long prompt can be capped with --max_tokens"
            log.warning("question %s: %s", work["item_id"], msg)
            return {"item_id": work["item_id"], "outputs": [""] * gen.n_samples, "error": msg}
        return {"item_id": work["item_id"], "outputs": [postprocess_output(o) for o in outputs]}

    async def go():
        try:
            return await run_items_live_or_batched(
                work_items,
                process,
                store,
                batches,
                concurrency=gen.batch_size,
                desc="eval",
                id_key="item_id",
                show_progress=gen.show_progress,
            )
        finally:
            await client.close()

    from huatuo_o1.cli import run_coroutine

    return run_coroutine(go())


# ---------------------------------------------------------------------------------------------
# hf backend
# ---------------------------------------------------------------------------------------------


class HFGenerator:
    """Batched sampling with transformers on the best local device."""

    def __init__(
        self,
        model_path: str,
        tokenizer,
        device: str | None = None,
        dtype: str = "auto",
        trust_remote_code: bool = False,
    ):
        import torch
        from transformers import AutoModelForCausalLM

        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype == "auto":
            torch_dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        else:
            torch_dtype = getattr(torch, dtype)
        try:
            self.model = AutoModelForCausalLM.from_pretrained(
                model_path, dtype=torch_dtype, trust_remote_code=trust_remote_code
            )
        except Exception as e:
            raise InputError(
                f"cannot load model {model_path!r} for --backend hf ({type(e).__name__}: {e})"
            ) from None
        self.model.to(self.device).eval()
        self.tok = tokenizer
        self.tok.padding_side = "left"

    def generate(
        self, prompts: list[str], n: int, max_new_tokens: int, temperature: float, top_p: float
    ) -> list[list[str]]:
        enc = self.tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        sample = temperature is not None and temperature > 0
        # greedy samples are all the same: decode once and copy
        k = n if sample else 1
        kw = {"do_sample": sample, "max_new_tokens": max_new_tokens, "num_return_sequences": k}
        if sample:
            # top_k=0: no top-k cut (transformers' default is 50), as the server samples
            kw.update(temperature=temperature, top_p=top_p, top_k=0)
        else:
            kw.update(temperature=None, top_p=None, top_k=None)
        with self.torch.inference_mode():
            out = self.model.generate(**enc, pad_token_id=self.tok.pad_token_id, **kw)
        new = out[:, enc["input_ids"].shape[1] :]
        texts = self.tok.batch_decode(new, skip_special_tokens=True)
        per = [texts[i * k : (i + 1) * k] for i in range(len(prompts))]
        return [p * n if k == 1 else p for p in per]


def run_hf(work_items: list[dict], store, generator: HFGenerator, gen: GenerationSettings) -> dict:
    """Generate for the unfinished items in length-sorted batches; returns counts.

    Like runner.run_items, each record carries the `input_fingerprint` of its work item (the
    prompt): an item whose prompt changed since is generated again.
    """
    from tqdm.auto import tqdm

    from huatuo_o1.io import fingerprint

    finished = store.fingerprints()
    todo = [w for w in work_items if finished.get(w["item_id"], "-") not in (None, fingerprint(w))]
    todo.sort(key=lambda w: len(w["prompt"]))
    bar = tqdm(total=len(todo), desc="eval (hf)", disable=not gen.show_progress, dynamic_ncols=True)
    for start in range(0, len(todo), gen.batch_size):
        batch = todo[start : start + gen.batch_size]
        outs = generator.generate(
            [w["prompt"] for w in batch], gen.n_samples, gen.max_new_tokens, gen.temperature, gen.top_p
        )
        for w, o in zip(batch, outs, strict=True):
            rec = {"item_id": w["item_id"], "outputs": [postprocess_output(t) for t in o]}
            store.save(w["item_id"], {**rec, "input_fingerprint": fingerprint(w)})
        bar.update(len(batch))
    bar.close()
    return {"skipped": len(work_items) - len(todo), "done": len(todo)}
