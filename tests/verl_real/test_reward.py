"""verl 0.9.1's reward path calling our reward manager (huatuo_o1/rl/verl_reward_manager.py) and
reward function (huatuo_o1/rl/verl_reward.py) by file path, on the batches verl itself builds, for
both trainer versions of recipes/verl/ppo_args.sh (V1 by default, legacy with USE_V1=False).

What is verl's own code here: the recipe's config (composed as main_ppo does); the V1 trainer
(PPOTrainerSync, as TaskRunnerV1 picks it) with its dataloader, `_validate`, replay buffer, agent loop
(AgentLoopWorkerTQ: tokenization, the TransferQueue layout) and `_compute_reward_colocate`; the
legacy trainer's dataset, dataloader and `_validate` (RayPPOTrainer) with its agent loop
(AgentLoopWorker); the reward loop (RewardLoopManager.compute_rm_score, RewardLoopWorker, the reward
manager and get_custom_reward_fn loading our files by path). What stands in: the LLM behind the
rollout (scripted replies), the served verifier (a loopback `/classify` that runs the tiny
classifier as vLLM does), Ray (actors are called in this process: a handle whose
`.method.remote(...)` is the method itself, `ray.get` runs the coroutines); V1's TransferQueue is
the real one, its actors in this process (tests/verl_real/v1.py).

Runs in the verl environment only (bash scripts/setup_verl_env.sh); skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("verl")

import torch  # noqa: E402

from huatuo_o1.formats import answer_for_target  # noqa: E402
from huatuo_o1.rl import verl_reward  # noqa: E402
from huatuo_o1.rl.data import build_rl_data  # noqa: E402
from huatuo_o1.rl.rewards import UNKNOWN_ANSWER  # noqa: E402
from huatuo_o1.rl.verl_reward import ServedClassifierVerifier  # noqa: E402
from tests.helpers import REPO, run_script  # noqa: E402
from tests.test_verl import _FakeVLLMClassify  # noqa: E402
from tests.verl_real.recipe import compose, launcher_args  # noqa: E402
from tests.verl_real.v1 import in_process_agent_loop_manager, in_process_transfer_queue  # noqa: E402

DEMO = REPO / "data" / "demo_data.json"
WELL = "## Thinking\n\nFever and cough suggest pneumonia.\n\n## Final Response\n\n{}"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, tiny_lm_dir):
    out = tmp_path_factory.mktemp("verl_data")
    r = run_script(
        "scripts/export_verl_data.py", "--data_path", DEMO, "--tokenizer", tiny_lm_dir, "--output_dir", out
    )
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture
def loop():
    """One event loop for this process's "actors" (verl's workers take the current loop at init)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    verl_reward._VERIFIERS.clear()
    yield loop
    loop.close()
    asyncio.set_event_loop(None)


@pytest.fixture
def verifier(tiny_verifier_dir):
    with _FakeVLLMClassify(tiny_verifier_dir) as server:
        yield server


class _Handle:
    """A Ray actor handle for an object in this process: `handle.method.remote(...)` calls it."""

    def __init__(self, obj):
        self._obj = obj

    def __getattr__(self, name):
        return SimpleNamespace(remote=getattr(self._obj, name))


class _LLM:
    """The rollout's LLM server: a scripted reply (with eos) for each prompt's token ids."""

    def __init__(self, tok, replies: dict[tuple, str]):
        self.tok, self.replies = tok, replies

    async def generate(self, *, prompt_ids, **_):
        from verl.workers.rollout.replica import TokenOutput

        text = self.replies[tuple(prompt_ids)]
        return TokenOutput(
            token_ids=self.tok(text, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]
        )


def _replies(tok):
    """Every demo prompt's reply: right, malformed or wrong, in turn within each split (keys:
    RL_stage2.py's prompt ids)."""
    data = build_rl_data(str(DEMO), tok, seed=42)
    kinds = (lambda r: WELL.format(r["reference"]), lambda r: "no format", lambda r: WELL.format("Heparin"))
    return {
        tuple(r["input_ids"]): kinds[i % 3](r) for rows in (data.train, data.eval) for i, r in enumerate(rows)
    }


