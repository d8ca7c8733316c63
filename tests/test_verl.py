"""Past one node: verl's parquet export and verl's custom reward function.

verl itself is not installed here (verl 0.9.1 needs transformers<5.11; this project pins 5.23), so
its dataset is read the way verl 0.9.1's RLHFDataset reads it (datasets' parquet loader, the
`prompt` column through the policy's chat template with the generation prompt), and its reward
manager's calls are made the way verl makes them (decoded response, ground truth, reward_kwargs).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time

import pytest
import torch

from huatuo_o1.contract import GROUND_TRUTH, OPEN_QUESTION
from huatuo_o1.io import InputError
from huatuo_o1.rl import verl_reward
from huatuo_o1.rl.data import build_rl_data, prompt_ids, prompt_text
from huatuo_o1.rl.rewards import score_responses
from huatuo_o1.rl.verl_data import VERL_COLUMNS
from huatuo_o1.rl.verl_reward import VerlRewardSettings, compute_score, compute_score_batch
from tests.helpers import REPO, run_script

WELL = "## Thinking\n\nFever and cough suggest pneumonia.\n\n## Final Response\n\n{}"
DEMO = REPO / "data" / "demo_data.json"


@pytest.fixture(autouse=True)
def _fresh_verifier_cache():
    verl_reward._VERIFIERS.clear()
    yield
    verl_reward._VERIFIERS.clear()


def _load_like_verl(path):
    import datasets

    return datasets.load_dataset("parquet", data_files=str(path))["train"]


def _export(tmp_path, tokenizer, data=DEMO, *extra):
    out = tmp_path / "verl"
    r = run_script(
        "scripts/export_verl_data.py",
        "--data_path",
        data,
        "--tokenizer",
        tokenizer,
        "--output_dir",
        out,
        *extra,
    )
    return r, out


# ---------------------------------------------------------------------------------------------
# export


def test_export_writes_verls_columns_with_our_ppo_prompts_and_split(tmp_path, tiny_lm_dir):
    from transformers import AutoTokenizer

    r, out = _export(tmp_path, tiny_lm_dir)
    assert r.returncode == 0, r.stderr
    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    ours = build_rl_data(str(DEMO), tok, seed=42)  # RL_stage2.py's defaults
    assert f"train: {len(ours.train)} rows" in r.stdout and f"val: {len(ours.eval)} rows" in r.stdout
    for split, rows in (("train", ours.train), ("val", ours.eval)):
        ds = _load_like_verl(out / f"{split}.parquet")
        assert tuple(ds.column_names) == VERL_COLUMNS
        assert len(ds) == len(rows) > 0
        for i, (doc, row) in enumerate(zip(ds, rows, strict=True)):
            # verl 0.9.1 tokenizes doc["prompt"] with the chat template and the generation prompt
            ids = tok.apply_chat_template(doc["prompt"], add_generation_prompt=True, tokenize=True)
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
            assert list(ids) == row["input_ids"] == prompt_ids(tok, row["question"])
            text = tok.apply_chat_template(doc["prompt"], add_generation_prompt=True, tokenize=False)
            assert text == prompt_text(tok, row["question"])
            assert doc["prompt"] == [{"role": "user", "content": row["question"]}]
            assert doc["reward_model"] == {"style": "rule", "ground_truth": row["reference"]}
            assert doc["extra_info"] == {"index": i, "split": split, "question": row["question"]}
            assert doc["ability"] == "medical" and doc["data_source"]
    summary = json.loads((out / "export_summary.json").read_text())
    assert summary["train"] == len(ours.train) and summary["val"] == len(ours.eval)
    assert summary["longest_prompt_tokens"] == max(len(x["input_ids"]) for x in ours.train + ours.eval)


def test_export_filters_like_rl_stage2_and_reruns_identically(tmp_path, tiny_lm_dir):
    records = json.loads(DEMO.read_text())[:12]
    records[0] = {**records[0], GROUND_TRUTH: ""}  # no answer: dropped
    records[1] = {
        **records[1],
        OPEN_QUESTION: records[2][OPEN_QUESTION],
        GROUND_TRUTH: "other",
    }  # ambiguous
    data = tmp_path / "problems.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in records))
    r, out = _export(tmp_path, tiny_lm_dir, data, "--seed", "7", "--max_eval_samples", "1")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "export_summary.json").read_text())
    assert (summary["dropped_missing"], summary["dropped_ambiguous"]) == (1, 1)
    assert (summary["train"], summary["val"]) == (9, 1)
    assert "1 without question/answer, 1 ambiguous" in r.stdout
    first = {s: (out / f"{s}.parquet").read_bytes() for s in ("train", "val")}
    r2, _ = _export(tmp_path, tiny_lm_dir, data, "--seed", "7", "--max_eval_samples", "1")
    assert r2.returncode == 0
    assert {s: (out / f"{s}.parquet").read_bytes() for s in ("train", "val")} == first
    assert not list(out.glob(".*.tmp"))


def test_parquet_is_group_readable_and_fsynced(tmp_path, monkeypatch):
    import os
    import stat

    import pyarrow.parquet as pq

    from huatuo_o1 import io
    from huatuo_o1.rl.verl_data import parquet_bytes

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(io.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    monkeypatch.setattr(io, "_UMASK", 0o022)  # the common umask (io reads it once at import)
    path = tmp_path / "train.parquet"
    io.write_file_set(tmp_path / "set.json", {"train": (path, parquet_bytes([]))}, {})
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600
    assert synced  # flushed to disk before the rename
    assert pq.read_table(path).num_rows == 0
    assert not list(tmp_path.glob(".*.tmp"))


def test_export_bad_input_is_one_line_and_exit_2(tmp_path, tiny_lm_dir):
    r, out = _export(tmp_path, tiny_lm_dir, tmp_path / "missing.json")
    assert r.returncode == 2 and r.stderr.strip().startswith("error:") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()
    r, _ = _export(tmp_path, str(tmp_path / "no_tokenizer"))
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr


# ---------------------------------------------------------------------------------------------
# reward: equal to our PPO reward (sequence_scores through RewardHook) on the same responses


def _ppo_and_verl_rewards(tok, verifier, reward_kwargs, answers_for):
    """The same rollouts scored two ways: RL_stage2.py's reward hook as the PPO trainer calls it, and
    verl's naive manager (the response decoded without special tokens, then compute_score)."""
    from huatuo_o1.rl.ppo_reward import RewardHook
    from huatuo_o1.rl.ppo_reward import sequence_scores as get_reward

    data = build_rl_data(str(DEMO), tok, seed=0)
    rows = data.train[:5]
    texts = answers_for(rows)
    pad = tok.pad_token_id
    ctx = max(len(r["input_ids"]) for r in rows)
    resp_ids = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]
    qr = torch.full((len(rows), ctx + max(map(len, resp_ids)) + 2), pad)
    for i, (r, resp) in enumerate(zip(rows, resp_ids, strict=True)):
        qr[i, ctx - len(r["input_ids"]) : ctx] = torch.tensor(r["input_ids"])
        qr[i, ctx : ctx + len(resp)] = torch.tensor(resp)
    _, scores, _ = get_reward(RewardHook(tok, data.table, verifier), qr, pad, ctx)
    verl = [
        compute_score(
            "huatuo_o1/medical_verifiable_problems",
            tok.decode(resp, skip_special_tokens=True),
            r["reference"],
            {"index": i, "question": r["question"], "num_turns": None},
            **reward_kwargs,
        )
        for i, (r, resp) in enumerate(zip(rows, resp_ids, strict=True))
    ]
    return scores.tolist(), verl


