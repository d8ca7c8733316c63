"""Tiny random models and tokenizers, built from config in a folder, for offline tests and benchmarks.

Nothing here downloads anything: the tokenizer is a byte-level BPE trained in a few milliseconds
on a built-in corpus, and the models are random-initialised from small configs.
"""

from __future__ import annotations

from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_CORPUS = [
    "## Thinking\n\nThe patient presents with fever and cough. Consider pneumonia.\n\n"
    "## Final Response\n\nThe most likely diagnosis is community-acquired pneumonia.",
    "What is the first-line treatment for uncomplicated hypertension in adults?",
    "Answer the following multiple choice question. A. Aspirin B. Heparin C. Warfarin D. Insulin",
    "The answer is C. Verification: the conclusion is consistent with the reference answer.",
    "<Model Response> True False </Model Response> <Reference Answer> </Reference Answer>",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?()[]{}#*-_'\"/\\",
    "心肌梗死 答案是 诊断 治疗 患者",
]


def build_tiny_tokenizer(out_dir: str | Path, vocab_size: int = 400, chat_template: bool = True):
    """A byte-level BPE `PreTrainedTokenizerFast` with ChatML special tokens, saved to out_dir."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<pad>",
    )
    if chat_template:
        fast.chat_template = CHATML_TEMPLATE
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return fast


def _tiny_llama_config(tok, hidden_size: int, num_layers: int, **extra):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **extra,
    )


def build_tiny_causal_lm(
    out_dir: str | Path, hidden_size: int = 64, num_layers: int = 2, seed: int = 0, chat_template: bool = True
):
    """A tiny random LlamaForCausalLM plus tokenizer saved as a plain HF folder; returns the path."""
    import torch
    from transformers import LlamaForCausalLM

    out_dir = Path(out_dir)
    tok = build_tiny_tokenizer(out_dir, chat_template=chat_template)
    torch.manual_seed(seed)
    config = _tiny_llama_config(
        tok, hidden_size, num_layers, max_position_embeddings=2048, tie_word_embeddings=False
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out_dir)
    return out_dir


def build_tiny_classifier(out_dir: str | Path, hidden_size: int = 32, num_layers: int = 1, seed: int = 1):
    """A tiny 2-label LlamaForSequenceClassification (a verifier stand-in) with its own tokenizer.

    Its tokenizer has a different vocabulary size and no chat template, so tests catch code that
    assumes the verifier shares the policy's tokenizer.
    """
    import torch
    from transformers import LlamaForSequenceClassification

    out_dir = Path(out_dir)
    tok = build_tiny_tokenizer(out_dir, vocab_size=350, chat_template=False)
    torch.manual_seed(seed)
    config = _tiny_llama_config(tok, hidden_size, num_layers, max_position_embeddings=8192, num_labels=2)
    model = LlamaForSequenceClassification(config)
    model.save_pretrained(out_dir)
    return out_dir
