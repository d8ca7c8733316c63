"""PPO (stage 2 RL) on trl 1.12's `PPOTrainer`, with the medical verifier plugged in as a reward hook.

Choice: we pin trl 1.12.0 (the last release with `trl.experimental.ppo`) and do not fork its
trainer. trl's rollout loop scores each batch with
`trl.experimental.utils.get_reward(reward_model, query_responses, pad_token_id, context_length)`,
which only uses two attributes of the reward model: the backbone named by `base_model_prefix`
(called with input ids, pads masked to 0, and the attention mask) and `score` (applied to the
backbone's last hidden state). `RewardHook` is an `nn.Module` with exactly that interface. Its
backbone:

1. recovers each row's prompt and response from the ids and the attention mask (prompts are
   left-padded, responses right-padded and cut at the first pad, as trl's own
   `sequence_lengths` are);
2. finds the row's reference answer by the exact prompt token ids (`PromptTable`), and checks
   that every row's prompt ends at the same column (trl's `context_length`);
3. decodes the response with the policy tokenizer and scores it with `huatuo_o1.rl.rewards`
   (the verifier re-encodes it with its own tokenizer and template);
4. returns the score broadcast over the sequence, so whatever position trl reads is the score.

trl then does the PPO math unchanged: per-token KL `-kl_coef * (logp - ref_logp)` (k1), the score
added at the end of the response, GAE with `gamma`/`lam`, advantage whitening, clipped policy and
value losses, `num_ppo_epochs` over `num_mini_batches`.

Score position (kept as trl does it, pinned by tests): trl adds the score at index
`sequence_length + 1`, one past the response's last token (its eos), i.e. on the first pad; only
a response that fills `response_length` gets it on its last token. That extra step has no KL term
(its log-probs are masked) and no policy loss, but its value is trained, so the eos token's
advantage is `kl_L - V_L + lam * score + (1 - lam) * V_{L+1}` instead of `kl_L + score - V_L`;
the two agree once the value head has learnt V_{L+1} = score. Moving it would mean forking
trl's 300-line `train()`: the placement is inline there, with no hook.

`MedicalPPOTrainer` adds logging (mean reward, share well-formed, share correct, response
length; trl logs KL and the policy/value losses), keeps evaluation samples out of those stats,
and saves the policy itself under DeepSpeed (trl 1.12 + transformers 5 crash there: see
`save_model`), with the policy's own generation stop tokens.

Resume (interrupted runs continue without redoing updates). trl's `train()` always starts at
update 1 and its checkpoints lack the value model, so we add, without forking `train()`:

- Checkpoints: `<output_dir>/checkpoint-N` (N = finished updates) is trl's/transformers' checkpoint
  (policy as a plain HF folder, `optimizer.pt`, `scheduler.pt`, `rng_state.pth`,
  `trainer_state.json` with `global_step`/`episode`; under DeepSpeed the engine's `global_stepK/`
  shards of policy + value + optimizer instead of `optimizer.pt`) plus, written first by our
  `_save_checkpoint`, `value_model/` (a plain HF folder) and `run_args.json` (the run's
  identity: model, data, verifier and value-model sources and the result-changing flags,
  `ppo_identity`). `trainer_state.json` is written last, so a
  checkpoint holding it (and a value model) is complete.
- `train_ppo` resumes by default from the newest complete checkpoint in `--output_dir` when its
  `run_args.json` names the same sources and flags (else a one-line error naming the differing
  flags, exit 2; `--resume False`
  starts over). The policy is loaded from checkpoint-N, the value model from
  checkpoint-N/value_model, the reference policy from `--model_name_or_path` again (the KL stays
  anchored to the SFT model). Optimizer and LR scheduler states are loaded into trl's (prepared)
  optimizer and scheduler; under DeepSpeed the engine checkpoint is loaded with transformers'
  `deepspeed_load_checkpoint` (policy, value, optimizer) and the scheduler from `scheduler.pt`.
- Starting at update N+1: trl's `train()` resets `global_step`/`episode`, sets
  `max_steps = num_total_batches`, calls `on_train_begin`, and only then reads
  `args.num_total_batches` for its loop. A callback (`_ResumeAt`) run first in `on_train_begin` sets
  `global_step = N`, `episode` and `log_history` from the checkpoint, restores the RNG states, and
  lowers `args.num_total_batches` to the remaining updates (restored after `train()`), so logging,
  saving (`checkpoint-M` numbering), the progress bar and the LR schedule all continue from N. A
  rerun with a larger `--total_episodes` continues the same way (the LR schedule is then the one of
  the new total). A finished run (its last checkpoint at the final update) just re-saves the final
  policy.
- Data order: trl shuffles with the global torch RNG, which its sampling also consumes, so the
  order after a restart could not be reproduced. `_EpochBatches` (used for every run, fresh or
  resumed) reseeds the dataloader's shuffle with `--seed + epoch` before each pass over the data
  and, on resume, skips the batches the N finished updates consumed (collated, not generated:
  cheap). A resumed run therefore sees exactly the prompts an uninterrupted run would, none twice;
  with the RNG states restored (and the value head's init seeded by `--seed`), the tiny CPU test's
  resumed run is bit-identical to an uninterrupted one.
- Not restored: the loop's `update` counter (it only spaces `--num_sample_generations` samples) and
  the `eps` metric, which counts resumed episodes over the new run's time.

Shared with GRPO (huatuo_o1.rl.common): flags, data, model loading, pad choice, verifier; run
identity, resume decision and the final save (huatuo_o1.train.checkpoints).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
from transformers import TrainerCallback  # noqa: E402
from trl.experimental.ppo import PPOConfig, PPOTrainer  # noqa: E402

from huatuo_o1.io import InputError
from huatuo_o1.lock import locked
from huatuo_o1.models import check_model_path, load_pretrained
from huatuo_o1.rl.common import (
    REPORT_TO_HELP,
    SCRIPT_RESULT_FLAGS,
    WARMUP_RATIO_HELP,
    apply_compat_defaults,
    choose_pad_token,
    load_tokenizer_and_data,
    make_verifier,
    prompt_token_ids,
    set_pad_id,
    torch_dtype,
    train_and_save,
)
from huatuo_o1.rl.data import PromptTable
from huatuo_o1.rl.options import (
    GLOBAL_BATCH_HELP,
    apply_global_batch,
    check_rl_flags,
    enable_gradient_checkpointing,
    generation_in_eval_mode,
    ignored_ppo_flags,
    is_deepspeed_run,
    model_dtypes,
)
from huatuo_o1.rl.ppo import PPOScriptArguments
from huatuo_o1.rl.rewards import RewardConfig, Verifier, score_responses
from huatuo_o1.train.checkpoints import (
    has_trainer_state,
    resume_point,
    run_identity,
    write_identity,
)
from huatuo_o1.train.multi_gpu import embedding_rows, seeded_init
from huatuo_o1.train.save_only_model import fast_forward_scheduler, is_weights_only, resume_note

log = logging.getLogger(__name__)


class _RewardBackbone(nn.Module):
    """Does the work of `RewardHook` (a child module, so ZeRO-3 hooks cover the verifier)."""

    def __init__(self, tokenizer, table: PromptTable, verifier: Verifier, cfg: RewardConfig):
        super().__init__()
        self.tokenizer = tokenizer
        self.table = table
        self.verifier = verifier
        self.cfg = cfg
        vmodel = getattr(verifier, "model", None)
        if isinstance(vmodel, nn.Module):
            self.verifier_model = vmodel  # registered: moves with .to() and is seen by deepspeed
        # A frozen anchor so even a parameter-free verifier is a valid module for deepspeed.
        self.anchor = nn.Parameter(torch.zeros(1), requires_grad=False)
        self.recording = True
        self.reset_stats()
        self.last_batch: list[dict] = []

    def reset_stats(self) -> None:
        self.stats = {"n": 0, "reward": 0.0, "well_formed": 0, "correct": 0, "length": 0}

    def split(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """Per row: (prompt ids, response ids, reference).

        Each row is [left pads][prompt][response][right pads]. The prompt is a registered prompt
        the row starts with; all prompts end at the same column (trl's context_length), which
        also settles the (theoretical) case of a response that continues into a longer prompt.
        """
        seqs, cands = [], []
        for ids, mask in zip(input_ids.tolist(), attention_mask.bool().tolist(), strict=True):
            start = mask.index(True) if True in mask else len(mask)
            stop = start
            while stop < len(mask) and mask[stop]:
                stop += 1
            seq = ids[start:stop]
            hits = {start + n: (n, ref) for n, ref in self.table.match_prefixes(seq)}
            if not hits:
                raise RuntimeError(
                    "a rollout's prompt is not one of the dataset's prompts (prompt table mismatch)"
                )
            seqs.append(seq)
            cands.append(hits)
        common = set.intersection(*(set(h) for h in cands))
        if not common:
            raise RuntimeError("rollout prompts do not end at one column: expected left-padded prompts")
        end = max(common)
        rows = []
        for seq, hits in zip(seqs, cands, strict=True):
            n, ref = hits[end]
            rows.append((seq[:n], seq[n:], ref))
        return rows

    def forward(self, input_ids=None, attention_mask=None, **_unused):
        rows = self.split(input_ids, attention_mask)
        responses = self.tokenizer.batch_decode([r for _, r, _ in rows], skip_special_tokens=True)
        refs = [ref for _, _, ref in rows]
        result = score_responses(responses, refs, self.verifier, self.cfg)
        if self.recording:
            s = self.stats
            s["n"] += len(rows)
            s["reward"] += sum(result.rewards)
            s["well_formed"] += sum(result.well_formed)
            s["correct"] += sum(result.correct)
            s["length"] += sum(len(r) for _, r, _ in rows)
        self.last_batch = [
            {"prompt_ids": p, "response_len": len(r), "response": text, "reference": ref, "reward": rew,
             "well_formed": wf}
            for (p, r, ref), text, rew, wf in zip(
                rows, responses, result.rewards, result.well_formed, strict=True
            )
        ]  # fmt: skip
        scores = torch.tensor(result.rewards, dtype=torch.float32, device=input_ids.device)
        hidden = scores.view(-1, 1, 1).expand(-1, input_ids.shape[1], 1)
        return SimpleNamespace(hidden_states=(hidden,))


class RewardHook(nn.Module):
    """A stand-in for trl's reward model: `get_reward(hook, ...)` returns the verifier reward."""

    base_model_prefix = "scorer"

    def __init__(self, tokenizer, table: PromptTable, verifier: Verifier, cfg: RewardConfig | None = None):
        super().__init__()
        self.scorer = _RewardBackbone(tokenizer, table, verifier, cfg or RewardConfig())
        self.score = nn.Identity()
        vmodel = getattr(verifier, "model", None)
        self.config = getattr(vmodel, "config", None) or SimpleNamespace(hidden_size=None)

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        return self.score(self.scorer(input_ids=input_ids, attention_mask=attention_mask).hidden_states[-1])

    def pop_stats(self) -> dict:
        s = dict(self.scorer.stats)
        self.scorer.reset_stats()
        return s


VALUE_DIR = "value_model"
_NOT_GATHERED = object()  # no gathered state dict cached (None is a gathered one on non-main ranks)


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
    """trl's dataloader, pass after pass, each pass shuffled by `seed + epoch`; the first pass
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
        if n == 0:  # trl would wait for a batch forever (check_one_batch stops such runs earlier)
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


class _ResumeAt(TrainerCallback):
    """Run first in trl's on_train_begin (after trl reset its state, before its loop reads
    args.num_total_batches): put the state at the checkpoint's update and shorten the loop."""

    def __init__(self, trainer, ckpt, saved, done: int, total: int):
        self.trainer, self.ckpt, self.saved, self.done, self.total = trainer, ckpt, saved, done, total

    def on_train_begin(self, args, state, control, **kwargs):
        if self.saved is None:
            return
        state.global_step = self.done
        state.episode = getattr(self.saved, "episode", 0) or self.done * args.batch_size
        state.epoch = state.episode / self.trainer.train_dataset_len
        state.log_history = list(self.saved.log_history)
        args.num_total_batches = self.total - self.done
        self.trainer._load_rng_state(self.ckpt)


