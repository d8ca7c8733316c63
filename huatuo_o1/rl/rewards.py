"""The RL reward: is the policy's answer well-formed, and does a verifier judge it correct?

Algorithm (paper §3.2, with the released verifier's interface):

1. The decoded response is well-formed only with exactly one `## Thinking` and exactly one
   `## Final Response\\n\\n` (huatuo_o1.formats). Its answer is the text after that header.
   The rule follows the SFT target the policy was trained on (`--sft_target`, docs/ablations.md):
   a `response` or `mcq` policy writes no `## Thinking`, so its whole output is the answer and
   every response is well-formed (1.0 right, 0.1 wrong, never the malformed reward).
2. Every response goes through the verifier, a malformed one with the answer
   "I do not know the answer." (so every rank runs the verifier on the same batch shape, which
   ZeRO-3 needs), but a malformed response always gets `malformed_reward` (0.0).
3. The verifier gives P(correct). The reward is `correct_reward` (1.0) if P > `reward_threshold` (0.4),
   else `incorrect_reward` (0.1).

One interface, three verifiers (`Verifier.probabilities(answers, references) -> list[float]`):

- `ClassifierVerifier` (default): a 2-label sequence classifier with its own tokenizer (label 1 =
  True), fed exactly the released verifier's template with the verifier tokenizer's eos filled in,
  at most 4,000 verifier tokens (the answer is trimmed first so the template's tail and the eos,
  where the classifier reads its decision, always survive).
- `LLMJudgeVerifier`: the search stage's True/False verification prompt sent to an
  OpenAI-compatible server through the project's client (huatuo_o1.llm).
- `ExactMatchVerifier`: normalised exact match (case, punctuation, articles, whitespace).
"""

from __future__ import annotations

import asyncio
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from huatuo_o1.formats import DEFAULT_SFT_TARGET, SFT_TARGET_HELP, SFT_TARGETS, answer_for_target
from huatuo_o1.io import InputError
from huatuo_o1.redact import mask_url

UNKNOWN_ANSWER = "I do not know the answer."

# The released verifier's input format (FreedomIntelligence/medical_o1_verifier_3B): a model interface.
VERIFIER_TEMPLATE = (
    "<Model Response>\n"
    "{answer}\n"
    "</Model Response>\n"
    "\n"
    "<Reference Answer>\n"
    "{reference}\n"
    "</Reference Answer>\n"
    "\n"
    "Your task is to evaluate the model response by comparing it to the reference answer. If the model response is "
    'correct and aligns with the reference answer, output "True" . If it is incorrect or fails to select the correct '
    'option (if options are provided), output "False" . {eos}'
)

VERIFIER_KINDS = ("classifier", "llm", "exact")
DEFAULT_REWARD_THRESHOLD = 0.4  # correct when the verifier's P(True) is above this
VERIFIER_MAX_LENGTH = 4000  # the verifier's input cap, in its own tokens


def verifier_input(answer: str, reference: str, eos: str) -> str:
    """The released verifier's template with answer, reference and the verifier tokenizer's eos."""
    return VERIFIER_TEMPLATE.format(answer=answer, reference=reference, eos=eos)


