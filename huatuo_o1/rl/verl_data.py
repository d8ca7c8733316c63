"""verl's RL data: our verifiable problems written as the parquet files verl's PPO trainer reads.

verl (0.9.1) reads `data.train_files` / `data.val_files` with its `RLHFDataset`: one row per prompt,
the chat messages in the `prompt` column (`data.prompt_key`), which verl's rollout turns into token
ids with the policy tokenizer's chat template and the generation prompt. Its reward workers hand
`data_source`, `reward_model["ground_truth"]` and `extra_info` to the custom reward function
(huatuo_o1.rl.verl_reward).

What this module does:

1. Build the RL data exactly as RL_stage2.py does (rl.common.load_tokenizer_and_data, i.e.
   rl.data.build_rl_data with the policy tokenizer): same loader (contract: local JSON/JSONL or hub
   name[:config]), same dropping of rows without question or answer, of ambiguous prompts and (with
   `max_prompt_length`) of over-long prompts, and the same seeded split (10%, at most 200 held out).
2. Write each row in verl's shape: `data_source`, `prompt` (one user turn holding the question: the
   chat template then gives verl the very token ids our PPO trains on; tested), `ability`,
   `reward_model` {`style`, `ground_truth`}, `extra_info` {`index`, `split`, `question`}.
3. `train.parquet` and `val.parquet` are written with an explicit schema (so an empty split still
   has verl's columns) as one set with the summary (io.write_file_set: temporary files fsynced,
   then renamed): a killed export leaves the old pair or the new one, never half of a file or a
   mix of two runs; a rerun writes the same bytes again. They get the usual permissions (0666 less
   the umask, so 0644 under the common 022: the group can read them).

`index` is the row's position in its split (the order RL_stage2.py trains in before its own
shuffle); `question` repeats the open-ended question so logs and rollout dumps can name the problem.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DATA_SOURCE = "huatuo_o1/medical_verifiable_problems"
ABILITY = "medical"
REWARD_STYLE = "rule"  # metadata only: verl does not read it; the reward is our custom function
SPLIT_FILES = {"train": "train.parquet", "val": "val.parquet"}
VERL_COLUMNS = ("data_source", "prompt", "ability", "reward_model", "extra_info")
SUMMARY_FILE = "export_summary.json"


def user_turn(question: str) -> list[dict]:
    """The chat messages of one RL prompt: a single user turn holding the question."""
    return [{"role": "user", "content": question}]


def verl_row(question: str, reference: str, index: int, split: str, data_source: str = DATA_SOURCE) -> dict:
    """One row of verl's RL parquet for one verifiable problem."""
    return {
        "data_source": data_source,
        "prompt": user_turn(question),
        "ability": ABILITY,
        "reward_model": {"style": REWARD_STYLE, "ground_truth": reference},
        "extra_info": {"index": index, "split": split, "question": question},
    }


def _schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("data_source", pa.string()),
            ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
            ("ability", pa.string()),
            ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
            (
                "extra_info",
                pa.struct([("index", pa.int64()), ("split", pa.string()), ("question", pa.string())]),
            ),
        ]
    )


