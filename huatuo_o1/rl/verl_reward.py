"""verl's custom reward function: the same reward as RL_stage2.py, for verl's reward workers.

Plug it in with verl's `reward.custom_reward_function.path=<repo>/huatuo_o1/rl/verl_reward.py` and
`name=compute_score` (one response per call, verl's default `naive` reward manager) or
`name=compute_score_batch` (a whole batch per call: verl's batch signature, for a batch reward
manager). Settings come from `reward.custom_reward_function.reward_kwargs`, named like
RL_stage2.py's flags:

  verifier               classifier (default) | llm | exact
  reward_model_path      the 2-label verifier (classifier)
  verifier_max_length, verifier_batch_size      as RL_stage2.py (4,000 tokens, 8)
  verifier_device        auto (default: cuda when this process sees a GPU, else cpu) | cpu | cuda:N
  verifier_dtype         auto (default: the checkpoint's) | bfloat16 | float16 | float32
  judge_model, judge_api_url, judge_max_concurrency   the LLM judge (llm); its key is read from
                         the OPENAI_API_KEY environment variable only, never from the config
                         (verl logs its config, to wandb too), so `judge_api_key` is refused
  correct_reward, incorrect_reward, malformed_reward, reward_threshold   the paper's 1.0 / 0.1 /
                         0.0 and 0.4 by default
  details                false (default): a float; true: a dict with `score`, `well_formed`,
                         `correct` and `p_true`, which verl keeps as per-sample extra info

The reward itself is huatuo_o1.rl.rewards.score_responses with the verifier rl.common.make_verifier
builds for RL_stage2.py, from RL_stage2.py's own flag declarations (rl.common.RLScriptArguments):
same format check, same verifier input, same threshold and values (tested).

One verifier per process: the first call builds it and keeps it in a module-level cache keyed by
every setting that changes it (path, device, dtype, lengths, judge...), so the classifier is loaded
once per reward worker, never per call. verl 0.9.1 calls `compute_score` from many threads of one
worker at once (its naive manager runs each sample's call in the worker's thread pool); the
verifier is shared by them and their calls are coalesced: while one forward pass runs, the
responses that arrive queue up, and the next pass scores all of them together (in slices of
`verifier_batch_size`). `compute_score_batch` scores its whole batch in one call.

GPU placement, two ways:
- Served (the recipes' default): with verl's reward model enabled (`reward.reward_model.enable=True`,
  `reward.reward_model.model_path=<the verifier>`, `rollout.name=vllm`), verl serves the classifier
  with vLLM on the GPUs (colocated with the actor and woken up only while rewards are computed, or
  on its own nodes with `enable_resource_pool`) and passes `reward_router_address` to every call.
  The classifier is then `ServedClassifierVerifier`: this process holds only the verifier's
  tokenizer and config, builds the exact input ids RL_stage2.py's classifier reads, and sends each
  pass's inputs in one request to vLLM's `/classify` route.
- In the reward workers: without a reward model, the classifier is loaded inside verl's reward
  workers (`reward.num_workers` Ray actors, spread over the nodes). verl 0.9.1 starts them without
  a GPU and Ray hides the GPUs from such actors, so `verifier_device=auto` puts it on the CPU, one
  copy per worker (about 6 GB of host memory each for a 3B verifier in bf16): fine for small
  verifiers and tests, slow for a 3B one at 1,300-token responses. A worker that does see a GPU uses
  `cuda`; `verifier_device` picks a device explicitly.
The LLM judge and exact match need no GPU.

Loaded by path, as verl does it (its own module name, not registered in sys.modules): the file puts
the repository root on sys.path for the `huatuo_o1` imports, and it has no
`from __future__ import annotations`, because dataclasses would then look its annotations up in
sys.modules and fail (tested). verl loads it once per reward worker, so each worker has one cache.
"""

import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

if __name__ != "huatuo_o1.rl.verl_reward":  # loaded by file path (verl's custom_reward_function.path)
    _root = str(Path(__file__).resolve().parents[2])
    if _root not in sys.path:
        sys.path.insert(0, _root)

