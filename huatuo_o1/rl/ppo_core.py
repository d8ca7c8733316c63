"""The paper's PPO as pure tensor functions: rewards, advantages, losses (no models, no processes).

The trainer (huatuo_o1/rl/ppo_trainer.py) runs these on each rollout batch; everything here takes
and returns tensors, so each step can be read and tested alone. The maths is trl 1.12's
`PPOTrainer` (the last trl release with PPO), operation for operation, so one update of ours equals
one of trl's to float32 rounding (tests/trl_ref). Shapes: B rows (episodes), T response tokens
(`--response_length`, the rollout's width), V vocabulary.

One step of PPO on a rollout batch:

1. `response_masks`: a response ends at the first stop token (`truncate_after_stop`); its last
   token is `sequence_lengths` (the stop token itself). `padding_mask` covers what follows it,
   `padding_mask_p1` one token less (see the score position below).
2. `token_rewards`: the per-token KL penalty `-kl_coef * kl` (k1 or k3 estimator, `kl_penalty`)
   plus the verifier's score (1 right, 0.1 wrong, 0 without the `## Thinking` format; minus
   `--missing_eos_penalty` when no eos was generated, `penalize_missing_eos`) on one token.
3. `whiten` of the rewards (`--whiten_rewards`), then `gae_advantages` with gamma and lam, returns
   = advantages + values, advantages whitened. In a multi-process run both are whitened over the
   global batch (every process's rows together, `masked_moments`), so 8 GPUs give the numbers one
   gives at the same global batch; trl whitened each process's rows alone (the same on one process).
4. For each PPO epoch, mini-batch and micro-batch: `policy_loss` (clipped ratio) +
   `vf_coef * value_loss` (clipped value), one backward.

Score position (trl's, kept for parity): the score is added at `sequence_lengths + 1`, one past the
response's last token (its stop token), i.e. on the first pad; only a response that fills
`response_length` gets it on its last token. That extra step has no KL term (its log-probs are
masked) and no policy loss, but its value is trained, so the stop token's advantage is
`kl_L - V_L + lam * score + (1 - lam) * V_{L+1}` instead of `kl_L + score - V_L`; the two agree
once the value head has learnt V_{L+1} = score.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

INVALID_LOGPROB = 1.0  # the log-prob written at padding positions (trl's; any constant works)


def first_true_indices(bools: torch.Tensor) -> torch.Tensor:
    """Index of the first True of each row, or the row length when there is none.

    bools: (B, T) -> (B,) long."""
    row_len = bools.size(-1)
    zero_or_index = row_len * (~bools).long() + torch.arange(row_len, device=bools.device)
    return torch.min(zero_or_index, dim=-1).values


def model_inputs(query_responses: torch.Tensor, pad_token_id: int) -> dict:
    """The keyword inputs of a model run on prompt + response ids: pads masked to id 0 and out of
    the attention mask, positions counted from 0 over each row's real tokens (left pads skipped).

    query_responses: (B, L) -> input_ids, attention_mask, position_ids, each (B, L)."""
    attention_mask = query_responses != pad_token_id
    return {
        "input_ids": torch.masked_fill(query_responses, ~attention_mask, 0),
        "attention_mask": attention_mask,
        "position_ids": attention_mask.cumsum(1) - attention_mask.long(),
    }


def truncate_after_stop(
    responses: torch.Tensor, stop_token_id: int | None, pad_token_id: int
) -> torch.Tensor:
    """Every token after the first stop token replaced by the pad (the stop token itself is kept).

    responses: (B, T) token ids -> (B, T). No stop token: unchanged."""
    if stop_token_id is None:
        return responses
    trunc = first_true_indices(responses == stop_token_id).unsqueeze(-1)
    idxs = torch.arange(responses.shape[1], device=responses.device).view(1, -1)
    return torch.masked_fill(responses, idxs > trunc, pad_token_id)


def response_masks(postprocessed: torch.Tensor, pad_token_id: int):
    """(sequence_lengths, padding_mask, padding_mask_p1) of truncated responses.

    postprocessed: (B, T) ids, pads after the end. sequence_lengths: (B,) index of each response's
    last token (-1 when empty). padding_mask: (B, T) True after it (no log-prob, no policy loss);
    padding_mask_p1: (B, T) True after the token that follows it (no value loss)."""
    sequence_lengths = first_true_indices(postprocessed == pad_token_id) - 1
    idxs = torch.arange(postprocessed.shape[1], device=postprocessed.device).repeat(postprocessed.shape[0], 1)
    padding_mask = idxs > sequence_lengths.unsqueeze(1)
    padding_mask_p1 = idxs > (sequence_lengths + 1).unsqueeze(1)
    return sequence_lengths, padding_mask, padding_mask_p1


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token] per position, one row at a time (memory).

    logits: (B, T, V), tokens: (B, T) -> (B, T)."""
    if logits.dtype in (torch.float32, torch.float64):
        picked = torch.gather(logits, dim=-1, index=tokens.unsqueeze(-1)).squeeze(-1)
        lse = torch.stack([torch.logsumexp(row, dim=-1) for row in logits])
        return picked - lse
    # bf16/fp16: logsumexp is unstable there, so log_softmax row by row
    rows = [
        F.log_softmax(lg, dim=-1).gather(-1, ix.unsqueeze(-1)).squeeze(-1)
        for lg, ix in zip(logits, tokens, strict=True)
    ]
    return torch.stack(rows)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) per position. logits: (B, T, V) -> (B, T)."""
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - torch.sum(probs * logits, dim=-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, axis: int | None = None) -> torch.Tensor:
    """Mean of `values` where `mask` is True (over `axis`, or all)."""
    if axis is not None:
        return (values * mask).sum(axis=axis) / mask.sum(axis=axis)
    return (values * mask).sum() / mask.sum()


def masked_moments(
    values: torch.Tensor,
    mask: torch.Tensor,
    total=None,
    unbiased: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, variance) of `values` where `mask` is True, the variance Bessel-corrected unless
    `unbiased` is False. `total` sums a tensor over every process of
    a distributed run, so that the moments are those of all processes' values together (None: this
    process's values alone)."""
    total = total or (lambda t: t)
    n = total(mask.sum().to(values.dtype))
    mean = total((values * mask).sum()) / n
    variance = total(((values - mean) ** 2 * mask).sum()) / n
    if unbiased:
        if n == 0:
            raise ValueError("whitening over no token: raise the mini-batch size")
        variance = variance * (n / (n - 1))
    return mean, variance


