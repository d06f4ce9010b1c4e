"""Teacher modes besides BIGRec generation: `retrieve` and `hybrid` (issue #3, step 4b), and
BIGRec's popularity step, which applies to every mode.

- retrieve: no generation; the query is the base-model embedding of the most recent
  history title(s) (the last one, or a mean weighted `decay**age`), items ranked by L2.
- hybrid: `w * d_gen / sd_gen + (1 - w) * d_ret / sd_ret`, the standard deviations taken
  per sample over the whole catalogue. Standardising also subtracts each distance's
  per-sample mean, but that shifts a sample's scores by a constant and leaves its ranking
  unchanged, so it is left out: scores stay non-negative (DLLM2Rec's confidence weights
  read them as distances). `w` is chosen on the validation split.
- popularity (BIGRec's second grounding step, "statistical information"): each sample's
  distances are min-max normalised over the catalogue, then divided by `(1 + p_i) ** gamma`
  with `p_i` the item's train count min-max normalised to [0, 1]. gamma 0 leaves the plain
  distances untouched (METHOD §2.4); gamma is chosen on valid with the hybrid weight. On
  ml-100k this lifts the title-retrieval teacher from 0.013 to 0.067 test HR@20, yet the
  students distilled from it got worse (docs/results.md), so it is off by default.

    >>> q = retrieve_queries(np.eye(3, dtype="f4"), [[0, 1], []], last=2, decay=0.5)
    >>> q.astype(float).round(3).tolist()
    [[0.333, 0.667, 0.0], [0.333, 0.333, 0.333]]
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
import torch

from pipeline.metrics import metrics_from_ranks
from teacher.ground import L2Scorer, Scorer, chunked_topn, teacher_ranks

log = logging.getLogger(__name__)


def retrieve_queries(item_emb: np.ndarray, histories: Sequence[Sequence[int]], last: int = 1, decay: float = 0.5) -> np.ndarray:
    """One query per history: recency-weighted mean of the last `last` title embeddings (catalogue mean if empty)."""
    out = np.empty((len(histories), item_emb.shape[1]), dtype=np.float32)
    fallback = item_emb.mean(axis=0)
    for row, hist in enumerate(histories):
        recent = np.asarray(hist, dtype=np.int64)[-last:]
        if len(recent) == 0:
            out[row] = fallback
            continue
        weights = decay ** np.arange(len(recent) - 1, -1, -1, dtype=np.float64)  # oldest first, last item age 0
        out[row] = (weights[:, None] * item_emb[recent]).sum(axis=0) / weights.sum()
    return out


@torch.no_grad()
def row_stats(scorer: Scorer, n_queries: int, n_items: int, query_chunk: int, item_chunk: int,
              device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Per-query std, min and max of its distances to all items, in blocks (float64 sums)."""
    std, lo, hi = (torch.empty(n_queries, dtype=torch.float64, device=device) for _ in range(3))
    for q0 in range(0, n_queries, query_chunk):
        q1 = min(q0 + query_chunk, n_queries)
        s = torch.zeros(q1 - q0, dtype=torch.float64, device=device)
        s2, lo[q0:q1], hi[q0:q1] = torch.zeros_like(s), float("inf"), -float("inf")
        for i0 in range(0, n_items, item_chunk):
            d = scorer(q0, q1, i0, min(i0 + item_chunk, n_items)).double()
            s += d.sum(1)
            s2 += (d * d).sum(1)
            lo[q0:q1], hi[q0:q1] = torch.minimum(lo[q0:q1], d.min(1).values), torch.maximum(hi[q0:q1], d.max(1).values)
        mean = s / n_items
        std[q0:q1] = (s2 / n_items - mean * mean).clamp(min=0).sqrt()
    return {"std": std.clamp(min=1e-6).float(), "min": lo.float(), "max": hi.float()}


def row_std(scorer: L2Scorer, n_queries: int, n_items: int, query_chunk: int, item_chunk: int) -> torch.Tensor:
    return row_stats(scorer, n_queries, n_items, query_chunk, item_chunk, scorer.q.device)["std"]


