"""PPO's trainer plumbing: rollouts, the update loop over epochs and mini-batches, checkpoints, resume.

The maths is huatuo_o1/rl/ppo_core.py (pure tensor functions); the reward is the verifier behind
huatuo_o1/rl/ppo_reward.py. This module runs them under accelerate (+ DeepSpeed ZeRO-2/3), in the
structure of trl 1.12's `PPOTrainer` (which trl removed after 1.12), so that one update equals one
of trl's on the same prompts (tests/trl_ref): the same sampling, forward passes, accumulation and logs.

One update (`train`):

1. Rollout (`_rollout`): a batch of left-padded prompts; the policy generates up to
   `--response_length` tokens at `--temperature` (the stop token ends a response; ZeRO-3 gathers
   the weights for it, `--use_vllm` generates with vLLM instead); in chunks of
   `--local_rollout_forward_batch_size`: the rollout log-probs (from the generation's logits), the
   reference policy's, the value model's values and the verifier's score of the truncated response.
2. Rewards and advantages (`_advantages`, ppo_core): KL penalty + score, GAE, whitening.
3. `--num_ppo_epochs` passes, each over a fresh permutation split into `--num_mini_batches`
   mini-batches of `--per_device_train_batch_size` micro-batches, under `accelerator.accumulate`
   with `--gradient_accumulation_steps` (as trl: with several mini-batches the optimizer steps
   every `gradient_accumulation_steps` micro-batches, i.e. once per PPO epoch). Policy and value
   model are one module (`PolicyAndValue`), prepared as one DeepSpeed engine; the reference
   policy and the reward hook are frozen (each its own inference engine under DeepSpeed).
4. Logs (trl's names: objective/kl, objective/scores, loss/policy_avg, loss/value_avg,
   policy/clipfrac_avg, policy/approxkl_avg, val/clipfrac_avg, ... plus reward/mean,
   reward/well_formed, reward/correct, reward/response_length), the LR schedule steps, callbacks
   (plots, --sigterm_grace), checkpoints.

Checkpoints and resume: `<output_dir>/checkpoint-N` (N = finished updates) is a transformers
checkpoint (policy as a plain HF folder, `optimizer.pt`, `scheduler.pt`, `rng_state.pth`,
`trainer_state.json` with `global_step`/`episode`; under DeepSpeed the engine's `global_stepK/`
shards of policy + value + optimizer instead of `optimizer.pt`) plus `value_model/` (a plain HF
folder) and `run_args.json` (the run's identity, `ppo_identity`), written before
`trainer_state.json`, so a checkpoint holding that (and a value model) is complete. Under DeepSpeed
the weights are gathered once per save, by every rank (a collective), and written by rank 0.
`train_ppo` resumes by default from the newest complete checkpoint of the same sources and
result-changing flags (else one line naming the differing flags, exit 2; `--resume False` starts
over): policy from checkpoint-N, value model from checkpoint-N/value_model, reference policy from
`--model_name_or_path` again (the KL stays anchored to the SFT model), optimizer, scheduler and RNG
states, and the data position: `_EpochBatches` reshuffles with `--seed + epoch` before each pass
and skips the batches the finished updates consumed, so a resumed run sees exactly the prompts and
samples an uninterrupted run would (bit-identical on the tiny CPU test). A rerun with a larger
`--total_episodes` continues the same way (the LR schedule is then the new total's); a finished run
only re-saves the final policy. Not restored: the `eps` metric (episodes per second).

Shared with GRPO (huatuo_o1.rl.common): flags, data, model loading, pad choice, verifier; run
identity, resume decision and the final save (huatuo_o1.train.checkpoints).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import time
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, GenerationConfig, Trainer, TrainerControl, TrainerState
from transformers.integrations import get_reporting_integration_callbacks
from transformers.trainer import DEFAULT_CALLBACKS, DEFAULT_PROGRESS_CALLBACK
from transformers.trainer_callback import CallbackHandler, ExportableState, PrinterCallback

from huatuo_o1.io import InputError
from huatuo_o1.lock import locked
from huatuo_o1.models import check_model_path, load_pretrained
from huatuo_o1.rl import ppo_core as core
from huatuo_o1.rl.common import (
    SCRIPT_RESULT_FLAGS,
    choose_pad_token,
    load_tokenizer_and_data,
    make_verifier,
    prompt_token_ids,
    set_pad_id,
    torch_dtype,
    train_and_save,
)
from huatuo_o1.rl.options import (
    check_rl_flags,
    enable_gradient_checkpointing,
    is_deepspeed_run,
    model_dtypes,
)
from huatuo_o1.rl.ppo_args import PPOScriptArguments
from huatuo_o1.rl.ppo_config import MedicalPPOConfig, PPOConfig  # noqa: F401  (MedicalPPOConfig: old name)
from huatuo_o1.rl.ppo_reward import RewardHook, sequence_scores
from huatuo_o1.train.checkpoints import (
    has_trainer_state,
    resume_point,
    run_identity,
    write_identity,
)
from huatuo_o1.train.multi_gpu import embedding_rows, seeded_init
from huatuo_o1.train.save_only_model import fast_forward_scheduler, is_weights_only, resume_note

log = logging.getLogger(__name__)


@dataclass
class OnlineTrainerState(TrainerState):
    """transformers' TrainerState plus the number of episodes (rollouts) trained on."""

    episode: int = 0


class PolicyAndValue(nn.Module):
    """Policy and value model as one module, so one optimizer (one DeepSpeed engine) trains both.

    forward(**ids) -> (policy output, values (B, L, 1)): the value model's backbone, then its
    1-logit `score` head on the last hidden state."""

    def __init__(self, policy, value_model) -> None:
        super().__init__()
        self.policy = policy
        self.value_model = value_model
        self.critic_backbone = getattr(value_model, value_model.base_model_prefix)
        self.is_gradient_checkpointing = policy.is_gradient_checkpointing

    def forward(self, **kwargs):
        output = self.critic_backbone(**kwargs)
        values = self.value_model.score(output.hidden_states[-1])
        return self.policy(**kwargs), values


def forward(model: nn.Module, query_responses: torch.Tensor, pad_token_id: int):
    """The model on prompt + response ids (pads masked to 0, positions over the real tokens)."""
    return model(
        **core.model_inputs(query_responses, pad_token_id), return_dict=True, output_hidden_states=True
    )


