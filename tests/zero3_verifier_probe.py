"""Run under `accelerate launch` (tests/test_launch.py): the verifier's P(True) as the RL scripts
compute it, written to a JSON file.

    probe.py <verifier dir> <out.json>

It builds TrainingArguments first (under a ZeRO-3 config this makes later loads partitioned, as in
RL_stage2*.py), records that a plain load is partitioned there, then scores fixed texts with
(1) the verifier as GRPO's reward function uses it (`make_verifier`, a plain module) and (2) the
same verifier inside PPO's reward hook after trl's `prepare_deepspeed` (an inference engine).
"""

from __future__ import annotations

import json
import sys
import tempfile

RESPONSES = ["## Thinking\nok\n## Final Response\ndrug 1", "the answer is drug 2", "drug 3", "no idea"]
REFERENCES = ["drug 1", "drug 1", "drug 3", "drug 0"]


def main(verifier_dir: str, out_path: str) -> None:
    from accelerate import Accelerator
    from transformers import AutoModelForSequenceClassification, TrainingArguments
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    from huatuo_o1.rl.common import RLScriptArguments, make_verifier
    from huatuo_o1.train.multi_gpu import embedding_rows

    args = TrainingArguments(output_dir=tempfile.mkdtemp(), report_to=[], use_cpu=True)
    zero3 = is_deepspeed_zero3_enabled()
    plain = AutoModelForSequenceClassification.from_pretrained(verifier_dir)
    partitioned_shape = int(plain.get_input_embeddings().weight.shape[0])

    verifier = make_verifier(RLScriptArguments(verifier="classifier"), verifier_dir)
    direct = verifier.probabilities(RESPONSES, REFERENCES)

    engine_probs = None
    accelerator = Accelerator()
    if accelerator.state.deepspeed_plugin is not None:
        from transformers.integrations.deepspeed import propagate_args_to_deepspeed
        from trl.models.utils import prepare_deepspeed

        propagate_args_to_deepspeed(accelerator, args)  # the "auto" batch sizes, as the Trainer fills them
        engine = prepare_deepspeed(verifier.model, accelerator)
        verifier.model = engine.module  # ZeRO-3 hooks live on the module: calls gather its weights
        engine_probs = verifier.probabilities(RESPONSES, REFERENCES)

    result = {
        "zero3": zero3,
        "plain_load_embedding_shape": partitioned_shape,
        "plain_load_embedding_rows": embedding_rows(plain),
        "p_true": direct,
        "p_true_engine": engine_probs,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