class MedicalPPOTrainer(PPOTrainer):
    """trl's PPOTrainer plus the reward hook's statistics in every log line."""

    def __init__(self, *args, reward_hook: RewardHook, **kwargs):
        self.reward_hook = reward_hook
        super().__init__(*args, reward_model=reward_hook, **kwargs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
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

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save the policy alone as a plain HF folder (final model and every checkpoint).

        Without DeepSpeed, trl's own path (the policy through transformers' `Trainer._save`). Under
        DeepSpeed, trl 1.12 swaps the bare policy in as `self.deepspeed` and transformers then calls
        `self.deepspeed.config.get(...)` on a model config (AttributeError), so we do it here: the
        full state dict of the real engine (policy + value model; gathered from the ZeRO-3 shards,
        a collective every rank joins), the `policy.` keys with the prefix stripped, and
        `save_pretrained` with the tokenizer on the main process. The generation config keeps the
        policy's own stop tokens (trl narrows them to one stop token for its rollouts).
        """
        output_dir = output_dir or self.args.output_dir
        policy = self.accelerator.unwrap_model(self.model).policy
        gen = getattr(policy, "generation_config", None)
        rollout_eos = gen.eos_token_id if gen is not None else None
        if gen is not None and getattr(self, "saved_eos_token_id", None) is not None:
            gen.eos_token_id = self.saved_eos_token_id
        try:
            if not self.is_deepspeed_enabled:
                super().save_model(output_dir, _internal_call)
                return
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

    # -- checkpoints and resume (see the module docstring) ------------------------------------

    def _gathered_state(self):
        """Under DeepSpeed, the engine's full state dict (policy. + value_model. keys), gathered once
        per checkpoint (a collective: every rank calls it). ZeRO-3 returns it on the main process
        only and None on the others, so whether a gathered state is cached is kept apart from its
        value (`_NOT_GATHERED`): every rank then runs the same collectives (a None taken for "no
        cache" made the other ranks gather again while the main one waited in a barrier: a
        deadlock at the first checkpoint). ValueError under ZeRO-3 without
        stage3_gather_16bit_weights_on_model_save."""
        cached = getattr(self, "_state_cache", _NOT_GATHERED)
        return cached if cached is not _NOT_GATHERED else self.accelerator.get_state_dict(self.model)

    def save_value_model(self, output_dir: str | Path) -> bool:
        """The value model as a plain HF folder (sequence classifier, 1 label). False when under
        ZeRO-3 without gathered weights: the engine checkpoint then holds it."""
        value = self.accelerator.unwrap_model(self.model).value_model
        state = None
        if self.is_deepspeed_enabled:
            try:
                full = self._gathered_state()
            except ValueError:
                return False
            if full is not None:  # None on the processes other than the main one (ZeRO-3)
                state = {
                    k.removeprefix("value_model."): v for k, v in full.items() if k.startswith("value_model.")
                }
        if self.accelerator.is_main_process:
            value.save_pretrained(output_dir, state_dict=state, safe_serialization=True)
        self.accelerator.wait_for_everyone()
        return True

    def _save_checkpoint(self, model, trial):
        """trl's checkpoint plus value_model/ and run_args.json, written before trainer_state.json
        (which transformers writes last, so its presence marks a complete checkpoint)."""
        ckpt = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
        self._state_cache = _NOT_GATHERED
        try:
            if self.is_deepspeed_enabled:
                try:
                    self._state_cache = self._gathered_state()  # None on non-main ranks under ZeRO-3
                except ValueError:
                    pass
            self.save_value_model(ckpt / VALUE_DIR)
            identity = getattr(self, "run_identity", None)
            if identity and self.accelerator.is_main_process:
                write_identity(ckpt, identity)
            super()._save_checkpoint(model, trial)
        finally:
            self._state_cache = _NOT_GATHERED

    def _load_resume_state(self, ckpt: str):
        """Optimizer + scheduler (+ DeepSpeed engine) states of `ckpt`; returns its trainer state."""
        from trl.experimental.ppo.ppo_trainer import OnlineTrainerState

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

    def train(self, resume_from_checkpoint: str | None = None):
        """trl's PPO loop, starting after the updates `resume_from_checkpoint` finished (if given)."""
        args = self.args
        total = args.num_total_batches
        done, saved = 0, None
        if resume_from_checkpoint:
            saved = self._load_resume_state(resume_from_checkpoint)
            done = min(saved.global_step, total)
            log.info(
                "resuming from %s: update %d of %d (episode %d)",
                resume_from_checkpoint, done + 1, total, getattr(saved, "episode", done * args.batch_size),
            )  # fmt: skip
        loader = self.dataloader
        self.dataloader = _EpochBatches(loader, args.seed, start=done)
        resume_cb = _ResumeAt(self, resume_from_checkpoint, saved, done, total)
        self.callback_handler.callbacks.insert(0, resume_cb)
        try:
            # a checkpointed layer in train mode drops the KV cache: rollouts generate in eval mode
            with generation_in_eval_mode() if args.gradient_checkpointing else contextlib.nullcontext():
                return super().train()
        finally:
            args.num_total_batches = total
            self.dataloader = loader
            self.callback_handler.callbacks.remove(resume_cb)

    def generate_completions(self, sampling: bool = False):
        self.reward_hook.scorer.recording = False
        try:
            return super().generate_completions(sampling=sampling)
        finally:
            self.reward_hook.scorer.recording = True


