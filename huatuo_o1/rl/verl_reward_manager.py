"""verl's reward manager for our data: verl's `naive` manager, plus the dataset fields that verl's V1
trainer does not hand the reward workers when the verifier is served on the training GPUs.

Why: with the classifier served by verl (`reward.reward_model.enable=True`, colocated with the actor,
the recipes' default), verl 0.9.1's V1 trainer scores a batch after the rollout
(`PPOTrainer._compute_reward_colocate`) and sends the reward workers only `prompts`, `responses`,
`attention_mask` and `raw_prompt`; the `naive` manager reads `data_source` and
`reward_model["ground_truth"]` from each row and stops at the first one (KeyError: 'data_source').

What it does: a row that lacks them gets them back by its prompt. `raw_prompt` is the chat messages
verl's dataset built from the parquet's `prompt` column, and it keys an index over `data.train_files`
and `data.val_files` (the parquet files scripts/export_verl_data.py writes) to the row's
`data_source`, `reward_model` and `extra_info`. The index is built once per reward worker, on the
first row that needs it (one read of both files; about 60 MB for 40,000 problems), and
it is exact: the exporter drops ambiguous prompts (the same prompt with another answer), so a prompt
has one ground truth, and files where one prompt has two are refused. Where two rows share a prompt
and its answer, the first row's `extra_info` is used (our reward does not read it). Rows that carry
the fields (the legacy trainer, V1's rollout-time scoring) are scored exactly as `naive` scores them.

Plug in (the recipes do): `reward.reward_manager.source=importlib`,
`reward.reward_manager.name=DatasetFieldsRewardManager`,
`reward.reward_manager.module.path=<repo>/huatuo_o1/rl/verl_reward_manager.py`. verl loads the file
by path in every reward worker; it needs only verl and pyarrow. Runs in verl's environment only.
"""

import numpy as np
import pyarrow.parquet as pq
from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
from verl.utils.fs import copy_to_local

DATASET_FIELDS = ("data_source", "reward_model", "extra_info")


def prompt_key(messages) -> tuple:
    """The index key of one prompt: its chat messages as (role, content) pairs."""
    return tuple((str(m["role"]), str(m["content"])) for m in messages)


def _files(value) -> list[str]:
    """verl's data.train_files / data.val_files: one path or a list of them."""
    if value is None:
        return []
    return [str(value)] if isinstance(value, str) else [str(v) for v in value]


def build_index(paths) -> dict[tuple, dict]:
    """Every prompt of the parquet files in `paths` mapped to its dataset fields (DATASET_FIELDS).

    Raises ValueError when one prompt has two ground truths (not data scripts/export_verl_data.py
    wrote: it drops such prompts)."""
    index: dict[tuple, dict] = {}
    for path in paths:
        # a local path as it is; an hdfs:// one fetched to the local cache, as verl's dataset does
        table = pq.read_table(copy_to_local(src=path), columns=["prompt", *DATASET_FIELDS])
        for row in table.to_pylist():
            key = prompt_key(row["prompt"])
            fields = {name: row[name] for name in DATASET_FIELDS}
            seen = index.setdefault(key, fields)
            if seen["reward_model"]["ground_truth"] != fields["reward_model"]["ground_truth"]:
                raise ValueError(
                    f"{path}: one prompt has two ground truths in the data files; re-export them with "
                    "scripts/export_verl_data.py (it drops ambiguous prompts)"
                )
    return index


class DatasetFieldsRewardManager(NaiveRewardManager):
    """verl's naive reward manager that restores a row's dataset fields from its prompt when verl
    did not send them (see the module docstring)."""

    def __init__(
        self, config, tokenizer, compute_score, reward_router_address=None, reward_model_tokenizer=None
    ):
        super().__init__(config, tokenizer, compute_score, reward_router_address, reward_model_tokenizer)
        self._index: dict[tuple, dict] | None = None

    def dataset_index(self) -> dict[tuple, dict]:
        """The prompt index over data.train_files and data.val_files, built on first use."""
        if self._index is None:
            data = self.config.data
            self._index = build_index(_files(data.get("train_files")) + _files(data.get("val_files")))
        return self._index

    def with_dataset_fields(self, data):
        """`data` itself when its rows carry the dataset fields, else a copy with them looked up."""
        if all(name in data.non_tensor_batch for name in ("data_source", "reward_model")):
            return data
        if "raw_prompt" not in data.non_tensor_batch:
            raise KeyError("data_source: the reward batch has neither the dataset fields nor raw_prompt")
        index = self.dataset_index()
        rows = []
        for messages in data.non_tensor_batch["raw_prompt"]:
            fields = index.get(prompt_key(messages))
            if fields is None:
                raise KeyError(
                    "data_source: a prompt that is in neither data.train_files nor data.val_files "
                    "(the reward manager looks its ground truth up there)"
                )
            rows.append(fields)
        out = data[:]  # a copy: the caller's batch is left as it was
        for name in DATASET_FIELDS:
            if name not in out.non_tensor_batch:
                column = np.empty(len(rows), dtype=object)
                column[:] = [dict(r[name]) if isinstance(r[name], dict) else r[name] for r in rows]
                out.non_tensor_batch[name] = column
        return out

    async def run_single(self, data) -> dict:
        """The naive manager's score of the last row, with its dataset fields restored if missing."""
        return await super().run_single(self.with_dataset_fields(data[-1:]))
