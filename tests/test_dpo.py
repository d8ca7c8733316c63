"""DPO: pairs from scripted verdicts, the pair maker end to end (resumable), a DPO step that saves."""

from __future__ import annotations

import json

import pytest

from huatuo_o1.contract import GROUND_TRUTH, OPEN_QUESTION
from huatuo_o1.rl.dpo_pairs import build_pairs, main, make_pair
from huatuo_o1.rl.rewards import RewardConfig, Verifier
from huatuo_o1.testing.openai_server import FakeOpenAIServer

WELL = "## Thinking\n\nr\n\n## Final Response\n\n{}"


class Scripted(Verifier):
    """P(correct) = 1 for answers starting with "right"."""

    def probabilities(self, answers, references):
        return [1.0 if a.startswith("right") else 0.0 for a in answers]


def q(i):
    return {"id": f"q{i}", "question": f"Q{i}?", "reference": "x"}


def test_make_pair_takes_the_first_correct_and_the_first_incorrect():
    assert make_pair(["w1", "r1", "w2", "r2"], [False, True, False, True]) == ("r1", "w1")
    assert make_pair(["r1", "r2"], [True, True]) is None
    assert make_pair(["w1"], [False]) is None


def test_pairs_on_scripted_verdicts():
    samples = {
        "q0": [WELL.format("right"), WELL.format("right")],  # all correct: dropped
        "q1": [WELL.format("wrong"), "right but malformed"],  # all incorrect (malformed counts): dropped
        "q2": [WELL.format("wrong"), WELL.format("right"), WELL.format("right 2")],  # mixed: a pair
        "q3": ["", WELL.format("right"), "no format"],  # fewer than n: still a pair
    }
    pairs, counts = build_pairs([q(i) for i in range(5)], samples, Scripted(), RewardConfig(), n=3)
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [
        ("Q2?", WELL.format("right"), WELL.format("wrong")),
        ("Q3?", WELL.format("right"), "no format"),
    ]
    assert (pairs[0]["n_samples"], pairs[0]["n_correct"], pairs[1]["n_samples"]) == (3, 2, 2)
    assert counts == {
        "sampled": 4, "not_sampled": 1, "fewer_than_n_samples": 3, "dropped_all_correct": 1,
        "dropped_all_incorrect": 1, "pairs": 2,
    }  # fmt: skip
    # a response-target policy: the whole output is the answer, nothing is malformed
    pairs, _ = build_pairs([q(1)], samples, Scripted(), RewardConfig(sft_target="response"), n=2)
    assert pairs[0]["chosen"] == "right but malformed"


def test_pair_maker_through_a_server_resumes_without_resampling(tiny_lm_dir, tmp_path):
    data = tmp_path / "p.json"
    data.write_text(json.dumps([{OPEN_QUESTION: f"Q{i} drug?", GROUND_TRUTH: "aspirin"} for i in range(3)]
                               + [{"question": "no open question"}]))  # fmt: skip
    replies = {"Q0": ["aspirin", "heparin"], "Q1": ["aspirin", "aspirin"], "Q2": ["insulin", "aspirin"]}

    def responder(req):  # one request per sample, seeded 42, 43 (eval's server backend)
        return next(v for k, v in replies.items() if k + " " in req.prompt)[req.body["seed"] - 42]

    out = tmp_path / "pairs.jsonl"
    argv = ["--model_path", str(tiny_lm_dir), "--data_path", str(data), "--output", str(out), "--n_samples", "2",
            "--backend", "server", "--verifier", "exact", "--sft_target", "response"]  # fmt: skip
    with FakeOpenAIServer(responder) as srv:
        assert main([*argv, "--api_url", srv.url]) == 0
        first = len(srv.requests)

        class NeverAsked(Verifier):
            def probabilities(self, answers, references):
                raise AssertionError("a rerun asked the verifier again")

        assert main([*argv, "--api_url", srv.url], verifier=NeverAsked()) == 0
        assert len(srv.requests) == first  # every question finished: nothing sampled again, nothing judged
    pairs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [
        ("Q0 drug?", "aspirin", "heparin"),
        ("Q2 drug?", "aspirin", "insulin"),
    ]
    summary = json.loads((tmp_path / "pairs.jsonl.summary.json").read_text())
    assert (
        summary["questions"],
        summary["skipped_rows"],
        summary["pairs"],
        summary["dropped_all_correct"],
    ) == (3, 1, 2, 1)


