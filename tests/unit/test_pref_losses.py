"""Each preference loss equals its formula on a fixed batch, computed by hand (plain math).

.venv/bin/python -m pytest tests/unit/test_pref_losses.py
"""

from __future__ import annotations

import math

import pytest
import torch

from raytune_llm.train.stages.base import length_desensitized, sequence_logps
from raytune_llm.train.stages.dpo import bco_loss, dpo_loss, orpo_loss, simpo_loss
from raytune_llm.train.stages.kto import kto_loss

# Two pairs: policy and reference log-probabilities of the chosen and rejected answers.
PC, PR, RC, RR = [-4.0, -7.5], [-6.0, -5.0], [-5.0, -7.0], [-5.5, -6.0]
BETA = 0.3


def _t(values):
    return torch.tensor(values, dtype=torch.float64)


def _logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


def _delta(i: int) -> float:
    return (PC[i] - RC[i]) - (PR[i] - RR[i])


def _dpo(loss_type: str, **kw):
    losses, c, r = dpo_loss(_t(PC), _t(PR), _t(RC), _t(RR), loss_type=loss_type, beta=BETA, **kw)
    return losses.tolist(), c.tolist(), r.tolist()


def test_sigmoid_with_label_smoothing():
    eps = 0.2
    losses, chosen, rejected = _dpo("sigmoid", label_smoothing=eps)
    for i in range(2):
        z = BETA * _delta(i)
        want = -(1 - eps) * _logsig(z) - eps * _logsig(-z)
        assert losses[i] == pytest.approx(want, rel=1e-12)
        assert chosen[i] == pytest.approx(BETA * (PC[i] - RC[i]))
        assert rejected[i] == pytest.approx(BETA * (PR[i] - RR[i]))


def test_hinge_and_ipo_compute_what_was_asked():
    hinge, _, _ = _dpo("hinge")
    ipo, _, _ = _dpo("ipo")
    sigmoid, _, _ = _dpo("sigmoid")
    for i in range(2):
        assert hinge[i] == pytest.approx(max(0.0, 1 - BETA * _delta(i)))
        assert ipo[i] == pytest.approx((_delta(i) - 1 / (2 * BETA)) ** 2)
    # the LLaMA-Factory-on-new-TRL trap: hinge and ipo silently computed as sigmoid
    assert hinge != pytest.approx(sigmoid) and ipo != pytest.approx(sigmoid)


def test_kto_pair():
    losses, _, _ = _dpo("kto_pair")
    kl_c = max(0.0, sum(PC[i] - RC[i] for i in range(2)) / 2)
    kl_r = max(0.0, sum(PR[i] - RR[i] for i in range(2)) / 2)

    def sig(x):
        return 1 / (1 + math.exp(-x))

    for i in range(2):
        a = 1 - sig(BETA * ((PC[i] - RC[i]) - kl_r))
        b = 1 - sig(BETA * (kl_c - (PR[i] - RR[i])))
        assert losses[i] == pytest.approx((a + b) / 2)


def test_orpo_and_simpo_on_averaged_logps():
    c, r = _t([-0.4, -1.2]), _t([-0.9, -0.7])
    losses, cr, rr = orpo_loss(c, r, beta=BETA)
    simpo, _, _ = simpo_loss(c, r, beta=BETA, gamma=0.5)
    for i in range(2):
        ci, ri = c[i].item(), r[i].item()
        log_odds = (ci - ri) - (math.log(1 - math.exp(ci)) - math.log(1 - math.exp(ri)))
        assert losses[i].item() == pytest.approx(-ci - BETA * _logsig(log_odds))
        assert simpo[i].item() == pytest.approx(-_logsig(BETA * (ci - ri) - 0.5))
        assert cr[i].item() == pytest.approx(BETA * ci) and rr[i].item() == pytest.approx(BETA * ri)


def test_bco_loss():
    c, r = _t([0.2, -0.1]), _t([0.05, 0.3])
    got = bco_loss(c, r, 0.1).tolist()
    for i in range(2):
        want = -_logsig(c[i].item() - 0.1) - _logsig(-(r[i].item() - 0.1))
        assert got[i] == pytest.approx(want)


def test_kto_loss_against_the_paper():
    ratios, tags = _t([0.5, -0.2, 0.1]), torch.tensor([True, False, True])
    for kl, z in ((_t(0.3), 0.3), (_t(-0.4), 0.0)):  # the KL estimate is clamped at 0
        losses, rewards = kto_loss(ratios, tags, kl, beta=BETA, chosen_weight=2.0,
                                   rejected_weight=0.5)  # fmt: skip

        def sig(x):
            return 1 / (1 + math.exp(-x))

        want = [2.0 * (1 - sig(BETA * (0.5 - z))), 0.5 * (1 - sig(BETA * (z + 0.2))),
                2.0 * (1 - sig(BETA * (0.1 - z)))]  # fmt: skip
        assert losses.tolist() == pytest.approx(want)
        assert rewards.tolist() == pytest.approx([BETA * x for x in (0.5, -0.2, 0.1)])


def _row(lengths_and_targets):
    """A padding-free row of sequences given as lists of (token, is_target)."""
    ids, labels, cu = [], [], [0]
    for seq in lengths_and_targets:
        for j, (tok, target) in enumerate(seq):
            ids.append(tok)
            labels.append(tok if target and j > 0 else -100)
        cu.append(cu[-1] + len(seq))
    return {"labels": torch.tensor([labels]), "cu_seq_lens_q": torch.tensor(cu)}, ids


def test_sequence_logps_sums_each_sequence_by_hand():
    torch.manual_seed(0)
    seqs = [[(1, 0), (2, 1), (3, 1)], [(4, 0), (5, 0), (6, 1), (7, 1), (1, 1)]]
    inputs, ids = _row(seqs)
    logits = torch.randn(1, len(ids), 9, dtype=torch.float64)
    lp = sequence_logps(logits, inputs)
    logprobs = torch.log_softmax(logits[0], -1)
    want_sums, want_counts, pos = [], [], 0
    for seq in seqs:
        total, count = 0.0, 0
        for j in range(1, len(seq)):
            if seq[j][1]:
                total += logprobs[pos + j - 1, seq[j][0]].item()
                count += 1
        want_sums.append(total)
        want_counts.append(count)
        pos += len(seq)
    assert lp.sums.tolist() == pytest.approx(want_sums)
    assert lp.counts.tolist() == want_counts
    means = [s / c for s, c in zip(want_sums, want_counts, strict=True)]
    assert lp.means.tolist() == pytest.approx(means)


def test_length_desensitized_weighs_tokens_past_the_shorter_answer():
    # pair 0: chosen has 2 targets, rejected 4 -> the rejected's last 2 weigh alpha
    seqs = [[(1, 0), (2, 1), (3, 1)], [(1, 0), (5, 1), (6, 1), (7, 1), (8, 1)]]
    inputs, ids = _row(seqs)
    logits = torch.randn(1, len(ids), 9, dtype=torch.float64)
    lp = sequence_logps(logits, inputs)
    got = length_desensitized(lp, pairs=1, alpha=0.25)
    rej = [lp.tokens[i].item() for i in range(len(ids) - 1) if lp.segment[i] == 1 and lp.targets[i]]
    assert got[0].item() == pytest.approx(lp.sums[0].item())
    assert got[1].item() == pytest.approx(rej[0] + rej[1] + 0.25 * (rej[2] + rej[3]))