def parquet_bytes(rows: list[dict]) -> bytes:
    """Rows with verl's columns as the bytes of a parquet file (serialised in memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=_schema()), sink)
    return sink.getvalue().to_pybytes()


@dataclass
class ExportSummary:
    """What an export wrote and dropped (also saved as export_summary.json beside the parquet files)."""

    train: int
    val: int
    dropped_missing: int
    dropped_ambiguous: int
    longest_prompt_tokens: int
    data_path: str
    tokenizer: str
    seed: int
    train_file: str
    val_file: str

    def lines(self) -> list[str]:
        return [
            f"train: {self.train} rows -> {self.train_file}",
            f"val: {self.val} rows -> {self.val_file}",
            f"dropped: {self.dropped_missing} without question/answer, "
            f"{self.dropped_ambiguous} ambiguous (same prompt, other answer)",
            f"longest prompt: {self.longest_prompt_tokens} policy tokens "
            "(set verl's data.max_prompt_length at least this high)",
        ]


def export_verl_data(
    data_path: str,
    tokenizer_path: str,
    output_dir: str | Path,
    seed: int = 42,
    eval_fraction: float = 0.1,
    max_eval_samples: int = 200,
    max_prompt_length: int | None = None,
    data_source: str = DATA_SOURCE,
) -> ExportSummary:
    """Build the RL data as RL_stage2.py does and write verl's train.parquet and val.parquet."""
    from huatuo_o1.io import write_file_set
    from huatuo_o1.rl.common import RLScriptArguments, load_tokenizer_and_data

    rl_args = RLScriptArguments(
        dataset_name=data_path,
        eval_fraction=eval_fraction,
        max_eval_samples=max_eval_samples,
        max_prompt_length=max_prompt_length,
    )
    _, data = load_tokenizer_and_data(tokenizer_path, rl_args, seed)
    out = Path(output_dir)
    paths, files = {}, {}
    for split, rows in (("train", data.train), ("val", data.eval)):
        records = [verl_row(r["question"], r["reference"], i, split, data_source) for i, r in enumerate(rows)]
        paths[split] = out / SPLIT_FILES[split]
        files[split] = (paths[split], parquet_bytes(records))
    if not data.eval:
        log.warning("the validation split is empty (too few rows): verl needs val rows to validate")
    summary = ExportSummary(
        train=len(data.train),
        val=len(data.eval),
        dropped_missing=data.dropped_missing,
        dropped_ambiguous=data.dropped_ambiguous,
        longest_prompt_tokens=max(len(r["input_ids"]) for r in data.train + data.eval),
        data_path=data_path,
        tokenizer=tokenizer_path,
        seed=seed,
        train_file=str(paths["train"]),
        val_file=str(paths["val"]),
    )
    # train and val are one set, recorded in the summary: a killed export never mixes two runs
    write_file_set(out / SUMMARY_FILE, files, asdict(summary))
    return summary


# ---------------------------------------------------------------------------------------------
# Command line: scripts/export_verl_data.py

USAGE = """Write verl's RL parquet files (train.parquet, val.parquet) from our verifiable problems.

    python scripts/export_verl_data.py --data_path FreedomIntelligence/medical-o1-verifiable-problem \
        --tokenizer FreedomIntelligence/HuatuoGPT-o1-8B --output_dir data/verl

Same rows, prompts and split as RL_stage2.py with the same --seed / --eval_fraction /
--max_eval_samples / --max_prompt_length. The logic lives in huatuo_o1/rl/verl_data.py; the reward
verl calls is huatuo_o1/rl/verl_reward.py; launch recipes are in recipes/verl/.
"""


DATA_FLAGS = ("eval_fraction", "max_eval_samples", "max_prompt_length")  # RL_stage2.py's, same declaration


def make_parser() -> argparse.ArgumentParser:
    """The command line's flags."""
    from huatuo_o1.cli import add_dataclass_args
    from huatuo_o1.rl.common import RLScriptArguments
    from huatuo_o1.rl.verl_data import DATA_SOURCE

    rl = {f.name: f for f in dataclasses.fields(RLScriptArguments)}
    p = argparse.ArgumentParser(description=USAGE.split("\n\n")[0])
    p.add_argument("--data_path", "--dataset_name", required=True, help=rl["dataset_name"].metadata["help"])
    p.add_argument(
        "--tokenizer", required=True, help="The policy (its tokenizer builds and measures prompts)."
    )
    p.add_argument(
        "--output_dir", required=True, help="Folder for train.parquet, val.parquet, export_summary.json."
    )
    p.add_argument("--seed", type=int, default=42, help="Split seed (RL_stage2.py's --seed).")
    add_dataclass_args(p, RLScriptArguments, exclude=[n for n in rl if n not in DATA_FLAGS])
    p.add_argument("--data_source", default=DATA_SOURCE, help="verl's data_source column (its metrics key).")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = make_parser()
    return p.parse_args(argv)


def main(argv=None) -> int:
    import logging

    from huatuo_o1.rl.verl_data import export_verl_data

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    summary = export_verl_data(
        args.data_path,
        args.tokenizer,
        args.output_dir,
        seed=args.seed,
        eval_fraction=args.eval_fraction,
        max_eval_samples=args.max_eval_samples,
        max_prompt_length=args.max_prompt_length,
        data_source=args.data_source,
    )
    print("\n".join(summary.lines()))
    return 0
