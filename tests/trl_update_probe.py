"""One loss and its gradient for GRPO, RLOO and DPO under the trl on `sys.path`, written to JSON
(tests/test_trl_update.py runs it under the installed trl and under a reference trl).

    trl_update_probe.py <policy dir> <work dir> <out.json>

Each trainer is built by our own code (`build_grpo_trainer`, `build_rloo_trainer`,
`build_dpo_trainer`) from the same tiny policy and data. GRPO and RLOO get the same fixed rollout
(prompt and completion ids with padding, advantages, old and reference log-probabilities), so the
sampling does not enter; DPO takes the first batch of its own data loader. Written: the loss, the
completion log-probabilities, the gradient, the stop tokens, and DPO's batch and logged metrics.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from huatuo_o1.contract import GROUND_TRUTH, OPEN_QUESTION

BATCH, PROMPT, COMPLETION = 4, 5, 8
# completion tokens per row (the rest is padding)
COMPLETION_LENGTHS = (8, 5, 8, 3)


def fixed_rollout(vocab_size: int) -> dict:
    import torch

    g = torch.Generator().manual_seed(1)
    prompt_ids = torch.randint(5, vocab_size, (BATCH, PROMPT), generator=g)
    prompt_mask = torch.ones(BATCH, PROMPT, dtype=torch.long)
    prompt_mask[0, :2] = 0  # a left-padded prompt
    completion_ids = torch.randint(5, vocab_size, (BATCH, COMPLETION), generator=g)
    completion_mask = torch.zeros(BATCH, COMPLETION, dtype=torch.long)
    for row, n in enumerate(COMPLETION_LENGTHS):
        completion_mask[row, :n] = 1
    old = -5 + 0.1 * torch.randn(BATCH, COMPLETION, generator=g)
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": torch.randn(BATCH, generator=g),
        "old_per_token_logps": old,
        "old_logps": (old * completion_mask).sum(1),  # RLOO's sequence-level form
        "ref_per_token_logps": -5 + 0.1 * torch.randn(BATCH, COMPLETION, generator=g),
        "num_items_in_batch": completion_mask.sum(),
    }


def gradient(model) -> list[float]:
    import torch

    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).tolist()


def group_step(algo: str, policy: str, data: Path, common: list[str]) -> dict:
    """GRPO or RLOO: the loss of the fixed rollout, its gradient, and the log-probabilities."""
    import importlib

    import torch

    cli = importlib.import_module(f"huatuo_o1.rl.{algo}")
    plumbing = importlib.import_module(f"huatuo_o1.rl.{algo}_trainer")
    argv = ["--model_name_or_path", policy, "--dataset_name", str(data), "--verifier", "exact",
            "--per_device_train_batch_size", "4", "--num_generations", "2",
            "--max_completion_length", str(COMPLETION), "--beta", "0.03", *common]  # fmt: skip
    if algo == "rloo":  # its default is the paper's 128
        argv += ["--global_batch_size", "4"]
    trainer = getattr(plumbing, f"build_{algo}_trainer")(*cli.parse_args(argv))
    inputs = fixed_rollout(trainer.model.config.vocab_size)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop
    trainer.model.train()
    trainer.model.zero_grad()
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    with torch.no_grad():
        logps = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, COMPLETION)[0]
    loss = trainer.compute_loss(trainer.model, inputs)
    loss.backward()
    stops = getattr(trainer, "eos_token_ids", None) or [trainer.processing_class.eos_token_id]
    return {
        "loss": loss.item(),
        "logps": [row[:n] for row, n in zip(logps.tolist(), COMPLETION_LENGTHS, strict=True)],
        "grad": gradient(trainer.model),
        "stop_tokens": sorted(stops),
    }


def dpo_step(policy: str, pairs: Path, common: list[str]) -> dict:
    from huatuo_o1.rl import dpo, dpo_trainer

    argv = ["--model_name_or_path", policy, "--dataset_name", str(pairs), "--per_device_train_batch_size", "4",
            "--global_batch_size", "4", "--max_length", "64", *common]  # fmt: skip
    trainer = dpo_trainer.build_dpo_trainer(*dpo.parse_args(argv))
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.current_gradient_accumulation_steps = 1
    trainer.model.train()
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    return {
        "loss": loss.item(),
        "input_ids": batch["input_ids"].tolist(),
        "grad": gradient(trainer.model),
        "metrics": {k: v[-1] for k, v in trainer._metrics["train"].items() if v},
    }


def main(policy: str, work: str, out: str) -> None:
    import trl

    work_dir = Path(work)
    data = work_dir / "problems.json"
    data.write_text(json.dumps([{OPEN_QUESTION: f"Q{i}?", GROUND_TRUTH: f"a{i}"} for i in range(8)]))
    pairs = work_dir / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps({"prompt": f"Question {i}?", "chosen": f"## Thinking\n\nok\n\n## Final Response\n\n{i}",
                        "rejected": f"no {i}" + " x" * i}) + "\n"
            for i in range(8)
        )
    )  # fmt: skip
    common = ["--output_dir", str(work_dir / "out"), "--report_to", "none", "--seed", "0"]
    result = {
        "trl": trl.__version__,
        "grpo": group_step("grpo", policy, data, common),
        "rloo": group_step("rloo", policy, data, common),
        "dpo": dpo_step(policy, pairs, common),
    }
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:4])