def _setup(monkeypatch, loop, tiny_lm_dir, tiny_verifier_dir, data_dir, router, *extra, **env):
    """The recipe's config and verl's reward loop + rollout worker for it, in this process."""
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
    from verl.experimental.reward_loop import reward_loop
    from verl.trainer.ppo.reward import resolve_reward_manager_cls

    env = {"POLICY": str(tiny_lm_dir), "VERIFIER": str(tiny_verifier_dir), "DATA_DIR": str(data_dir),
           "TRAIN_BATCH": "4", "REWARD_WORKERS": "2", **env}  # fmt: skip
    extra = ("data.dataloader_num_workers=0", *extra)  # no loader processes on a small CI machine
    config = compose(launcher_args("recipes/verl/run_ppo_1node.sh", *extra, **env))
    # ray.get over the in-process "actors": their coroutines, run on this process's loop
    monkeypatch.setattr(
        reward_loop, "ray", SimpleNamespace(get=lambda refs: [loop.run_until_complete(r) for r in refs])
    )
    manager = reward_loop.RewardLoopManager.__new__(reward_loop.RewardLoopManager)
    manager.config = config
    manager.reward_model_manager = None  # the served verifier is the loopback /classify: nothing to wake
    manager.reward_router_address = router if config.reward.reward_model.enable else None
    manager.reward_manager_cls = resolve_reward_manager_cls(config)
    manager.reward_loop_workers = [
        _Handle(reward_loop.RewardLoopWorker(config, manager.reward_router_address))
        for _ in range(config.reward.num_workers)
    ]
    tok = manager.reward_loop_workers[0]._obj.input_tokenizer
    rollout = AgentLoopWorker(config, _LLM(tok, _replies(tok)), None, manager.reward_loop_worker_handles)
    return config, manager, rollout, tok


def _expected(rows, kwargs, router=None):
    """Our compute_score on the same (decoded response, ground truth) pairs, called directly."""
    extra = {"reward_router_address": router} if router else {}
    return [
        verl_reward.compute_score(r["data_source"], r["output"], r["gt"], **kwargs, **extra) for r in rows
    ]


def _asked(verifier) -> list[list[int]]:
    """Every input the served verifier has been asked to classify so far."""
    return [ids for path, body in verifier.requests if path == "/classify" for ids in body["input"]]


def _assert_read_against_their_references(asked, rows, tiny_verifier_dir, verifier):
    """The served verifier read each row's response against that row's own reference: its inputs
    are our classifier's for (answer, ground truth) of the rows (the legacy trainer also scores the
    copies it pads a batch with). The scores alone would not show a wrong reference: the tiny
    classifier barely reads it."""
    served = ServedClassifierVerifier.from_pretrained(str(tiny_verifier_dir), verifier.address)
    answers = [answer_for_target(r["output"]) or UNKNOWN_ANSWER for r in rows]
    expected = served.read_ids(answers, [r["gt"] for r in rows])
    assert {tuple(ids) for ids in asked} == {tuple(ids) for ids in expected}


