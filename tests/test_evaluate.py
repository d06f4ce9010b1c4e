"""Full-ranking evaluation against a brute-force Python ranking."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.metrics import metrics_from_ranks
from student.data import SplitTensors, pad_histories
from student.evaluate import evaluate, protocol_string


class TableModel(nn.Module):
    """scores(history) = a fixed random row per (first history item, length): no learning needed."""

    def __init__(self, n_items: int, table: torch.Tensor):
        super().__init__()
        self.n_items = n_items
        self.table = nn.Parameter(table)

    def scores(self, history, lengths):
        key = (history[:, 0] * 7 + lengths) % self.table.shape[0]
        return self.table[key]


def make_split(n: int, n_items: int, L: int, seed: int = 0) -> SplitTensors:
    rng = np.random.default_rng(seed)
    hists = [list(rng.choice(n_items, size=rng.integers(0, L + 1), replace=False)) for _ in range(n)]
    hist, lengths = pad_histories(hists, L, n_items)
    target = torch.as_tensor(rng.integers(0, n_items, n))
    # make some targets repeat a history item (the target must never be masked)
    for row in range(0, n, 5):
        if lengths[row] > 0:
            target[row] = hist[row, 0]
    return SplitTensors(torch.arange(n), hist, lengths, target)


def brute_force_rank(scores: list[float], target: int, excluded: set[int]) -> int:
    """1 + number of other candidates scoring >= the target (ties against the model)."""
    t = scores[target]
    return 1 + sum(1 for i, s in enumerate(scores) if i != target and i not in excluded and s >= t)


@pytest.mark.parametrize("mask_history", [False, True])
@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_matches_brute_force(mask_history, batch_size):
    n_items, L = 30, 6
    split = make_split(60, n_items, L)
    # few distinct values so that ties really happen
    table = torch.randint(0, 5, (50, n_items), generator=torch.Generator().manual_seed(1)).float()
    model = TableModel(n_items, table)
    result = evaluate(model, split, batch_size=batch_size, mask_history=mask_history, top_n=5)
    scores = model.scores(split.history, split.lengths).tolist()
    expected = []
    for row in range(len(split)):
        tgt = int(split.target[row])
        hist = set(split.history[row, : split.lengths[row]].tolist())
        excluded = (hist - {tgt}) if mask_history else set()
        expected.append(brute_force_rank(scores[row], tgt, excluded))
        allowed = [i for i in range(n_items) if i not in excluded]
        best = sorted(allowed, key=lambda i: -scores[row][i])[:5]
        # top-k: same score multiset as the brute-force best 5 (order among ties is free)
        assert sorted(scores[row][i] for i in result.topk[row]) == sorted(scores[row][i] for i in best)
        assert not (set(result.topk[row].tolist()) & excluded)
    assert result.ranks.tolist() == expected
    assert result.metrics == metrics_from_ranks(np.array(expected))
    assert result.protocol == protocol_string(mask_history)


def test_hand_computed_metrics():
    # one row: target 2 has the 3rd best score -> rank 3: HR@1 0, HR@5 1, NDCG@5 = 1/log2(4)
    table = torch.tensor([[0.9, 0.8, 0.7, 0.1]])
    split = SplitTensors(torch.tensor([0]), torch.tensor([[4, 4]]), torch.tensor([0]), torch.tensor([2]))
    r = evaluate(TableModel(4, table), split, ks=(1, 5))
    assert r.ranks.tolist() == [3]
    assert r.metrics["HR@1"] == 0 and r.metrics["HR@5"] == 1 and math.isclose(r.metrics["NDCG@5"], 0.5)
    # masking item 0 (in the history) moves the target to rank 2
    split.history[0, 0], split.lengths[0] = 0, 1
    assert evaluate(TableModel(4, table), split, mask_history=True).ranks.tolist() == [2]


def test_constant_scores_rank_last_not_first():
    split = make_split(10, 20, 3)
    r = evaluate(TableModel(20, torch.zeros(50, 20)), split, mask_history=False)
    assert (r.ranks == 20).all() and r.metrics["HR@10"] == 0


def test_nan_scores_raise_and_mode_is_restored():
    model = TableModel(5, torch.full((50, 5), float("nan")))
    model.train()
    with pytest.raises(FloatingPointError):
        evaluate(model, make_split(4, 5, 2))
    assert model.training


def test_eval_mode_no_grad_and_top_n_zero(demo_dataset):
    from student.config import ModelConfig, StudentConfig
    from student.data import StudentData
    from student.models import build_model

    data = StudentData.build(demo_dataset)
    model = build_model(StudentConfig(model="sasrec", arch=ModelConfig(dim=16, dropout=0.5)), data.n_items)
    model.train()
    a = evaluate(model, data.splits["valid"], batch_size=100, top_n=0)
    b = evaluate(model, data.splits["valid"], batch_size=333, top_n=20)
    assert np.array_equal(a.ranks, b.ranks)  # dropout off: deterministic, batch-size independent
    assert a.topk.shape == (len(data.splits["valid"]), 0) and b.topk.shape == (len(data.splits["valid"]), 20)
    assert model.training