@torch.no_grad()
def batch_generation(policy, queries, chunk: int, pad_token_id: int, generation_config: GenerationConfig):
    """(query_responses (B, P + T'), logits (B, T', V)): `generate` on chunks of `chunk` prompts.

    queries: (B, P) left-padded. Responses are right-padded with the pad to the longest chunk's
    width T' <= response_length; logits are the generation's processed scores (temperature applied),
    padded with 0. Callers put the policy in eval mode (`eval_mode`)."""
    context_length = queries.shape[1]
    outs, scores = [], []
    for i in range(0, queries.shape[0], chunk):
        q = queries[i : i + chunk]
        mask = q != pad_token_id
        out = policy.generate(
            input_ids=torch.masked_fill(q, ~mask, 0),
            attention_mask=mask,
            generation_config=generation_config,
            return_dict_in_generate=True,
            output_scores=True,
        )
        outs.append(torch.cat((q, out.sequences[:, context_length:]), dim=1))
        scores.append(torch.stack(out.scores, 1))
    width = max(o.shape[1] for o in outs)
    outs = [nn.functional.pad(o, (0, width - o.shape[1]), value=pad_token_id) for o in outs]
    steps = width - context_length
    scores = [nn.functional.pad(s, (0, 0, 0, steps - s.shape[1]), value=0) for s in scores]
    return torch.cat(outs, 0), torch.cat(scores, 0)


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """The model in eval mode while generating (a checkpointed layer in train mode would drop the
    KV cache and recompute every step; dropout is off anyway)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def disable_dropout(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0


def deepspeed_inference_engine(model: nn.Module, accelerator):
    """A frozen model under the run's DeepSpeed config: partitioned under ZeRO-3, whole (stage 0)
    otherwise; no optimizer or scheduler."""
    import deepspeed

    cfg = deepcopy(accelerator.state.deepspeed_plugin.deepspeed_config)
    stage = cfg["zero_optimization"]["stage"]
    hidden = getattr(model.config, "hidden_size", None)
    if hidden is not None and stage == 3:
        cfg.update(
            {
                "zero_optimization.reduce_bucket_size": hidden * hidden,
                "zero_optimization.stage3_param_persistence_threshold": 10 * hidden,
                "zero_optimization.stage3_prefetch_bucket_size": 0.9 * hidden * hidden,
            }
        )
    cfg.pop("optimizer", None)
    cfg.pop("scheduler", None)
    cfg["zero_optimization"].pop("offload_optimizer", None)
    if stage != 3:
        cfg["zero_optimization"]["stage"] = 0
    engine, *_ = deepspeed.initialize(model=model, config=cfg)
    engine.eval()
    return engine


def _zero3_hooks(engine, add: bool) -> None:
    """Remove (add=False) or re-add DeepSpeed ZeRO-3's parameter-fetching hooks on a training engine."""
    opt = getattr(engine, "optimizer", None)
    if opt is None:
        return
    offload = getattr(opt, "parameter_offload", opt)
    if not add:
        for hook in offload.forward_hooks:
            hook.remove()
        for hook in offload.backward_hooks:
            hook.remove()
        offload.forward_hooks, offload.backward_hooks = [], []
        return
    coordinator = getattr(offload, "param_coordinator", None)
    if coordinator is not None and not coordinator.is_invalid_trace():
        coordinator._invalidate_trace()
    offload._register_deepspeed_module(offload.module)


@contextlib.contextmanager
def unwrapped_for_generation(model, accelerator, gather: bool = True):
    """The bare PolicyAndValue for generation; under ZeRO-3 with `gather`, with full weights (one
    all-gather, hooks off while generating) instead of a gather per layer per token."""
    bare = accelerator.unwrap_model(model)
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None or plugin.zero_stage != 3 or not gather:
        yield bare
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(model.parameters()):
        _zero3_hooks(model, add=False)
        try:
            yield bare
        finally:
            _zero3_hooks(model, add=True)


def _exact_div(a: int, b: int, what: str) -> int:
    if a % b:
        raise InputError(f"{what}: {a} is not a multiple of --num_mini_batches {b}")
    return a // b


@dataclass
class Rollout:
    """One rollout batch (this process's rows) and what the update needs of it. Shapes: B rows,
    P prompt columns, T response columns."""

    query_responses: torch.Tensor  # (B, P + T) prompt + raw response ids
    responses: torch.Tensor  # (B, T) raw response ids
    postprocessed: torch.Tensor  # (B, T) responses cut after the stop token
    logprobs: torch.Tensor  # (B, T) rollout log-probs (INVALID_LOGPROB after the end)
    ref_logprobs: torch.Tensor  # (B, T)
    values: torch.Tensor  # (B, T) zero after the end + 1
    scores: torch.Tensor  # (B,) verifier reward (minus --missing_eos_penalty)
    context_length: int
    padding_mask: torch.Tensor | None = None
    padding_mask_p1: torch.Tensor | None = None
    kl: torch.Tensor | None = None
    non_score_reward: torch.Tensor | None = None
    rewards: torch.Tensor | None = None
    advantages: torch.Tensor | None = None  # whitened
    returns: torch.Tensor | None = None


_NOT_GATHERED = object()