from huatuo_o1.io import InputError  # noqa: E402
from huatuo_o1.rl.common import RLScriptArguments, make_verifier  # noqa: E402
from huatuo_o1.rl.rewards import (  # noqa: E402
    VERIFIER_KINDS,
    ClassifierVerifier,
    RewardConfig,
    Verifier,
    score_responses,
)

# RL_stage2.py's flags that are reward_kwargs here, under the same names and defaults (the data
# flags belong to scripts/export_verl_data.py; the judge's key is never a reward_kwarg).
RL_REWARD_FLAGS = tuple(f.name for f in fields(RewardConfig)) + (
    "verifier",
    "judge_model",
    "judge_api_url",
    "judge_max_concurrency",
    "verifier_max_length",
    "verifier_batch_size",
)
# Keyword arguments verl itself adds to a call when its reward model is enabled: the router in front
# of the served reward model (used: the classifier is then scored there), and its tokenizer (not
# used: the verifier's own is loaded from reward_model_path).
ROUTER_KWARG = "reward_router_address"
_VERL_EXTRA_KWARGS = (ROUTER_KWARG, "reward_model_tokenizer")


@dataclass
class VerlRewardSettings:
    """The reward_kwargs, checked and typed: RL_stage2.py's reward flags (`script_args`, with its
    defaults) plus what only this entry point has."""

    script_args: RLScriptArguments = field(default_factory=RLScriptArguments)
    reward_model_path: str | None = None  # RL_stage2.py's --reward_model_path (a PPOConfig flag there)
    verifier_device: str = "auto"
    verifier_dtype: str = "auto"
    details: bool = False
    router_address: str | None = None  # set by verl (reward_router_address), not a reward_kwarg

    @classmethod
    def from_kwargs(cls, kwargs: dict) -> "VerlRewardSettings":
        """Typed settings from verl's reward_kwargs; InputError (one line) on an unknown or bad one."""
        if "judge_api_key" in kwargs:
            raise InputError(
                "reward_kwargs.judge_api_key is refused: verl logs its config; "
                "set OPENAI_API_KEY in the environment of every node instead"
            )
        rl_fields = {f.name: f for f in fields(RLScriptArguments) if f.name in RL_REWARD_FLAGS}
        own_fields = {f.name: f for f in fields(cls) if f.name not in ("script_args", "router_address")}
        rl_values, own_values = {}, {}
        for name, value in kwargs.items():
            if name in _VERL_EXTRA_KWARGS:
                continue
            if name in rl_fields:
                rl_values[name] = _typed(name, value, rl_fields[name].default)
            elif name in own_fields:
                own_values[name] = _typed(name, value, own_fields[name].default)
            else:
                known = ", ".join(sorted([*rl_fields, *own_fields]))
                raise InputError(f"unknown reward_kwargs key {name!r}; known: {known}")
        router = kwargs.get(ROUTER_KWARG) or None
        s = cls(script_args=RLScriptArguments(**rl_values), router_address=router, **own_values)
        if s.script_args.verifier not in VERIFIER_KINDS:
            raise InputError(
                f"reward_kwargs.verifier={s.script_args.verifier!r}; choose one of {', '.join(VERIFIER_KINDS)}"
            )
        return s

    def reward_config(self) -> RewardConfig:
        return self.script_args.reward_config()

    def verifier_key(self) -> tuple:
        """What identifies the verifier in the per-process cache (reward values do not change it)."""
        a = self.script_args
        if a.verifier == "classifier" and self.router_address:
            return ("served", self.router_address, self.reward_model_path, a.verifier_max_length)
        if a.verifier == "classifier":
            return (a.verifier, self.reward_model_path, self.resolved_device(), self.verifier_dtype,
                    a.verifier_max_length, a.verifier_batch_size)  # fmt: skip
        if a.verifier == "llm":
            return (a.verifier, a.judge_model, a.judge_api_url, a.judge_max_concurrency)
        return (a.verifier,)

    def resolved_device(self) -> str:
        if self.verifier_device != "auto":
            return self.verifier_device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


def _typed(name: str, value, default):
    """Hydra hands over strings, ints, floats and bools; give each setting its field's type."""
    if value is None or isinstance(default, str) or default is None:
        return None if value is None else str(value)
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.strip().lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                return value.strip().lower() in ("true", "1")
            return bool(value)
        return type(default)(value)
    except (TypeError, ValueError):
        raise InputError(f"reward_kwargs.{name}={value!r} is not a {type(default).__name__}") from None


