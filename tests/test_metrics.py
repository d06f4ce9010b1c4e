"""HR@K / NDCG@K / overlap: hand-computed cases and a brute-force reference."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.metrics import metrics_from_ranks, ranks_from_topk, topk_metrics, topk_overlap


def brute_force(scores: np.ndarray, targets: np.ndarray, k: int) -> tuple[float, float]:
    """Loop over samples: sort all items by score, find the target, apply the definitions."""
    hr = ndcg = 0.0
    for row, t in zip(scores, targets):
        order = sorted(range(len(row)), key=lambda i: (-row[i], i))
        rank = order.index(int(t)) + 1
        if rank <= k:
            hr += 1
            ndcg += 1 / math.log2(rank + 1)
    return hr / len(targets), ndcg / len(targets)


def test_hand_computed_case():
    # ranks 1, 2, 4, absent: HR@1=1/4, HR@2=2/4, HR@5=3/4
    m = metrics_from_ranks(np.array([1, 2, 4, 0]), ks=(1, 2, 5))
    assert m["HR@1"] == pytest.approx(0.25)
    assert m["HR@2"] == pytest.approx(0.5)
    assert m["HR@5"] == pytest.approx(0.75)
    assert m["NDCG@1"] == pytest.approx(0.25)
    assert m["NDCG@2"] == pytest.approx((1 + 1 / math.log2(3)) / 4)
    assert m["NDCG@5"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(5)) / 4)


def test_ranks_from_topk_hand_case():
    topk = np.array([[3, 1, 2], [5, 6, 7], [9, 8, 0]])
    assert ranks_from_topk(topk, np.array([2, 4, 9])).tolist() == [3, 0, 1]


@pytest.mark.parametrize("k", [1, 5, 10, 20])
def test_topk_metrics_match_brute_force(k):
    rng = np.random.default_rng(k)
    scores = rng.standard_normal((200, 60))
    targets = rng.integers(0, 60, size=200)
    topk = np.argsort(-scores, axis=1, kind="stable")[:, :20]
    m = topk_metrics(topk, targets, ks=(k,))
    hr, ndcg = brute_force(scores, targets, k)
    assert m[f"HR@{k}"] == pytest.approx(hr)
    assert m[f"NDCG@{k}"] == pytest.approx(ndcg)


def test_topk_metrics_refuse_lists_shorter_than_k():
    with pytest.raises(ValueError):
        topk_metrics(np.zeros((2, 5), dtype=int), np.zeros(2, dtype=int), ks=(10,))


def test_overlap_hand_case():
    a = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    b = np.array([[4, 3, 9, 9], [0, 0, 0, 0]])
    assert topk_overlap(a, b, k=4) == pytest.approx((2 / 4 + 0) / 2)
    assert topk_overlap(a, b, k=2) == pytest.approx(0.0)  # only the first two of each list count


def test_empty_inputs_give_zero():
    assert metrics_from_ranks(np.array([], dtype=int), ks=(5,)) == {"HR@5": 0.0, "NDCG@5": 0.0}
    assert topk_overlap(np.zeros((0, 3)), np.zeros((0, 3)), k=3) == 0.0
