"""verl 0.9.1's reward path calling huatuo_o1/rl/verl_reward.py by file path, on the batches verl
itself builds, and the trainer-version choice in recipes/verl/ppo_args.sh (`trainer.use_v1=False`).

What is verl's own code here: the recipe's config (composed as main_ppo does), the dataset and
dataloader (RayPPOTrainer.__init__), the legacy trainer's `_validate`, the rollout's agent loop
(AgentLoopWorker with its single-turn loop: tokenization, padding, the output batch), the reward
loop (RewardLoopManager.compute_rm_score, RewardLoopWorker, the `naive` reward manager,
get_custom_reward_fn loading our file by path) and the V1 trainer's `_compute_reward_colocate`.
What stands in: the LLM behind the rollout (scripted replies), the served verifier (a loopback
`/classify` that runs the tiny classifier as vLLM does), and Ray: actors are called in this process
(a handle whose `.method.remote(...)` is the method itself, `ray.get` runs the coroutines), and the
V1 trainer's TransferQueue is a dict holding the fields it reads.

Runs in the verl environment only (bash scripts/setup_verl_env.sh); skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

pytest.importorskip("verl")

import torch  # noqa: E402

from huatuo_o1.rl import verl_reward  # noqa: E402
from huatuo_o1.rl.data import build_rl_data  # noqa: E402
from tests.helpers import REPO, run_script  # noqa: E402
from tests.test_verl import _FakeVLLMClassify  # noqa: E402
from tests.verl_real.recipe import compose, launcher_args  # noqa: E402

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


def test_legacy_trainer_validation_scores_with_our_reward_file(
    monkeypatch, loop, verifier, tiny_lm_dir, tiny_verifier_dir, data_dir, tmp_path
):
    """The recipe as shipped (legacy trainer, classifier served on the GPUs): verl's own `_validate`
    hands the reward workers the rollout with data_source / reward_model / extra_info, and every
    validation score is our compute_score on the decoded response."""
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer, Role

    dump = tmp_path / "val"
    config, manager, rollout, tok = _setup(monkeypatch, loop, tiny_lm_dir, tiny_verifier_dir, data_dir,
                                           verifier.address, f"trainer.validation_data_dir={dump}")  # fmt: skip
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

    rows = [json.loads(line) for line in (dump / "0.jsonl").read_text().splitlines()]
    assert len(rows) == len(trainer.val_dataset) > 0
    source = "huatuo_o1/medical_verifiable_problems"
    for r in rows:
        r["data_source"], r["gt"] = source, r["gts"]
    kwargs = dict(config.reward.custom_reward_function.reward_kwargs)
    assert [r["score"] for r in rows] == pytest.approx(_expected(rows, kwargs, verifier.address))
    assert {r["score"] for r in rows} >= {0.0}  # a malformed reply among them
    assert metrics[f"val-core/{source}/acc/mean@1"] == pytest.approx(
        sum(r["score"] for r in rows) / len(rows)
    )
    assert any(path == "/classify" for path, _ in verifier.requests)  # scored by the served verifier


def test_v1_trainer_layout_fails_with_keyerror_data_source(
    monkeypatch, loop, verifier, tiny_lm_dir, tiny_verifier_dir, data_dir
):
    """trainer.use_v1=True with the served verifier: verl 0.9.1's V1 `_compute_reward_colocate`
    sends the reward workers only prompts, responses, attention mask and raw_prompt, and the naive
    reward manager fails on the first batch (KeyError: 'data_source'): why the recipe keeps
    use_v1=False. The same rollout in the legacy layout scores."""
    from tensordict import TensorDict
    from transfer_queue.metadata import KVBatchMeta
    from verl import DataProto
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer, Role
    from verl.trainer.ppo.v1 import trainer_base

    config, manager, rollout, tok = _setup(monkeypatch, loop, tiny_lm_dir, tiny_verifier_dir, data_dir,
                                           verifier.address, USE_V1="True")  # fmt: skip
    assert config.trainer.use_v1 is True and manager.reward_loop_worker_handles is None
    trainer = RayPPOTrainer(config=config, tokenizer=tok, role_worker_mapping={Role.ActorRolloutRef: object},
                            resource_pool_manager=None)  # fmt: skip
    batch = trainer._get_gen_batch(DataProto.from_single_dict(next(iter(trainer.val_dataloader))))
    batch.meta_info = {"validate": True}
    out = loop.run_until_complete(rollout.generate_sequences(batch))
    n, plen = len(out), out.batch["prompts"].size(1)

    # the V1 trainer's TransferQueue: each row's unpadded prompt and response, and its raw_prompt
    mask = out.batch["attention_mask"]
    prompts = [out.batch["prompts"][i][mask[i, :plen].bool()] for i in range(n)]
    responses = [out.batch["responses"][i][mask[i, plen:].bool()] for i in range(n)]
    store = {
        "prompts": torch.nested.as_nested_tensor(prompts, layout=torch.jagged),
        "responses": torch.nested.as_nested_tensor(responses, layout=torch.jagged),
        "raw_prompt": list(out.non_tensor_batch["raw_prompt"]),
    }
    tq = SimpleNamespace(kv_batch_get=lambda keys, partition_id, select_fields: {f: store[f] for f in select_fields},
                         kv_batch_put=lambda **kw: None)  # fmt: skip
    monkeypatch.setattr(trainer_base, "tq", tq)
    v1 = SimpleNamespace(tokenizer=tok, reward_loop_manager=manager,
                         _lengths_to_mask=trainer_base.PPOTrainer._lengths_to_mask)  # fmt: skip
    meta = KVBatchMeta(keys=[f"k{i}" for i in range(n)], tags=[{}] * n, partition_id="val")
    with pytest.raises(KeyError, match="data_source"):
        trainer_base.PPOTrainer._compute_reward_colocate(v1, meta)

    # the legacy layout of the same rollout (what RayPPOTrainer hands over): scores
    scored = manager.compute_rm_score(out)
    assert set(TensorDict.keys(scored.batch)) == {"rm_scores"} and "acc" in scored.non_tensor_batch
    decoded = [tok.decode(r, skip_special_tokens=True) for r in responses]
    sources, rms = out.non_tensor_batch["data_source"], out.non_tensor_batch["reward_model"]
    rows = [
        {"data_source": s, "output": t, "gt": g["ground_truth"]}
        for s, t, g in zip(sources, decoded, rms, strict=True)
    ]
    kwargs = dict(config.reward.custom_reward_function.reward_kwargs)
    assert scored.batch["rm_scores"].sum(-1).tolist() == pytest.approx(
        _expected(rows, kwargs, verifier.address)
    )


@pytest.mark.parametrize(
    "env", [{"VERIFIER_KIND": "exact"}, {"VERIFIER_ON_GPU": "False"}], ids=["exact", "cpu"]
)
def test_v1_with_a_verifier_not_served_scores_in_the_rollout(
    monkeypatch, loop, env, tiny_lm_dir, tiny_verifier_dir, data_dir
):
    """USE_V1=True is fine when the verifier is not served (exact, or the classifier in the reward
    workers): the rollout's agent loop itself calls the reward workers, with every dataset field."""
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
