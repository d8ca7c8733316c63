"""The verl recipes' overrides, read from the recipe shell files themselves, and composed with verl's
own Hydra config (used by the tests in this folder; nothing here imports verl at import time)."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes" / "verl"

# `python` and `ray` replaced by shell functions: the launcher runs as written (its variables, its
# `source ppo_args.sh`, its Ray start-up) and prints the arguments it would hand to verl's main_ppo.
# For the multi-node launcher, `python -c ...` (its wait for the nodes) answers "all joined".
_STUBS = (
    'python() { if [ "$1" = -c ]; then echo "$NNODES"; else printf "%s\\n" "$@"; fi; }; ray() { :; }; '
    "export -f python ray; "
)


def launcher_args(script: str = "recipes/verl/run_ppo_1node.sh", *extra: str, **env: str) -> list[str]:
    """What `bash <script> extra...` (a launcher of recipes/verl or recipes/paper, run with the
    environment `env` only) passes to `python -m verl.trainer.main_ppo`."""
    cmd = _STUBS + f'bash "{REPO / script}" "$@"'
    r = subprocess.run(
        ["bash", "-c", cmd, "bash", *extra],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
        check=False,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["-m", "verl.trainer.main_ppo"], lines[:2]
    return lines[2:]


def verl_config_dir() -> Path:
    import verl.trainer.main_ppo

    return Path(verl.trainer.main_ppo.__file__).parent / "config"


def compose(overrides: list[str]):
    """verl's config for these overrides, composed as `python -m verl.trainer.main_ppo` composes it
    (its @hydra.main: config_path="config", config_name="ppo_trainer")."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(verl_config_dir()), version_base=None):
        return hydra_compose(config_name="ppo_trainer", overrides=list(overrides))


def validate(config) -> None:
    """What verl's main_ppo.main runs before starting Ray: auto_set_device and validate_config
    (which builds the actor and critic dataclasses and checks batch sizes against the GPUs)."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    auto_set_device(config)
    validate_config(
        config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config)
    )


def worker_configs(config) -> dict:
    """The typed configs verl's workers build from this config at start-up (the legacy TaskRunner
    resolves it first): the policy model, actor, reference and rollout (engine_workers), the critic
    (ray_trainer), and the served verifier's model and rollout (the reward loop's RewardModelManager)."""
    from omegaconf import OmegaConf, open_dict
    from verl.utils.config import omega_conf_to_dataclass
    from verl.workers.config import HFModelConfig

    OmegaConf.resolve(config)
    arr, rm = config.actor_rollout_ref, config.reward.reward_model
    ref = arr.ref.copy()
    with open_dict(ref):  # the reference's keys renamed as ActorRolloutRefWorker.init_model does
        ref.ppo_mini_batch_size = arr.actor.ppo_mini_batch_size
        ref.ppo_micro_batch_size = ref.pop("log_prob_micro_batch_size", None)
        ref.ppo_micro_batch_size_per_gpu = ref.pop("log_prob_micro_batch_size_per_gpu", None)
        ref.use_dynamic_bsz = ref.pop("log_prob_use_dynamic_bsz", False)
        ref.ppo_max_token_len_per_gpu = ref.pop("log_prob_max_token_len_per_gpu", None)
    return {
        "model": omega_conf_to_dataclass(arr.model),
        "actor": omega_conf_to_dataclass(arr.actor),
        "ref": omega_conf_to_dataclass(ref),
        "rollout": omega_conf_to_dataclass(arr.rollout),
        "critic": omega_conf_to_dataclass(config.critic),
        # RewardModelManager's replicas: its rollout settings and model (when the verifier is served)
        **(
            {
                "reward_model": HFModelConfig(path=rm.model_path),
                "reward_model_rollout": omega_conf_to_dataclass(rm.rollout),
            }
            if rm.enable
            else {}
        ),
    }
