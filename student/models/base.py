"""The one interface every student implements (RecBole style: `scores`, `loss`).

A subclass only writes `encode(history, lengths) -> [B, dim]`; scoring against the full
catalogue and the losses (BCE + DRO + DLLM2Rec ranking distillation) live here once.

Conventions: `history` is `[B, L]` long, oldest item first, padded at the END with
`pad_id = n_items`; `lengths` is `[B]` (0 allowed: an empty history).

    >>> model = build_model(StudentConfig(model="gru4rec"), n_items=100)   # doctest: +SKIP
    >>> model.scores(history, lengths).shape                               # doctest: +SKIP
    torch.Size([B, 100])
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

import torch
from torch import Tensor, nn


@dataclass
class Batch:
    """One training or evaluation batch (tensors built once by `student.data`)."""

    history: Tensor  # [B, L] long
    lengths: Tensor  # [B] long
    target: Tensor  # [B] long
    negatives: Optional[Tensor] = None  # [B, n_neg] long, never history or target
    teacher_items: Optional[Tensor] = None  # [B, K] long, teacher's top-K (ascending distance)
    teacher_distances: Optional[Tensor] = None  # [B, K] float
    teacher_target_distance: Optional[Tensor] = None  # [B] float, NaN when unknown
    has_teacher: Optional[Tensor] = None  # [B] bool: rows with a teacher ranking

    def to(self, device: torch.device | str) -> "Batch":
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return Batch(**{k: (v.to(device, non_blocking=True) if isinstance(v, Tensor) else v) for k, v in moved.items()})
