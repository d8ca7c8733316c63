"""SFT data: load and check records, render them as chats, mask labels, truncate, batch without padding.

1. Records (docs/data_formats.md §3: `Question`, `Complex_CoT`, `Response`) come from a local
   JSON/JSONL file or from a `datasets` folder / hub name (`contract.load_dataset_records`; the
   configuration as a `name:config` suffix, or with the older `--data_config`, e.g. `en`). Everything is checked
   before any model is loaded: a missing, empty or malformed file, or a record that lacks a field,
   raises `InputError` naming the first bad record. A record without `Question` but with the stage-1
   field `Open-ended Verifiable Question` uses that one instead (so search outputs and the demo file
   feed SFT as they are).
2. Each record becomes a two-turn chat: the user turn is the question, the assistant turn is
   `format_response(Complex_CoT, Response)` = "## Thinking\\n\\n...\\n\\n## Final Response\\n\\n...".
   It is rendered with the tokenizer's own chat template; a tokenizer without one gets the Llama-3
   style template of the original (its special tokens are added to the vocabulary if missing).
3. Token-exact label mask. We render the prompt alone (`add_generation_prompt=True`) and the whole
   chat, check that the first is a prefix of the second, and tokenize the two pieces separately:
   `ids = tok(prompt) + tok(rest)`. That is exactly what the model sees at inference (the prompt is
   tokenized alone, then the model generates), and the boundary can never fall inside a token.
   Labels are -100 on the prompt and on anything the template puts after the assistant's
   end-of-turn token (e.g. ChatML's trailing newline); the assistant turn, end-of-turn token
   included, is learnt.
4. Truncation keeps the prompt: an over-long example loses the tail of its response (the original
   cut from the left and could drop the question). An example whose prompt alone does not fit is
   dropped. Both are counted and reported.
5. Batching. `--packing` (default) is padding-free batching: the examples of a micro-batch are
   concatenated into one row, `position_ids` restart at 0 for each example, and the first label of
   each example is -100 (transformers' `DataCollatorWithFlattening`). transformers turns such
   position_ids into a block-diagonal causal mask (sdpa/eager, also on CPU) or flash-attn varlen
   boundaries (`cu_seq_lens`, GPU), so examples in one row never attend to each other and no
   compute is spent on padding. Without packing, the original batching: pad to the longest in the
   micro-batch, with an attention mask.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from huatuo_o1.contract import OPEN_QUESTION, SFT_COT, SFT_QUESTION, SFT_RESPONSE, load_dataset_records
from huatuo_o1.formats import format_response
from huatuo_o1.io import InputError

log = logging.getLogger(__name__)

IGNORE_INDEX = -100

# The original's template for models without one (Llama-3 instruct style).
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
LLAMA3_SPECIAL_TOKENS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
# Tokens that close a turn in common chat templates (besides the tokenizer's eos token).
END_OF_TURN_TOKENS = ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|end_of_turn|>"]


# --------------------------------------------------------------------------- records


def check_sft_records(records: Sequence[dict], source: str) -> list[dict]:
    """Return [{"Question", "Complex_CoT", "Response"}]; raise InputError naming the first bad record."""
    if len(records) == 0:
        raise InputError(f"{source}: no records (expected a list of {{Question, Complex_CoT, Response}})")
    out = []
    for i, rec in enumerate(records, 1):
        if not isinstance(rec, dict):
            raise InputError(f"{source}: item {i} is not a JSON object")
        q = rec.get(SFT_QUESTION)
        if q in (None, ""):
            q = rec.get(OPEN_QUESTION)
        values = {SFT_QUESTION: q, SFT_COT: rec.get(SFT_COT), SFT_RESPONSE: rec.get(SFT_RESPONSE)}
        missing = [k for k, v in values.items() if v in (None, "")]
        if missing:
            raise InputError(f"{source}: item {i} lacks field(s) {', '.join(repr(m) for m in missing)}")
        wrong = [k for k, v in values.items() if not isinstance(v, str)]
        if wrong:
            raise InputError(
                f"{source}: item {i} field(s) {', '.join(repr(w) for w in wrong)} must be strings"
            )
        out.append(values)
    return out


_check_records = check_sft_records  # the older private name


def load_sft_records(data_path: str, data_config: str | None = None) -> list[dict]:
    """Load and check SFT records from a JSON/JSONL file, a `datasets` folder or a hub dataset name
    (`name:config`, or the older `--data_config`)."""
    records = load_dataset_records(data_path, data_config, what="SFT data")
    return check_sft_records(records, data_path)


# --------------------------------------------------------------------------- chat rendering


def ensure_chat_template(tokenizer) -> list[str]:
    """Give a tokenizer without a chat template the original's Llama-3 template.

    Returns the special tokens that had to be added to the vocabulary (the caller resizes the
    model's embeddings when this is not empty).
    """
    if getattr(tokenizer, "chat_template", None):
        return []
    tokenizer.chat_template = LLAMA3_TEMPLATE
    vocab = tokenizer.get_vocab()
    added = [t for t in LLAMA3_SPECIAL_TOKENS if t not in vocab]
    if added:
        tokenizer.add_special_tokens({"additional_special_tokens": added})
    if tokenizer.bos_token is None:
        tokenizer.bos_token = tokenizer.eos_token or "<|eot_id|>"
    return added


def end_of_turn_ids(tokenizer) -> set[int]:
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in END_OF_TURN_TOKENS if t in vocab)
    return ids


def render(tokenizer, question: str, answer: str | None = None) -> str:
    """The chat as text: with `answer`, the whole conversation; without, the generation prompt."""
    messages = [{"role": "user", "content": question}]
    if answer is None:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    messages.append({"role": "assistant", "content": answer})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)


@dataclass
class TokenizeStats:
    total: int = 0
    truncated: int = 0
    dropped: int = 0
    prefix_mismatch: int = 0
    lengths: list[int] = field(default_factory=list)

    def summary(self, max_seq_len: int) -> str:
        kept = self.total - self.dropped
        n_tok = sum(self.lengths)
        return (
            f"{kept}/{self.total} examples, {n_tok} tokens (mean {n_tok / max(kept, 1):.0f}, max "
            f"{max(self.lengths, default=0)}); truncated to max_seq_len={max_seq_len} (response tail cut, "
            f"prompt kept): {self.truncated}; dropped (prompt alone too long): {self.dropped}"
        )


def tokenize_example(
    tokenizer, question: str, answer: str, eot_ids: set[int]
) -> tuple[list[int], list[int], bool]:
    """input_ids and labels of one chat; labels = -100 outside the assistant turn (see module doc)."""
    prompt_text = render(tokenizer, question)
    full_text = render(tokenizer, question, answer)
    if full_text.startswith(prompt_text):
        prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        rest_ids = tokenizer(full_text[len(prompt_text) :], add_special_tokens=False)["input_ids"]
        mismatch = False
    else:  # a template whose generation prompt is not a prefix of the chat: longest common token prefix
        prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(full_text, add_special_tokens=False)["input_ids"]
        n = 0
        while n < min(len(prompt_ids), len(full_ids)) and prompt_ids[n] == full_ids[n]:
            n += 1
        prompt_ids, rest_ids, mismatch = full_ids[:n], full_ids[n:], True
    # Learn the assistant turn up to and including its (last) end-of-turn token, not what follows.
    end = len(rest_ids)
    for j in range(len(rest_ids) - 1, -1, -1):
        if rest_ids[j] in eot_ids:
            end = j + 1
            break
    input_ids = prompt_ids + rest_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + rest_ids[:end] + [IGNORE_INDEX] * (len(rest_ids) - end)
    return input_ids, labels, mismatch


def tokenize_records(
    tokenizer, records: Sequence[dict], max_seq_len: int
) -> tuple[list[dict], TokenizeStats]:
    """Tokenize checked records into [{"input_ids", "labels"}], truncating so the prompt survives."""
    chats = [(rec[SFT_QUESTION], format_response(rec[SFT_COT], rec[SFT_RESPONSE])) for rec in records]
    return tokenize_chats(tokenizer, chats, max_seq_len)


def tokenize_chats(
    tokenizer, chats: Sequence[tuple[str, str]], max_seq_len: int
) -> tuple[list[dict], TokenizeStats]:
    """Tokenize (user turn, assistant turn) pairs (any SFT target, train/sft_targets.py) into
    [{"input_ids", "labels"}], truncating so the prompt survives."""
    eot_ids = end_of_turn_ids(tokenizer)
    stats = TokenizeStats(total=len(chats))
    out = []
    for question, answer in chats:
        ids, labels, mismatch = tokenize_example(tokenizer, question, answer, eot_ids)
        stats.prefix_mismatch += mismatch
        if len(ids) > max_seq_len:
            n_prompt = next((i for i, lab in enumerate(labels) if lab != IGNORE_INDEX), len(labels))
            if n_prompt >= max_seq_len:
                stats.dropped += 1
                continue
            ids, labels = ids[:max_seq_len], labels[:max_seq_len]
            stats.truncated += 1
        stats.lengths.append(len(ids))
        out.append({"input_ids": ids, "labels": labels})
    if stats.prefix_mismatch:
        log.warning(
            "%d examples: the chat template's generation prompt is not a prefix of the full chat; "
            "the label mask starts at the longest common token prefix",
            stats.prefix_mismatch,
        )
    if not out:
        raise InputError(f"no example fits in max_seq_len={max_seq_len} (every prompt is longer)")
    return out, stats


# --------------------------------------------------------------------------- batching


class PaddedCollator:
    """The original batching: pad every micro-batch to its longest example (labels -100 on padding)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict]) -> dict:
        import torch

        n = max(len(f["input_ids"]) for f in features)
        ids = [list(f["input_ids"]) + [self.pad_token_id] * (n - len(f["input_ids"])) for f in features]
        labels = [list(f["labels"]) + [IGNORE_INDEX] * (n - len(f["labels"])) for f in features]
        mask = [[1] * len(f["input_ids"]) + [0] * (n - len(f["input_ids"])) for f in features]
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "attention_mask": torch.tensor(mask, dtype=torch.long),
        }


def make_collator(packing: bool, pad_token_id: int, flash_attn: bool = False):
    if packing:
        from transformers import DataCollatorWithFlattening

        return DataCollatorWithFlattening(return_position_ids=True, return_flash_attn_kwargs=flash_attn)
    return PaddedCollator(pad_token_id)
