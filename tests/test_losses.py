"""Every student loss / weight against a small hand-computed case (METHOD §3-4)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from student.losses import (
    bce_loss,
    block_topk,
    combine_weights,
    confidence_weights_candidate,
    confidence_weights_target,
    consistency_weights,
    default_tau,
    median_tau,
    dro_loss,
    dro_terms,
    item_propensity,
    kd_dro_loss,
    position_weights,
    ranking_distillation_loss,
    weighted_row_mean,
)

torch.set_num_threads(1)
LN3 = math.log(3.0)


def close(a, b, tol=1e-5):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64), atol=tol, rtol=tol)


# ------------------------------------------------------------------ BCE
def test_bce_hand_case():
    # sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4
    # positives: -logsig(0) = ln 2, -logsig(ln3) = ln(4/3)          -> mean (ln2 + ln4/3) / 2
    # negatives: -logsig(-0) = ln 2, -logsig(-ln3) = -ln(1/4) = ln 4 -> mean (ln2 + ln4) / 2
    # bce = 0.5 * (pos + neg) = 0.25 * ln(2 * 4/3 * 2 * 4) = 0.25 * ln(64/3)
    pos = torch.tensor([0.0, LN3], requires_grad=True)
    neg = torch.tensor([[0.0], [LN3]], requires_grad=True)
    loss = bce_loss(pos, neg)
    assert close(loss, 0.25 * math.log(64 / 3))
    loss.backward()
    # d/dpos of 0.25 * -logsig(p) = -0.25 * (1 - sigmoid(p)): [-0.125, -0.0625]
    assert close(pos.grad, [-0.125, -0.0625])
    assert torch.isfinite(neg.grad).all()


def test_bce_one_negative_equals_reference_bce_with_logits():
    # reference: BCEWithLogitsLoss over cat(pos, neg) with labels (1, 0)
    torch.manual_seed(0)
    pos, neg = torch.randn(7), torch.randn(7, 1)
    ref = F.binary_cross_entropy_with_logits(torch.cat([pos, neg[:, 0]]), torch.cat([torch.ones(7), torch.zeros(7)]))
    assert close(bce_loss(pos, neg), ref)


def test_bce_several_negatives_mean_over_negatives():
    # neg row [0, ln3]: mean of ln2 and ln4 = 1.5 ln2; pos 0: ln2 -> 0.5 * (ln2 + 1.5 ln2) = 1.25 ln2
    assert close(bce_loss(torch.tensor([0.0]), torch.tensor([[0.0, LN3]])), 1.25 * math.log(2))


# ------------------------------------------------------------------ DRO
def test_item_propensity_hand_case():
    # pop + 1 = [1, 2, 3], sum 6 -> (k/6) ** 0.05
    ps = item_propensity(torch.tensor([0, 1, 2]))
    assert close(ps, [(1 / 6) ** 0.05, (2 / 6) ** 0.05, (3 / 6) ** 0.05])


def test_dro_hand_case_unit_propensity():
    # y = [1, 2, 0], target 1, ps = 1, beta = 1: a = y^2 = [1, 4, 0]
    # sum_j e^a - e^4 + e^((2-1)^2) = e + 1 + e -> log(2e + 1)
    s = torch.tensor([[1.0, 2.0, 0.0]], requires_grad=True)
    loss = dro_loss(s, torch.tensor([1]), torch.ones(3), beta=1.0)
    assert close(loss, math.log(2 * math.e + 1))
    loss.backward()
    # d/dy_0 = 2 y_0 e^1 / (2e+1); d/dy_1 = 2 (y_1 - 1) e^1 / (2e+1); d/dy_2 = 0
    z = 2 * math.e + 1
    assert close(s.grad, [[2 * math.e / z, 2 * math.e / z, 0.0]])


def test_dro_hand_case_propensity_and_beta():
    # y = [2, -1, 3], target 0, ps = [0.5, 1, 0.25], beta = 2
    # a = ps y^2 / 2 = [1.0, 0.5, 1.125]; b_0 = 0.5 * (2 - 1)^2 / 2 = 0.25
    # DRO = log(e^0.5 + e^1.125 + e^0.25)
    s = torch.tensor([[2.0, -1.0, 3.0]])
    loss = dro_loss(s, torch.tensor([0]), torch.tensor([0.5, 1.0, 0.25]), beta=2.0)
    assert close(loss, math.log(math.exp(0.5) + math.exp(1.125) + math.exp(0.25)))


def naive_dro(s, t, ps, beta):
    """The formula as written in METHOD §3, float64 (exp is safe there for these sizes)."""
    s = s.double()
    a = ps.double() * s**2 / beta
    y_t = s.gather(1, t[:, None])[:, 0]
    ps_t = ps.double()[t]
    return torch.log(a.exp().sum(1) - (ps_t * y_t**2 / beta).exp() + (ps_t * (y_t - 1) ** 2 / beta).exp())


def test_dro_matches_formula_and_is_stable_for_large_scores():
    torch.manual_seed(0)
    s = torch.randn(6, 50) * 2
    s[0, 3] = 20.0  # ps * y^2 ~ 320: naive float32 exp overflows; float64 still fine for the reference
    t = torch.tensor([3, 0, 1, 49, 7, 7])
    ps = item_propensity(torch.randint(0, 20, (50,)))
    got = dro_terms(s, t[:, None], ps, 1.0)[:, 0]
    assert close(got, naive_dro(s, t, ps, 1.0), tol=1e-4)
    s.requires_grad_(True)
    dro_loss(s, t, ps, 1.0).backward()
    assert torch.isfinite(s.grad).all()


def test_dro_terms_many_targets_with_duplicates_and_gradients():
    # each column must equal a separate single-target DRO, duplicates included
    torch.manual_seed(1)
    s = torch.randn(4, 9, dtype=torch.float64)
    ps = item_propensity(torch.arange(9)).double()
    targets = torch.tensor([[0, 1, 2], [3, 3, 4], [8, 0, 8], [5, 6, 7]])
    got = dro_terms(s, targets, ps, 0.7)
    for j in range(3):
        assert close(got[:, j], naive_dro(s, targets[:, j], ps, 0.7), tol=1e-10)
    # gradients = autograd through the naive float64 formula (the fused backward runs once, so
    # gradcheck's repeated backward does not apply); upstream gradient random
    up = torch.randn(4, 3, dtype=torch.float64)
    x = s.clone().requires_grad_(True)
    (dro_terms(x, targets, ps, 0.7) * up).sum().backward()
    ref = s.clone().requires_grad_(True)
    (torch.stack([naive_dro(ref, targets[:, j], ps, 0.7) for j in range(3)], 1) * up).sum().backward()
    assert close(x.grad, ref.grad, tol=1e-10)
    # with the target scores given separately (the model's cheap path): same total gradient
    x3 = s.clone().requires_grad_(True)
    out = dro_terms(x3, targets, ps, 0.7, x3.gather(1, targets))
    (out * up).sum().backward()
    assert close(x3.grad, ref.grad, tol=1e-10)
    with pytest.raises(RuntimeError, match="once"):  # the buffer is reused: a second backward is refused
        z = s.clone().requires_grad_(True)
        o = dro_terms(z, targets, ps, 0.7).sum()
        o.backward(retain_graph=True)
        o.backward()


def test_dro_every_item_is_a_target():
    # n = 3 and three distinct targets: the left-out logsumexp is empty (-inf), values stay finite
    s = torch.tensor([[0.5, -1.0, 2.0]], requires_grad=True)
    targets = torch.tensor([[0, 1, 2]])
    got = dro_terms(s, targets, torch.ones(3), 1.0)
    ref = torch.stack([naive_dro(s.detach(), targets[:, j], torch.ones(3), 1.0) for j in range(3)], 1)
    assert close(got, ref)
    got.sum().backward()
    assert torch.isfinite(s.grad).all()


def test_kd_dro_weights_and_mask():
    # row 0: weights [0.75, 0.25] on two candidate DRO values; row 1 masked out (counts as 0 in the batch mean)
    torch.manual_seed(2)
    s = torch.randn(2, 6)
    ps = torch.ones(6)
    cand = torch.tensor([[1, 2], [3, 4]])
    w = torch.tensor([[0.75, 0.25], [1.0, 0.0]])
    d1, d2 = naive_dro(s, cand[:, 0], ps, 1.0)[0], naive_dro(s, cand[:, 1], ps, 1.0)[0]
    got = kd_dro_loss(s, cand, w, torch.tensor([True, False]), ps, 1.0)
    assert close(got, (0.75 * d1 + 0.25 * d2) / 2, tol=1e-5)


# ------------------------------------------------------------------ importance weights
def test_position_weights_hand_case():
    # exp(-1), exp(-2), exp(-3) normalised
    e = [math.exp(-k) for k in (1, 2, 3)]
    assert close(position_weights(3, 1.0), [x / sum(e) for x in e])
    # beta_p = 2, K = 2: exp(-0.5), exp(-1) normalised
    e = [math.exp(-0.5), math.exp(-1.0)]
    assert close(position_weights(2, 2.0), [x / sum(e) for x in e])


def test_default_tau_median_of_finite():
    assert default_tau(torch.tensor([[1.0, 3.0], [float("nan"), 2.0]])) == 2.0
    assert default_tau(torch.tensor([1.0, 2.0, 3.0, 4.0, float("inf")])) == 2.5  # mean of the middle two
    assert default_tau(torch.tensor([float("nan")])) == 1.0
    assert default_tau(torch.zeros(3)) == 1.0
    assert default_tau(torch.tensor([])) == 1.0
    assert default_tau(torch.tensor([float("-inf"), 5.0, float("nan")])) == 5.0


def test_median_tau_is_a_tensor_without_host_sync():
    """The in-step fallback: a 0-d tensor (no `float()`), same values as `default_tau`."""
    tau = median_tau(torch.tensor([[4.0, float("nan")], [1.0, 2.0]]))
    assert isinstance(tau, torch.Tensor) and tau.dim() == 0 and tau.item() == 2.0
    assert median_tau(torch.full((3,), float("nan"))).item() == 1.0  # masked rows only


def test_confidence_target_hand_case():
    # exp(-0/2) = 1, exp(-(2 ln2)/2) = 1/2, NaN -> 0
    w = confidence_weights_target(torch.tensor([0.0, 2 * math.log(2), float("nan")]), tau=2.0)
    assert close(w, [1.0, 0.5, 0.0])


def test_confidence_candidate_hand_case():
    # row 0: softmax([0, -ln3]) = [3/4, 1/4]; row 1: NaN gets 0 -> [0, 1]; row 2 all NaN -> zeros
    nan = float("nan")
    d = torch.tensor([[0.0, LN3], [nan, 1.0], [nan, nan]])
    assert close(confidence_weights_candidate(d, tau=1.0), [[0.75, 0.25], [0.0, 1.0], [0.0, 0.0]])
    # tau scales the distances: d = [0, 2 ln3], tau 2 -> same as row 0
    assert close(confidence_weights_candidate(torch.tensor([[0.0, 2 * LN3]]), tau=2.0), [[0.75, 0.25]])


def test_consistency_hand_case():
    pad = 6
    scores = torch.tensor([[0.9, 0.1, 0.8, 0.7, 0.2, 0.3], [0.5, 0.4, 0.3, 0.2, 0.1, 0.6]])
    history = torch.tensor([[0, pad], [pad, pad]])
    # row 0: item 0 is history -> student top-2 = {2, 3}; teacher [3, 0] -> [1, 0] (history never counts)
    # row 1: no history -> top-2 = {5, 0}; teacher [1, 5] -> [0, 1]
    teacher = torch.tensor([[3, 0], [1, 5]])
    assert torch.equal(consistency_weights(teacher, scores, history, k=2), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))


def test_consistency_matches_masked_topk_brute_force():
    torch.manual_seed(3)
    n, B, L, K = 5000, 16, 10, 10  # wide enough for the block top-k path
    scores = torch.randn(B, n)
    history = torch.randint(0, n, (B, L))
    history[:, :5] = scores.topk(5, dim=1).indices  # history among the very best items
    history[:, 7:] = n  # padding
    brute = scores.clone()
    for b in range(B):  # brute force: a loop is fine in a test
        for h in history[b]:
            if h < n:
                brute[b, h] = float("-inf")
    top = brute.topk(K, dim=1).indices
    teacher = torch.cat([top[:, :5], torch.randint(0, n, (B, 4)), history[:, :1]], 1)
    expect = (teacher.unsqueeze(2) == top.unsqueeze(1)).any(2).float()
    got = consistency_weights(teacher, scores, history, k=K)
    assert torch.equal(got, expect)
    assert got[:, :5].all() and not got[:, -1].any()  # student's best non-history hit, history never


def test_block_topk_equals_topk():
    torch.manual_seed(4)
    for n in (7, 100, 3000, 5001):  # small rows fall back to topk; 5001 has a short last block
        s = torch.randn(8, n)
        assert torch.equal(block_topk(s, 20), s.topk(min(20, n), dim=1).indices)
    s = torch.randint(0, 4, (8, 5001)).float()  # heavy ties: the selected values must agree
    assert torch.equal(s.gather(1, block_topk(s, 20)), s.topk(20, dim=1).values)
    s = torch.full((2, 5001), float("-inf"))
    s[0, 4999], s[1, 5000] = 1.0, 2.0  # the best item in the last (short) block
    assert block_topk(s, 1).tolist() == [[4999], [5000]]


def test_combine_weights_hand_case():
    # gammas (0.5, 0.25, 0.25); wp = [0.6, 0.4]; wc per sample [1, 0]; wo = [[1, 0], [0, 0]]
    # row 0: [0.3 + 0.25 + 0.25, 0.2 + 0.25 + 0] = [0.8, 0.45] -> / 1.25 = [0.64, 0.36]
    # row 1: [0.3, 0.2] -> [0.6, 0.4]
    w = combine_weights(torch.tensor([0.6, 0.4]), torch.tensor([1.0, 0.0]), torch.tensor([[1.0, 0.0], [0.0, 0.0]]), (0.5, 0.25, 0.25))
    assert close(w, [[0.64, 0.36], [0.6, 0.4]])
    # only confidence on, and it is 0 for row 1: that row stays all zero (no NaN)
    w = combine_weights(torch.tensor([0.6, 0.4]), torch.tensor([1.0, 0.0]), torch.zeros(2, 2), (0.0, 1.0, 0.0))
    assert close(w, [[0.5, 0.5], [0.0, 0.0]])


def test_ranking_distillation_hand_case():
    # row 0: 0.5 * -logsig(0) + 0.5 * -logsig(ln3) = 0.5 ln2 + 0.5 ln(4/3) = 0.5 ln(8/3); row 1 masked = 0;
    # batch mean over both rows (a partial teacher must not scale lambda_d by 1 / coverage)
    y = torch.tensor([[0.0, LN3], [5.0, 5.0]], requires_grad=True)
    w = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    loss = ranking_distillation_loss(y, w, torch.tensor([True, False]))
    assert close(loss, 0.5 * math.log(8 / 3) / 2)
    loss.backward()
    # d/dy = -w (1 - sigmoid(y)) / B: row 0 [-0.125, -0.0625], masked row 0
    assert close(y.grad, [[-0.125, -0.0625], [0.0, 0.0]])
    # no mask: mean over both rows, row 1 = -logsig(5) = ln(1 + e^-5)
    both = ranking_distillation_loss(y.detach(), w, None)
    assert close(both, (0.5 * math.log(8 / 3) + math.log1p(math.exp(-5))) / 2)


def test_ranking_distillation_without_teacher_rows_is_zero_and_backprops():
    y = torch.randn(3, 4, requires_grad=True)
    loss = ranking_distillation_loss(y, torch.full((3, 4), 0.25), torch.zeros(3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(y.grad, torch.zeros(3, 4))


def test_weighted_row_mean_ignores_nan_in_masked_rows():
    v = torch.tensor([[1.0, 2.0], [float("nan"), 1.0]])
    assert close(weighted_row_mean(v, torch.tensor([[0.5, 0.5], [0.5, 0.5]]), torch.tensor([True, False])), 0.75)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_scores_are_promoted(dtype):
    # AMP on CUDA gives half scores; the losses compute in float32
    s = torch.tensor([[1.0, 2.0, 0.0]], dtype=dtype)
    assert close(dro_loss(s, torch.tensor([1]), torch.ones(3), 1.0), math.log(2 * math.e + 1), tol=1e-4)
    assert bce_loss(s[:, 0], s[:, 1:]).dtype == torch.float32
