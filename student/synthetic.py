"""Synthetic teacher artifacts: exercise the student stage without running an LLM.

Used by the benchmark (a 4096-wide teacher before any real teacher has run) and by tests.
Rankings are valid under the artifact contract (unique items per row, ascending
distances). `oracle=True` puts each sample's TRUE target first, which makes the ranking
distillation path carry real signal: a test can check that it helps.

    >>> write_synthetic_teacher(dataset, "runs/demo/fake_teacher", dim=4096)   # doctest: +SKIP
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.artifacts import TeacherRankings, write_teacher_artifacts
from pipeline.dataset import Dataset


def _coprime_steps(n_items: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Random steps in 1..n_items-1 coprime with n_items (so `start + j*step` never repeats)."""
    candidates = np.array([s for s in range(1, max(n_items, 2)) if math.gcd(s, n_items) == 1] or [1])
    return rng.choice(candidates, size=count)


def synthetic_rankings(dataset: Dataset, *, top_n: int = 50, seed: int = 0, oracle: bool = False,
                       splits: Sequence[str] = ("train", "valid", "test"), coverage: float = 1.0) -> TeacherRankings:
    """Top-`top_n` lists for a random `coverage` share of the samples of `splits`."""
    rng = np.random.default_rng(seed)
    samples = dataset.samples[dataset.samples["split"].isin(list(splits))]
    keep = rng.random(len(samples)) < coverage
    samples = samples[keep]
    n, n_items = len(samples), dataset.n_items
    top_n = min(top_n, n_items)
    target = samples["target"].to_numpy(np.int64)
    start = target if oracle else rng.integers(0, n_items, size=n)
    steps = _coprime_steps(n_items, n, rng)
    items = (start[:, None] + np.arange(top_n)[None, :] * steps[:, None]) % n_items
    distances = np.sort(rng.uniform(1.0, 10.0, size=(n, top_n)).astype(np.float32), axis=1)
    hit = items == target[:, None]
    target_distance = np.where(hit.any(axis=1), distances[np.arange(n), hit.argmax(axis=1)],
                               rng.uniform(5.0, 15.0, size=n)).astype(np.float32)
    return TeacherRankings(sample_ids=samples["sample_id"].to_numpy(np.int64), topk_items=items.astype(np.int32),
                           topk_distances=distances, target_distance=target_distance)


def write_synthetic_teacher(dataset: Dataset, out_dir: str | Path, *, dim: int = 64, top_n: int = 50, seed: int = 0,
                            oracle: bool = False, splits: Sequence[str] = ("train", "valid", "test"),
                            coverage: float = 1.0, embedding_dtype: str = "float32") -> Path:
    """Write a contract-valid teacher folder (rankings + random `dim`-wide item embeddings)."""
    rankings = synthetic_rankings(dataset, top_n=top_n, seed=seed, oracle=oracle, splits=splits, coverage=coverage)
    embeddings = np.random.default_rng(seed + 1).standard_normal((dataset.n_items, dim), dtype=np.float32)
    manifest = {"model_id": "synthetic-oracle" if oracle else "synthetic-random", "backend": "synthetic",
                "adapter_hash": None, "prompt_hash": None, "generation": {"seed": seed}, "metrics": {}}
    return write_teacher_artifacts(out_dir, rankings, embeddings, dataset, manifest, embedding_dtype=embedding_dtype)
