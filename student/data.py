"""Training tensors, built once from the Parquet dataset (no pandas inside the training loop).

`StudentData.build` turns every split into padded tensors (`history [n, L]` padded at the
END with `pad_id = n_items`, `lengths`, `target`, `sample_id`), aligns the teacher's top-K
rankings with the train samples by `sample_id`, and counts item popularity. `epoch()` then
yields shuffled `Batch`es whose negatives were sampled for the whole epoch in one vectorised
call (one host sync per epoch on GPU, not one per step).

    >>> data = StudentData.build(load_dataset("runs/demo/data"), teacher=art, k=10)  # doctest: +SKIP
    >>> gen = torch.Generator().manual_seed(0)                                          # doctest: +SKIP
    >>> for batch in data.epoch(256, n_negatives=1, generator=gen): ...                 # doctest: +SKIP
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace
from typing import Iterator, Optional

import numpy as np
import torch
from torch import Tensor

from pipeline.artifacts import TeacherArtifacts
from pipeline.dataset import SPLITS, Dataset
from student.models.base import Batch

log = logging.getLogger(__name__)

# Rounds of "resample the collisions" before the exact (masked multinomial) fallback, which
# only small catalogues ever reach.
_RESAMPLE_ROUNDS = 8


@dataclass
class SplitTensors:
    """One split as tensors, rows in the dataset's `sample_id` order."""

    sample_ids: Tensor  # [n] int64
    history: Tensor  # [n, L] long, padded at the end with pad_id
    lengths: Tensor  # [n] long
    target: Tensor  # [n] long

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def to(self, device: torch.device | str) -> "SplitTensors":
        return SplitTensors(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


@dataclass
class TeacherTensors:
    """The teacher's top-K for the train rows (same row order as `SplitTensors`)."""

    items: Tensor  # [n, K] long
    distances: Tensor  # [n, K] float
    target_distance: Tensor  # [n] float, NaN when unknown
    has: Tensor  # [n] bool

    def to(self, device: torch.device | str) -> "TeacherTensors":
        return TeacherTensors(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def pad_histories(histories, max_len: int, pad_id: int) -> tuple[Tensor, Tensor]:
    """Ragged lists -> `([n, max_len] long padded at the end, lengths [n])`; keeps the LAST items."""
    lengths = np.fromiter((min(len(h), max_len) for h in histories), dtype=np.int64, count=len(histories))
    out = np.full((len(histories), max(max_len, 1)), pad_id, dtype=np.int64)
    if len(histories) and lengths.sum():
        flat = np.concatenate([np.asarray(h[len(h) - n:], dtype=np.int64) for h, n in zip(histories, lengths)])
        rows = np.repeat(np.arange(len(histories)), lengths)
        cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[rows, cols] = flat
    return torch.from_numpy(out[:, :max_len]), torch.from_numpy(lengths)


def split_tensors(dataset: Dataset, split: str) -> SplitTensors:
    frame = dataset.split(split)
    history, lengths = pad_histories(frame["history"].tolist(), dataset.max_history, dataset.pad_id)
    return SplitTensors(
        sample_ids=torch.from_numpy(frame["sample_id"].to_numpy(np.int64).copy()),
        history=history,
        lengths=lengths,
        target=torch.from_numpy(frame["target"].to_numpy(np.int64).copy()),
    )


def sample_negatives(history: Tensor, target: Tensor, n_items: int, n_neg: int, generator: torch.Generator) -> Tensor:
    """Uniform item ids `[B, n_neg]` that are never in the row's history nor its target.

    Vectorised rejection: draw everything, find collisions with one broadcast compare,
    redraw only the collisions; rows still colliding after a few rounds (tiny catalogues)
    draw exactly from their allowed set with a masked multinomial.
    """
    device = history.device
    excluded = torch.cat([history, target[:, None]], dim=1)  # pad ids never collide (>= n_items)
    neg = torch.randint(0, n_items, (len(target), n_neg), generator=generator, device=device)
    for _ in range(_RESAMPLE_ROUNDS):
        bad = (neg[:, :, None] == excluded[:, None, :]).any(dim=2)
        n_bad = int(bad.sum())
        if n_bad == 0:
            return neg
        neg[bad] = torch.randint(0, n_items, (n_bad,), generator=generator, device=device)
    bad = (neg[:, :, None] == excluded[:, None, :]).any(dim=2)
    rows = bad.any(dim=1).nonzero().squeeze(1)
    if len(rows):
        allowed = torch.ones(len(rows), n_items + 1, device=device)
        allowed.scatter_(1, excluded[rows], 0.0)
        allowed = allowed[:, :n_items]
        if (allowed.sum(dim=1) == 0).any():
            raise ValueError("a sample's history and target cover the whole catalogue: no negative exists")
        exact = torch.multinomial(allowed, n_neg, replacement=True, generator=generator)
        neg[rows] = torch.where(bad[rows], exact, neg[rows])
    return neg


@dataclass
class StudentData:
    """All splits as tensors, plus the teacher tensors aligned with the train rows."""

    n_items: int
    max_len: int
    splits: dict[str, SplitTensors]
    popularity: Tensor  # [n_items] float: train-target counts, as the DROS / DLLM2Rec reference code counts them
    teacher: Optional[TeacherTensors] = None
    teacher_embeddings: Optional[Tensor] = None  # [n_items, d] float
    teacher_coverage: float = 0.0

    @property
    def pad_id(self) -> int:
        return self.n_items

    @classmethod
    def build(cls, dataset: Dataset, teacher: TeacherArtifacts | None = None, k: int = 10) -> "StudentData":
        """Read every split once; align the teacher's top-`k` with the train rows by sample id."""
        splits = {name: split_tensors(dataset, name) for name in SPLITS}
        train = splits["train"]
        data = cls(n_items=dataset.n_items, max_len=dataset.max_history, splits=splits,
                   popularity=torch.from_numpy(dataset.train_item_counts()).float())
        if teacher is not None:
            items, dists, target_d, has = teacher.rankings.align(train.sample_ids.numpy(), k)
            data.teacher = TeacherTensors(
                items=torch.from_numpy(items), distances=torch.from_numpy(dists),
                target_distance=torch.from_numpy(target_d), has=torch.from_numpy(has))
            data.teacher_embeddings = torch.from_numpy(np.ascontiguousarray(teacher.embeddings, dtype=np.float32))
            data.teacher_coverage = float(has.mean()) if len(has) else 0.0
            log.info("teacher: top-%d rankings for %d of %d train samples (coverage %.1f%%), embeddings %s",
                     k, int(has.sum()), len(has), 100 * data.teacher_coverage, tuple(teacher.embeddings.shape))
        log.info("data: %s windows, %d items, L=%d",
                 ", ".join(f"{n} {len(s)}" for n, s in splits.items()), data.n_items, data.max_len)
        return data

    def to(self, device: torch.device | str) -> "StudentData":
        """Move the tensors the training loop touches (the teacher embeddings go to the model)."""
        return replace(self, splits={n: s.to(device) for n, s in self.splits.items()},
                       popularity=self.popularity.to(device),
                       teacher=self.teacher.to(device) if self.teacher is not None else None)

    def epoch(self, batch_size: int, n_negatives: int, generator: torch.Generator,
              with_teacher: bool = True) -> Iterator[Batch]:
        """Shuffled train batches; permutation and negatives come from `generator` only.

        `generator` must live on the same device as the tensors. The last batch may be short.
        """
        train = self.splits["train"]
        n = len(train)
        perm = torch.randperm(n, generator=generator, device=generator.device)
        negatives = sample_negatives(train.history, train.target, self.n_items, n_negatives, generator)
        teacher = self.teacher if with_teacher else None
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            yield Batch(
                history=train.history[idx], lengths=train.lengths[idx], target=train.target[idx],
                negatives=negatives[idx],
                teacher_items=teacher.items[idx] if teacher is not None else None,
                teacher_distances=teacher.distances[idx] if teacher is not None else None,
                teacher_target_distance=teacher.target_distance[idx] if teacher is not None else None,
                has_teacher=teacher.has[idx] if teacher is not None else None,
            )