class ServedClassifierVerifier(ClassifierVerifier):
    """The verifier classifier served by vLLM in verl's reward-model pool, asked over HTTP.

    Used when verl passes `reward_router_address` (its `reward.reward_model.enable=True` with the
    verifier as `reward.reward_model.model_path`): the classifier then runs on GPUs. This process
    keeps only the verifier's tokenizer and config; it builds exactly the token ids the in-process
    classifier reads (ClassifierVerifier.encode: the released template, no added special tokens,
    cut inside the answer), ends each at the token the in-process classifier takes its decision
    from (the last one that is not the pad: a trailing eos is dropped when the pad is the eos, as
    with Llama-3 verifiers), and posts them in one request to the router's vLLM `/classify`
    endpoint (token-id input, softmax probabilities; label 1 = True). vLLM classifies at the
    last token of each input, so it reads the same position with the same prefix.
    """

    def __init__(self, tokenizer, config, router_address: str, model_name: str,
                 max_length: int = 4000, timeout: float = 600.0, attempts: int = 3):  # fmt: skip
        from types import SimpleNamespace

        super().__init__(SimpleNamespace(config=config), tokenizer, max_length=max_length)
        self.model = None  # the weights live in the vLLM server
        self.pad_id = config.pad_token_id
        self.url = f"http://{router_address}/classify"
        self.model_name = model_name
        self.timeout = timeout
        self.attempts = attempts

    @classmethod
    def from_pretrained(cls, path: str, router_address: str, **kwargs) -> "ServedClassifierVerifier":
        from transformers import AutoConfig, AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(path), AutoConfig.from_pretrained(path), router_address,
                   path, **kwargs)  # fmt: skip

    def read_ids(self, answers: Sequence[str], references: Sequence[str]) -> list[list[int]]:
        """Each input up to the token the in-process classifier reads (its last non-pad token)."""
        out = []
        for ids in self.encode(answers, references):
            end = len(ids)
            while end > 1 and ids[end - 1] == self.pad_id:
                end -= 1
            out.append(ids[:end])
        return out

    def probabilities(self, answers: Sequence[str], references: Sequence[str]) -> list[float]:
        import time

        import httpx

        ids = self.read_ids(answers, references)
        if not ids:
            return []
        body = {"model": self.model_name, "input": ids}
        for attempt in range(self.attempts):
            try:
                reply = httpx.post(self.url, json=body, timeout=self.timeout)
                reply.raise_for_status()
                data = sorted(reply.json()["data"], key=lambda d: d["index"])
                return [float(d["probs"][1]) for d in data]
            except (httpx.TransportError, httpx.HTTPStatusError) as e:
                if attempt + 1 == self.attempts or (
                    isinstance(e, httpx.HTTPStatusError) and e.response.status_code < 500
                ):
                    raise RuntimeError(f"the served verifier at {self.url} failed: {e}") from None
                time.sleep(2**attempt)
        raise AssertionError("unreachable")


class _Job:
    __slots__ = ("answers", "references", "result", "error", "done")

    def __init__(self, answers: list[str], references: list[str]):
        self.answers, self.references = answers, references
        self.result: list[float] | None = None
        self.error: Exception | None = None
        self.done = False


