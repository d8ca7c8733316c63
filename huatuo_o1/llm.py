"""Asynchronous client for any OpenAI-compatible endpoint (OpenAI, gateways, vLLM, SGLang, llama.cpp).

How a request goes:
  1. A semaphore bounds the requests in flight (`--num_process`).
  2. Before sending, the budget is checked: once the run's cost reached `--max_cost`, no new request
     starts (`BudgetExceeded`); requests already in flight finish and are counted.
  3. The official `openai` package sends it (its own retries are off, so we control them).
  4. 429, 5xx, timeouts and dropped connections are retried with exponential backoff and full
     jitter, waiting at least the server's `Retry-After` when it sends one, up to
     `RETRY_AFTER_CAP_S` (600 s); a server asking for longer gives the request up at once with
     one line. After `max_retries` the request fails with `TransientAPIError` (the item fails;
     the run goes on). `--request_timeout` bounds the whole request (a reply trickling in a byte
     at a time included), not each read.
  5. 400/401/403/404 are not retried: `FatalAPIError` with a one-line cause ("invalid API key for
     <url>"); the scripts turn it into exit code 2.
  6. Token usage and cost are added to the run's `Usage` and to the current item's `Usage` (a
     context variable the runner sets per item, so stage code does not pass it around).

  7. A 200 reply that carries `{"error": ...}` or no choices (what gateways and some servers send
     under load) is a transient failure, retried like a 5xx.
  8. A reply cut at max_tokens (`finish_reason` "length"), or one whose answer is null or only
     `reasoning_content` (a reasoning model's draft, never taken as the answer), is asked again
     with the same request (`UNUSABLE_REPLY_TRIES` in all); still so, the item fails with
     `ReplyUnusable` ("cut at max_tokens ...") and nothing of it is kept. Clients of the evaluated
     models (`strict_replies=False`: evaluation, the difficulty filter) keep a cut answer as it
     is, since being cut is part of what is measured. So is a reply longer than
     `MAX_REPLY_CHARS` (a server without a max_tokens cap looping on itself): it would be kept
     several times over in the item's record.

  9. Before the endpoint has ever answered (in this process), a failed connection (refused,
     unknown host) is tried only `EARLY_CONNECT_TRIES` times, quickly: a wrong `--api_url` or a
     server that is not running fails the run at once with one line (`FatalAPIError`) instead of
     minutes of backoff. Once it has answered, dropped connections are retried like any transient
     failure (step 4); so are connect timeouts (a slow server is not a wrong URL).

10. Structured outputs (`--structured_outputs auto|on|off`): a request whose reply must be JSON
     or a fixed verdict carries its prompt's JSON schema (prompts.py) as `response_format`, so a
     server with constrained decoding (OpenAI, vLLM, SGLang) can only answer in that shape. `auto`
     (the default) sends it and, where the endpoint refuses a schema (an HTTP 400/422 that goes
     away without it), says so in one line and sends that schema's requests free-form from then
     on; `on` never falls back; `off` sends none (the request bodies, and so the Batch API
     fingerprints, of runs without schemas). The schema is part of the body, so of the request's
     fingerprint.

The API key is only handed to the `openai` client object; it is never printed or logged, and any
echo of it in a server's error message is masked before it reaches an exception. Credentials inside
a URL (`http://user:pass@host`) are masked the same way (`mask_url`, `mask_secrets`) wherever a URL
is shown: messages, logs, summaries.

Prompts and replies are passed through `io.clean_json` / `io.clean_text`: a lone surrogate (which
UTF-8 cannot encode) becomes U+FFFD instead of failing the request or the item's save.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import email.utils
import json
import logging
import os
import random
import re
import socket
import time
from types import SimpleNamespace
from urllib.parse import urlsplit, urlunsplit

import httpx
import openai

from huatuo_o1.io import InputError, clean_json, clean_text
from huatuo_o1.prompts import STRUCTURED_OUTPUTS
from huatuo_o1.redact import mask_secrets, mask_url, secret_forms

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Rates:
    """USD per 1M tokens of one model: live (input, cached input, output) and through the Batch API.

    Cached input tokens (`usage.prompt_tokens_details.cached_tokens`, a prompt prefix the API served
    from its cache) are part of the prompt tokens and billed at `cached_input` instead of `input`."""

    input: float
    output: float
    cached_input: float
    batch_input: float
    batch_output: float
    batch_cached_input: float

    def cost(
        self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, batch: bool = False
    ) -> float:
        """USD for one reply's usage (cached tokens are counted inside prompt_tokens)."""
        cached = max(0, min(cached_tokens, prompt_tokens))
        if batch:
            rin, rcached, rout = self.batch_input, self.batch_cached_input, self.batch_output
        else:
            rin, rcached, rout = self.input, self.cached_input, self.output
        return ((prompt_tokens - cached) * rin + cached * rcached + completion_tokens * rout) / 1e6


