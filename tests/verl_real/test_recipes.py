"""The verl recipes against verl 0.9.1 itself: every launcher variant's overrides (read from the
recipe shell files by running them with `python` and `ray` stubbed out) composed with verl's own
Hydra config, then put through the checks verl runs before and while starting its workers.

Runs in the verl environment only (bash scripts/setup_verl_env.sh); skipped elsewhere.
"""

from __future__ import annotations

import pytest

pytest.importorskip("verl")

from hydra.errors import ConfigCompositionException  # noqa: E402
from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager  # noqa: E402
from verl.trainer.ppo.reward import resolve_reward_manager_cls  # noqa: E402

from huatuo_o1.rl.verl_reward import VerlRewardSettings  # noqa: E402
from tests.verl_real.recipe import REPO, compose, launcher_args, validate, worker_configs  # noqa: E402

ONE_NODE = "recipes/verl/run_ppo_1node.sh"
MULTI_NODE = "recipes/verl/run_ppo_multinode.sh"

# (launcher, environment, extra overrides): every variant the recipes and docs describe
VARIANTS = {
    "1node_classifier_served": (ONE_NODE, {}, ()),
    "1node_classifier_in_reward_workers": (ONE_NODE, {"VERIFIER_ON_GPU": "False"}, ()),
    "1node_llm_judge": (
        ONE_NODE,
        {"VERIFIER_KIND": "llm", "JUDGE_MODEL": "gpt-4o-mini"},
        (),
    ),
    "1node_legacy_trainer_classifier_served": (ONE_NODE, {"USE_V1": "False"}, ()),
    "4nodes_classifier_served": (
        MULTI_NODE,
        {"NNODES": "4", "NODE_RANK": "0", "MASTER_ADDR": "10.0.0.1"},
        (),
    ),
    "paper_1node": ("recipes/paper/verl_ppo_1node.sh", {}, ("trainer.total_training_steps=10",)),
    "paper_4nodes_70b_offload": ("recipes/paper/verl_ppo_multinode.sh", {"NODE_RANK": "0"}, ()),
}


def _variant(name, tiny_lm_dir, tiny_verifier_dir, tmp_path):
    script, env, extra = VARIANTS[name]
    env = {"POLICY": str(tiny_lm_dir), "VERIFIER": str(tiny_verifier_dir), "DATA_DIR": str(tmp_path), **env}
    return launcher_args(script, *extra, **env), env


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_recipe_variant_passes_verls_own_config_checks(name, tiny_lm_dir, tiny_verifier_dir, tmp_path):
    args, env = _variant(name, tiny_lm_dir, tiny_verifier_dir, tmp_path)
    config = compose(args)
    validate(config)
    w = worker_configs(config)

    multi = "4nodes" in name
    gpus = 8 * (4 if multi else 1)
    assert config.trainer.nnodes * config.trainer.n_gpus_per_node == gpus
    # verl's V1 trainer unless USE_V1=False, and verl's naive reward manager with the dataset-field
    # lookup (huatuo_o1/rl/verl_reward_manager.py), loaded by path as verl's reward workers load it
    assert config.trainer.use_v1 is (env.get("USE_V1") != "False")
    manager = resolve_reward_manager_cls(config)
    assert manager.__name__ == "DatasetFieldsRewardManager" and issubclass(manager, NaiveRewardManager)
    assert config.reward.reward_manager.module.path == str(
        REPO / "huatuo_o1" / "rl" / "verl_reward_manager.py"
    )
    # the paper's settings, as the workers read them
    actor, critic, rollout = w["actor"], w["critic"], w["rollout"]
    assert (actor.optim.lr, actor.ppo_epochs, actor.ppo_mini_batch_size) == (5e-7, 3, 128)
    assert (actor.clip_ratio_low, actor.clip_ratio_high, actor.use_kl_loss) == (0.2, 0.2, False)
    assert (critic.optim.lr, critic.cliprange_value) == (5e-7, 0.2)
    # the critic engine's passes in tokens (V1 reads the infer budget for both): one full sequence
    assert critic.ppo_max_token_len_per_gpu == critic.ppo_infer_max_token_len_per_gpu == 1024 + 1300
    assert (config.algorithm.gamma, config.algorithm.lam, config.algorithm.kl_ctrl.kl_coef) == (
        1.0,
        0.95,
        0.03,
    )
    assert config.algorithm.use_kl_in_reward and config.algorithm.adv_estimator == "gae"
    assert (rollout.temperature, rollout.prompt_length, rollout.response_length) == (0.5, 1024, 1300)
    assert w["model"].local_path == str(tiny_lm_dir) and critic.model.path == str(tiny_lm_dir)
    offload = name.endswith("offload")
    assert actor.fsdp_config.param_offload is offload and actor.fsdp_config.optimizer_offload is offload
    assert critic.engine.param_offload is offload and critic.engine.optimizer_offload is offload
    assert rollout.tensor_model_parallel_size == (8 if offload else 2)
    assert config.data.train_files == str(tmp_path / "train.parquet")

    # the served verifier: verl's reward model is our verifier, and its router reaches our function
    served = name.endswith("classifier_served") or name.startswith("paper")
    assert config.reward.reward_model.enable is served
    if served:
        assert w["reward_model"].local_path == str(tiny_verifier_dir)
        assert w["reward_model_rollout"].name == "vllm" and w["reward_model_rollout"].max_model_len == 4096
    # our reward file by path, and its reward_kwargs as our function reads them
    fn = config.reward.custom_reward_function
    assert (fn.path, fn.name) == (str(REPO / "huatuo_o1" / "rl" / "verl_reward.py"), "compute_score")
    settings = VerlRewardSettings.from_kwargs(dict(fn.reward_kwargs))
    assert settings.script_args.verifier == env.get("VERIFIER_KIND", "classifier")
    assert (
        settings.reward_model_path == str(tiny_verifier_dir) and settings.script_args.reward_threshold == 0.4
    )