class CoalescingVerifier(Verifier):
    """A verifier shared by the threads of one process; concurrent calls are scored together.

    Each call queues its pairs. Whoever holds the run lock next takes everything queued (its own
    pairs, and those of the threads that arrived while the previous pass ran) and scores it in one
    call of the wrapped verifier, shortest texts first (so a forward slice pads little); the others
    find their results ready when they get the lock.
    Results do not depend on the grouping (the classifier's P(True) does not depend on its batch).
    """

    def __init__(self, inner: Verifier):
        self.inner = inner
        self.model = getattr(inner, "model", None)
        self._queue: list[_Job] = []
        self._queue_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self.calls = 0  # passes of the wrapped verifier (for tests and logs)

    def probabilities(self, answers: Sequence[str], references: Sequence[str]) -> list[float]:
        job = _Job(list(answers), list(references))
        with self._queue_lock:
            self._queue.append(job)
        with self._run_lock:
            if not job.done:
                with self._queue_lock:
                    jobs, self._queue = self._queue, []
                self._run(jobs)
        if job.error is not None:
            raise job.error
        return job.result

    def _run(self, jobs: list[_Job]) -> None:
        answers = [a for j in jobs for a in j.answers]
        refs = [r for j in jobs for r in j.references]
        # shortest first, so each forward slice pads its rows to similar lengths
        order = sorted(range(len(answers)), key=lambda i: len(answers[i]) + len(refs[i]))
        self.calls += 1
        try:
            scored = (
                self.inner.probabilities([answers[i] for i in order], [refs[i] for i in order])
                if answers
                else []
            )
        except Exception as e:  # every waiting call sees the failure, none hangs
            for j in jobs:
                j.error, j.done = e, True
            return
        probs = [0.0] * len(answers)
        for i, p in zip(order, scored, strict=True):
            probs[i] = float(p)
        pos = 0
        for j in jobs:
            j.result, j.done = probs[pos : pos + len(j.answers)], True
            pos += len(j.answers)


_VERIFIERS: dict[tuple, CoalescingVerifier] = {}
_VERIFIERS_LOCK = threading.Lock()


def get_verifier(settings: VerlRewardSettings) -> CoalescingVerifier:
    """This process's verifier for these settings, built on first use (loaded once per worker)."""
    key = settings.verifier_key()
    with _VERIFIERS_LOCK:  # threads arriving together wait for one load
        verifier = _VERIFIERS.get(key)
        if verifier is None:
            verifier = CoalescingVerifier(_build(settings))
            _VERIFIERS[key] = verifier
    return verifier


def _build(s: VerlRewardSettings) -> Verifier:
    """RL_stage2.py's verifier for these settings (rl.common.make_verifier), on its device."""
    kind = s.script_args.verifier
    dtype = None
    if kind == "classifier" and s.verifier_dtype != "auto":
        import torch

        dtype = getattr(torch, s.verifier_dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise InputError(f"reward_kwargs.verifier_dtype={s.verifier_dtype!r} is not a torch dtype")
    if kind == "classifier" and not s.reward_model_path:
        raise InputError("reward_kwargs.verifier=classifier needs reward_kwargs.reward_model_path")
    if kind == "llm" and not s.script_args.judge_model:
        raise InputError("reward_kwargs.verifier=llm needs reward_kwargs.judge_model")
    if kind == "classifier" and s.router_address:
        return ServedClassifierVerifier.from_pretrained(
            s.reward_model_path, s.router_address, max_length=s.script_args.verifier_max_length
        )
    verifier = make_verifier(s.script_args, s.reward_model_path, dtype=dtype)  # key: OPENAI_API_KEY only
    model = getattr(verifier, "model", None)
    if kind == "classifier" and model is not None:
        model.to(s.resolved_device())
    return verifier


def compute_score_batch(
    data_sources: Sequence[str],
    solution_strs: Sequence[str],
    ground_truths: Sequence[str],
    extra_infos: Sequence[dict | None] | None = None,
    **reward_kwargs,
) -> list[float] | list[dict]:
    """verl's batch signature: the reward of each decoded response against its ground truth."""
    settings = VerlRewardSettings.from_kwargs(reward_kwargs)
    verifier = get_verifier(settings)
    refs = ["" if g is None else str(g) for g in ground_truths]
    result = score_responses(list(solution_strs), refs, verifier, settings.reward_config())
    if not settings.details:
        return list(result.rewards)
    return [
        {"score": r, "well_formed": wf, "correct": ok, "p_true": p}
        for r, wf, ok, p in zip(
            result.rewards, result.well_formed, result.correct, result.probabilities, strict=True
        )
    ]


def compute_score(
    data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None, **reward_kwargs
) -> float | dict:
    """verl's per-response signature (naive reward manager): the reward of one decoded response."""
    return compute_score_batch([data_source], [solution_str], [ground_truth], [extra_info], **reward_kwargs)[
        0
    ]
