"""Teacher modes besides BIGRec generation: `retrieve` and `hybrid` (issue #3, step 4b).

- retrieve: no generation; the query is the base-model embedding of the most recent
  history title(s) (the last one, or a mean weighted `decay**age`), items ranked by L2.
- hybrid: `w * d_gen / sd_gen + (1 - w) * d_ret / sd_ret`, the standard deviations taken
  per sample over the whole catalogue. Standardising also subtracts each distance's
  per-sample mean, but that shifts a sample's scores by a constant and leaves its ranking
  unchanged, so it is left out: scores stay non-negative (DLLM2Rec's confidence weights
  read them as distances). `w` is chosen on the validation split.

    >>> q = retrieve_queries(np.eye(3, dtype="f4"), [[0, 1], []], last=2, decay=0.5)
    >>> q.round(3).tolist()
    [[0.333, 0.667, 0.0], [0.333, 0.333, 0.333]]
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch

from pipeline.metrics import metrics_from_ranks
from teacher.ground import L2Scorer, chunked_topn, teacher_ranks

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
def row_std(scorer: L2Scorer, n_queries: int, n_items: int, query_chunk: int, item_chunk: int) -> torch.Tensor:
    """Per-query standard deviation of its distances to all items, in blocks (float64 sums)."""
    out = torch.empty(n_queries, dtype=torch.float64, device=scorer.q.device)
    for q0 in range(0, n_queries, query_chunk):
        q1 = min(q0 + query_chunk, n_queries)
        s = torch.zeros(q1 - q0, dtype=torch.float64, device=scorer.q.device)
        s2 = torch.zeros_like(s)
        for i0 in range(0, n_items, item_chunk):
            d = scorer(q0, q1, i0, min(i0 + item_chunk, n_items)).double()
            s += d.sum(1)
            s2 += (d * d).sum(1)
        mean = s / n_items
        out[q0:q1] = (s2 / n_items - mean * mean).clamp(min=0).sqrt()
    return out.clamp(min=1e-6).float()


class HybridScorer:
    """Weighted sum of generation and retrieval distances, each scaled by its per-sample std."""

    def __init__(self, gen_queries: np.ndarray, ret_queries: np.ndarray, items: np.ndarray, weight: float,
                 device: torch.device | str = "cpu", query_chunk: int = 1024, item_chunk: int = 8192, _stds=None):
        self.gen, self.ret = L2Scorer(gen_queries, items, device), L2Scorer(ret_queries, items, device)
        self.weight = float(weight)
        n_q, n_i = len(gen_queries), len(items)
        self.stds = _stds or (row_std(self.gen, n_q, n_i, query_chunk, item_chunk),
                              row_std(self.ret, n_q, n_i, query_chunk, item_chunk))
        self._args = (gen_queries, ret_queries, items, device, query_chunk, item_chunk)

    def with_weight(self, weight: float) -> "HybridScorer":
        """Same queries and stds, another weight (the stds are the expensive part)."""
        g, r, items, device, qc, ic = self._args
        return HybridScorer(g, r, items, weight, device, qc, ic, _stds=self.stds)

    def __call__(self, q0: int, q1: int, i0: int, i1: int) -> torch.Tensor:
        sd_g, sd_r = self.stds[0][q0:q1, None], self.stds[1][q0:q1, None]
        return self.weight * self.gen(q0, q1, i0, i1) / sd_g + (1 - self.weight) * self.ret(q0, q1, i0, i1) / sd_r

    def at(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        sd_g, sd_r = self.stds[0].cpu().numpy()[rows], self.stds[1].cpu().numpy()[rows]
        return (self.weight * self.gen.at(rows, items) / sd_g + (1 - self.weight) * self.ret.at(rows, items) / sd_r).astype(np.float32)


def select_hybrid_weight(
    scorer: HybridScorer,
    weights: Sequence[float],
    histories: Sequence[Sequence[int]] | None,
    targets: np.ndarray,
    groups: np.ndarray | None,
    metric: str,
    top_n: int,
    query_chunk: int = 1024,
    item_chunk: int = 8192,
) -> tuple[float, dict[str, float]]:
    """The weight with the best valid `metric` (ties: the first in `weights`), and every weight's value."""
    n_q, n_i = len(targets), len(scorer.gen.items)
    k = int(metric.split("@")[1])
    scores: dict[str, float] = {}
    for w in weights:
        idx, _ = chunked_topn(scorer.with_weight(w), n_q, n_i, top_n, histories, query_chunk, item_chunk,
                              device=scorer.gen.q.device)
        value = metrics_from_ranks(teacher_ranks(idx, targets, groups), ks=(k,))[metric]
        scores[f"{w:g}"] = value
        log.info("hybrid weight %.2f: valid %s = %.4f", w, metric, value)
    best = max(weights, key=lambda w: scores[f"{w:g}"])
    return float(best), scores