def _rates(input: float, cached_input: float | None, output: float, batch: bool = True) -> Rates:
    """A table row: the Batch API bills half of the live prices (None: the provider has no batch
    API, so a batch is billed as live); no cached price means cached tokens cost full input."""
    cached = input if cached_input is None else cached_input
    half = 0.5 if batch else 1.0
    return Rates(input, output, cached, input * half, output * half, cached * half)


# USD per 1M tokens: input, cached input, output (public list prices); batch = half. Override the
# live prices with --price IN,OUT (cached input then costs IN, a batch half of both).
PRICE_TABLE: dict[str, Rates] = {
    "gpt-4o-mini": _rates(0.15, 0.075, 0.60),
    "gpt-4o": _rates(2.50, 1.25, 10.00),
    "gpt-4.1-nano": _rates(0.10, 0.025, 0.40),
    "gpt-4.1-mini": _rates(0.40, 0.10, 1.60),
    "gpt-4.1": _rates(2.00, 0.50, 8.00),
    "gpt-4-turbo": _rates(10.00, None, 30.00),
    "gpt-4": _rates(30.00, None, 60.00),
    "gpt-3.5-turbo": _rates(0.50, None, 1.50),
    "o1-mini": _rates(1.10, 0.55, 4.40),
    "o1": _rates(15.00, 7.50, 60.00),
    "o3-mini": _rates(1.10, 0.55, 4.40),
    "o4-mini": _rates(1.10, 0.275, 4.40),
    "deepseek-chat": _rates(0.27, 0.07, 1.10, batch=False),
}

# (input, output) USD per 1M tokens of every model in PRICE_TABLE, the live list prices.
PRICES_PER_1M: dict[str, tuple[float, float]] = {k: (r.input, r.output) for k, r in PRICE_TABLE.items()}

RETRYABLE = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APITimeoutError,
    openai.APIConnectionError,
)


class FatalAPIError(Exception):
    """A request the server will never accept (bad key, unknown model, bad request): stop the run."""


class TransientAPIError(Exception):
    """The endpoint kept failing (429/5xx/timeouts) after all retries."""


class BudgetExceeded(Exception):
    """`--max_cost` was reached: no new request is issued."""


class RequestRejected(Exception):
    """The server refused this one request (too long for the context, content filter): the item
    fails, the run goes on."""


class ReplyUnusable(RequestRejected):
    """The reply stayed cut at max_tokens, or held no answer (null content, only reasoning), after
    every try: the item fails (nothing of it is kept), the run goes on."""


class _ErrorBody(Exception):
    """A 200 reply without choices (an `{"error": ...}` body): retried like a 5xx."""


def response_format_for(schema: dict | None, mode: str) -> dict | None:
    """The `response_format` of a request whose reply follows `schema` ({"name", "strict",
    "schema"}, as prompts.py writes them); None with no schema or with mode "off"."""
    if schema is None or mode == "off":
        return None
    return {"type": "json_schema", "json_schema": schema}


# HTTP statuses an endpoint refuses an unsupported `response_format` with (--structured_outputs auto
# then asks again without it)
SCHEMA_REFUSED_STATUS = (400, 422)

# Requests (the first included) for one reply cut at max_tokens or holding no answer
UNUSABLE_REPLY_TRIES = 2
# longer than any answer the stages ask for (GPT-4o's whole output limit is ~65,000 characters)
MAX_REPLY_CHARS = 200_000


# Secrets shorter than this are not masked inside replies (placeholders such as EMPTY for local
# servers); error messages mask every secret of 4 characters or more
REPLY_SECRET_MIN_LEN = 8

# The longest Retry-After (seconds) a request waits for; a server asking for more gives the request
# up at once (the item fails, a rerun retries it) instead of holding a worker for an hour
RETRY_AFTER_CAP_S = 600.0

# Tries of a request whose connection fails before the endpoint ever answered (then: FatalAPIError)
EARLY_CONNECT_TRIES = 3
EARLY_CONNECT_DELAY_S = 0.25

# Endpoints (base URLs) that answered in this process: a client made later for one of them (the RL
# judge makes one per batch) treats a dropped connection as transient, not as a wrong URL.
_answered_endpoints: set[str] = set()

# 400 error codes that concern one request, not the run's setup (model, key, parameters)
PER_REQUEST_CODES = (
    "context_length_exceeded",
    "string_above_max_length",
    "content_filter",
    "content_policy_violation",
)