def test_pair_maker_bad_flags_exit_2(tmp_path, capsys):
    from huatuo_o1.cli import run_main

    with pytest.raises(SystemExit) as e:
        run_main(
            lambda: main(["--model_path", "m", "--data_path", "d.json", "--output", "o", "--n_samples", "1"])
        )
    assert e.value.code == 2 and "--n_samples must be at least 2" in capsys.readouterr().err


def test_dpo_one_step_saves(tmp_path, tiny_lm_dir):
    from transformers import AutoModelForCausalLM

    from huatuo_o1.rl import dpo
    from huatuo_o1.rl.dpo_trainer import build_dpo_trainer

    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "\n".join(
            json.dumps({"prompt": f"Q{i}?", "chosen": "aspirin", "rejected": "heparin"}) for i in range(4)
        )
    )
    s, a, m = dpo.parse_args(
        ["--model_name_or_path", str(tiny_lm_dir), "--dataset_name", str(data), "--output_dir", str(tmp_path / "o"),
         "--run_name", "d", "--per_device_train_batch_size", "2", "--global_batch_size", "2", "--max_steps", "1",
         "--report_to", "none", "--save_strategy", "no", "--max_length", "64"]
    )  # fmt: skip
    assert (a.beta, a.gradient_accumulation_steps) == (1.0, 1)
    trainer = build_dpo_trainer(s, a, m)
    trainer.train()
    assert trainer.state.global_step == 1
    from huatuo_o1.rl.common import final_dir

    trainer.save_model(str(final_dir(a.output_dir, a.run_name)))
    AutoModelForCausalLM.from_pretrained(tmp_path / "o" / "d")
    s, a, _ = dpo.parse_args(["--model_name_or_path", "m", "--output_dir", "o", "--report_to", "none"])
    assert (a.learning_rate, a.beta, a.global_batch_size) == (1e-6, 1.0, 128)


def test_dpo_names_the_pairs_trl_drops_and_refuses_too_few_left(tmp_path, tiny_lm_dir, caplog):
    """trl drops, silently, a pair whose prompt alone fills --max_length: the run says so, and
    refuses to start when the pairs left no longer fill one optimizer step."""
    from huatuo_o1.io import InputError
    from huatuo_o1.rl import dpo
    from huatuo_o1.rl.dpo_trainer import build_dpo_trainer

    data = tmp_path / "pairs.jsonl"
    prompts = ["Q1?", "Q2?", "Q3: " + "why " * 20]  # the chat template alone is ~25 tokens
    data.write_text(
        "\n".join(json.dumps({"prompt": p, "chosen": "aspirin", "rejected": "heparin"}) for p in prompts)
    )

    def build(global_batch):
        s, a, m = dpo.parse_args(
            ["--model_name_or_path", str(tiny_lm_dir), "--dataset_name", str(data), "--output_dir",
             str(tmp_path / "o"), "--per_device_train_batch_size", "1", "--global_batch_size", str(global_batch),
             "--report_to", "none", "--max_length", "32"]
        )  # fmt: skip
        return build_dpo_trainer(s, a, m)

    with caplog.at_level("WARNING", logger="huatuo_o1.rl.dpo_trainer"):
        trainer = build(2)
    assert len(trainer.train_dataset) == 2
    assert "dropped 1 of 3 train pairs whose prompt alone fills --max_length 32: training on 2" in caplog.text
    with pytest.raises(InputError, match="2 training pairs are fewer than one optimizer step of 3 pairs"):
        build(3)


def test_pair_maker_samples_in_process_with_the_hf_backend(tiny_lm_dir, tmp_path):
    data = tmp_path / "p.json"
    data.write_text(json.dumps([{OPEN_QUESTION: "Q0 drug?", GROUND_TRUTH: "aspirin"}]))
    out = tmp_path / "pairs.jsonl"
    argv = ["--model_path", str(tiny_lm_dir), "--data_path", str(data), "--output", str(out), "--n_samples", "2",
            "--backend", "hf", "--max_new_tokens", "4", "--verifier", "exact"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((tmp_path / "pairs.jsonl.summary.json").read_text())
    assert summary["questions"] == 1 and summary["sampled"] == 1  # a random model: no pair, but sampled
    (cached,) = (tmp_path / "pairs.jsonl.samples").glob("*/*.json")  # the samples (verdicts: a subfolder)
    assert len(json.loads(cached.read_text())["outputs"]) == 2
