"""PPO's maths (huatuo_o1/rl/ppo_core.py) on small hand-checked tensors: stop tokens and masks, the
KL estimators, where the score lands, GAE, whitening, the clipped losses. (Equality with trl 1.12's
PPOTrainer, update for update, is tests/trl_ref.)"""

from __future__ import annotations

import pytest
import torch

from huatuo_o1.rl import ppo_core as core

PAD, EOS = 0, 9


def test_stop_token_truncation_and_masks():
    responses = torch.tensor([[5, EOS, 6, 7], [5, 6, 7, 8], [EOS, 3, 3, 3]])
    post = core.truncate_after_stop(responses, EOS, PAD)
    assert post.tolist() == [[5, EOS, PAD, PAD], [5, 6, 7, 8], [EOS, PAD, PAD, PAD]]
    assert torch.equal(core.truncate_after_stop(responses, None, PAD), responses)
    lengths, mask, mask_p1 = core.response_masks(post, PAD)
    assert lengths.tolist() == [1, 3, 0]  # index of the last token (the stop token kept)
    assert mask.tolist() == [[False, False, True, True], [False] * 4, [False, True, True, True]]
    assert mask_p1.tolist() == [[False, False, False, True], [False] * 4, [False, False, True, True]]
    assert core.first_true_indices(torch.tensor([[False, False], [False, True]])).tolist() == [2, 1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_token_logprobs_is_log_softmax_gathered(dtype):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 11, generator=g).to(dtype)
    tokens = torch.randint(0, 11, (2, 3), generator=g)
    want = torch.log_softmax(logits.float(), -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(core.token_logprobs(logits, tokens).float(), want, atol=2e-2, rtol=0)
    ent = core.entropy_from_logits(torch.zeros(1, 1, 4))
    assert ent.item() == pytest.approx(torch.log(torch.tensor(4.0)).item())


def test_kl_estimators():
    logp = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-1.5, -1.0]])
    torch.testing.assert_close(core.kl_penalty(logp, ref, "k1"), torch.tensor([[0.5, -1.0]]))
    logr = ref - logp
    k3 = core.kl_penalty(logp, ref, "k3")
    torch.testing.assert_close(k3, logr.exp() - 1 - logr)
    assert (k3 >= 0).all()  # k3 is never negative, k1 can be
    with pytest.raises(ValueError, match="k1 or k3"):
        core.kl_penalty(logp, ref, "k2")


def test_score_lands_one_past_the_last_token_or_on_the_last_when_full():
    kl = torch.full((3, 4), 2.0)
    scores = torch.tensor([1.0, 0.1, 0.0])
    lengths = torch.tensor([1, 3, 2])  # row 1 fills the response length
    rewards, non_score = core.token_rewards(kl, scores, lengths, kl_coef=0.05)
    torch.testing.assert_close(non_score, torch.full((3, 4), -0.1))
    expected = torch.full((3, 4), -0.1)
    expected[0, 2] += 1.0
    expected[1, 3] += 0.1
    expected[2, 3] += 0.0
    torch.testing.assert_close(rewards, expected)


def test_missing_eos_penalty():
    post = torch.tensor([[5, EOS, PAD], [5, 6, 7]])
    scores = torch.tensor([1.0, 1.0])
    torch.testing.assert_close(core.penalize_missing_eos(scores, post, EOS, 0.5), torch.tensor([1.0, 0.5]))
    assert core.penalize_missing_eos(scores, post, EOS, None) is scores
    assert scores.tolist() == [1.0, 1.0]  # not changed in place


def test_gae_matches_the_recursion():
    g = torch.Generator().manual_seed(1)
    rewards, values = torch.randn(2, 5, generator=g), torch.randn(2, 5, generator=g)
    gamma, lam = 0.9, 0.8
    adv, ret = core.gae_advantages(rewards, values, gamma, lam)
    want = torch.zeros(2, 5)
    nxt_adv = torch.zeros(2)
    for t in reversed(range(5)):
        nxt_v = values[:, t + 1] if t < 4 else torch.zeros(2)
        nxt_adv = rewards[:, t] + gamma * nxt_v - values[:, t] + gamma * lam * nxt_adv
        want[:, t] = nxt_adv
    torch.testing.assert_close(adv, want)
    torch.testing.assert_close(ret, adv + values)
    # gamma = lam = 1 with zero values: the advantage is the reward-to-go
    adv, _ = core.gae_advantages(rewards, torch.zeros(2, 5), 1.0, 1.0)
    torch.testing.assert_close(adv, rewards.flip(1).cumsum(1).flip(1))