class PPOTrainer(Trainer):
    """PPO with a value model and a frozen reference policy (module doc). A transformers `Trainer`
    for its checkpoint, logging and callback machinery; `train` is PPO's own loop.

    `__init__` does not run Trainer's: the models, the Accelerator, the optimizer and scheduler
    and the dataloaders are set up here as PPO needs them."""

    def __init__(
        self,
        args: PPOConfig,
        processing_class,
        model,
        ref_model,
        reward_hook: RewardHook,
        value_model,
        train_dataset,
        eval_dataset=None,
        callbacks=None,
    ) -> None:
        from accelerate import Accelerator

        if ref_model is model:
            raise ValueError("the reference model must be a separate copy of the policy")
        self.args = args
        self.processing_class = processing_class
        self.policy_model = model
        self.ref_model = ref_model
        self.reward_hook = reward_hook
        self.reward_model = reward_hook
        self.value_model = value_model
        self.train_dataset = train_dataset
        self.train_dataset_len = len(train_dataset)
        self.eval_dataset = eval_dataset
        self.data_collator = DataCollatorWithPadding(processing_class)
        self.optimizer, self.lr_scheduler = None, None
        self.optimizer_cls_and_kwargs = None
        self._gathered = _NOT_GATHERED
        self.last_rollout: Rollout | None = None
        self.timings = {"generation": 0.0, "forward": 0.0, "reward": 0.0, "update": 0.0}  # seconds, this run
        self.vllm = None

        # the stop token ends generation (the policy's generation config) and truncates responses
        if args.stop_token and args.stop_token_id is not None:
            raise InputError("give --stop_token or --stop_token_id, not both")
        if args.stop_token:
            if args.stop_token != "eos":
                raise InputError(f"--stop_token must be eos or None, got {args.stop_token!r}")
            self.stop_token_id = processing_class.eos_token_id
        else:
            self.stop_token_id = args.stop_token_id
        model.generation_config.eos_token_id = self.stop_token_id
        if args.kl_estimator not in ("k1", "k3"):
            raise InputError(f"--kl_estimator must be k1 or k3, got {args.kl_estimator!r}")

        # batch sizes (see ppo_config)
        if args.total_episodes is None:
            args.total_episodes = int(args.num_train_epochs * self.train_dataset_len)
        accelerator = Accelerator(gradient_accumulation_steps=args.gradient_accumulation_steps)
        self.accelerator = accelerator
        args.world_size = accelerator.num_processes
        args.local_batch_size = args.per_device_train_batch_size * args.gradient_accumulation_steps
        args.micro_batch_size = int(args.per_device_train_batch_size * args.world_size)
        args.batch_size = int(args.local_batch_size * args.world_size)
        args.mini_batch_size = _exact_div(args.batch_size, args.num_mini_batches, "the rollout batch")
        args.local_mini_batch_size = _exact_div(
            args.local_batch_size, args.num_mini_batches, "the rollout batch per process"
        )
        if args.whiten_rewards and args.local_mini_batch_size < 8:
            raise InputError(
                f"--whiten_rewards needs at least 8 rows per mini-batch per process, got "
                f"{args.local_mini_batch_size}; raise the batch flags or lower --num_mini_batches"
            )
        args.num_total_batches = math.ceil(args.total_episodes / args.batch_size)
        self.local_seed = args.seed + accelerator.process_index * 100003
        if args.num_sample_generations > 0:
            self.sample_generations_freq = max(1, args.num_total_batches // args.num_sample_generations)

        # models, optimizer, scheduler
        for module in (model, ref_model, value_model, reward_hook):
            disable_dropout(module)
        self.model = PolicyAndValue(model, value_model)
        self.model.config = model.config
        self.create_optimizer_and_scheduler(num_training_steps=args.num_total_batches)

        # callbacks and state (what Trainer's own __init__ would have set up)
        default_callbacks = DEFAULT_CALLBACKS + get_reporting_integration_callbacks(args.report_to)
        self.callback_handler = CallbackHandler(
            default_callbacks + list(callbacks or []),
            self.model,
            processing_class,
            self.optimizer,
            self.lr_scheduler,
        )
        self.add_callback(PrinterCallback if args.disable_tqdm else DEFAULT_PROGRESS_CALLBACK)
        self.control = TrainerControl()
        self.state = OnlineTrainerState(
            is_local_process_zero=self.is_local_process_zero(),
            is_world_process_zero=self.is_world_process_zero(),
            stateful_callbacks=[
                cb
                for cb in self.callback_handler.callbacks + [self.control]
                if isinstance(cb, ExportableState)
            ],
        )
        self.current_flos = 0
        self.hp_search_backend = None
        self.is_deepspeed_enabled = getattr(accelerator.state, "deepspeed_plugin", None) is not None
        self.is_fsdp_enabled = getattr(accelerator.state, "fsdp_plugin", None) is not None
        self.hub_model_id = None
        if args.should_save:
            os.makedirs(args.output_dir, exist_ok=True)

        # data: one shuffled batch of local_batch_size prompts per update
        self.dataloader = DataLoader(
            train_dataset,
            batch_size=args.local_batch_size,
            shuffle=True,
            collate_fn=self.data_collator,
            drop_last=True,  # a ragged last batch would have another shape
        )
        torch.manual_seed(args.seed)  # the same shuffle on every process, before prepare
        self.model, self.optimizer, self.dataloader = accelerator.prepare(
            self.model, self.optimizer, self.dataloader
        )
        torch.manual_seed(self.local_seed)  # then each process samples its own rollouts
        self.eval_dataloader = accelerator.prepare(
            DataLoader(
                eval_dataset if eval_dataset is not None else [],
                batch_size=args.per_device_eval_batch_size,
                collate_fn=self.data_collator,
                drop_last=True,
            )
        )
        if self.is_deepspeed_enabled:
            self.ref_model = deepspeed_inference_engine(ref_model, accelerator)
            self.deepspeed = self.model_wrapped = self.model
        else:
            self.ref_model = ref_model.to(accelerator.device)
            self.model_wrapped = self.model
        # the verifier (loaded whole, common.make_verifier) inside the reward hook: under DeepSpeed
        # an inference engine of its own (partitioned under ZeRO-3), as trl did
        if self.is_deepspeed_enabled:
            self.reward_model = deepspeed_inference_engine(reward_hook, accelerator)
        else:
            self.reward_model = reward_hook.to(accelerator.device)
        if args.use_vllm:
            from huatuo_o1.rl.ppo_vllm import ColocatedVLLM

            self.vllm = ColocatedVLLM(self.policy_model, args, processing_class)

    def get_train_dataloader(self):
        return self.dataloader

    def get_eval_dataloader(self, eval_dataset=None):
        return self.eval_dataloader

    # -- one update: rollout, advantages, PPO epochs ------------------------------------------

    def _generation_config(self, temperature: float) -> GenerationConfig:
        return GenerationConfig(
            max_new_tokens=self.args.response_length,
            temperature=temperature + 1e-7,
            top_k=0,
            top_p=1.0,
            do_sample=True,
        )

    def _generate(self, queries: torch.Tensor, generation_config: GenerationConfig):
        """(query_responses, logits or None) of this process's prompts (module doc, step 1)."""
        args, pad = self.args, self.processing_class.pad_token_id
        if self.vllm is not None:
            return self.vllm.generate(queries), None
        with (
            unwrapped_for_generation(self.model, self.accelerator, args.ds3_gather_for_generation) as bare,
            eval_mode(bare.policy),
        ):
            return batch_generation(
                bare.policy, queries, args.local_rollout_forward_batch_size, pad, generation_config
            )

    @torch.no_grad()
    def _rollout(self, queries: torch.Tensor, generation_config: GenerationConfig) -> Rollout:
        args, pad = self.args, self.processing_class.pad_token_id
        context_length = queries.shape[1]
        t0 = time.perf_counter()
        query_responses, logitss = self._generate(queries, generation_config)
        self.timings["generation"] += time.perf_counter() - t0
        bare = self.accelerator.unwrap_model(self.model)
        parts: dict[str, list] = {k: [] for k in ("resp", "post", "logp", "ref", "val", "score")}
        chunk = args.local_rollout_forward_batch_size
        for i in range(0, queries.shape[0], chunk):
            t0 = time.perf_counter()
            query = queries[i : i + chunk]
            query_response = query_responses[i : i + chunk]
            response = query_response[:, context_length:]
            if logitss is not None:
                logprob = core.token_logprobs(logitss[i : i + chunk], response)
            else:  # vLLM: the rollout log-probs from the training policy itself
                out = forward(bare.policy, query_response, pad)
                logits = out.logits[:, context_length - 1 : -1] / (args.temperature + 1e-7)
                logprob = core.token_logprobs(logits, response)
                del out, logits
            ref_logits = forward(self.ref_model, query_response, pad).logits[:, context_length - 1 : -1]
            ref_logits /= args.temperature + 1e-7
            ref_logprob = core.token_logprobs(ref_logits, response)
            del ref_logits
            post = core.truncate_after_stop(response, self.stop_token_id, pad)
            full_value, _, _ = sequence_scores(bare.value_model, query_response, pad, context_length)
            self.timings["forward"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            _, score, _ = sequence_scores(self.reward_model, torch.cat((query, post), 1), pad, context_length)
            self.timings["reward"] += time.perf_counter() - t0
            for key, value in zip(
                parts, (response, post, logprob, ref_logprob, full_value[:, context_length - 1 : -1].squeeze(-1),
                        score), strict=True
            ):  # fmt: skip
                parts[key].append(value)
        cat = {k: torch.cat(v, 0) for k, v in parts.items()}
        return Rollout(
            query_responses=query_responses,
            responses=cat["resp"],
            postprocessed=cat["post"],
            logprobs=cat["logp"],
            ref_logprobs=cat["ref"],
            values=cat["val"],
            scores=cat["score"],
            context_length=context_length,
        )

    def _sum_over_processes(self, t: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(t.to(self.accelerator.device), reduction="sum")

    @torch.no_grad()
    def _advantages(self, ro: Rollout) -> Rollout:
        """Masks, missing-eos penalty, KL penalty + score, (whitened) rewards, GAE (ppo_core)."""
        args = self.args
        ro.scores = core.penalize_missing_eos(
            ro.scores, ro.postprocessed, self.processing_class.eos_token_id, args.missing_eos_penalty
        )
        seq_len, ro.padding_mask, ro.padding_mask_p1 = core.response_masks(
            ro.postprocessed, self.processing_class.pad_token_id
        )
        ro.logprobs = torch.masked_fill(ro.logprobs, ro.padding_mask, core.INVALID_LOGPROB)
        ro.ref_logprobs = torch.masked_fill(ro.ref_logprobs, ro.padding_mask, core.INVALID_LOGPROB)
        ro.values = torch.masked_fill(ro.values, ro.padding_mask_p1, 0)
        ro.kl = core.kl_penalty(ro.logprobs, ro.ref_logprobs, args.kl_estimator)
        ro.rewards, ro.non_score_reward = core.token_rewards(ro.kl, ro.scores, seq_len, args.kl_coef)
        # whitened over the global batch: the sums of every process's rows (ppo_core step 3)
        total = self._sum_over_processes if self.accelerator.num_processes > 1 else None
        if args.whiten_rewards:
            ro.rewards = core.whiten_rewards(ro.rewards, ro.padding_mask_p1, total)
        advantages, ro.returns = core.gae_advantages(ro.rewards, ro.values, args.gamma, args.lam)
        ro.advantages = core.whiten_advantages(advantages, ro.padding_mask, total)
        return ro

    def _ppo_epochs(self, ro: Rollout) -> dict[str, torch.Tensor]:
        """`--num_ppo_epochs` passes over the batch (module doc, step 3); per-micro-batch stats."""
        args, accelerator, model = self.args, self.accelerator, self.model
        pad, ctx = self.processing_class.pad_token_id, ro.context_length
        shape = (args.num_ppo_epochs, args.num_mini_batches, args.gradient_accumulation_steps)
        names = ("approxkl", "pg_clipfrac", "pg_loss", "vf_loss", "vf_clipfrac", "entropy", "ratio")
        stats = {k: torch.zeros(shape, device=accelerator.device) for k in names}
        for epoch in range(args.num_ppo_epochs):
            order = np.random.permutation(args.local_batch_size)
            for mb, start in enumerate(range(0, args.local_batch_size, args.local_mini_batch_size)):
                mini = order[start : start + args.local_mini_batch_size]
                for k, mstart in enumerate(
                    range(0, args.local_mini_batch_size, args.per_device_train_batch_size)
                ):
                    with accelerator.accumulate(model):
                        idx = mini[mstart : mstart + args.per_device_train_batch_size]
                        output, vpred_all = forward(model, ro.query_responses[idx], pad)
                        logits = output.logits[:, ctx - 1 : -1]
                        logits /= args.temperature + 1e-7
                        new_logprobs = core.token_logprobs(logits, ro.responses[idx])
                        new_logprobs = torch.masked_fill(
                            new_logprobs, ro.padding_mask[idx], core.INVALID_LOGPROB
                        )
                        vpred = vpred_all[:, ctx - 1 : -1].squeeze(-1)
                        vpred = torch.masked_fill(vpred, ro.padding_mask_p1[idx], 0)
                        vf_loss, vf_clipfrac = core.value_loss(
                            vpred,
                            ro.values[idx],
                            ro.returns[idx],
                            ro.padding_mask_p1[idx],
                            args.cliprange_value,
                        )
                        pg_loss, pg = core.policy_loss(
                            new_logprobs, ro.logprobs[idx], ro.advantages[idx], ro.padding_mask[idx],
                            args.cliprange,
                        )  # fmt: skip
                        loss = pg_loss + args.vf_coef * vf_loss
                        accelerator.backward(loss)
                        self.optimizer.step()
                        self.optimizer.zero_grad()
                        with torch.no_grad():
                            at = (epoch, mb, k)
                            stats["approxkl"][at] = pg["approxkl"]
                            stats["pg_clipfrac"][at] = pg["clipfrac"]
                            stats["pg_loss"][at] = pg_loss
                            stats["vf_loss"][at] = vf_loss
                            stats["vf_clipfrac"][at] = vf_clipfrac
                            stats["entropy"][at] = core.entropy_from_logits(logits).mean()
                            stats["ratio"][at] = pg["ratio"]
                del output, vpred_all, logits, new_logprobs, vpred, loss, pg_loss, vf_loss
                _empty_cache()
        return stats

    def _metrics(self, ro: Rollout, stats: dict, start_time: float) -> dict[str, float]:
        """trl's log line of one update (module doc, step 4)."""
        gather = self.accelerator.gather_for_metrics
        mean_kl = ro.kl.sum(1).mean()
        mean_entropy = ((-ro.logprobs) * (~ro.padding_mask).float()).sum(1).mean()
        mean_non_score = ro.non_score_reward.sum(1).mean()
        rlhf_reward = mean_non_score + ro.scores.mean()
        return {
            "eps": int(self.state.episode / max(time.time() - start_time, 1e-9)),
            "objective/kl": gather(mean_kl).mean().item(),
            "objective/entropy": gather(mean_entropy).mean().item(),
            "objective/non_score_reward": gather(mean_non_score).mean().item(),
            "objective/rlhf_reward": gather(rlhf_reward).mean().item(),
            "objective/scores": gather(ro.scores.mean()).mean().item(),
            "policy/approxkl_avg": gather(stats["approxkl"]).mean().item(),
            "policy/clipfrac_avg": gather(stats["pg_clipfrac"]).mean().item(),
            "loss/policy_avg": gather(stats["pg_loss"]).mean().item(),
            "loss/value_avg": gather(stats["vf_loss"]).mean().item(),
            "val/clipfrac_avg": gather(stats["vf_clipfrac"]).mean().item(),
            "policy/entropy_avg": gather(stats["entropy"]).mean().item(),
            "val/ratio": gather(stats["ratio"]).mean().item(),
            "val/ratio_var": gather(stats["ratio"]).var().item(),
            "val/num_eos_tokens": (ro.responses == self.processing_class.eos_token_id).sum().item(),
            "lr": self.lr_scheduler.get_last_lr()[0],
            "episode": self.state.episode,
        }

    def train(self, resume_from_checkpoint: str | None = None):
        """PPO, from update 1 or after the updates `resume_from_checkpoint` finished."""
        args, state = self.args, self.state
        total = args.num_total_batches
        done, saved = 0, None
        if resume_from_checkpoint:
            saved = self._load_resume_state(resume_from_checkpoint)
            done = min(saved.global_step, total)
            log.info(
                "resuming from %s: update %d of %d (episode %d)",
                resume_from_checkpoint, done + 1, total, getattr(saved, "episode", done * args.batch_size),
            )  # fmt: skip
        batches = _EpochBatches(self.dataloader, args.seed, start=done)
        iter_batches = iter(_forever(batches))
        generation_config = self._generation_config(args.temperature)
        self.timings = {"generation": 0.0, "forward": 0.0, "reward": 0.0, "update": 0.0}
        self.accelerator.print("===training policy===")
        start_time = time.time()
        self.model.train()

        state.global_step, state.episode = 0, 0
        state.max_steps = total
        state.num_train_epochs = args.total_episodes / self.train_dataset_len
        for name in ("logging_steps", "eval_steps", "save_steps"):
            value = getattr(args, name)
            if value is not None:
                setattr(state, name, math.ceil(total * value) if value < 1 else value)
        if saved is not None:
            state.global_step = done
            state.episode = getattr(saved, "episode", 0) or done * args.batch_size
            state.epoch = state.episode / self.train_dataset_len
            state.log_history = list(saved.log_history)
            self._load_rng_state(resume_from_checkpoint)
        self.control = self.callback_handler.on_train_begin(args, state, self.control)

        for update in range(done + 1, total + 1):
            state.episode += args.batch_size
            queries = next(iter_batches)["input_ids"].to(self.accelerator.device)
            if self.vllm is not None:
                self.vllm.wake_up(self.model, self.accelerator)
            ro = self._advantages(self._rollout(queries, generation_config))
            if self.vllm is not None:
                self.vllm.sleep()
            _empty_cache()
            gc.collect()
            t0 = time.perf_counter()
            stats = self._ppo_epochs(ro)
            self.timings["update"] += time.perf_counter() - t0
            self.last_rollout = ro
            with torch.no_grad():
                metrics = self._metrics(ro, stats, start_time)
                state.epoch = state.episode / self.train_dataset_len
                state.global_step += 1
                self.log(metrics)
            self.lr_scheduler.step()
            self.control = self.callback_handler.on_step_end(args, state, self.control)
            if self.control.should_save:
                self._save_checkpoint(self.model, trial=None)
                self.control = self.callback_handler.on_save(args, state, self.control)
            del ro, stats, metrics
            _empty_cache()
            gc.collect()
            if args.num_sample_generations > 0 and (update - 1) % self.sample_generations_freq == 0:
                self.generate_completions(sampling=True)

        self.control = self.callback_handler.on_train_end(args, state, self.control)
        if self.control.should_save:
            self._save_checkpoint(self.model, trial=None)
            self.control = self.callback_handler.on_save(args, state, self.control)

    @torch.no_grad()
    def generate_completions(self, sampling: bool = False) -> None:
        """Near-greedy completions (temperature 0.01) of the held-out prompts with their scores:
        logged (a few) and sent to wandb as a table when wandb is on; one batch when `sampling`."""
        from accelerate.utils import gather_object

        pad = self.processing_class.pad_token_id
        config = self._generation_config(0.01)
        rows = []
        self.reward_hook.scorer.recording = False
        try:
            with unwrapped_for_generation(
                self.model, self.accelerator, self.args.ds3_gather_for_generation
            ) as bare:
                for batch in self.eval_dataloader:
                    query = batch["input_ids"]
                    qr, _ = batch_generation(bare.policy, query, query.shape[0], pad, config)
                    post = core.truncate_after_stop(qr[:, query.shape[1] :], self.stop_token_id, pad)
                    _, score, _ = sequence_scores(
                        self.reward_model, torch.cat((query, post), 1), pad, query.shape[1]
                    )
                    rows += zip(
                        gather_object(self.processing_class.batch_decode(query, skip_special_tokens=True)),
                        gather_object(self.processing_class.batch_decode(post)),
                        self.accelerator.gather_for_metrics(score).float().cpu().tolist(),
                        strict=True,
                    )
                    if sampling:
                        break
        finally:
            self.reward_hook.scorer.recording = True
        if not self.accelerator.is_main_process or not rows:
            return
        for query, response, score in rows[:5]:
            log.info("sample (score %.2f): %r -> %r", score, query[-200:], response[:500])
        if "wandb" in (self.args.report_to or []):
            import wandb

            if wandb.run is not None:
                wandb.log(
                    {"completions": wandb.Table(columns=["query", "model response", "score"], data=rows)}
                )

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """transformers' log plus the reward statistics of the rollouts since the last log line."""
        s = self.reward_hook.pop_stats()
        t = torch.tensor(
            [s["n"], s["reward"], s["well_formed"], s["correct"], s["length"]],
            dtype=torch.float64,
            device=self.accelerator.device,
        )
        t = self.accelerator.reduce(t, reduction="sum") if self.accelerator.num_processes > 1 else t
        n = t[0].item()
        if n > 0:
            logs["reward/mean"] = t[1].item() / n
            logs["reward/well_formed"] = t[2].item() / n
            logs["reward/correct"] = t[3].item() / n
            logs["reward/response_length"] = t[4].item() / n
        super().log(logs, start_time)

    # -- saving ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _one_gather(self):
        """Within: the engine's full state dict is gathered at most once (one checkpoint)."""
        self._gathered = None
        try:
            yield
        finally:
            self._gathered = _NOT_GATHERED

    def _gathered_state(self):
        """Under DeepSpeed, the engine's full state dict (policy. + value_model. keys; under ZeRO-3
        a dict on rank 0 and None on the other ranks). Gathering is a collective: every rank calls
        this the same number of times, and within `_one_gather` only the first call gathers, on
        every rank alike (a None on rank 1 never means "gather again"). ValueError under ZeRO-3
        without stage3_gather_16bit_weights_on_model_save."""
        if self._gathered is _NOT_GATHERED:  # not inside a save: gather for this call only
            return self.accelerator.get_state_dict(self.model)
        if self._gathered is None:
            try:
                self._gathered = ("ok", self.accelerator.get_state_dict(self.model))
            except ValueError as err:
                self._gathered = ("error", err)
        kind, value = self._gathered
        if kind == "error":
            raise value
        return value

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The policy alone as a plain HF folder (final model and every checkpoint), with the
        policy's own stop tokens in its generation config (rollouts use one stop token).

        Without DeepSpeed: transformers' save of the bare policy. Under DeepSpeed: the engine's
        gathered state (every rank takes part), the `policy.` keys, written by rank 0."""
        output_dir = output_dir or self.args.output_dir
        policy = self.accelerator.unwrap_model(self.model).policy
        gen = getattr(policy, "generation_config", None)
        rollout_eos = gen.eos_token_id if gen is not None else None
        if gen is not None and getattr(self, "saved_eos_token_id", None) is not None:
            gen.eos_token_id = self.saved_eos_token_id
        try:
            if not self.is_deepspeed_enabled:
                wrapper, self.model = self.model, policy
                try:
                    super().save_model(output_dir, _internal_call)
                finally:
                    self.model = wrapper
                return
            with self._one_gather() if self._gathered is _NOT_GATHERED else contextlib.nullcontext():
                try:
                    full = self._gathered_state()
                except ValueError:  # ZeRO-3 without stage3_gather_16bit_weights_on_model_save
                    log.warning(
                        "stage3_gather_16bit_weights_on_model_save is false: saving a DeepSpeed checkpoint "
                        "in %s instead of HF weights (use zero_to_fp32.py)",
                        output_dir,
                    )
                    self.model.save_checkpoint(output_dir)
                    return
            if self.accelerator.is_main_process:
                state = {k.removeprefix("policy."): v for k, v in full.items() if k.startswith("policy.")}
                os.makedirs(output_dir, exist_ok=True)
                policy.save_pretrained(output_dir, state_dict=state, safe_serialization=True)
                self.processing_class.save_pretrained(output_dir)
            self.accelerator.wait_for_everyone()
        finally:
            if gen is not None:
                gen.eos_token_id = rollout_eos

    def save_value_model(self, output_dir: str | Path) -> bool:
        """The value model as a plain HF folder (sequence classifier, 1 label). False under ZeRO-3
        without gathered weights: the engine checkpoint then holds it."""
        value = self.accelerator.unwrap_model(self.model).value_model
        state = None
        if self.is_deepspeed_enabled:
            try:
                full = self._gathered_state()
            except ValueError:
                return False
            if self.accelerator.is_main_process:
                state = {
                    k.removeprefix("value_model."): v for k, v in full.items() if k.startswith("value_model.")
                }
        if self.accelerator.is_main_process:
            value.save_pretrained(output_dir, state_dict=state, safe_serialization=True)
        self.accelerator.wait_for_everyone()
        return True

    def _save_checkpoint(self, model, trial):
        """transformers' checkpoint plus value_model/ and run_args.json, written before
        trainer_state.json (written last, so its presence marks a complete checkpoint); one gather
        of the weights for the whole checkpoint."""
        ckpt = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
        with self._one_gather():
            self.save_value_model(ckpt / VALUE_DIR)
            identity = getattr(self, "run_identity", None)
            if identity and self.accelerator.is_main_process:
                write_identity(ckpt, identity)
            super()._save_checkpoint(model, trial)

    def _load_resume_state(self, ckpt: str):
        """Optimizer + scheduler (+ DeepSpeed engine) states of `ckpt`; returns its trainer state."""
        ckpt_path = Path(ckpt)
        saved = OnlineTrainerState.load_from_json(str(ckpt_path / "trainer_state.json"))
        if is_weights_only(ckpt_path):  # --save_only_model: one line says what is not restored
            log.warning(resume_note(ckpt))
            fast_forward_scheduler(self.lr_scheduler, saved.global_step)
            return saved
        if self.is_deepspeed_enabled:
            if any(ckpt_path.glob("global_step*")):
                from transformers.integrations.deepspeed import deepspeed_load_checkpoint

                deepspeed_load_checkpoint(self.model, ckpt)  # policy, value model, optimizer
            else:
                log.warning("%s holds no DeepSpeed engine checkpoint: the optimizer starts afresh", ckpt)
        elif (ckpt_path / "optimizer.pt").exists():
            self.optimizer.load_state_dict(
                torch.load(ckpt_path / "optimizer.pt", map_location="cpu", weights_only=True)
            )
        else:
            log.warning("%s holds no optimizer.pt: the optimizer starts afresh", ckpt)
        if (ckpt_path / "scheduler.pt").exists():
            sched = self.lr_scheduler
            sched.load_state_dict(torch.load(ckpt_path / "scheduler.pt", weights_only=True))
            if isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
                # the saved lr belongs to the saved run's schedule; with another --total_episodes
                # the schedule is this run's, so the current lr is recomputed from it (no-op if same)
                lrs = [
                    base * f(sched.last_epoch)
                    for base, f in zip(sched.base_lrs, sched.lr_lambdas, strict=True)
                ]
                for group, lr in zip(sched.optimizer.param_groups, lrs, strict=True):
                    group["lr"] = lr
                sched._last_lr = lrs
        else:
            log.warning("%s holds no scheduler.pt: the learning-rate schedule restarts", ckpt)
        return saved


def _forever(batches):
    while True:
        yield from batches


def _empty_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
# Building the trainer and the training entry point


VALUE_DIR = "value_model"


@contextlib.contextmanager
def _without_load_report():
    """transformers' load report (a warning listing missing weights) held back while the value
    model loads: its new 1-logit head is always missing from a causal-LM checkpoint."""
    report = logging.getLogger("transformers.modeling_utils")
    level = report.level
    report.setLevel(logging.ERROR)
    try:
        yield
    finally:
        report.setLevel(level)


def _announce_value_head(path: str, missing: list[str]) -> None:
    """One line for the expected new head; the full list when anything else was missing."""
    head = [k for k in missing if k.split(".")[0] == "score"]
    if missing and len(head) == len(missing):
        log.info(
            "value model %s: its 1-logit head (%s) is newly initialised, as PPO's value model starts",
            path,
            ", ".join(head),
        )
    elif missing:
        log.warning(
            "value model %s: weights not in the checkpoint, newly initialised: %s", path, ", ".join(missing)
        )


def _shuffle_sampler(loader):
    """The RandomSampler under a (prepared) dataloader, or None."""
    from torch.utils.data import RandomSampler

    bs = getattr(loader, "batch_sampler", None)
    while bs is not None and not hasattr(bs, "sampler") and hasattr(bs, "batch_sampler"):
        bs = bs.batch_sampler  # accelerate's BatchSamplerShard wraps the BatchSampler
    sampler = getattr(bs, "sampler", None) if bs is not None else getattr(loader, "sampler", None)
    return sampler if isinstance(sampler, RandomSampler) else None


class _EpochBatches:
    """The prompt loader, pass after pass, each pass shuffled by `seed + epoch`; the first pass
    iterated starts at global batch `start` (the batches of the finished updates are skipped).

    The shuffle and the DataLoader's worker base seed draw from dedicated generators, so iterating
    never touches the global torch RNG (which the restored rollout sampling uses)."""

    def __init__(self, loader, seed: int, start: int = 0):
        self.loader = loader
        self.seed = seed
        self.next_batch = start
        sampler = _shuffle_sampler(loader)
        base = getattr(loader, "base_dataloader", loader)
        self.generator = getattr(sampler, "generator", None) or torch.Generator()
        if sampler is not None:
            sampler.generator = self.generator
        self.base_generator = getattr(base, "generator", None) or torch.Generator()
        base.generator = self.base_generator

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        n = len(self.loader)
        if n == 0:  # no batch would ever come (check_one_batch stops such runs earlier)
            raise InputError(
                "the PPO training data holds no full batch; lower the batch flags or give more rows"
            )
        epoch, skip = divmod(self.next_batch, n)
        self.generator.manual_seed(self.seed + epoch)
        self.base_generator.manual_seed(self.seed + epoch)
        for i, batch in enumerate(self.loader):
            if i < skip:
                continue
            self.next_batch += 1
            yield batch


def build_ppo_trainer(
    script_args: PPOScriptArguments,
    args,
    model_args,
    resume_from: str | None = None,
    identity: dict | None = None,
):
    """Policy, reference policy, value model, data and reward hook wired into PPOTrainer.

    With `resume_from` (a complete checkpoint-N), the policy and the value model start from the
    checkpoint's weights; the reference policy is always --model_name_or_path."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, set_seed

    policy_path = model_args.model_name_or_path
    if not policy_path:
        raise InputError("--model_name_or_path is required")
    for p, what in ((policy_path, "policy model"), (script_args.value_model_path, "value model"),
                    (args.reward_model_path, "reward model")):  # fmt: skip
        check_model_path(p, what)
    if identity is None:  # train_ppo builds it once and passes it in
        identity = ppo_identity(script_args, args, model_args)  # before the flags are adjusted below
    if args.stop_token_id is not None:
        args.stop_token = None
    check_rl_flags(args, model_args, total_episodes=True)
    if args.process_index == 0:
        log.info(args.global_batch_line)
        if args.ignored_flags:
            log.warning("the PPO loop ignores %s: no effect on this run", ", ".join(args.ignored_flags))
    train_dtype, frozen_dtype = model_dtypes(torch_dtype(model_args.dtype), args.bf16, is_deepspeed_run(args))
    remote = {"trust_remote_code": script_args.trust_remote_code}
    attn = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}

    tokenizer, data = load_tokenizer_and_data(policy_path, script_args, args.seed, **remote)
    check_one_batch(len(data.train), len(data.eval), args)
    train_ds = Dataset.from_dict({"input_ids": [r["input_ids"] for r in data.train]})
    eval_ds = Dataset.from_dict(
        {"input_ids": [r["input_ids"] for r in data.eval]}
    )  # may be empty: no batches
    verifier = make_verifier(script_args, args.reward_model_path, dtype=frozen_dtype, **remote)

    set_seed(args.seed)  # the value head's random init is reproducible (the trainer seeds only later)
    start_policy, value_path = policy_path, script_args.value_model_path or policy_path
    if resume_from:
        ckpt = Path(resume_from)
        if any(ckpt.glob("*.safetensors")) or any(ckpt.glob("pytorch_model*.bin")):
            start_policy = str(ckpt)
        if (ckpt / VALUE_DIR / "config.json").exists():
            value_path = str(ckpt / VALUE_DIR)
    policy = load_pretrained(
        AutoModelForCausalLM, start_policy, "policy model", dtype=train_dtype, **remote, **attn
    )
    ref_policy = load_pretrained(
        AutoModelForCausalLM, policy_path, "policy model", dtype=frozen_dtype, **remote, **attn
    )
    with _without_load_report():  # a new value head is expected: one line of ours says so below
        value_model, info = load_pretrained(
            AutoModelForSequenceClassification, value_path, "value model", num_labels=1,
            dtype=train_dtype, output_loading_info=True, **remote, **attn,
        )  # fmt: skip
    _announce_value_head(value_path, info.get("missing_keys") or [])
    seeded_init(value_model, [k for k in info.get("missing_keys") or [] if k.startswith("score.")], args.seed)
    if args.gradient_checkpointing:
        enable_gradient_checkpointing((policy, value_model), args.gradient_checkpointing_kwargs)

    added = choose_pad_token(tokenizer, policy.generation_config, avoid_ids=prompt_token_ids(data))
    if added and args.use_vllm:
        raise InputError(
            f"--use_vllm: the policy tokenizer of {policy_path} has no token usable as the pad, and vLLM "
            "loads the model as saved; add a pad token to the policy first (or train without --use_vllm)"
        )
    log.info("pad token: %r (id %d)", tokenizer.pad_token, tokenizer.pad_token_id)
    vocab = len(tokenizer)
    for m, what in ((policy, "policy"), (ref_policy, "policy"), (value_model, f"value model {value_path}")):
        n_emb = embedding_rows(m)  # the weight's shape reads 0 when ZeRO-3 has partitioned it
        if n_emb < vocab:
            if not added:
                raise InputError(
                    f"{what} has {n_emb} token embeddings but the policy tokenizer has {vocab} tokens"
                )
            m.resize_token_embeddings(vocab)
        set_pad_id(m, tokenizer.pad_token_id)
    saved_eos = policy.generation_config.eos_token_id  # the trainer narrows it to the stop token

    hook = RewardHook(tokenizer, data.table, verifier, script_args.reward_config())

    trainer = PPOTrainer(
        args=args,
        processing_class=tokenizer,
        model=policy,
        ref_model=ref_policy,
        reward_hook=hook,
        value_model=value_model,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
    )
    trainer.rl_data = data
    trainer.run_identity = identity  # copied into every checkpoint
    trainer.saved_eos_token_id = saved_eos
    return trainer


def check_one_batch(n_train: int, n_eval: int, args) -> None:
    """InputError unless the training rows fill at least one PPO batch: the loader drops a ragged
    last batch, so with none the loop would have no prompts."""
    world = getattr(args, "world_size", None)  # filled in only when the trainer is built
    if not world:
        from accelerate import PartialState

        world = PartialState().num_processes
    need = args.per_device_train_batch_size * args.gradient_accumulation_steps * world
    if n_train < need:
        raise InputError(
            f"{n_train} training rows ({n_eval} more held out for evaluation) are fewer than one PPO batch of "
            f"{need} (--per_device_train_batch_size {args.per_device_train_batch_size} x "
            f"--gradient_accumulation_steps {args.gradient_accumulation_steps} x {world} process(es)); "
            "lower these flags or give more rows"
        )


# Flags that change the trained policy: a checkpoint is resumed only by a run with the same values.
# --total_episodes is not one of them: a larger one continues a finished run (see the module doc).
PPO_RESULT_FLAGS = (
    "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_mini_batches",
    "num_ppo_epochs", "response_length", "temperature", "stop_token", "stop_token_id", "missing_eos_penalty",
    "whiten_rewards", "kl_coef", "kl_estimator", "cliprange", "vf_coef", "cliprange_value", "gamma", "lam",
    "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm", "optim", "seed", "bf16", "fp16",
    "global_batch_size",
)  # fmt: skip


def ppo_identity(script_args: PPOScriptArguments, args, model_args) -> dict:
    """What a checkpoint must have been trained from to be resumed by this run: policy, data,
    verifier and value-model sources and the result-changing flags."""
    settings = {name: getattr(args, name, None) for name in PPO_RESULT_FLAGS}
    if settings[
        "global_batch_size"
    ]:  # the accumulation follows the GPU count: the global batch is the recipe
        settings["gradient_accumulation_steps"] = None
    settings.update({name: getattr(script_args, name) for name in SCRIPT_RESULT_FLAGS})
    settings["dtype"] = model_args.dtype
    return run_identity(
        {
            "model_name_or_path": model_args.model_name_or_path,
            "dataset_name": script_args.dataset_name,
            "reward_model_path": args.reward_model_path,
            "value_model_path": script_args.value_model_path,
        },
        settings,
    )


def is_complete_checkpoint(ckpt: Path) -> bool:
    """trainer_state.json (written last) plus a value model (HF folder or DeepSpeed engine shards)."""
    return has_trainer_state(ckpt) and (
        (ckpt / VALUE_DIR / "config.json").exists() or any(ckpt.glob("global_step*"))
    )


# one run per output folder (lock.py)
@locked("ppo", lambda script_args, args, model_args: args.output_dir)
def train_ppo(script_args: PPOScriptArguments, args, model_args) -> Path:
    """Run PPO with the verifier reward, resuming from the newest complete checkpoint of the
    same model and data unless --resume False; save the final policy to <output_dir>/<run_name>."""
    identity = ppo_identity(script_args, args, model_args)
    resume_from = resume_point(
        args.output_dir, script_args.resume, identity, "use another --output_dir", is_complete_checkpoint
    )
    trainer = build_ppo_trainer(script_args, args, model_args, resume_from, identity)  # checks flags first
    return train_and_save(
        trainer, identity, resume_from, script_args, args, model_args, is_complete_checkpoint
    )
