"""PPO's reward: the medical verifier as a model-shaped scorer of rollout token ids.

`RewardHook` takes a batch of rollouts as token ids (left-padded prompt, response, pads; the
interface of a sequence-classification reward model: a backbone named by `base_model_prefix`,
called with the ids and the attention mask, and `score` on its last hidden state), and:

1. recovers each row's prompt and response from the ids and the attention mask (prompts are
   left-padded, responses right-padded and cut at the first pad);
2. finds the row's reference answer by the exact prompt token ids (`PromptTable`), and checks that
   every row's prompt ends at the same column (the rollout's context length);
3. decodes the response with the policy tokenizer and scores it with `huatuo_o1.rl.rewards` (the
   verifier re-encodes it with its own tokenizer and template): 1 right, 0.1 wrong, 0 malformed;
4. returns the score broadcast over the sequence, so whatever position is read is the score.

`sequence_scores` is the call the trainer makes, for the value model and the verifier alike.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from huatuo_o1.rl.data import PromptTable
from huatuo_o1.rl.ppo_core import first_true_indices, model_inputs
from huatuo_o1.rl.rewards import RewardConfig, Verifier, score_responses


def sequence_scores(model: nn.Module, query_responses: torch.Tensor, pad_token_id: int, context_length: int):
    """(per-token outputs (B, L, 1), the output at each row's last non-pad token (B,), that index (B,)).

    `model` is a sequence classifier (value model, verifier, RewardHook): its backbone
    (`base_model_prefix`) runs on the ids with pads masked to 0, and `score` on the last hidden
    state. Positions count from 0 over each row's real tokens (left pads skipped)."""
    backbone = getattr(model, model.base_model_prefix)
    output = backbone(
        **model_inputs(query_responses, pad_token_id),
        return_dict=True,
        output_hidden_states=True,
        use_cache=False,
    )
    logits = model.score(output.hidden_states[-1])
    lengths = first_true_indices(query_responses[:, context_length:] == pad_token_id) - 1 + context_length
    rows = torch.arange(logits.size(0), device=logits.device)
    return logits, logits[rows, lengths].squeeze(-1), lengths


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
    """A reward model made of the verifier: `sequence_scores(hook, ...)` returns each row's reward."""

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