def test_whitening():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 6, generator=g) * 3 + 2
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[:, 4:] = False
    w = core.whiten(x, mask)
    assert core.masked_mean(w, mask).item() == pytest.approx(0.0, abs=1e-5)
    assert core.masked_moments(w, mask)[1].item() == pytest.approx(1.0, rel=1e-4)
    kept = core.whiten(x, mask, shift_mean=False)
    assert core.masked_mean(kept, mask).item() == pytest.approx(core.masked_mean(x, mask).item(), rel=1e-4)
    r = core.whiten_rewards(x, ~mask)
    assert (r[:, 4:] == 0).all()
    a = core.whiten_advantages(x, ~mask)
    assert (a[:, 4:] == 0).all()
    with pytest.raises(ValueError, match="mini-batch"):
        core.masked_moments(x, torch.zeros_like(mask))


def test_clipped_policy_loss():
    pad = torch.tensor([[False, False, True]])
    adv = torch.tensor([[1.0, -2.0, 5.0]])
    old = torch.tensor([[-1.0, -1.0, 1.0]])
    # ratio 1: loss = -mean(advantages) over the response tokens, nothing clipped
    loss, st = core.policy_loss(old.clone(), old, adv, pad, 0.2)
    assert loss.item() == pytest.approx(0.5) and st["clipfrac"].item() == 0 and st["approxkl"].item() == 0
    # ratio e^1 on token 0 (A > 0: clipped at 1.2), e^-1 on token 1 (A < 0: clipped at 0.8)
    new = old + torch.tensor([[1.0, -1.0, 0.0]])
    loss, st = core.policy_loss(new, old, adv, pad, 0.2)
    assert loss.item() == pytest.approx((-1.2 + 2 * 0.8) / 2, rel=1e-6)
    assert st["clipfrac"].item() == 1.0
    assert st["approxkl"].item() == pytest.approx(0.5 * 2 / 3)  # over all positions, as trl


def test_clipped_value_loss():
    mask_p1 = torch.tensor([[False, False, True]])
    old = torch.tensor([[0.0, 0.0, 0.0]])
    ret = torch.tensor([[1.0, 1.0, 7.0]])
    vpred = torch.tensor([[0.5, 0.1, 3.0]])
    loss, clipfrac = core.value_loss(vpred, old, ret, mask_p1, 0.2)
    # token 0: max((0.5-1)^2, (0.2-1)^2) = 0.64 (clipped); token 1: max(0.81, 0.81) = 0.81
    assert loss.item() == pytest.approx(0.5 * (0.64 + 0.81) / 2)
    assert clipfrac.item() == 0.5


def test_modules_import_only_downward():
    """The maths imports no plumbing; the flags module imports the trainer only inside main()."""
    import ast

    from tests.helpers import REPO

    def top_imports(path):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only (function bodies import lazily)
            if isinstance(node, ast.ImportFrom) and node.module:
                yield node.module
            elif isinstance(node, ast.Import):
                yield from (a.name for a in node.names)

    rl = REPO / "huatuo_o1" / "rl"
    assert set(top_imports(rl / "ppo_core.py")) <= {"__future__", "torch", "torch.nn.functional"}
    for name in ("ppo.py", "ppo_config.py", "ppo_reward.py"):
        assert not any(m.endswith(("ppo_trainer", "ppo_vllm")) for m in top_imports(rl / name)), name
    for name in ("ppo.py", "ppo_config.py", "ppo_core.py", "ppo_reward.py", "ppo_trainer.py"):
        assert "trl.experimental" not in (rl / name).read_text(), name


def test_whitening_over_processes_equals_whitening_the_global_batch():
    """With `total` summing over processes, each process's slice is whitened with the moments of the
    whole global batch: the slices equal the global batch whitened on one process (what makes 2 ranks
    give 1 rank's advantages; trl whitened each slice alone, which differs)."""
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(6, 5, generator=gen) * 3 + 1
    mask = torch.rand(6, 5, generator=gen) > 0.3
    one = core.whiten(values, mask)
    # two processes with unequal token counts; `total` stands for accelerator.reduce(sum), which
    # returns on every process the sum of its three sums (tokens, values, squared deviations)
    slices = [(values[:2], mask[:2]), (values[2:], mask[2:])]
    n = sum(m.sum() for _, m in slices).to(values.dtype)
    mean = sum((v * m).sum() for v, m in slices) / n
    squares = sum(((v - mean) ** 2 * m).sum() for v, m in slices)
    for (v, m), rows in zip(slices, (slice(0, 2), slice(2, 6)), strict=True):
        sums = iter([n, mean * n, squares])
        torch.testing.assert_close(core.whiten(v, m, total=lambda t, s=sums: next(s)), one[rows])
    assert not torch.allclose(core.whiten(*slices[0]), one[:2])