def whiten(
    values: torch.Tensor,
    mask: torch.Tensor,
    shift_mean: bool = True,
    total=None,
) -> torch.Tensor:
    """(values - mean) / std over the masked positions; `shift_mean=False` keeps the mean. With
    `total` (masked_moments), the mean and std are those of the whole global batch, on every process.

    values, mask: (B, T) -> (B, T). Unmasked positions are transformed too (callers zero them)."""
    mean, var = masked_moments(values, mask, total)
    out = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out += mean
    return out


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token KL(policy || reference) estimate (http://joschu.net/blog/kl-approx.html).

    k1: logp - ref_logp (unbiased); k3: (r - 1) - log r with r = ref_p / p (unbiased, lower
    variance, never negative). logprobs, ref_logprobs: (B, T) -> (B, T)."""
    logr = ref_logprobs - logprobs
    if estimator == "k1":
        return -logr
    if estimator == "k3":
        return (logr.exp() - 1) - logr
    raise ValueError(f"--kl_estimator must be k1 or k3, got {estimator!r}")


def penalize_missing_eos(
    scores: torch.Tensor, postprocessed: torch.Tensor, eos_token_id: int, penalty: float | None
) -> torch.Tensor:
    """Scores minus `penalty` for rows whose (truncated) response holds no eos token.

    scores: (B,), postprocessed: (B, T) -> (B,) (a new tensor; None: unchanged)."""
    if penalty is None:
        return scores
    scores = scores.clone()
    has_eos = torch.any(postprocessed == eos_token_id, dim=-1)
    scores[~has_eos] -= penalty
    return scores


def token_rewards(
    kl: torch.Tensor, scores: torch.Tensor, sequence_lengths: torch.Tensor, kl_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rewards, non_score_reward): `-kl_coef * kl` per token, plus each row's score at
    `sequence_lengths + 1` (on the last token when that is past the end; module doc).

    kl: (B, T), scores: (B,), sequence_lengths: (B,) -> (B, T), (B, T)."""
    non_score_reward = -kl_coef * kl
    rewards = non_score_reward.clone()
    rows = torch.arange(rewards.size(0), device=rewards.device)
    p1 = sequence_lengths + 1
    end = torch.where(p1 < rewards.size(1), p1, sequence_lengths)
    rewards[rows, end] += scores
    return rewards, non_score_reward


def whiten_rewards(rewards: torch.Tensor, padding_mask_p1: torch.Tensor, total=None) -> torch.Tensor:
    """`--whiten_rewards`: rewards scaled to unit variance over the valid tokens (mean kept), zero
    after them; `total`: over all processes (whiten). (B, T) -> (B, T)."""
    out = whiten(rewards, mask=~padding_mask_p1, shift_mean=False, total=total)
    return torch.masked_fill(out, padding_mask_p1, 0)


def gae_advantages(
    rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation: (advantages, returns), returns = advantages + values.

    delta_t = r_t + gamma * V_{t+1} - V_t, A_t = delta_t + gamma * lam * A_{t+1}, V_T = 0.
    rewards, values: (B, T) (values zero after the valid tokens) -> (B, T), (B, T)."""
    lastgaelam = 0
    reversed_adv = []
    n = rewards.shape[1]
    for t in reversed(range(n)):
        nextvalues = values[:, t + 1] if t < n - 1 else 0.0
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]
        lastgaelam = delta + gamma * lam * lastgaelam
        reversed_adv.append(lastgaelam)
    advantages = torch.stack(reversed_adv[::-1], axis=1)
    return advantages, advantages + values


def whiten_advantages(advantages: torch.Tensor, padding_mask: torch.Tensor, total=None) -> torch.Tensor:
    """Advantages whitened over the response tokens, zero after them; `total`: over all processes
    (whiten). (B, T) -> (B, T)."""
    return torch.masked_fill(whiten(advantages, ~padding_mask, total=total), padding_mask, 0)


def policy_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    padding_mask: torch.Tensor,
    cliprange: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate: mean over tokens of max(-A * ratio, -A * clip(ratio, 1 +- eps)).

    All (B, T). Returns the loss and, detached: clipfrac (share of tokens where the clip binds),
    approxkl (0.5 * mean squared log-ratio, over all positions as trl), ratio (its mean) and
    logprobs_diff (B, T)."""
    logprobs_diff = new_logprobs - old_logprobs
    ratio = torch.exp(logprobs_diff)
    losses = -advantages * ratio
    losses_clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.max(losses, losses_clipped), ~padding_mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((losses_clipped > losses).float(), ~padding_mask),
            "approxkl": 0.5 * (logprobs_diff**2).mean(),
            "ratio": ratio.mean(),
        }
    return loss, stats


def value_loss(
    vpred: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    padding_mask_p1: torch.Tensor,
    cliprange_value: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """0.5 * mean over tokens of max((V - R)^2, (clip(V, V_old +- eps) - R)^2); and its clipfrac.

    All (B, T) -> scalar loss, scalar clipfrac (detached)."""
    vclipped = torch.clamp(vpred, old_values - cliprange_value, old_values + cliprange_value)
    losses = torch.square(vpred - returns)
    losses_clipped = torch.square(vclipped - returns)
    loss = 0.5 * masked_mean(torch.max(losses, losses_clipped), ~padding_mask_p1)
    with torch.no_grad():
        clipfrac = masked_mean((losses_clipped > losses).float(), ~padding_mask_p1)
    return loss, clipfrac