@dataclass
class RewardConfig:
    """Reward values and the verifier's decision threshold. The RL scripts' flags are these fields
    (`rl.common.RLScriptArguments` extends this class), declared here once."""

    correct_reward: float = field(
        default=1.0, metadata={"help": "Reward of a well-formed, correct response."}
    )
    incorrect_reward: float = field(
        default=0.1, metadata={"help": "Reward of a well-formed, incorrect response."}
    )
    malformed_reward: float = field(default=0.0, metadata={"help": "Reward of a malformed response."})
    reward_threshold: float = field(
        default=DEFAULT_REWARD_THRESHOLD,
        metadata={"help": "Correct when the verifier's P(True) is above this."},
    )
    sft_target: str = field(
        default=DEFAULT_SFT_TARGET,
        metadata={"help": SFT_TARGET_HELP + " It sets the reward's format rule: response and mcq have none."},
    )

    def __post_init__(self):
        if self.sft_target not in SFT_TARGETS:  # a ValueError: one line, exit 2 (train.checks)
            raise ValueError(f"--sft_target must be one of {', '.join(SFT_TARGETS)}, got {self.sft_target!r}")

    @classmethod
    def of(cls, args) -> RewardConfig:
        """The reward fields of `args` (e.g. the RL scripts' parsed flags) as a plain RewardConfig."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


@dataclass
class RewardResult:
    """Per-response outcome of `score_responses`."""

    rewards: list[float]
    well_formed: list[bool]
    correct: list[bool]
    probabilities: list[float]
    answers: list[str]

    def summary(self) -> dict[str, float]:
        n = max(len(self.rewards), 1)
        return {
            "reward/mean": sum(self.rewards) / n,
            "reward/well_formed": sum(self.well_formed) / n,
            "reward/correct": sum(self.correct) / n,
        }


class Verifier:
    """Judges answers against reference answers: P(answer is correct) for each pair."""

    def probabilities(self, answers: Sequence[str], references: Sequence[str]) -> list[float]:
        raise NotImplementedError


def score_responses(
    responses: Sequence[str], references: Sequence[str], verifier: Verifier, cfg: RewardConfig | None = None
) -> RewardResult:
    """Reward each decoded policy response against its own row's reference answer."""
    cfg = cfg or RewardConfig()
    if len(responses) != len(references):
        raise ValueError(f"{len(responses)} responses but {len(references)} references")
    parsed = [answer_for_target(r, cfg.sft_target) for r in responses]
    well_formed = [a is not None for a in parsed]
    answers = [a if a is not None else UNKNOWN_ANSWER for a in parsed]
    probs = [float(p) for p in verifier.probabilities(answers, list(references))]
    correct, rewards = [], []
    for wf, p in zip(well_formed, probs, strict=True):
        ok = wf and p > cfg.reward_threshold
        correct.append(ok)
        if not wf:
            rewards.append(cfg.malformed_reward)
        else:
            rewards.append(cfg.correct_reward if ok else cfg.incorrect_reward)
    return RewardResult(rewards, well_formed, correct, probs, answers)


# ---------------------------------------------------------------------------------------------
# 1. The trained classifier (default)


def ensure_pad_token(tokenizer, model=None) -> None:
    """Give a classifier a pad token, and the same one in its tokenizer and its model config.

    A sequence classifier reads the last token that is not `config.pad_token_id`; with right
    padding the tokenizer's pad must therefore be the config's, or a row's score would depend on
    how much the other rows of its batch pad it. Order: the tokenizer's own pad; else the
    config's pad; else unk (when it is not eos); else eos. With pad == eos the classifier reads
    the token before the eos, the same token in every batch (a verifier trained this way reads it
    there too); train_verifier.py picks a pad distinct from eos so its verifiers read the eos.
    """
    cfg_pad = getattr(model.config, "pad_token_id", None) if model is not None else None
    if tokenizer.pad_token_id is None:
        if cfg_pad is not None and 0 <= cfg_pad < len(tokenizer):
            tokenizer.pad_token = tokenizer.convert_ids_to_tokens(cfg_pad)
        elif tokenizer.unk_token is not None and tokenizer.unk_token_id != tokenizer.eos_token_id:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            tokenizer.pad_token = tokenizer.eos_token
    if model is not None:
        model.config.pad_token_id = tokenizer.pad_token_id