def test_legacy_trainer_validation_scores_with_our_reward_file(
    monkeypatch, loop, verifier, tiny_lm_dir, tiny_verifier_dir, data_dir, tmp_path
):
    """The legacy trainer (USE_V1=False), classifier served on the GPUs: verl's own `_validate`
    hands the reward workers the rollout with data_source / reward_model / extra_info, and every
    validation score is our compute_score on the decoded response."""
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer, Role

    dump = tmp_path / "val"
    config, manager, rollout, tok = _setup(monkeypatch, loop, tiny_lm_dir, tiny_verifier_dir, data_dir,
                                           verifier.address, f"trainer.validation_data_dir={dump}",
                                           USE_V1="False")  # fmt: skip
    assert config.trainer.use_v1 is False and config.reward.reward_model.enable is True
    assert manager.reward_loop_worker_handles is None  # colocated verifier: scored after the rollout
    trainer = RayPPOTrainer(config=config, tokenizer=tok, role_worker_mapping={Role.ActorRolloutRef: object},
                            resource_pool_manager=None)  # fmt: skip
    trainer.async_rollout_manager = SimpleNamespace(
        generate_sequences=lambda batch: loop.run_until_complete(rollout.generate_sequences(batch))
    )
    trainer.checkpoint_manager = SimpleNamespace(sleep_replicas=lambda: None, update_weights=lambda *a: None)
    trainer.reward_loop_manager = manager
    trainer.global_steps = 0
    metrics = trainer._validate()
    trainer._shutdown_dump_executor()
    asked = _asked(verifier)  # before _expected asks it again

    rows = [json.loads(line) for line in (dump / "0.jsonl").read_text().splitlines()]
    assert len(rows) == len(trainer.val_dataset) > 0
    source = "huatuo_o1/medical_verifiable_problems"
    for r in rows:
        r["data_source"], r["gt"] = source, r["gts"]
    _assert_read_against_their_references(asked, rows, tiny_verifier_dir, verifier)
    kwargs = dict(config.reward.custom_reward_function.reward_kwargs)
    assert [r["score"] for r in rows] == pytest.approx(_expected(rows, kwargs, verifier.address))
    assert {r["score"] for r in rows} >= {0.0}  # a malformed reply among them
    assert metrics[f"val-core/{source}/acc/mean@1"] == pytest.approx(
        sum(r["score"] for r in rows) / len(rows)
    )