def _mixed_answers(rows):
    return [
        WELL.format(rows[0]["reference"]),
        WELL.format(rows[0]["reference"]),  # another row's answer
        "no format at all",
        WELL.format("Aspirin"),
        WELL.format(rows[4]["reference"]),
    ]


def test_compute_score_equals_ppo_reward_exact(tiny_lm_dir):
    from transformers import AutoTokenizer

    from huatuo_o1.rl.rewards import ExactMatchVerifier

    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    ppo, verl = _ppo_and_verl_rewards(tok, ExactMatchVerifier(), {"verifier": "exact"}, _mixed_answers)
    assert verl == pytest.approx(ppo) and verl == [1.0, 0.1, 0.0, 0.1, 1.0]


def test_compute_score_equals_ppo_reward_classifier(tiny_lm_dir, tiny_verifier_dir):
    from transformers import AutoTokenizer

    from huatuo_o1.rl.common import RLScriptArguments, make_verifier

    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    kwargs = {"verifier": "classifier", "reward_model_path": str(tiny_verifier_dir), "verifier_device": "cpu"}
    ppo_verifier = make_verifier(
        RLScriptArguments(verifier="classifier"), str(tiny_verifier_dir)
    )  # as RL_stage2.py
    ppo, verl = _ppo_and_verl_rewards(tok, ppo_verifier, kwargs, _mixed_answers)
    assert verl == pytest.approx(ppo)
    assert 0.0 in verl  # the malformed one
    # the same P(True) as RL_stage2.py's verifier, and the reward rule on top of it
    details = compute_score("s", WELL.format("Aspirin"), "Heparin", details=True, **kwargs)
    (p,) = ppo_verifier.probabilities(["Aspirin"], ["Heparin"])
    assert details["p_true"] == pytest.approx(p, abs=1e-6)
    assert details["score"] == (1.0 if p > 0.4 else 0.1) and details["well_formed"] is True
    # thresholds and values are reward_kwargs, as they are flags of RL_stage2.py
    assert (
        compute_score("s", WELL.format("Aspirin"), "Heparin", reward_threshold=-1, correct_reward=5, **kwargs)
        == 5.0
    )
    assert compute_score("s", WELL.format("Aspirin"), "Heparin", reward_threshold=1, **kwargs) == 0.1


