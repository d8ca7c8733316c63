"""The data contract (huatuo_o1.contract, docs/data_formats.md): one loader, one way to name a config."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from huatuo_o1.contract import GROUND_TRUTH, OPEN_QUESTION, load_dataset_records, split_config
from huatuo_o1.io import InputError

ROOT = Path(__file__).resolve().parents[1]


# what a reference outside the repository looks like (spelled in parts so this file holds none)
OUTSIDE_REFS = ("/".join(("..", "shared")), "/".join(("shared", "CONTRACTS")))


def test_local_json_and_jsonl_are_read_the_same(tmp_path):
    rows = [{OPEN_QUESTION: "q1", GROUND_TRUTH: "a1"}, {OPEN_QUESTION: "q2", GROUND_TRUTH: "a2"}]
    (tmp_path / "d.json").write_text(json.dumps(rows), encoding="utf-8")
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    assert load_dataset_records(str(tmp_path / "d.json")) == rows
    assert load_dataset_records(str(tmp_path / "d.jsonl")) == rows


@pytest.mark.parametrize(
    "name", ["./missing.json", "missing.jsonl", "./no/such/folder", "a/b/c", "~/no-such-x"]
)
def test_missing_local_sources_are_one_line_errors(name):
    with pytest.raises(InputError, match="SFT data file not found") as e:
        load_dataset_records(name, what="SFT data")
    assert "\n" not in str(e.value)


def test_config_suffix_is_canonical_and_data_config_an_alias():
    assert split_config("org/name:zh") == ("org/name", "zh")
    assert split_config("org/name", "zh") == ("org/name", "zh")  # the older --data_config
    assert split_config("org/name:zh", "zh") == ("org/name", "zh")
    with pytest.raises(InputError, match="names configuration 'zh' but --data_config says 'en'"):
        split_config("org/name:zh", "en")


def test_hub_name_with_config_reaches_datasets_offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="cannot load dataset 'no-such-org/no-such-dataset:en'"):
        load_dataset_records("no-such-org/no-such-dataset:en")


def test_sft_and_rl_load_through_the_same_loader(tmp_path):
    """SFT's --data_config and RL's suffix name the same thing; a conflict is refused by both."""
    from huatuo_o1.rl.data import load_verifiable_problems
    from huatuo_o1.train.sft_data import load_sft_records

    with pytest.raises(InputError, match="but --data_config says"):
        load_sft_records("org/name:zh", "en")
    with pytest.raises(InputError, match="dataset file not found"):
        load_verifiable_problems(str(tmp_path / "missing.json"))


def test_nothing_in_the_repository_points_outside_it():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    hits = []
    for f in files:
        path = ROOT / f
        if f == "tests/test_contract.py" or path.suffix not in (
            ".py",
            ".md",
            ".sh",
            ".yaml",
            ".toml",
            ".txt",
        ):
            continue
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if any(ref in text for ref in OUTSIDE_REFS):
            hits.append(f)
    assert hits == []