def _v1_validate(monkeypatch, loop, verifier, tiny_lm_dir, tiny_verifier_dir, data_dir, dump, *extra, **env):
    """verl's V1 trainer (the class main_ppo's TaskRunnerV1 picks for the recipe's config) running
    its own `_validate` over the exported val split: verl's dataloader, agent loop, replay buffer,
    `_compute_reward_colocate` and reward loop on a real TransferQueue, with Ray and the LLM standing
    in. Returns the config, the trainer, its metrics and what TransferQueue still holds after it."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo.v1 import get_trainer_cls

    config, manager, _, tok = _setup(monkeypatch, loop, tiny_lm_dir, tiny_verifier_dir, data_dir, verifier.address,
                                     f"trainer.validation_data_dir={dump}", *extra, **env)  # fmt: skip
    config.transfer_queue.enable = True  # as TaskRunnerV1.run does
    OmegaConf.resolve(config)
    with in_process_transfer_queue(monkeypatch, config.transfer_queue) as tq:
        trainer = get_trainer_cls(config.trainer.v1.trainer_mode)(config=config)
        trainer._init_tokenizer()
        trainer._init_dataloader()
        trainer._init_dump_executor()
        trainer.agent_loop_manager = in_process_agent_loop_manager(
            monkeypatch, loop, config, _LLM(tok, _replies(tok)), manager.reward_loop_worker_handles
        )
        trainer.reward_loop_manager = manager
        trainer.checkpoint_manager = SimpleNamespace(
            sleep_replicas=lambda: None, update_weights=lambda *a: None
        )
        trainer.global_steps = 0
        try:
            metrics = trainer._validate()
        finally:
            trainer._shutdown_dump_executor()
        return config, trainer, metrics, tq.kv_list()


def test_v1_trainer_validation_scores_with_our_reward_file(
    monkeypatch, loop, verifier, tiny_lm_dir, tiny_verifier_dir, data_dir, tmp_path
):
    """The recipe as shipped: verl's V1 trainer with the classifier served on the training GPUs.
    V1's `_validate` scores the rollout after it (`_compute_reward_colocate`), handing the reward
    workers prompts, responses and raw_prompt only; our reward manager finds each prompt's
    data_source and ground truth in the exported parquet, and every validation score is our
    compute_score on the decoded response, asked of the served verifier."""
    dump = tmp_path / "val"
    train = f"data.val_files={data_dir / 'train.parquet'}"  # validated on the larger split: more prompts
    config, trainer, metrics, left = _v1_validate(monkeypatch, loop, verifier, tiny_lm_dir, tiny_verifier_dir,
                                                   data_dir, dump, train)  # fmt: skip
    asked = _asked(verifier)  # before _expected asks it again
    assert config.trainer.use_v1 is True and config.reward.reward_model.enable is True
    assert config.reward.reward_model.enable_resource_pool is False  # no GPU of its own
    assert trainer.reward_loop_manager.reward_loop_worker_handles is None  # scored after the rollout
    assert type(trainer).__name__ == "PPOTrainerSync"

    rows = [json.loads(line) for line in (dump / "0.jsonl").read_text().splitlines()]
    assert len(rows) == len(trainer.val_dataset) > 0
    source = "huatuo_o1/medical_verifiable_problems"
    for r in rows:
        r["data_source"], r["gt"] = source, r["gts"]
    assert all(r["gt"] for r in rows)  # V1 read the ground truths back from its TransferQueue
    _assert_read_against_their_references(asked, rows, tiny_verifier_dir, verifier)
    assert len(asked) == len(rows)  # V1 pads nothing: one verifier input per row
    kwargs = dict(config.reward.custom_reward_function.reward_kwargs)
    expected = _expected(rows, kwargs, verifier.address)
    assert [r["score"] for r in rows] == pytest.approx(expected)
    assert len(rows) > 10 and 0.0 in expected and len(set(expected)) > 1  # malformed and well formed
    assert metrics[f"val-core/{source}/reward/mean@1"] == pytest.approx(sum(expected) / len(expected))
    assert not any(left.values())  # V1 cleared its TransferQueue


def test_v1_validation_with_verls_naive_manager_fails_on_data_source(
    monkeypatch, loop, verifier, tiny_lm_dir, tiny_verifier_dir, data_dir, tmp_path
):
    """Why the recipe sets its own reward manager: with verl's `naive` one, V1's first validation
    stops at the first reward (KeyError: 'data_source'), as verl 0.9.1 does with a served verifier."""
    naive = ("reward.reward_manager.source=register", "reward.reward_manager.name=naive")
    with pytest.raises(KeyError, match="data_source"):
        _v1_validate(
            monkeypatch, loop, verifier, tiny_lm_dir, tiny_verifier_dir, data_dir, tmp_path / "val", *naive
        )


@pytest.mark.parametrize(
    "env", [{"VERIFIER_KIND": "exact"}, {"VERIFIER_ON_GPU": "False"}], ids=["exact", "cpu"]
)
def test_v1_with_a_verifier_not_served_scores_in_the_rollout(
    monkeypatch, loop, env, tiny_lm_dir, tiny_verifier_dir, data_dir
):
    """V1 with a verifier that is not served (exact, or the classifier in the reward workers): the
    rollout's agent loop itself calls the reward workers, with every dataset field, and our reward
    manager scores them as verl's naive one does."""
    from verl import DataProto
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer, Role

    config, manager, rollout, tok = _setup(monkeypatch, loop, tiny_lm_dir, tiny_verifier_dir, data_dir,
                                           None, USE_V1="True", **env)  # fmt: skip
    assert config.reward.reward_model.enable is False and manager.reward_loop_worker_handles is not None
    trainer = RayPPOTrainer(config=config, tokenizer=tok, role_worker_mapping={Role.ActorRolloutRef: object},
                            resource_pool_manager=None)  # fmt: skip
    batch = trainer._get_gen_batch(DataProto.from_single_dict(next(iter(trainer.val_dataloader))))
    batch.meta_info = {"validate": True}
    out = loop.run_until_complete(rollout.generate_sequences(batch))
    n, plen = len(out), out.batch["prompts"].size(1)
    mask = out.batch["attention_mask"]
    rows = [
        {"data_source": "huatuo_o1/medical_verifiable_problems", "gt": rm["ground_truth"],
         "output": tok.decode(out.batch["responses"][i][mask[i, plen:].bool()], skip_special_tokens=True)}
        for i, rm in enumerate(batch.non_tensor_batch["reward_model"])
    ]  # fmt: skip
    kwargs = dict(config.reward.custom_reward_function.reward_kwargs)
    kwargs.setdefault("verifier_device", "cpu")
    got = out.batch["rm_scores"].sum(-1).tolist()
    assert len(got) == n and got == pytest.approx(_expected(rows, kwargs))
    assert 0.0 in got and (1.0 in got if env.get("VERIFIER_KIND") == "exact" else True)


