"""HR@K / NDCG@K and list overlap: one implementation for teacher and students.

Ranks are 1-based positions of the target in a full ranking over all items; 0 means
"not in the list" (only possible for truncated top-N lists).

    >>> m = metrics_from_ranks(np.array([1, 3, 0]), ks=(1, 5))
    >>> round(m["HR@5"], 4), round(m["NDCG@5"], 4)
    (0.6667, 0.5)
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

DEFAULT_KS = (1, 5, 10, 20)


def metrics_from_ranks(ranks: np.ndarray, ks: Iterable[int] = DEFAULT_KS) -> dict[str, float]:
    """HR@K = share with 1 <= rank <= K; NDCG@K = mean of 1/log2(rank+1) for those."""
    ranks = np.asarray(ranks, dtype=np.int64)
    out: dict[str, float] = {}
    n = max(len(ranks), 1)
    for k in ks:
        hit = (ranks >= 1) & (ranks <= k)
        gain = np.where(hit, 1.0 / np.log2(np.maximum(ranks, 1) + 1.0), 0.0)
        out[f"HR@{k}"] = float(hit.sum() / n)
        out[f"NDCG@{k}"] = float(gain.sum() / n)
    return out


def ranks_from_topk(topk: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each target in its row of `topk` [n, N]; 0 when absent."""
    topk = np.asarray(topk)
    match = topk == np.asarray(targets)[:, None]
    return np.where(match.any(axis=1), match.argmax(axis=1) + 1, 0)


def topk_metrics(topk: np.ndarray, targets: np.ndarray, ks: Iterable[int] = DEFAULT_KS) -> dict[str, float]:
    ks = tuple(ks)
    if ks and max(ks) > np.asarray(topk).shape[1]:
        raise ValueError(f"top-{max(ks)} metrics need lists of at least {max(ks)} items")
    return metrics_from_ranks(ranks_from_topk(topk, targets), ks)


def topk_overlap(a: np.ndarray, b: np.ndarray, k: int = 20) -> float:
    """Mean |top-k(a) ∩ top-k(b)| / k over rows (paper Table 7)."""
    a, b = np.asarray(a)[:, :k], np.asarray(b)[:, :k]
    if len(a) == 0:
        return 0.0
    shared = (a[:, :, None] == b[:, None, :]).any(axis=2).sum(axis=1)
    return float(shared.mean() / k)