class ClassifierVerifier(Verifier):
    """A 2-label sequence classifier (label 1 = True) with its own tokenizer and the fixed template.

    Inputs are token ids built without the tokenizer's extra special tokens (no added bos, as the
    released verifier's reward code did: the template already ends with the eos), at most
    `max_length` of them. An over-long input is built from ids, never by decoding and re-encoding:
    the template's head, the answer's ids cut to fit, and the template's tail (reference,
    instruction, eos) as ids, so the eos where the classifier reads its decision always survives.
    """

    def __init__(self, model, tokenizer, max_length: int = VERIFIER_MAX_LENGTH, batch_size: int = 8):
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        if tokenizer.eos_token is None:
            raise InputError("the verifier tokenizer has no eos token, which its input template needs")
        n_labels = getattr(model.config, "num_labels", None)
        if n_labels != 2:
            raise InputError(f"the verifier must be a 2-label sequence classifier, got num_labels={n_labels}")
        ensure_pad_token(tokenizer, model)
        tokenizer.padding_side = "right"

    @classmethod
    def from_pretrained(
        cls, path: str, dtype=None, trust_remote_code: bool = False, **kwargs
    ) -> ClassifierVerifier:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from huatuo_o1.models import load_pretrained

        tok = load_pretrained(AutoTokenizer, path, "verifier", trust_remote_code=trust_remote_code)
        model = load_pretrained(
            AutoModelForSequenceClassification, path, "verifier", dtype=dtype or "auto",
            trust_remote_code=trust_remote_code,
        )  # fmt: skip
        model.eval()
        return cls(model, tok, **kwargs)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode(self, answers: Sequence[str], references: Sequence[str]) -> list[list[int]]:
        """Verifier input ids, each at most max_length long and ending with the template's eos."""
        eos = self.tokenizer.eos_token
        head_text, tail_fmt = VERIFIER_TEMPLATE.split("{answer}")
        head = None
        out = []
        for ans, ref in zip(answers, references, strict=True):
            ids = self._ids(verifier_input(ans, ref, eos))
            if len(ids) > self.max_length:
                if head is None:
                    head = self._ids(head_text)
                tail = self._ids(tail_fmt.format(reference=ref, eos=eos))
                keep = self.max_length - len(head) - len(tail)
                if keep >= 0:
                    ids = head + self._ids(ans)[:keep] + tail
                else:  # even the reference does not fit: keep the end (instruction and eos)
                    ids = (head + tail)[-self.max_length :]
            out.append(ids)
        return out

    def probabilities(self, answers: Sequence[str], references: Sequence[str]) -> list[float]:
        import torch

        ids = self.encode(answers, references)
        device = next(self.model.parameters()).device
        probs: list[float] = []
        for i in range(0, len(ids), self.batch_size):
            enc = self.tokenizer.pad(
                {"input_ids": ids[i : i + self.batch_size]}, padding=True, return_tensors="pt"
            ).to(device)
            with torch.no_grad():
                logits = self.model(**enc).logits.float()
            probs.extend(torch.softmax(logits, dim=-1)[:, 1].tolist())
        return probs


# ---------------------------------------------------------------------------------------------
# 2. An LLM judge through the project's OpenAI-compatible client


class LLMJudgeVerifier(Verifier):
    """The search stage's True/False verification, asked of an OpenAI-compatible server.

    A reply with no verdict, or a request that still fails after the client's retries, counts as
    "False" (and is counted in `failures`); a fatal API error (bad key, unknown model) stops the run.
    """

    def __init__(
        self,
        model: str,
        api_key: str | None = None,
        api_url: str | None = None,
        max_concurrency: int = 10,
        language: str = "en",
        structured_outputs: str = "auto",
        **gen_kwargs,
    ):
        self.model = None  # no torch module: nothing for the trainer to move or shard
        self.judge_model = model
        self._api_key = api_key
        self.api_url = api_url
        self.max_concurrency = max_concurrency
        self.language = language
        self.structured_outputs = structured_outputs
        self.gen_kwargs = gen_kwargs
        self.failures = 0

    def __repr__(self) -> str:  # never shows the key
        return f"LLMJudgeVerifier(model={self.judge_model!r}, url={mask_url(self.api_url)!r})"

    async def _judge_all(self, answers, references) -> list[bool]:
        # Lazy imports keep `openai` out of the classifier path. A fresh client per batch: its
        # connection pool belongs to the event loop that asyncio.run creates for this batch.
        from huatuo_o1.llm import LLMClient, RequestRejected, TransientAPIError
        from huatuo_o1.parsing import parse_verdict
        from huatuo_o1.prompts import VERIFY_SCHEMA, verify_prompt

        client = LLMClient(
            model=self.judge_model,
            api_key=self._api_key,
            api_url=self.api_url,
            max_concurrency=self.max_concurrency,
            structured_outputs=self.structured_outputs,
        )

        async def one(ans, ref):
            try:
                prompt = verify_prompt(ans, ref, language=self.language)
                reply = await client.chat(prompt, schema=VERIFY_SCHEMA, **self.gen_kwargs)
            except (TransientAPIError, RequestRejected):  # e.g. an answer too long for the judge
                self.failures += 1
                return False
            verdict = parse_verdict(reply)
            if verdict is None:
                self.failures += 1
            return bool(verdict)

        try:
            return await asyncio.gather(*(one(a, r) for a, r in zip(answers, references, strict=True)))
        finally:
            await client.close()

    def probabilities(self, answers: Sequence[str], references: Sequence[str]) -> list[float]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            verdicts = asyncio.run(self._judge_all(answers, references))
        else:  # called from inside an event loop: run the batch on a worker thread's own loop
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(1) as ex:
                verdicts = ex.submit(asyncio.run, self._judge_all(answers, references)).result()
        return [1.0 if v else 0.0 for v in verdicts]