@dataclasses.dataclass
class Budget:
    """Money one run may spend, shared by all its clients (search model and verifier alike)."""

    limit: float | None = None
    spent: float = 0.0
    reserved: float = 0.0  # estimated prompt cost of the requests in flight

    def left(self) -> bool:
        return self.limit is None or self.spent < self.limit

    def refuse(self, estimate: float, what: str = "the next request") -> BudgetExceeded | None:
        """BudgetExceeded when `what` (estimated `estimate` USD) could pass the limit, counting what
        was spent and what the requests in flight are estimated to cost; None when it fits."""
        if self.limit is None or self.spent + self.reserved + estimate <= self.limit:
            return None
        return BudgetExceeded(
            f"--max_cost {self.limit} USD: {what} (estimated {estimate:.4f} USD) would pass it "
            f"(spent {self.spent:.4f} USD); it was not sent"
        )


def price_for(model: str, override: tuple[float, float] | None = None) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens: the override, else the longest matching table prefix."""
    rates = rates_for(model, override)
    return None if rates is None else (rates.input, rates.output)


def rates_for(model: str, override: tuple[float, float] | None = None) -> Rates | None:
    """Every price of a model (live, cached, batch): from the override (IN,OUT; cached input at IN,
    batch at half), else from the longest matching table prefix; None when unknown."""
    if override is not None:
        return _rates(float(override[0]), None, float(override[1]))
    name = model.lower().split("/")[-1]
    for key in sorted(PRICE_TABLE, key=len, reverse=True):
        if name == key or name.startswith(key + "-"):
            return PRICE_TABLE[key]
    return None


def parse_price(text: str) -> tuple[float, float]:
    """argparse type for `--price IN,OUT` (USD per 1M input and output tokens)."""
    try:
        a, b = (float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"--price expects IN,OUT in USD per 1M tokens, e.g. 2.5,10 (got {text!r})") from None
    return a, b


def estimate_tokens(text: str) -> int:
    """Token estimate without a tokenizer: ~4 characters per token for Latin text (OpenAI's rule of
    thumb) and 1 token per CJK character. Used by --dry_run."""
    cjk = len(re.findall(r"[\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]", text))
    return max(1, cjk + (len(text) - cjk + 3) // 4)


ESTIMATOR_NAME = "heuristic (~4 characters/token, 1 token per CJK character; no tokenizer)"


@dataclasses.dataclass
class Usage:
    """Requests, tokens and cost. `cached_tokens` are the prompt tokens the API served from its
    prompt cache (counted inside `prompt_tokens`, billed lower); `cost` is what was billed and
    `cost_live` what the same requests cost sent live at list price (equal unless batched)."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    retries: int = 0
    cached_tokens: int = 0
    cost_live: float = 0.0

    def add(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        cost: float,
        cached_tokens: int = 0,
        cost_live: float | None = None,
    ) -> None:
        self.requests += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.cost += cost
        self.cached_tokens += cached_tokens
        self.cost_live += cost if cost_live is None else cost_live

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["cost"] = round(self.cost, 6)
        d["cost_live"] = round(self.cost_live, 6)
        return d


# The runner sets this to a fresh Usage for each item it processes.
current_item_usage: contextvars.ContextVar[Usage | None] = contextvars.ContextVar(
    "current_item_usage", default=None
)


def check_api_url(api_url: str | None, flag: str = "--api_url") -> None:
    """InputError (one line) unless `api_url` is empty or an http(s) URL with a host and a valid port."""
    if not api_url:
        return
    shown = mask_url(api_url.strip())
    try:
        parts = urlsplit(api_url.strip())
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise InputError(
            f"{flag} {shown!r} is not an http(s) URL; expected e.g. http://127.0.0.1:8000/v1 "
            "or https://api.openai.com/v1/chat/completions"
        )
    if any(c.isspace() for c in api_url.strip()):
        raise InputError(f"{flag} {shown!r} contains spaces")