class HybridScorer:
    """Weighted sum of generation and retrieval distances, each scaled by its per-sample std."""

    def __init__(self, gen_queries: np.ndarray, ret_queries: np.ndarray, items: np.ndarray, weight: float,
                 device: torch.device | str = "cpu", query_chunk: int = 1024, item_chunk: int = 8192):
        self.gen, self.ret = L2Scorer(gen_queries, items, device), L2Scorer(ret_queries, items, device)
        self.weight = float(weight)
        n_q, n_i = len(gen_queries), len(items)
        self.stds = (row_std(self.gen, n_q, n_i, query_chunk, item_chunk), row_std(self.ret, n_q, n_i, query_chunk, item_chunk))

    def __call__(self, q0: int, q1: int, i0: int, i1: int) -> torch.Tensor:
        sd_g, sd_r = self.stds[0][q0:q1, None], self.stds[1][q0:q1, None]
        return self.weight * self.gen(q0, q1, i0, i1) / sd_g + (1 - self.weight) * self.ret(q0, q1, i0, i1) / sd_r

    def at(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        sd_g, sd_r = self.stds[0].cpu().numpy()[rows], self.stds[1].cpu().numpy()[rows]
        return (self.weight * self.gen.at(rows, items) / sd_g + (1 - self.weight) * self.ret.at(rows, items) / sd_r).astype(np.float32)


class PopularityScorer:
    """BIGRec's popularity step: `(d - min_s) / (max_s - min_s) / (1 + p_i) ** gamma`, per sample s.

    `popularity` are train counts per item; they are min-max normalised to [0, 1] here.

        >>> items = np.array([[0.0], [1.0], [2.0]], dtype="f4")
        >>> s = PopularityScorer(L2Scorer(np.zeros((1, 1), "f4"), items), np.array([0, 0, 9]), gamma=2.0, n_queries=1, n_items=3)
        >>> s(0, 1, 0, 3).tolist()  # distances 0, 0.5, 1 -> the popular item 2 is divided by (1 + 1) ** 2
        [[0.0, 0.5, 0.25]]
    """

    def __init__(self, base: Scorer, popularity: np.ndarray, gamma: float, n_queries: int, n_items: int,
                 query_chunk: int = 1024, item_chunk: int = 8192, device: torch.device | str = "cpu"):
        pop = np.asarray(popularity, dtype=np.float64)
        if pop.shape != (n_items,):
            raise ValueError(f"popularity must have one count per item ({n_items}), got shape {pop.shape}")
        span = pop.max() - pop.min()
        norm = (pop - pop.min()) / span if span > 0 else np.zeros_like(pop)
        self.base, self.gamma = base, float(gamma)
        self.divisor = torch.as_tensor((1.0 + norm) ** self.gamma, dtype=torch.float32, device=device)
        stats = row_stats(base, n_queries, n_items, query_chunk, item_chunk, device)
        self.lo, self.span = stats["min"], (stats["max"] - stats["min"]).clamp(min=1e-6)

    def __call__(self, q0: int, q1: int, i0: int, i1: int) -> torch.Tensor:
        d = (self.base(q0, q1, i0, i1) - self.lo[q0:q1, None]) / self.span[q0:q1, None]
        return d / self.divisor[i0:i1]

    def at(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        lo, span = self.lo.cpu().numpy()[rows], self.span.cpu().numpy()[rows]
        return ((self.base.at(rows, items) - lo) / span / self.divisor.cpu().numpy()[items]).astype(np.float32)


def grid_key(point: dict[str, float]) -> str:
    """`{"weight": 0.5, "gamma": 1.0}` -> "weight=0.5,gamma=1": how manifests name a grid point."""
    return ",".join(f"{k}={v:g}" for k, v in point.items())


def select_on_valid(
    make_scorer: Callable[[dict[str, float]], Scorer],
    grid: Sequence[dict[str, float]],
    n_items: int,
    histories: Sequence[Sequence[int]] | None,
    targets: np.ndarray,
    groups: np.ndarray | None,
    metric: str,
    top_n: int,
    query_chunk: int = 1024,
    item_chunk: int = 8192,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, float], dict[str, float]]:
    """The grid point (hybrid weight, popularity gamma, ...) with the best valid `metric` (ties: the
    first in `grid`), and every point's value keyed by `grid_key`."""
    k = int(metric.split("@")[1])
    scores: dict[str, float] = {}
    for point in grid:
        idx, _ = chunked_topn(make_scorer(point), len(targets), n_items, top_n, histories, query_chunk, item_chunk, device)
        scores[grid_key(point)] = metrics_from_ranks(teacher_ranks(idx, targets, groups), ks=(k,))[metric]
        log.info("grounding %s: valid %s = %.4f", grid_key(point), metric, scores[grid_key(point)])
    return max(grid, key=lambda point: scores[grid_key(point)]), scores