def test_a_misspelt_key_fails_composition(tiny_lm_dir, tiny_verifier_dir, tmp_path):
    args, _ = _variant("1node_classifier_served", tiny_lm_dir, tiny_verifier_dir, tmp_path)
    compose(args)  # as written: composes
    for good, bad in (
        ("critic.cliprange_value=", "critic.clip_range_value="),
        ("actor_rollout_ref.actor.clip_ratio_low=", "actor_rollout_ref.actor.clip_ratio_lo="),
        ("reward.custom_reward_function.path=", "reward.custom_reward_fn.path="),
    ):
        spelt = [a.replace(good, bad) if a.startswith(good) else a for a in args]
        assert spelt != args
        with pytest.raises(ConfigCompositionException, match="Could not override"):
            compose(spelt)
    # a misspelt override after the launcher fails the same way
    with pytest.raises(ConfigCompositionException, match="trainer.totl_training_steps"):
        compose(launcher_args(ONE_NODE, "trainer.totl_training_steps=10", POLICY=str(tiny_lm_dir)))


def test_verls_validation_refuses_a_batch_the_gpus_cannot_split(tiny_lm_dir, tiny_verifier_dir, tmp_path):
    args, _ = _variant("1node_classifier_served", tiny_lm_dir, tiny_verifier_dir, tmp_path)
    bad = compose(args + ["data.train_batch_size=100", "actor_rollout_ref.actor.ppo_mini_batch_size=100"])
    with pytest.raises(AssertionError, match="must be divisible"):
        validate(bad)


def test_an_unknown_reward_kwarg_in_the_recipe_config_is_refused(tiny_lm_dir, tiny_verifier_dir, tmp_path):
    from huatuo_o1.io import InputError

    args, _ = _variant("1node_classifier_served", tiny_lm_dir, tiny_verifier_dir, tmp_path)
    config = compose(args + ["+reward.custom_reward_function.reward_kwargs.reward_treshold=0.5"])
    validate(config)  # verl does not look inside reward_kwargs ...
    with pytest.raises(InputError, match="reward_treshold"):  # ... our function does, at its first call
        VerlRewardSettings.from_kwargs(dict(config.reward.custom_reward_function.reward_kwargs))
