"""Student losses (METHOD §3-4) as pure, vectorised functions on tensors.

Scale conventions (chosen to match the reference code, so that the paper's alpha / lambda
keep their meaning):

- `bce_loss`: 0.5 * (mean over samples of -logsig(pos) + mean over samples and negatives of
  -logsig(-neg)). With one negative this is exactly `BCEWithLogitsLoss` over the
  concatenated (pos, neg) scores that DROS / DLLM2Rec use; with more negatives the positive
  and negative halves keep equal weight whatever their number.
- `dro_loss`: mean over samples of the per-sample DRO value (reference: `torch.mean`).
- ranking distillation / `kd_dro`: per sample `sum_k w_sk * value_sk`, averaged over the
  samples that HAVE a teacher ranking (reference: `sum_k mean_s`, all rows had one).

    >>> import torch
    >>> bce_loss(torch.tensor([0.0]), torch.tensor([[0.0]]))
    tensor(0.6931)
    >>> position_weights(3, 1.0)
    tensor([0.6652, 0.2447, 0.0900])
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

NEG_INF = float("-inf")


def _f32(x: Tensor) -> Tensor:
    """At least float32 (half scores under AMP are promoted; float64 stays)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


# ---------------------------------------------------------------- base loss: BCE
def bce_loss(pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
    """Binary cross-entropy of the target (label 1) against sampled negatives (label 0).

    `pos_scores` [B], `neg_scores` [B, n]. See the module docstring for the scale.
    """
    pos = -F.logsigmoid(_f32(pos_scores)).mean()
    neg = -F.logsigmoid(-_f32(neg_scores)).mean()
    return 0.5 * (pos + neg)


# ---------------------------------------------------------------- DRO (DROS, SIGIR'23)
def item_propensity(pop_counts: Tensor) -> Tensor:
    """`ps_j = ((pop_j + 1) / sum_k (pop_k + 1)) ** 0.05` from train-target counts [n_items]."""
    pop = torch.as_tensor(pop_counts, dtype=torch.float64) + 1.0
    return (pop / pop.sum()).pow(0.05).float()


class _CatalogueLSE(torch.autograd.Function):
    """`log sum_j exp(ps_j * y_j^2)` per row with chosen columns left out, fused by hand.

    Autograd through the plain ops costs ~2.5x more on CPU (a fresh [B, n] tensor per op);
    here forward and backward share one buffer; the backward is `2 y ps softmax * grad`.
    Computed in at least float32 whatever the input dtype (AMP on CUDA).
    """

    @staticmethod
    def forward(ctx, scores: Tensor, ps: Tensor, leave_out: Tensor) -> Tensor:
        y = _f32(scores)
        ps = ps.to(y.dtype)
        a = y * y
        a.mul_(ps)
        a.scatter_(1, leave_out, NEG_INF)
        m = a.amax(dim=1, keepdim=True)
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # a row with every item left out
        a.sub_(m).exp_()
        total = a.sum(dim=1, keepdim=True)
        ctx.save_for_backward(y, ps, a, total)
        ctx.in_dtype, ctx.used = scores.dtype, False
        return (total.log() + m).squeeze(1)

    @staticmethod
    def backward(ctx, grad: Tensor):
        if ctx.used:
            raise RuntimeError("_CatalogueLSE backward runs once (it reuses its buffer); no retain_graph")
        ctx.used = True
        y, ps, e, total = ctx.saved_tensors
        # grad written into the saved exp buffer: no fresh [B, n] tensor (page faults dominate on CPU);
        # left-out columns have e = 0, so no gradient flows to them through this path
        g = e.mul_(y).mul_(ps).mul_(2 * grad.unsqueeze(1) / total.clamp_min(torch.finfo(total.dtype).tiny))
        return g.to(ctx.in_dtype), None, None


def dro_terms(
    all_scores: Tensor, targets: Tensor, propensity: Tensor, beta: float, target_scores: Tensor | None = None
) -> Tensor:
    """Per-(sample, target) DRO values [B, m] with ONE pass over the catalogue.

    `DRO(s, t) = log(sum_j exp(a_sj) - exp(a_st) + exp(b_st))` with `a = ps * y^2 / beta`,
    `b = ps * (y - 1)^2 / beta`. Computed exactly as `logaddexp(LSE_{j != t} a_sj, b_st)`:
    every target column of the row is left out of one catalogue logsumexp, then the others
    are added back from the small [B, m] tensor (so no cancellation of `sum - exp(a_t)` and
    no per-target catalogue pass). `targets` [B, m] long (duplicates inside a row allowed);
    `target_scores` [B, m] optionally gives y at the targets (lets the caller route their
    gradient through a cheaper path; defaults to a gather).
    """
    dt = torch.promote_types(all_scores.dtype, torch.float32)
    ps = propensity.to(dt) / beta
    lse_rest = _CatalogueLSE.apply(all_scores, ps, targets)  # [B]: all items but the row's targets
    y = (all_scores.gather(1, targets) if target_scores is None else target_scores).to(dt)
    ps_t = ps[targets]
    a_t, b_t = ps_t * y.square(), ps_t * (y - 1).square()
    m = targets.shape[1]
    same = targets.unsqueeze(2) == targets.unsqueeze(1)  # [B, i, j]
    earlier = torch.ones(m, m, dtype=torch.bool, device=targets.device).tril(-1)
    dup = (same & earlier).any(dim=2)  # column j repeats an earlier column: count it once
    excl = same | dup.unsqueeze(1)
    others = a_t.unsqueeze(1).expand(-1, m, -1).masked_fill(excl, NEG_INF)
    others = torch.cat([lse_rest[:, None, None].expand(-1, m, 1), others], dim=2)
    return torch.logaddexp(torch.logsumexp(others, dim=2), b_t)


def dro_loss(all_scores: Tensor, target: Tensor, propensity: Tensor, beta: float) -> Tensor:
    """Mean over samples of DRO(s, target_s); `all_scores` [B, n_items], `target` [B]."""
    return dro_terms(all_scores, target.unsqueeze(1), propensity, beta).mean()


def kd_dro_loss(
    all_scores: Tensor, teacher_items: Tensor, weights: Tensor, mask: Tensor | None, propensity: Tensor, beta: float
) -> Tensor:
    """Reference-code option: DRO with each teacher candidate as the target, weighted by w_sk."""
    return weighted_row_mean(dro_terms(all_scores, teacher_items, propensity, beta), weights, mask)


# ---------------------------------------------------------------- DLLM2Rec importance weights
def position_weights(k: int, beta_p: float, device: torch.device | str | None = None) -> Tensor:
    """`w^p_k = exp(-k / beta_p)`, k = 1..K, normalised over k: [K]."""
    return torch.softmax(-torch.arange(1, k + 1, dtype=torch.float32, device=device) / beta_p, dim=0)


def median_tau(distances: Tensor) -> Tensor:
    """Median of the finite distances (mean of the two middle values for an even count) as a
    0-d tensor; 1.0 when there is none or the median is not > 0.

    Branchless (no host sync), so a training step that uses it can be compiled and captured
    as a CUDA graph.
    """
    d = torch.as_tensor(distances).double().flatten()
    finite = torch.isfinite(d)
    n = finite.sum()
    d = torch.where(finite, d, torch.full_like(d, float("inf"))).sort().values  # the finite ones first
    middle = torch.stack([(n - 1).clamp_min(0) // 2, n // 2]).clamp_max(max(d.numel() - 1, 0))
    tau = d.gather(0, middle).mean() if d.numel() else d.new_tensor(float("inf"))
    return torch.where(torch.isfinite(tau) & (tau > 0), tau, torch.ones_like(tau))


def default_tau(distances: Tensor) -> float:
    """`median_tau` as a float (the temperature over all train distances, computed once)."""
    return float(median_tau(distances))


def confidence_weights_target(target_distance: Tensor, tau: float | Tensor) -> Tensor:
    """Paper variant: `exp(-d(s, target) / tau)` per sample [B].

    A NaN (unknown) distance gives weight 0: that sample's ranking is then weighted by the
    position and consistency terms only.
    """
    w = torch.exp(-_f32(target_distance) / tau)
    return torch.nan_to_num(w, nan=0.0)


def confidence_weights_candidate(distances: Tensor, tau: float | Tensor) -> Tensor:
    """Reference-code variant: `softmax_k(-d(s, c_k) / tau)` [B, K]; NaN distances get 0."""
    logits = (-_f32(distances) / tau).masked_fill(torch.isnan(distances), NEG_INF)
    return torch.nan_to_num(torch.softmax(logits, dim=1), nan=0.0)  # an all-NaN row -> zeros


@torch.no_grad()
def block_topk(scores: Tensor, k: int, block: int = 32) -> Tensor:
    """Indices of the k largest scores per row, best first [B, k] (what `topk(k).indices` gives).

    Exact, and ~2x faster than `torch.topk` on wide CPU rows: the k best items lie in the k
    blocks with the largest maxima, so one vectorised `amax` pass picks k blocks and the
    selection runs on k * block candidates only.
    """
    n = scores.shape[1]
    k = min(k, n)
    full = n // block
    if full <= 2 * k:
        return scores.topk(k, dim=1).indices
    maxima = scores[:, : full * block].unflatten(1, (full, block)).amax(dim=2)
    if full * block < n:  # a last, shorter block
        maxima = torch.cat([maxima, scores[:, full * block :].amax(dim=1, keepdim=True)], dim=1)
    blocks = maxima.topk(k, dim=1).indices  # [B, k]
    idx = (blocks.unsqueeze(2) * block + torch.arange(block, device=scores.device)).flatten(1)
    cand = scores.gather(1, idx.clamp_max(n - 1)).masked_fill(idx >= n, NEG_INF)
    return idx.gather(1, cand.topk(k, dim=1).indices)


@torch.no_grad()
def consistency_weights(teacher_items: Tensor, student_scores: Tensor, history: Tensor, k: int | None = None) -> Tensor:
    """`w^o_sk = 1` if c_k is in the student's current top-K (history items excluded) [B, K].

    `history` [B, L] is padded with any id outside 0..n_items-1 (the pad id `n_items`).
    One top-(K + L) over the detached scores, then the first K candidates that are not in
    the history (at most L of them can be). Ties at the K-th score are broken arbitrarily.
    """
    k = teacher_items.shape[1] if k is None else k
    n = student_scores.shape[1]
    cand = block_topk(student_scores.detach(), min(n, k + history.shape[1]))  # [B, K+L], best first
    in_hist = (cand.unsqueeze(2) == history.unsqueeze(1)).any(dim=2)
    keep = ~in_hist & (torch.cumsum((~in_hist).int(), dim=1) <= k)
    hit = (teacher_items.unsqueeze(2) == cand.unsqueeze(1)) & keep.unsqueeze(1)
    return hit.any(dim=2).float()


def combine_weights(wp: Tensor, wc: Tensor, wo: Tensor, gammas: Sequence[float]) -> Tensor:
    """`gamma_p w^p + gamma_c w^c + gamma_o w^o`, normalised per sample [B, K].

    Broadcasts `wp` [K] and `wc` [B] (target variant). A row whose sum is 0 stays all 0.
    """
    if wc.dim() == 1:
        wc = wc.unsqueeze(1)
    gp, gc, go = gammas
    w = gp * wp + gc * wc + go * wo
    total = w.sum(dim=1, keepdim=True)
    return torch.where(total > 0, w / total.clamp_min(torch.finfo(w.dtype).tiny), torch.zeros_like(w))


def weighted_row_mean(values: Tensor, weights: Tensor, mask: Tensor | None) -> Tensor:
    """`sum_k w_sk * v_sk` per row, averaged over ALL rows; rows where `mask` is false count as 0.

    Why all rows: the paper's per-sample objective is `L_s + lambda_d * L_d`. With a teacher
    that ranked only part of the train samples, dividing by the ranked rows instead would
    scale lambda_d by 1 / coverage (x4.5 at 22% coverage, x50 on the demo) and let a weak
    teacher swamp the student's own loss. No true row -> 0, still attached to the graph.
    """
    per_row = (weights * values).sum(dim=1)
    if mask is None:
        return per_row.mean()
    return torch.where(mask.bool(), per_row, torch.zeros_like(per_row)).sum() / max(per_row.shape[0], 1)


def ranking_distillation_loss(teacher_scores: Tensor, weights: Tensor, mask: Tensor | None = None) -> Tensor:
    """DLLM2Rec `L_d`: `-sum_k w_sk * logsig(y_s,c_k)` per row, 0 for rows without a teacher ranking, batch mean.

    Only the teacher items as positives: the reference code's extra `logsig(1 - y_neg)` term is
    a bug and is not reproduced.
    """
    return weighted_row_mean(-F.logsigmoid(_f32(teacher_scores)), weights, mask)


__all__ = [
    "bce_loss",
    "item_propensity",
    "dro_terms",
    "dro_loss",
    "kd_dro_loss",
    "position_weights",
    "median_tau",
    "default_tau",
    "confidence_weights_target",
    "confidence_weights_candidate",
    "block_topk",
    "consistency_weights",
    "combine_weights",
    "weighted_row_mean",
    "ranking_distillation_loss",
]
