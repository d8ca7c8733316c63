"""Our parquet export read by verl 0.9.1 itself: the legacy TaskRunner's dataset (create_rl_dataset ->
RLHFDataset, built from the recipe's data.* settings) and the prompt token ids verl's rollout makes
from each row (the single-turn agent loop's Continuous Token builder), against RL_stage2.py's.

Runs in the verl environment only (bash scripts/setup_verl_env.sh); skipped elsewhere.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("verl")

from huatuo_o1.rl.data import build_rl_data  # noqa: E402
from tests.helpers import REPO, run_script  # noqa: E402
from tests.verl_real.recipe import compose, launcher_args, validate  # noqa: E402

DEMO = REPO / "data" / "demo_data.json"


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_lm_dir):
    out = tmp_path_factory.mktemp("verl_data")
    r = run_script(
        "scripts/export_verl_data.py", "--data_path", DEMO, "--tokenizer", tiny_lm_dir, "--output_dir", out
    )
    assert r.returncode == 0, r.stderr
    return out, json.loads((out / "export_summary.json").read_text())


def _taskrunner_datasets(tiny_lm_dir, data_dir, **env):
    """What verl's legacy TaskRunner.run builds before its workers: the validated config, the
    policy's tokenizer (HFModelConfig) and the train / val datasets (create_rl_dataset)."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo.utils import create_rl_dataset, create_rl_sampler
    from verl.utils.config import omega_conf_to_dataclass

    config = compose(launcher_args(POLICY=str(tiny_lm_dir), DATA_DIR=str(data_dir), **env))
    validate(config)
    OmegaConf.resolve(config)
    model_config = omega_conf_to_dataclass(config.actor_rollout_ref.model)
    tok = model_config.tokenizer
    datasets = {}
    for split, files in (("train", config.data.train_files), ("val", config.data.val_files)):
        datasets[split] = create_rl_dataset(
            files, config.data, tok, model_config.processor, is_train=split == "train"
        )
    create_rl_sampler(config.data, datasets["train"])
    return config, model_config, datasets


def test_verls_dataset_and_rollout_prompts_are_our_ppo_prompts(exported, tiny_lm_dir):
    from transformers import AutoTokenizer
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

    out, summary = exported
    config, model_config, datasets = _taskrunner_datasets(tiny_lm_dir, out)
    ours = build_rl_data(str(DEMO), AutoTokenizer.from_pretrained(tiny_lm_dir), seed=42)  # RL_stage2.py's
    # the builder verl's single-turn agent loop tokenizes raw_prompt with
    builder = create_continuous_token_builder(
        model_config.tokenizer,
        hf_model_type=model_config.hf_config.model_type,
        chat_template_kwargs=config.data.get("apply_chat_template_kwargs", {}),
    )
    for split, rows in (("train", ours.train), ("val", ours.eval)):
        ds = datasets[split]
        assert len(ds) == len(rows) == summary[split] > 0
        for i, row in enumerate(rows):
            item = ds[i]
            assert item["raw_prompt"] == [{"role": "user", "content": row["question"]}]
            assert builder.build_initial_tokens(item["raw_prompt"]) == row["input_ids"]
            # what the reward workers read
            assert item["data_source"] == "huatuo_o1/medical_verifiable_problems"
            assert item["reward_model"]["ground_truth"] == row["reference"]
            assert item["extra_info"] == {"index": i, "split": split, "question": row["question"]}
    assert summary["longest_prompt_tokens"] == max(len(r["input_ids"]) for r in ours.train + ours.eval)


def test_the_summarys_longest_prompt_is_verls_filter_limit(exported, tiny_lm_dir):
    """data.max_prompt_length = export_summary.json's longest_prompt_tokens keeps every row in
    verl's overlong-prompt filter; one token less drops the longest prompt (so the count is verl's)."""
    out, summary = exported
    longest = summary["longest_prompt_tokens"]
    _, _, at = _taskrunner_datasets(tiny_lm_dir, out, MAX_PROMPT_LENGTH=str(longest))
    _, _, below = _taskrunner_datasets(tiny_lm_dir, out, MAX_PROMPT_LENGTH=str(longest - 1))
    assert (len(at["train"]), len(at["val"])) == (summary["train"], summary["val"])
    assert len(below["train"]) + len(below["val"]) < summary["train"] + summary["val"]