# ---------------------------------------------------------------------------------------------
# 3. Normalised exact match

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.IGNORECASE)
_PUNCT_CHARS = string.punctuation + "。，、；：？！（）《》“”‘’"
_PUNCT = str.maketrans(_PUNCT_CHARS, " " * len(_PUNCT_CHARS))


def normalize_answer(text: str) -> str:
    """Lower case, punctuation to spaces, drop English articles, collapse whitespace."""
    text = text.lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


class ExactMatchVerifier(Verifier):
    """1.0 when the normalised answer equals the normalised reference, else 0.0."""

    def probabilities(self, answers: Sequence[str], references: Sequence[str]) -> list[float]:
        return [
            1.0 if normalize_answer(a) == normalize_answer(r) and normalize_answer(r) else 0.0
            for a, r in zip(answers, references, strict=True)
        ]


@dataclass(frozen=True)
class VerifierSettings:
    """Everything that chooses and configures the reward's verifier, in one object (the RL scripts'
    --verifier, --reward_model_path and judge/classifier flags)."""

    kind: str
    reward_model_path: str | None = None
    judge_model: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never shown
    api_url: str | None = None
    max_concurrency: int = 10
    max_length: int = VERIFIER_MAX_LENGTH
    batch_size: int = 8
    trust_remote_code: bool = False
    structured_outputs: str = "auto"  # the judge's JSON schema: auto, on or off (llm.STRUCTURED_OUTPUTS)

    @classmethod
    def of(cls, script_args, reward_model_path: str | None, trust_remote_code: bool = False):
        """The settings in the RL scripts' parsed flags."""
        return cls(
            kind=script_args.verifier,
            reward_model_path=reward_model_path,
            judge_model=script_args.judge_model,
            api_key=script_args.judge_api_key,  # the client falls back to OPENAI_API_KEY (llm.resolve_api_key)
            api_url=script_args.judge_api_url,
            max_concurrency=script_args.judge_max_concurrency,
            max_length=script_args.verifier_max_length,
            batch_size=script_args.verifier_batch_size,
            trust_remote_code=trust_remote_code,
        )


def build_verifier(settings: VerifierSettings, dtype=None) -> Verifier:
    """The verifier chosen by `--verifier {classifier,llm,exact}`."""
    kind = settings.kind
    if kind == "classifier":
        if not settings.reward_model_path:
            raise InputError("--verifier classifier needs --reward_model_path")
        return ClassifierVerifier.from_pretrained(
            settings.reward_model_path,
            dtype=dtype,
            trust_remote_code=settings.trust_remote_code,
            max_length=settings.max_length,
            batch_size=settings.batch_size,
        )
    if kind == "llm":
        if not settings.judge_model:
            raise InputError("--verifier llm needs --judge_model (e.g. gpt-4o)")
        return LLMJudgeVerifier(
            settings.judge_model,
            api_key=settings.api_key,
            api_url=settings.api_url,
            max_concurrency=settings.max_concurrency,
            structured_outputs=settings.structured_outputs,
        )
    if kind == "exact":
        return ExactMatchVerifier()
    raise InputError(f"unknown verifier {kind!r}; choose one of {', '.join(VERIFIER_KINDS)}")
