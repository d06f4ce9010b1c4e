"""Full-ranking evaluation (METHOD §6): every item is a candidate, no sampled negatives.

rank = number of items whose score is >= the target's score (the target included), i.e.
ties count *against* the model. A constant-score model therefore gets rank n_items, not 1.
With `mask_history=True` the items of the history get -inf before ranking, except the
target itself (a repeated item is still a correct prediction). Runs in eval mode, without
gradients, in float32 even when training used AMP (fp16/bf16 scores would create ties).

    >>> result = evaluate(model, data.splits["valid"], mask_history=False)  # doctest: +SKIP
    >>> result.metrics["NDCG@20"], result.topk.shape                         # doctest: +SKIP
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.metrics import DEFAULT_KS, metrics_from_ranks
from student.data import SplitTensors


@dataclass
class EvalResult:
    metrics: dict[str, float]
    ranks: np.ndarray  # [n] int64, 1-based full-catalogue rank of each target
    topk: np.ndarray  # [n, top_n] int64, the model's best items per row (masked excluded); [n, 0] if top_n=0
    seconds: float
    protocol: str  # see `protocol_string`


def protocol_string(mask_history: bool) -> str:
    """The sentence stored next to every metric, so numbers are never compared across protocols."""
    return (f"full ranking over all items, ties counted against the model, "
            f"history masked: {'yes' if mask_history else 'no'}")


def exclude_items(scores: Tensor, items: Tensor) -> Tensor:
    """Set `scores[b, items[b, j]] = -inf` in place for every real id (ids >= n_items are pads)."""
    rows, cols = (items < scores.shape[1]).nonzero(as_tuple=True)
    scores[rows, items[rows, cols]] = float("-inf")
    return scores


def mask_scores(scores: Tensor, history: Tensor, target: Tensor) -> Tensor:
    """History items -> -inf in place, but the target keeps its own score (a repeat is a hit)."""
    target_score = scores.gather(1, target[:, None])
    exclude_items(scores, history)
    scores.scatter_(1, target[:, None], target_score)
    return scores


@torch.no_grad()
def rank_batch(scores: Tensor, target: Tensor, top_n: int, buffer: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """`(ranks [B], topk [B, top_n] or None)` from full scores.

    Counting goes through a float buffer (`ge` into float, then a float row sum): about 5x
    faster on CPU than summing a fresh bool tensor. Float sums of 0/1 are exact below 2**24.
    Raises on NaN scores (a NaN never compares >=, so it would silently help the model).
    """
    if torch.isnan(scores.sum(dim=1)).any() and torch.isnan(scores).any():
        raise FloatingPointError("the model produced NaN scores; evaluation would be meaningless")
    target_score = scores.gather(1, target[:, None])
    if buffer is None or buffer.shape[1] != scores.shape[1] or buffer.shape[0] < scores.shape[0]:
        buffer = torch.empty_like(scores)
    ge = torch.ge(scores, target_score, out=buffer[: scores.shape[0]])
    ranks = ge.sum(dim=1).long()
    topk = scores.topk(min(top_n, scores.shape[1]), dim=1).indices if top_n > 0 else None
    return ranks, topk


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: SplitTensors,
    *,
    batch_size: int = 1024,
    mask_history: bool = True,
    ks: Iterable[int] = DEFAULT_KS,
    top_n: int = 20,
    device: torch.device | str | None = None,
) -> EvalResult:
    """HR/NDCG@ks over `split` by batched full ranking, plus each row's top-`top_n` items.

    `mask_history` defaults to True like `TrainConfig.mask_history` and `recommend`: a student is
    measured as it is served unless the caller asks for the paper's unmasked protocol.

    `top_n=0` skips the top-k lists (a third of the CPU time): per-epoch validation needs
    only the ranks.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    ranks, topks = [], []
    buffer = None
    try:
        for lo in range(0, len(split), batch_size):
            hist = split.history[lo:lo + batch_size].to(device, non_blocking=True)
            lengths = split.lengths[lo:lo + batch_size].to(device, non_blocking=True)
            target = split.target[lo:lo + batch_size].to(device, non_blocking=True)
            with torch.autocast(device.type, enabled=False):
                scores = model.scores(hist, lengths).float()
            if mask_history:
                scores = mask_scores(scores, hist, target)
            if buffer is None:
                buffer = torch.empty_like(scores)
            r, t = rank_batch(scores, target, top_n, buffer)
            ranks.append(r.cpu())
            if t is not None:
                topks.append(t.cpu())
    finally:
        model.train(was_training)
    rank_arr = torch.cat(ranks).numpy().astype(np.int64) if ranks else np.zeros(0, np.int64)
    topk_arr = torch.cat(topks).numpy().astype(np.int64) if topks else np.zeros((len(rank_arr), 0), np.int64)
    return EvalResult(metrics=metrics_from_ranks(rank_arr, ks), ranks=rank_arr, topk=topk_arr,
                      seconds=time.perf_counter() - start, protocol=protocol_string(mask_history))
