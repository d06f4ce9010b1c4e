"""Grounding: rank every catalogue item by distance to a query, in bounded memory (METHOD §2.4).

`chunked_topn` walks query blocks x item blocks, so 100k queries x 20k items never need
more than `query_chunk x item_chunk` distances at once, and keeps a running top-N per
query. History items can be excluded (they get +inf). Ties are broken by item id (stable
sorts), so the result is deterministic; items with identical titles have identical embeddings and sit
next to each other. `title_groups` + `teacher_ranks` give a target the best rank of any
item sharing its title, as BIGRec does (it maps titles to ids).

    >>> q, items = np.random.rand(5, 8).astype("f4"), np.random.rand(100, 8).astype("f4")
    >>> idx, dist = chunked_topn(L2Scorer(q, items), 5, 100, top_n=10, item_chunk=32)
    >>> idx.shape, bool((np.diff(dist, axis=1) >= 0).all())
    ((5, 10), True)
"""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np
import pandas as pd
import torch

from pipeline.metrics import ranks_from_topk


class Scorer(Protocol):
    """Distances of queries [q0:q1] to items [i0:i1] (smaller = better), as a fresh tensor."""

    def __call__(self, q0: int, q1: int, i0: int, i1: int) -> torch.Tensor: ...

    def at(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Distance of query `rows[j]` to item `items[j]` (the target distance)."""


class L2Scorer:
    """Euclidean distance between query and item embeddings (float32 on `device`)."""

    def __init__(self, queries: np.ndarray, items: np.ndarray, device: torch.device | str = "cpu"):
        self.q = torch.as_tensor(np.asarray(queries, dtype=np.float32), device=device)
        self.items = torch.as_tensor(np.asarray(items, dtype=np.float32), device=device)

    def __call__(self, q0: int, q1: int, i0: int, i1: int) -> torch.Tensor:
        return torch.cdist(self.q[q0:q1], self.items[i0:i1])

    def at(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        diff = self.q[torch.as_tensor(rows)] - self.items[torch.as_tensor(items, device=self.items.device)]
        return diff.norm(dim=1).cpu().numpy()


def history_matrix(histories: Sequence[Sequence[int]] | None, n: int) -> np.ndarray:
    """Histories as an int64 [n, L] matrix padded with -1 (L >= 1)."""
    if histories is None:
        return np.full((n, 1), -1, dtype=np.int64)
    width = max([len(h) for h in histories] + [1])
    out = np.full((n, width), -1, dtype=np.int64)
    for row, h in enumerate(histories):
        out[row, : len(h)] = np.asarray(h, dtype=np.int64)
    return out


@torch.no_grad()
def chunked_topn(
    score: Scorer,
    n_queries: int,
    n_items: int,
    top_n: int,
    exclude: Sequence[Sequence[int]] | None = None,
    query_chunk: int = 1024,
    item_chunk: int = 8192,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Top-`top_n` items per query by ascending distance: `(items int32 [n, N], distances float32 [n, N])`."""
    excluded = max((len(h) for h in exclude), default=0) if exclude is not None else 0
    if top_n + excluded > n_items:
        raise ValueError(f"top_n={top_n} plus {excluded} excluded history items exceed the catalogue of {n_items} items")
    hist = history_matrix(exclude, n_queries)
    out_idx = np.empty((n_queries, top_n), dtype=np.int32)
    out_val = np.empty((n_queries, top_n), dtype=np.float32)
    for q0 in range(0, n_queries, query_chunk):
        q1 = min(q0 + query_chunk, n_queries)
        h = torch.as_tensor(hist[q0:q1], device=device)
        best_val = torch.full((q1 - q0, 0), float("inf"), device=device)
        best_idx = torch.zeros((q1 - q0, 0), dtype=torch.long, device=device)
        for i0 in range(0, n_items, item_chunk):
            i1 = min(i0 + item_chunk, n_items)
            d = score(q0, q1, i0, i1).float()  # a fresh tensor: edited in place
            local = h - i0
            rows, cols = torch.nonzero((local >= 0) & (local < i1 - i0), as_tuple=True)
            d[rows, local[rows, cols]] = float("inf")
            cand_val = torch.cat([best_val, d], dim=1)
            cand_idx = torch.cat([best_idx, torch.arange(i0, i1, device=device).expand(q1 - q0, -1)], dim=1)
            # Stable sort: the kept list comes first and holds only smaller ids than this block, so equal
            # distances stay in id order and the result is exactly "by (distance, item id)".
            best_val, pos = torch.sort(cand_val, dim=1, stable=True)
            best_val, best_idx = best_val[:, :top_n], torch.gather(cand_idx, 1, pos[:, :top_n])
        out_val[q0:q1] = best_val.cpu().numpy()
        out_idx[q0:q1] = best_idx.cpu().numpy()
    return out_idx, out_val


def title_groups(titles: Sequence[str]) -> np.ndarray:
    """Item id -> id of the first item with the same title (BIGRec treats a title as one item)."""
    codes, _ = pd.factorize(pd.Series(list(titles)))
    first = pd.Series(np.arange(len(codes))).groupby(codes).transform("min").to_numpy()
    return first.astype(np.int64)


def teacher_ranks(topk: np.ndarray, targets: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """1-based rank of each target in its top-N row (0 = absent); with `groups`, the best rank of its title."""
    topk, targets = np.asarray(topk, dtype=np.int64), np.asarray(targets, dtype=np.int64)
    if groups is not None:
        topk, targets = groups[topk], groups[targets]
    return ranks_from_topk(topk, targets)