def test_compute_score_equals_ppo_reward_llm_judge(tiny_lm_dir, monkeypatch):
    from transformers import AutoTokenizer

    from huatuo_o1.rl.rewards import LLMJudgeVerifier
    from huatuo_o1.testing.openai_server import FakeOpenAIServer

    def responder(req):  # True when the reference appears twice (in the answer and as reference)
        p = req.prompt
        return "True" if any(p.count(w) >= 2 for w in ("infarction", "meningitidis", "artery")) else "False"

    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-verl-test")
    with FakeOpenAIServer(responder) as srv:
        kwargs = {"verifier": "llm", "judge_model": "fake-model", "judge_api_url": srv.url}
        judge = LLMJudgeVerifier("fake-model", api_key="sk-verl-test", api_url=srv.url)
        ppo, verl = _ppo_and_verl_rewards(tok, judge, kwargs, _mixed_answers)
        auth = {r.headers.get("authorization") for r in srv.requests}
    assert verl == pytest.approx(ppo)
    assert set(verl) >= {0.0, 0.1} and len(srv.requests) == 10
    assert auth == {"Bearer sk-verl-test"}  # the key comes from the environment


def test_batch_entry_point_equals_per_response_calls(tiny_verifier_dir):
    kwargs = {"reward_model_path": str(tiny_verifier_dir), "verifier_device": "cpu"}
    responses = [WELL.format("Aspirin"), "malformed", WELL.format("Right coronary artery")]
    refs = ["Aspirin", "Aspirin", "Right coronary artery"]
    batch = compute_score_batch(["s"] * 3, responses, refs, [None] * 3, **kwargs)
    single = [compute_score("s", r, g, **kwargs) for r, g in zip(responses, refs, strict=True)]
    assert batch == pytest.approx(single) and batch[1] == 0.0
    assert compute_score_batch(["s"], [WELL.format("x")], ["x"], verifier="exact", details=True) == [
        {"score": 1.0, "well_formed": True, "correct": True, "p_true": 1.0}
    ]


# ---------------------------------------------------------------------------------------------
# loaded once per worker, batched across concurrent calls