def _manager(tmp_path, rows_by_file: dict[str, list[dict]]):
    """Our reward manager over parquet files holding these verl rows (verl_data.verl_row)."""
    from omegaconf import OmegaConf

    from huatuo_o1.rl.verl_data import parquet_bytes
    from huatuo_o1.rl.verl_reward_manager import DatasetFieldsRewardManager

    paths = []
    for name, rows in rows_by_file.items():
        (tmp_path / name).write_bytes(parquet_bytes(rows))
        paths.append(str(tmp_path / name))
    config = OmegaConf.create({"data": {"train_files": paths[0], "val_files": paths[1:]}})
    return DatasetFieldsRewardManager(config, tokenizer=None, compute_score=None)


def _reward_batch(questions, **non_tensor):
    """What V1's `_compute_reward_colocate` hands the reward workers: no dataset fields, raw_prompt."""
    from verl import DataProto

    from huatuo_o1.rl.verl_data import user_turn

    raw = np.empty(len(questions), dtype=object)
    raw[:] = [user_turn(q) for q in questions]
    ids = torch.ones(len(questions), 2, dtype=torch.long)
    return DataProto.from_dict(
        tensors={"prompts": ids, "responses": ids, "attention_mask": torch.ones(len(questions), 4)},
        non_tensors={"raw_prompt": raw, **non_tensor},
    )


def test_reward_manager_restores_the_dataset_fields_by_prompt(tmp_path):
    from huatuo_o1.rl.verl_data import verl_row

    manager = _manager(tmp_path, {"train.parquet": [verl_row("Q1", "A1", 0, "train"), verl_row("Q2", "A2", 1, "train")],
                                  "val.parquet": [verl_row("Q3", "A3", 0, "val")]})  # fmt: skip
    got = manager.with_dataset_fields(_reward_batch(["Q3", "Q1"]))
    assert [r["ground_truth"] for r in got.non_tensor_batch["reward_model"]] == ["A3", "A1"]
    assert list(got.non_tensor_batch["data_source"]) == ["huatuo_o1/medical_verifiable_problems"] * 2
    assert [e["split"] for e in got.non_tensor_batch["extra_info"]] == ["val", "train"]
    # a batch that carries them (the legacy trainer, V1's rollout-time scoring) is left as it is
    carried = _reward_batch(["Q1"], data_source=np.array(["x"], dtype=object),
                            reward_model=np.array([{"ground_truth": "mine"}], dtype=object))  # fmt: skip
    assert manager.with_dataset_fields(carried) is carried
    with pytest.raises(KeyError, match="neither data.train_files nor data.val_files"):
        manager.with_dataset_fields(_reward_batch(["a question of another data set"]))


def test_reward_manager_refuses_a_prompt_with_two_ground_truths(tmp_path):
    from huatuo_o1.rl.verl_data import verl_row

    manager = _manager(tmp_path, {"train.parquet": [verl_row("Q1", "A1", 0, "train")],
                                  "val.parquet": [verl_row("Q1", "another", 0, "val")]})  # fmt: skip
    with pytest.raises(ValueError, match="two ground truths"):
        manager.with_dataset_fields(_reward_batch(["Q1"]))