def normalize_base_url(api_url: str | None) -> str | None:
    """Accept a base URL (`.../v1`) or the original's full endpoint
    (`https://api.openai.com/v1/chat/completions`); return the base URL the openai package wants."""
    if not api_url:
        return None
    parts = urlsplit(api_url.strip())
    path = parts.path.rstrip("/")
    for suffix in ("/chat/completions", "/completions"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    if not re.search(r"/v\d+[a-z]*$", path) and "openai.azure.com" not in parts.netloc:
        path = path + "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _retry_after_seconds(err: Exception) -> float | None:
    response = getattr(err, "response", None)
    if response is None:
        return None
    value = response.headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):  # a malformed header: fall back to our own backoff
        return None
    return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _error_code(err: Exception) -> str | None:
    """The OpenAI error `code` (or `type`) of an HTTP error body, e.g. "context_length_exceeded"."""
    body = getattr(err, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    if not isinstance(body, dict):
        return None
    code = body.get("code") or body.get("type")
    return str(code) if code is not None else None


def _http_client(timeout: float):
    """openai's aiohttp transport (`openai[aiohttp]`) when installed: about half the client CPU per
    request of the default httpx pool at 64 requests in flight (bench/bench_construct.py)."""
    try:
        import aiohttp  # noqa: F401

        return openai.DefaultAioHttpClient(timeout=timeout)
    except ImportError:
        return None


def is_openai_url(api_url: str | None) -> bool:
    """Whether `api_url` is OpenAI's own API (the host OPENAI_API_KEY belongs to)."""
    try:
        host = urlsplit(api_url.strip()).hostname if api_url else None
    except ValueError:
        return False
    return bool(host) and (host == "openai.com" or host.endswith(".openai.com"))


def resolve_api_key(flag_value: str | None, use_env: bool = True) -> str | None:
    """The one fallback order for an API key: the flag's value, then OPENAI_API_KEY (unless
    use_env is False, e.g. a key that must not leave for another host); None when neither."""
    return flag_value or (os.environ.get("OPENAI_API_KEY") if use_env else None) or None


class LLMClient:
    """One endpoint + model, shared by all concurrent tasks of a run."""

    def __init__(
        self,
        model: str,
        api_key: str | None = None,
        api_url: str | None = None,
        max_concurrency: int = 10,
        max_retries: int = 6,
        timeout: float = 600.0,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        price: tuple[float, float] | None = None,
        max_cost: float | None = None,
        usage: Usage | None = None,
        default_kwargs: dict | None = None,
        budget: Budget | None = None,
        env_key: bool = True,
        strict_replies: bool = True,
        structured_outputs: str = "auto",
    ):
        self.model = model
        self.strict_replies = strict_replies
        if structured_outputs not in STRUCTURED_OUTPUTS:
            raise InputError(
                f"--structured_outputs must be one of {', '.join(STRUCTURED_OUTPUTS)} (got {structured_outputs!r})"
            )
        self.structured_outputs = structured_outputs
        self.refused_schemas: dict[str, str] = {}  # schema name -> the endpoint's refusal (auto)
        self.base_url = normalize_base_url(api_url)
        self.display_url = mask_url(self.base_url) or "https://api.openai.com/v1"
        self._endpoint = self.base_url or "https://api.openai.com/v1"
        self._secret = resolve_api_key(api_key, env_key) or ""
        # the key, and the credentials inside the URL in every form a server may echo them in
        self._secret_forms = secret_forms(self._secret, url=self.base_url)
        self.client = openai.AsyncOpenAI(
            api_key=self._secret or "EMPTY",  # local servers (vLLM, SGLang) need no key
            base_url=self.base_url,
            max_retries=0,
            timeout=timeout,
            # aiohttp refuses credentials in the URL next to the key's header; httpx sends them as
            # HTTP basic auth (a gateway's login), so such a URL keeps the default transport
            http_client=None if mask_url(self.base_url) != self.base_url else _http_client(timeout),
        )
        self.semaphore = asyncio.Semaphore(max_concurrency)
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.price = price_for(model, price)
        self.rates = rates_for(model, price)
        self.budget = budget if budget is not None else Budget(max_cost)
        self.usage = usage if usage is not None else Usage()
        self.default_kwargs = default_kwargs or {}

    def __repr__(self) -> str:  # never shows the key
        return f"LLMClient(model={self.model!r}, url={self.display_url!r})"

    # -- public API -----------------------------------------------------------------------------
    async def chat(self, prompt: str | list[dict], **kwargs) -> str:
        """Send one chat request (a user prompt or a message list); return the reply text."""
        return (await self.chat_n(prompt, 1, **kwargs))[0]

    async def chat_n(
        self, prompt: str | list[dict], n: int, schema: dict | None = None, **kwargs
    ) -> list[str]:
        """One chat request for n samples; return their texts. `schema`: the JSON schema the reply
        follows (prompts.py), sent as `response_format` as --structured_outputs says (step 10)."""
        if isinstance(prompt, str):
            messages = [{"role": "user", "content": clean_text(prompt)}]
        else:
            messages = clean_json(prompt)
        body = {"model": self.model, "messages": messages, **self.default_kwargs, **kwargs}
        if n != 1:
            body["n"] = n
        refused = schema is not None and schema.get("name") in self.refused_schemas
        fmt = None if refused else response_format_for(schema, self.structured_outputs)
        if fmt is None:
            resp = await self._post_usable("/chat/completions", body, chat=True)
        else:
            resp = await self._post_structured(body, fmt)
        return [
            self.mask_reply(clean_text((c.get("message") or {}).get("content") or ""))
            for c in resp.get("choices") or []
        ]

    async def complete(self, prompt: str, n: int = 1, **kwargs) -> list[str]:
        """Send one text-completions request (prompt already chat-templated); return n texts."""
        body = {"model": self.model, "prompt": clean_text(prompt), "n": n, **self.default_kwargs, **kwargs}
        resp = await self._post_usable("/completions", body, chat=False)
        return [
            self.mask_reply(clean_text(c.get("text") or ""))
            for c in sorted(resp.get("choices") or [], key=lambda c: c.get("index", 0))
        ]

    async def close(self) -> None:
        await self.client.close()

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def budget_left(self) -> bool:
        return self.budget.left()

    # -- internals ------------------------------------------------------------------------------
    def _mask(self, text: str) -> str:
        return mask_secrets(self.mask_reply(text, min_len=4))

    def mask_reply(self, text: str, min_len: int = REPLY_SECRET_MIN_LEN) -> str:
        """`text` with this client's own secrets (the key, URL credentials, their base64) masked: for
        a reply's text, which is kept as it is otherwise (a model may well write `sk-` or `Bearer`).
        In replies only secrets of `min_len` characters or more are masked (a placeholder key such
        as `EMPTY` is no secret, and the word may be in an answer)."""
        for form in self._secret_forms:
            if len(form) >= min_len and form in text:
                text = text.replace(form, "***")
        return text

    async def _bounded(self, coro):
        """`coro` within --request_timeout for the whole request: a reply that trickles in a byte at a
        time never trips the transport's per-read timeout, so the whole exchange is bounded here and
        abandoned (connection closed) when it runs over, as a timeout (retried)."""
        try:
            return await asyncio.wait_for(coro, self.timeout)
        except asyncio.TimeoutError:
            raise openai.APITimeoutError(request=httpx.Request("POST", self._endpoint)) from None

    def _unreachable(self, err: Exception, tries: int) -> FatalAPIError:
        cause = err.__cause__ or err.__context__
        detail = f": {self._mask(str(cause))[:200]}" if cause is not None and str(cause) else ""
        return FatalAPIError(
            f"cannot connect to {self.display_url} (no answer to {tries} tr{'y' if tries == 1 else 'ies'}){detail}; "
            "is the server running and --api_url right?"
        )

    def _classify(self, err: openai.APIStatusError) -> Exception:
        """A non-retryable error: RequestRejected when it concerns this request only, else fatal."""
        return self.classify_status(err.status_code, getattr(err, "body", None), err.message)

    def classify_status(self, status: int, body, message: str = "") -> Exception:
        """`_classify` for an HTTP status and error body (also what a batch reports per request)."""
        code = _error_code(SimpleNamespace(body=body))
        if status == 400 and code in PER_REQUEST_CODES:
            return RequestRejected(f"rejected by {self.display_url} (HTTP 400, {code})")
        return self._fatal_status(status, body, message)

    def _fatal(self, err: openai.APIStatusError) -> FatalAPIError:
        return self._fatal_status(err.status_code, getattr(err, "body", None), err.message)

    def _fatal_status(self, status: int, body, message: str = "") -> FatalAPIError:
        where = self.display_url
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            body = body["error"]
        detail = body.get("message") if isinstance(body, dict) else None
        detail = self._mask(" ".join(str(detail or message).split()))[:300]
        if status == 401:
            msg = f"invalid API key for {where} (HTTP 401)"
        elif status == 403:
            msg = f"permission denied by {where} for model {self.model!r} (HTTP 403)"
        elif status == 429:
            msg = f"quota exhausted for {where} (HTTP 429 insufficient_quota)"
        elif status == 404:
            msg = f"not found at {where}: model {self.model!r} or endpoint does not exist (HTTP 404)"
        else:
            msg = f"request rejected by {where} (HTTP {status})"
        err = FatalAPIError(f"{msg}: {detail}" if detail else msg)
        err.status = status  # what a schema's refusal is told by (LLMClient._post_structured)
        return err

    def _error_body_reason(self, resp) -> str:
        """What a 200 reply without choices said, masked and short."""
        err = resp.get("error") if isinstance(resp, dict) else None
        if isinstance(err, dict):
            err = err.get("message") or err.get("code") or err.get("type")
        detail = f": {self._mask(' '.join(str(err).split()))[:200]}" if err else ""
        return f"HTTP 200 with an error body and no choices{detail}"

    def _account(self, resp, batch: bool = False, this_run: bool = True) -> float:
        """Add a reply's usage to the run's and the current item's: cached prompt tokens at their
        rate, at batch prices when it came through the Batch API (`cost_live`: the list price).
        `this_run=False`: a reply an earlier run paid for, counted for its item only (not in this
        run's usage or --max_cost budget). Returns its cost."""
        pt, ct, cached = tokens_of(resp)
        cost = live = 0.0
        if self.rates is not None:
            cost = self.rates.cost(pt, ct, cached, batch=batch)
            live = self.rates.cost(pt, ct, cached, batch=False)
        if this_run:
            self.usage.add(pt, ct, cost, cached, live)
            self.budget.spent += cost
        item = current_item_usage.get()
        if item is not None and item is not self.usage:
            item.add(pt, ct, cost, cached, live)
        return cost

    @staticmethod
    def _unusable(choice: dict, chat: bool) -> str | None:
        """Why a reply's choice cannot be used as an answer, or None."""
        if choice.get("finish_reason") == "length":
            return 'cut at max_tokens (finish_reason "length")'
        text = (choice.get("message") or {}).get("content") if chat else choice.get("text")
        if isinstance(text, str) and len(text) > MAX_REPLY_CHARS:
            return f"is {len(text):,} characters long (more than the {MAX_REPLY_CHARS:,} kept of a reply)"
        if chat:
            msg = choice.get("message") or {}
            if not str(msg.get("content") or "").strip():
                if str(msg.get("reasoning_content") or msg.get("reasoning") or "").strip():
                    return "held only reasoning (reasoning_content) and no answer"
                if msg.get("content") is None:
                    return "held no answer (null content)"
        return None

    async def _post_structured(self, body: dict, fmt: dict) -> dict:
        """A chat request with its schema; under `auto`, a refusal the same request without the
        schema does not get sends that schema's requests free-form from then on, said once (step 10)."""
        try:
            return await self._post_usable("/chat/completions", {**body, "response_format": fmt}, chat=True)
        except FatalAPIError as err:
            if getattr(err, "status", None) not in SCHEMA_REFUSED_STATUS:
                raise  # a bad key, an unknown model, a rejected batch: not the schema
            if self.structured_outputs != "auto":
                raise FatalAPIError(
                    f"{err}; --structured_outputs on: the endpoint must take JSON schemas "
                    "(auto falls back to free-form requests, off sends none)"
                ) from None
            refused = err
        resp = await self._post_usable("/chat/completions", body, chat=True)
        name = fmt["json_schema"].get("name", "")
        if name not in self.refused_schemas:
            self.refused_schemas[name] = str(refused)
            log.warning(
                "%s refused the JSON schema %r (%s); its requests go free-form from now on "
                "(--structured_outputs auto)",
                self.display_url,
                name,
                str(refused)[:200],
            )
        return resp

    async def _post_usable(self, path: str, body: dict, chat: bool) -> dict:
        """`_post`, asked again with the same request while a choice is cut or holds no answer
        (step 8 of the module doc); ReplyUnusable when every try was."""
        for _ in range(UNUSABLE_REPLY_TRIES):
            resp = await self._post(path, body)
            if not self.strict_replies:
                return resp
            why = next((w for c in resp["choices"] if (w := self._unusable(c, chat))), None)
            if why is None:
                return resp
            self.usage.retries += 1
        raise ReplyUnusable(f"the reply from {self.display_url} {why}, {UNUSABLE_REPLY_TRIES} tries")

    async def _post(self, path: str, body: dict) -> dict:
        """POST a ready JSON body with the openai client's documented `client.post` (for raw bodies)
        and return the reply's JSON: same auth, errors and retries as `chat.completions.create`,
        without its per-request parameter transform and response models (together ~0.6 ms of CPU
        per request, the difference between 0.84 and 0.9 of ideal in bench/bench_construct.py)."""
        return await self._call(self.client.post, path, body=body, cast_to=dict)

    def prompt_cost(self, body: dict | None, batch: bool = False) -> float:
        """The estimated cost of a request's prompt (the --dry_run token heuristic), USD."""
        if self.rates is None or not body:
            return 0.0
        text = json.dumps(body.get("messages") or body.get("prompt") or "", ensure_ascii=False)
        return self.rates.cost(estimate_tokens(text), 0, batch=batch)

    async def _call(self, fn, *args, **params):
        async with self.semaphore:
            last: Exception | None = None
            # the prompt's cost is known before sending: checked against the budget left, with
            # the requests in flight counted (a runaway record never goes out on a small budget)
            estimate = self.prompt_cost(params.get("body"))
            for attempt in range(self.max_retries + 1):
                if not self.budget_left():
                    raise BudgetExceeded(
                        f"--max_cost {self.budget.limit} USD reached (spent {self.budget.spent:.4f} USD)"
                    )
                refused = self.budget.refuse(estimate)
                if refused is not None:
                    raise refused
                self.budget.reserved += estimate
                try:
                    resp = await self._bounded(fn(*args, **params))
                    if (
                        not isinstance(resp, dict)
                        or not isinstance(resp.get("choices"), list)
                        or not resp["choices"]
                    ):
                        raise _ErrorBody(self._error_body_reason(resp))
                except (*RETRYABLE, openai.APIStatusError, _ErrorBody) as err:
                    self.budget.reserved -= estimate
                    status = getattr(err, "status_code", None)
                    if status is not None or isinstance(err, _ErrorBody):
                        _answered_endpoints.add(self._endpoint)
                    elif self._endpoint not in _answered_endpoints and _is_connect_failure(err):
                        if attempt + 1 >= min(EARLY_CONNECT_TRIES, self.max_retries + 1):
                            raise self._unreachable(err, attempt + 1) from None
                        await asyncio.sleep(EARLY_CONNECT_DELAY_S * 2**attempt)
                        continue
                    if (
                        isinstance(err, openai.APIStatusError)
                        and status not in (408, 409, 429)
                        and status < 500
                    ):
                        raise self._classify(err) from None
                    if status == 429 and _error_code(err) == "insufficient_quota":
                        raise self._classify(err) from None
                    last = err
                    if attempt == self.max_retries:
                        break
                    self.usage.retries += 1
                    delay = random.uniform(0, min(self.backoff_max, self.backoff_base * 2**attempt))
                    retry_after = _retry_after_seconds(err)
                    if retry_after is not None and retry_after > RETRY_AFTER_CAP_S:
                        raise TransientAPIError(
                            f"{self.display_url} asked to wait {retry_after:.0f} s before a retry "
                            f"(Retry-After), more than the {RETRY_AFTER_CAP_S:.0f} s a request waits: "
                            "given up; rerun the same command later"
                        ) from None
                    if retry_after is not None:
                        delay = max(delay, retry_after)  # at least what the server asked
                    await asyncio.sleep(delay)
                    continue
                except BaseException:
                    self.budget.reserved -= estimate
                    raise
                self.budget.reserved -= estimate
                _answered_endpoints.add(self._endpoint)
                self._account(resp)
                return resp
            kind = type(last).__name__
            status = getattr(last, "status_code", None)
            reason = f"HTTP {status}" if status else str(last) if isinstance(last, _ErrorBody) else kind
            if _is_connect_failure(last):  # aiohttp words a refused connection as a connect timeout
                reason = "cannot connect: connection refused or host unreachable; has the server stopped?"
            raise TransientAPIError(
                f"{self.display_url} kept failing after {self.max_retries + 1} tries ({reason})"
            ) from None


def tokens_of(resp: dict) -> tuple[int, int, int]:
    """A reply's (prompt, completion, cached prompt) token counts from its `usage` (0 when absent)."""
    u = resp.get("usage") or {}
    details = u.get("prompt_tokens_details") or {}
    cached = (details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    return u.get("prompt_tokens") or 0, u.get("completion_tokens") or 0, cached


def _is_connect_failure(err: Exception) -> bool:
    """Whether the request never reached a server: connection refused, unknown host, no route (the
    aiohttp transport reports these as connect timeouts, so the cause chain is what tells)."""
    if not isinstance(err, openai.APIConnectionError):
        return False
    seen = 0
    e: BaseException | None = err
    while e is not None and seen < 8:
        if isinstance(e, (httpx.ConnectError, ConnectionRefusedError, socket.gaierror)):
            return True
        under = e.__cause__ or e.__context__
        if (
            isinstance(e, httpx.ConnectTimeout)
            and isinstance(under, OSError)
            and not isinstance(under, TimeoutError)
        ):
            return True  # aiohttp's "Cannot connect to host" (refused, DNS), not a slow server
        e = e.__cause__ or e.__context__
        seen += 1
    return False


def add_client_args(parser, default_model: str = "gpt-4", default_num_process: int = 10) -> None:
    """The original's client flags plus cost control, shared by stage 1, stage 2 and evaluation."""
    g = parser.add_argument_group("LLM endpoint")
    g.add_argument("--model_name", type=str, default=default_model, help="Model name sent to the endpoint.")
    g.add_argument(
        "--api_key",
        type=str,
        default=None,
        help="API key (default: the OPENAI_API_KEY environment variable). Never printed or saved.",
    )
    g.add_argument(
        "--api_url",
        type=str,
        default=None,
        help="OpenAI-compatible endpoint: a base URL ending in /v1 or the full .../v1/chat/completions "
        "URL (default: https://api.openai.com/v1).",
    )
    g.add_argument(
        "--num_process", type=int, default=default_num_process, help="Number of requests in flight at once."
    )
    g.add_argument("--limit_num", type=int, default=None, help="Only process the first N items.")
    g.add_argument(
        "--max_retries", type=int, default=6, help="Retries on 429/5xx/timeouts before an item fails."
    )
    g.add_argument(
        "--retry_backoff",
        type=float,
        default=1.0,
        help="Base of the exponential backoff between retries, in seconds (full jitter, capped at 60 s).",
    )
    g.add_argument(
        "--request_timeout", type=float, default=600.0, help="Seconds before one request times out."
    )
    g.add_argument(
        "--price",
        type=parse_price,
        default=None,
        help="Override the price table: IN,OUT in USD per 1M input and output tokens.",
    )
    g.add_argument(
        "--max_cost",
        type=float,
        default=None,
        help="Stop issuing new requests once the run has spent this (USD).",
    )
    g.add_argument(
        "--dry_run",
        action="store_true",
        help="Make no request; print how many requests the run would make and estimated tokens and cost.",
    )


def add_structured_outputs_arg(parser) -> None:
    """--structured_outputs, for the scripts whose prompts expect JSON or a fixed verdict."""
    parser.add_argument(
        "--structured_outputs",
        choices=STRUCTURED_OUTPUTS,
        default="auto",
        help="Send each JSON or verdict request with its strict JSON schema (constrained decoding on "
        "OpenAI, vLLM, SGLang): auto falls back to free form where the endpoint refuses schemas, on "
        "never falls back, off sends none (the requests of runs without schemas, for their caches).",
    )


def check_client_args(args) -> None:
    """InputError (one line, exit 2) for values of `add_client_args` flags that cannot work; the API
    stages call it before reading any data, so nothing is paid for a run that was misconfigured."""
    checks = [
        (args.num_process >= 1, f"--num_process must be at least 1 (got {args.num_process})"),
        (
            args.limit_num is None or args.limit_num >= 1,
            f"--limit_num must be at least 1 (got {args.limit_num}); leave it out to process every item",
        ),
        (args.max_retries >= 0, f"--max_retries must be 0 or more (got {args.max_retries})"),
        (args.retry_backoff >= 0, f"--retry_backoff must be 0 or more (got {args.retry_backoff})"),
        (args.request_timeout > 0, f"--request_timeout must be above 0 (got {args.request_timeout})"),
        (args.max_cost is None or args.max_cost > 0, f"--max_cost must be above 0 (got {args.max_cost})"),
    ]
    for ok, msg in checks:
        if not ok:
            raise InputError(msg)
    if args.price is not None and min(args.price) < 0:
        raise InputError(f"--price cannot be negative (got {args.price[0]},{args.price[1]})")
    check_api_url(args.api_url)


def client_from_args(args, usage: Usage | None = None, factory=None, **overrides) -> LLMClient:
    """The LLMClient a script's flags describe; bad flag values raise InputError (exit 2).
    `factory`: what makes the client from its keyword arguments (default LLMClient; with
    --batch_api the run's `BatchRound.client`)."""
    check_client_args(args)
    if "api_url" in overrides:
        check_api_url(overrides["api_url"], "--verifier_api_url")
    model = overrides.get("model", args.model_name)
    if args.max_cost is not None and price_for(model, overrides.get("price", args.price)) is None:
        raise InputError(
            f"--max_cost needs a price, and model {model!r} is not in the price table: pass --price IN,OUT"
        )
    kw = dict(
        model=args.model_name,
        api_key=args.api_key,
        api_url=args.api_url,
        max_concurrency=args.num_process,
        max_retries=args.max_retries,
        backoff_base=args.retry_backoff,
        timeout=args.request_timeout,
        price=args.price,
        max_cost=args.max_cost,
        usage=usage,
        structured_outputs=getattr(args, "structured_outputs", "off"),
    )
    kw.update(overrides)
    return (factory or LLMClient)(**kw)


def dry_run_report(
    model: str, requests: list[tuple[str, int]], price: tuple[float, float] | None = None, note: str = ""
) -> str:
    """Text for --dry_run: the number of requests and estimated tokens and cost.

    `requests` lists (prompt text, expected reply tokens) for every request the run would make.
    """
    p_tok = sum(estimate_tokens(p) for p, _ in requests)
    c_tok = sum(n for _, n in requests)
    rate = rates_for(model, price)
    cost = "unknown (no price for this model; pass --price IN,OUT)"
    if rate is not None:
        cost = (
            f"~{rate.cost(p_tok, c_tok):.4f} USD at {rate.input}/{rate.output} USD per 1M in/out tokens; "
            f"with --batch_api ~{rate.cost(p_tok, c_tok, batch=True):.4f} USD at "
            f"{rate.batch_input:g}/{rate.batch_output:g}"
        )
    lines = [
        f"[dry run] no request sent. {len(requests)} requests to {model}",
        f"[dry run] ~{p_tok} prompt tokens + ~{c_tok} completion tokens; cost {cost}",
        f"[dry run] token estimator: {ESTIMATOR_NAME}",
    ]
    if note:
        lines.append(f"[dry run] {note}")
    return "\n".join(lines)


def usage_report(model: str, usage: Usage, price: tuple[float, float] | None = None) -> str:
    rate = price_for(model, price)
    cost = f"{usage.cost:.4f} USD" if rate is not None else "unknown (no price for this model)"
    if rate is not None and round(usage.cost_live, 6) != round(usage.cost, 6):
        cost += f" (live-equivalent {usage.cost_live:.4f} USD)"
    cached = f" ({usage.cached_tokens} cached)" if usage.cached_tokens else ""
    return (
        f"API usage ({model}): {usage.requests} requests, {usage.prompt_tokens} prompt{cached} + "
        f"{usage.completion_tokens} completion tokens, {usage.retries} retries, cost {cost}"
    )