def test_classifier_is_loaded_once_per_process(tiny_verifier_dir, monkeypatch):
    from huatuo_o1.rl import rewards

    loads = []
    real = rewards.ClassifierVerifier.from_pretrained.__func__

    def counting(cls, path, *a, **k):
        loads.append(path)
        return real(cls, path, *a, **k)

    monkeypatch.setattr(rewards.ClassifierVerifier, "from_pretrained", classmethod(counting))
    kwargs = {"reward_model_path": str(tiny_verifier_dir), "verifier_device": "cpu"}
    threads = [
        threading.Thread(target=compute_score, args=("s", WELL.format(f"a{i}"), "b"), kwargs=kwargs)
        for i in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    compute_score("s", WELL.format("x"), "y", correct_reward=2.0, **kwargs)  # reward values: same model
    assert loads == [str(tiny_verifier_dir)]
    assert len(verl_reward._VERIFIERS) == 1
    compute_score("s", WELL.format("x"), "y", verifier_max_length=100, **kwargs)  # another verifier input
    assert len(loads) == 2


def test_concurrent_calls_are_scored_in_one_pass():
    from huatuo_o1.rl.rewards import Verifier

    class Recording(Verifier):
        def __init__(self):
            self.batches = []

        def probabilities(self, answers, references):
            self.batches.append(list(answers))
            return [1.0 if a == r else 0.0 for a, r in zip(answers, references, strict=True)]

    inner = Recording()
    shared = verl_reward.CoalescingVerifier(inner)
    results = {}

    def call(i):
        results[i] = shared.probabilities([f"a{i}"], ["a0" if i % 2 else f"a{i}"])

    with shared._run_lock:  # a pass is running: the six calls queue up behind it
        threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        while len(shared._queue) < 6:
            time.sleep(0.001)
    for t in threads:
        t.join()
    assert len(inner.batches) == 1 and sorted(inner.batches[0]) == [f"a{i}" for i in range(6)]
    assert results == {i: [0.0 if i % 2 else 1.0] for i in range(6)}
    # a failing pass reaches every waiting caller instead of hanging them
    inner.probabilities = lambda a, r: (_ for _ in ()).throw(RuntimeError("verifier down"))
    with pytest.raises(RuntimeError, match="verifier down"):
        shared.probabilities(["x"], ["y"])


# ---------------------------------------------------------------------------------------------
# reward_kwargs checking, and loading the file the way verl does


def test_reward_kwargs_are_checked():
    with pytest.raises(InputError, match="unknown reward_kwargs key 'treshold'"):
        compute_score("s", WELL.format("x"), "x", verifier="exact", treshold=0.5)
    with pytest.raises(InputError, match="OPENAI_API_KEY") as e:
        compute_score("s", WELL.format("x"), "x", verifier="llm", judge_model="m", judge_api_key="sk-secret")
    assert "sk-secret" not in str(e.value)
    with pytest.raises(InputError, match="reward_model_path"):
        compute_score("s", WELL.format("x"), "x")
    with pytest.raises(InputError, match="judge_model"):
        compute_score("s", WELL.format("x"), "x", verifier="llm")
    with pytest.raises(InputError, match="choose one of"):
        compute_score("s", WELL.format("x"), "x", verifier="bert")
    with pytest.raises(InputError, match="reward_threshold='high' is not a float"):
        compute_score("s", WELL.format("x"), "x", verifier="exact", reward_threshold="high")
    # what Hydra hands over (strings, ints) is typed; verl's own extra kwargs are ignored
    s = VerlRewardSettings.from_kwargs(
        {
            "verifier_batch_size": "16",
            "reward_threshold": 0.5,
            "details": "true",
            "reward_router_address": None,
        }
    )
    assert (s.script_args.verifier_batch_size, s.script_args.reward_threshold, s.details) == (16, 0.5, True)


def test_verl_loads_the_reward_file_by_path(tmp_path):
    """verl's custom_reward_function.path loads the file as a module of its own name, from any
    working directory and without our package on the path."""
    shutil.copytree(REPO / "huatuo_o1", tmp_path / "repo" / "huatuo_o1")
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('custom_module_1', {str(tmp_path / 'repo' / 'huatuo_o1' / 'rl' / 'verl_reward.py')!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "w = '## Thinking\\n\\nx\\n\\n## Final Response\\n\\n'\n"
        "print(m.compute_score('s', w + 'Aspirin', 'aspirin', None, verifier='exact'),"
        " m.compute_score('s', 'bad', 'aspirin', None, verifier='exact'))\n"
        "print(sys.modules['huatuo_o1'].__file__)\n"  # the copy's package, not the installed one
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:2] == ["1.0", "0.0"]
    assert r.stdout.split()[2] == str(tmp_path / "repo" / "huatuo_o1" / "__init__.py")


def test_recipes_are_valid_shell_and_carry_the_papers_settings():
    recipes = REPO / "recipes" / "verl"
    for name in ("ppo_args.sh", "run_ppo_1node.sh", "run_ppo_multinode.sh"):
        assert subprocess.run(["bash", "-n", str(recipes / name)]).returncode == 0, name
    for name in ("run_ppo_1node.sh", "run_ppo_multinode.sh"):
        text = (recipes / name).read_text()
        assert "ppo_args.sh" in text and "verl.trainer.main_ppo" in text and "trainer.nnodes" not in text
    args = (recipes / "ppo_args.sh").read_text()
    assert 'reward.custom_reward_function.path="$REPO/huatuo_o1/rl/verl_reward.py"' in args
    assert "reward.custom_reward_function.name=compute_score" in args
    for setting in (
        "actor_rollout_ref.actor.optim.lr=5e-7",
        "algorithm.kl_ctrl.kl_coef=0.03",
        "algorithm.use_kl_in_reward=True",
        "actor_rollout_ref.actor.ppo_epochs=3",
        "data.max_response_length=1300",
        "actor_rollout_ref.rollout.temperature=0.5",
        "algorithm.gamma=1.0",
        "actor_rollout_ref.actor.clip_ratio_low=0.2",  # what verl's policy loss reads
        "actor_rollout_ref.actor.clip_ratio_high=0.2",
        "critic.cliprange_value=0.2",
        'trainer.nnodes="$NNODES"',
    ):
        assert setting in args, setting
    assert "actor.clip_ratio=" not in args  # no effect in verl 0.9.1's loss
    assert "verl[vllm,fsdp]==0.9.1" in args  # flash-attn for verl's critic loader

    # what the launchers run, with the variables filled in (no verl needed: python is replaced)
    def launched(**env):
        r = subprocess.run(
            ["bash", "-c", f'python() {{ printf "%s\\n" "$@"; }}; source {recipes}/run_ppo_1node.sh x=1'],
            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "GPUS_PER_NODE": "4", **env},
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        return r.stdout.splitlines()

    lines = launched()
    assert lines[:2] == ["-m", "verl.trainer.main_ppo"] and lines[-1] == "x=1"
    assert "trainer.nnodes=1" in lines and "trainer.n_gpus_per_node=4" in lines
    assert f"reward.custom_reward_function.path={REPO}/huatuo_o1/rl/verl_reward.py" in lines
    # the classifier served on the GPUs by default, the same model as the reward function's
    assert "reward.reward_model.enable=True" in lines
    # verl's V1 trainer by default, with the reward manager that restores data_source and the ground
    # truth V1 does not send when the verifier is served colocated; the legacy trainer on request
    assert "trainer.use_v1=True" in lines
    assert "trainer.use_v1=False" in launched(USE_V1="False")
    manager = f"reward.reward_manager.module.path={REPO}/huatuo_o1/rl/verl_reward_manager.py"
    assert manager in lines and "reward.reward_manager.source=importlib" in lines
    assert "reward.reward_manager.name=DatasetFieldsRewardManager" in lines
    # verl's critic engine batches by tokens: MICRO_BATCH full-length sequences (prompt + 1,300)
    tokens = "critic.ppo_max_token_len_per_gpu=", "+critic.ppo_infer_max_token_len_per_gpu="
    assert {t + "2324" for t in tokens} <= set(lines)
    assert {t + "9600" for t in tokens} <= set(launched(MICRO_BATCH="4", MAX_PROMPT_LENGTH="1100"))
    verifier = "reward.reward_model.model_path=FreedomIntelligence/medical_o1_verifier_3B"
    assert verifier in lines
    assert "+reward.custom_reward_function.reward_kwargs.reward_model_path=" + verifier.split("=")[1] in lines
    assert not any(x.startswith("reward.reward_model") for x in launched(VERIFIER_ON_GPU="False"))
    assert not any(x.startswith("reward.reward_model") for x in launched(VERIFIER_KIND="exact"))


# ---------------------------------------------------------------------------------------------
# the classifier on GPUs: served by vLLM in verl's reward-model pool, asked at its /classify route


class _FakeVLLMClassify:
    """A loopback stand-in for vLLM's /classify route: runs the tiny classifier on each token-id
    input and pools the LAST token, as vLLM does for sequence classifiers (not HF's last-non-pad)."""

    def __init__(self, model_dir):
        from transformers import AutoModelForSequenceClassification

        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.requests = []

    def __enter__(self):
        import http.server
        import json as json_

        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json_.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append((self.path, body))
                data = []
                for i, ids in enumerate(body["input"]):
                    with torch.no_grad():
                        hidden = fake.model.model(input_ids=torch.tensor([ids])).last_hidden_state[:, -1]
                        probs = torch.softmax(fake.model.score(hidden).float(), -1)[0].tolist()
                    data.append(
                        {"index": i, "label": str(int(probs[1] > probs[0])), "probs": probs, "num_classes": 2}
                    )
                out = json_.dumps(
                    {"object": "list", "data": data[::-1]}
                ).encode()  # order by index, not position
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _verifier_with_pad_as_eos(src, dst):
    """A copy of the tiny verifier whose tokenizer and config have no pad and no unk: its pad
    becomes the eos (as for Llama-3 verifiers), so the in-process classifier reads the token
    before the final eos."""
    from transformers import AutoConfig, AutoTokenizer

    shutil.copytree(src, dst)
    tok = AutoTokenizer.from_pretrained(src)
    tok.pad_token, tok.unk_token = None, None
    tok.save_pretrained(dst)
    cfg = AutoConfig.from_pretrained(src)
    cfg.pad_token_id = None
    cfg.save_pretrained(dst)
    return dst


@pytest.mark.parametrize("pad_is_eos", [False, True])
def test_served_classifier_equals_in_process_classifier(tmp_path, tiny_verifier_dir, pad_is_eos):
    from huatuo_o1.rl.common import RLScriptArguments, make_verifier

    vdir = str(
        _verifier_with_pad_as_eos(tiny_verifier_dir, tmp_path / "v") if pad_is_eos else tiny_verifier_dir
    )
    local = make_verifier(RLScriptArguments(verifier="classifier", verifier_max_length=120), vdir)
    assert (local.tokenizer.pad_token_id == local.tokenizer.eos_token_id) is pad_is_eos
    responses = [WELL.format("Aspirin"), "malformed", WELL.format("pneumonia " * 80), WELL.format("Heparin")]
    refs = ["Aspirin", "Aspirin", "Community-acquired pneumonia", "Warfarin"]
    kwargs = {"reward_model_path": vdir, "verifier_max_length": 120}
    with _FakeVLLMClassify(vdir) as server:
        served = compute_score_batch(["s"] * 4, responses, refs, [{}] * 4, details=True,
                                     reward_router_address=server.address, **kwargs)  # fmt: skip
        one = compute_score("s", responses[0], refs[0], reward_router_address=server.address, **kwargs)
    expected = score_responses(responses, refs, local)
    assert [d["p_true"] for d in served] == pytest.approx(expected.probabilities, abs=1e-5)
    assert [d["score"] for d in served] == expected.rewards and one == expected.rewards[0]
    path, body = server.requests[0]
    assert path == "/classify" and body["model"] == vdir and len(body["input"]) == 4  # one request per pass
    assert all(len(ids) <= 120 for ids in body["input"])
    ends_with_eos = [ids[-1] == local.tokenizer.eos_token_id for ids in body["input"]]
    assert ends_with_eos == [not pad_is_eos] * 4  # the token the in-process classifier reads is last


def test_served_classifier_failure_is_one_clear_error(tiny_verifier_dir):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    verifier = verl_reward.ServedClassifierVerifier.from_pretrained(
        str(tiny_verifier_dir), address, attempts=1
    )
    with pytest.raises(RuntimeError, match="the served verifier at http://127.0.0.1:.*/classify failed"):
        verifier.probabilities(["a"], ["b"])


# ---------------------------------------------------------------------------------------------
# with verl itself (skipped here: verl 0.9.1 cannot be installed beside transformers 5.23; run
# `pytest tests/test_verl.py -k verl_` in the verl environment)


def test_verl_dataset_reads_our_parquet(tmp_path, tiny_lm_dir):
    rl_dataset = pytest.importorskip("verl.utils.dataset.rl_dataset")
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer

    r, out = _export(tmp_path, tiny_lm_dir)
    assert r.returncode == 0, r.stderr
    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    config = OmegaConf.create(
        {"prompt_key": "prompt", "max_prompt_length": 1024, "truncation": "error", "filter_overlong_prompts": True,
         "filter_overlong_prompts_workers": 1, "cache_dir": str(tmp_path / "cache")}
    )  # fmt: skip
    ds = rl_dataset.RLHFDataset(data_files=str(out / "train.parquet"), tokenizer=tok, config=config)
    ours = build_rl_data(str(DEMO), tok, seed=42).train
    assert len(ds) == len(ours)
    for i in (0, len(ds) - 1):
        item = ds[i]
        assert item["raw_prompt"] == [{"role": "user", "content": ours[i]["question"]}]
        assert item["reward_model"]["ground_truth"] == ours[i]["reference"] and item["index"] == i


def test_verl_naive_reward_manager_calls_our_file(tiny_lm_dir, tiny_verifier_dir):
    pytest.importorskip("verl.experimental.reward_loop.reward_manager.naive")
    import asyncio

    import numpy as np
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from verl import DataProto
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
    from verl.trainer.ppo.reward import get_custom_reward_fn

    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    kwargs = {"reward_model_path": str(tiny_verifier_dir), "verifier_device": "cpu"}
    fn_cfg = {
        "path": str(REPO / "huatuo_o1" / "rl" / "verl_reward.py"),
        "name": "compute_score",
        "reward_kwargs": kwargs,
    }
    fn = get_custom_reward_fn(OmegaConf.create({"reward": {"custom_reward_function": fn_cfg}}))
    texts = [WELL.format(f"answer {i}") for i in range(8)] + ["malformed"]

    def item(text):
        p = tok("question", add_special_tokens=False, return_tensors="pt")["input_ids"]
        r = torch.tensor([tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]])
        resp = torch.cat([r, torch.full((1, 3), tok.pad_token_id)], 1)
        mask = torch.cat([torch.ones_like(p), torch.ones_like(r), torch.zeros(1, 3, dtype=torch.long)], 1)
        return DataProto.from_dict(
            tensors={"prompts": p, "responses": resp, "attention_mask": mask},
            non_tensors={"data_source": np.array(["s"], dtype=object), "extra_info": np.array([{}], dtype=object),
                         "reward_model": np.array([{"ground_truth": "Aspirin"}], dtype=object)},
        )  # fmt: skip

    async def run():
        manager = NaiveRewardManager(None, tok, fn)
        return await asyncio.gather(*(manager.run_single(item(t)) for t in texts))

    got = [o["reward_score"] for o in asyncio.run(run())]
    assert (
        got == pytest.approx([compute_score("s", t, "Aspirin", **kwargs) for t in texts]) and got[-1] == 0.0
    )