# ---------------------------------------------------------------------------------------------
# Script arguments and the training entry point


@dataclass
class MedicalPPOConfig(PPOConfig):
    """trl's PPOConfig; defaults that differ: stop at eos, no hub reward model, offline-safe."""

    stop_token: str | None = field(
        default="eos",
        metadata={"help": "Stop generation at the policy's eos ('eos'), or None to use --stop_token_id."},
    )
    reward_model_path: str | None = field(
        default=None, metadata={"help": "Verifier: a 2-label sequence classifier folder or hub name."}
    )
    sft_model_path: str | None = field(default=None, metadata={"help": "Unused (use --model_name_or_path)."})
    warmup_ratio: float | None = field(default=None, metadata={"help": WARMUP_RATIO_HELP})
    report_to: None | str | list[str] = field(default="wandb", metadata={"help": REPORT_TO_HELP})
    global_batch_size: int | None = field(default=None, metadata={"help": GLOBAL_BATCH_HELP})

    def __post_init__(self):
        apply_compat_defaults(self)
        self.ignored_flags = ignored_ppo_flags(self)  # before anything fills them in
        self.global_batch_line = apply_global_batch(self, self.num_mini_batches)
        super().__post_init__()


def build_ppo_trainer(
    script_args: PPOScriptArguments,
    args,
    model_args,
    resume_from: str | None = None,
    identity: dict | None = None,
):
    """Policy, reference policy, value model, data and reward hook wired into MedicalPPOTrainer.

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
            log.warning("trl's PPO loop ignores %s: no effect on this run", ", ".join(args.ignored_flags))
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

    set_seed(args.seed)  # the value head's random init (trl seeds only later) is reproducible
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
    saved_eos = policy.generation_config.eos_token_id  # trl overwrites it with the stop token

    hook = RewardHook(tokenizer, data.table, verifier, script_args.reward_config())

    trainer = MedicalPPOTrainer(
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
    """InputError unless the training rows fill at least one PPO batch: trl's loader drops a ragged
    last batch and its loop waits for the next batch forever when there is none."""
    world = getattr(args, "world_size", None)  # trl fills it in only when the trainer is built
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
    """Run trl's PPO with the verifier reward, resuming from the newest complete checkpoint of the
    same model and data unless --resume False; save the final policy to <output_dir>/<run_name>."""
    identity = ppo_identity(script_args, args, model_args)
    resume_from = resume_point(
        args.output_dir, script_args.resume, identity, "use another --output_dir", is_complete_checkpoint
    )
    trainer = build_ppo_trainer(script_args, args, model_args, resume_from, identity)  # checks flags first
    return train_and_save(
        trainer, identity, resume_from, script_args, args, model_args, is_complete_checkpoint
    )
