"""Incremental teacher runs: when a dataset changed only by new samples, rank only those.

A refreshed dataset version is *an extension* of an older one when the item catalogue is
identical (same ids, titles) and every old sample is still there with the same history and
target (its split may move: BIGRec's time split re-cuts 8:1:1). Then the old teacher's
rankings and item embeddings stay valid, the teacher ranks only the new samples, and
`merge_artifacts` writes one complete artifact folder for the new version.

    >>> base = find_base(layout, dataset, teacher_hash)          # doctest: +SKIP
    >>> ids = new_sample_ids(base.dataset, dataset)              # doctest: +SKIP
    >>> merge_artifacts(base.teacher_dir, delta_dir, dataset, out_dir, manifest_extra={...})  # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from flows.layout import Layout
from pipeline.artifacts import (
    TEACHER_MANIFEST_FILE,
    TeacherRankings,
    load_teacher_artifacts,
    write_teacher_artifacts,
)
from pipeline.dataset import MANIFEST_FILE, Dataset, load_dataset
from pipeline.errors import DataError
from pipeline.io import read_json
from pipeline.metrics import DEFAULT_KS, topk_metrics


@dataclass
class Base:
    """A finished teacher run on an older dataset version that the new version extends."""

    teacher_dir: Path
    dataset: Dataset


def is_extension(old: Dataset, new: Dataset) -> bool:
    """Same catalogue, and every old sample present in `new` with the same history and target."""
    if old.n_items != new.n_items or not old.items[["title", "source_id"]].equals(new.items[["title", "source_id"]]):
        return False
    cols = ["sample_id", "target", "history"]
    joined = old.samples[cols].merge(new.samples[cols], on="sample_id", how="left", suffixes=("_old", "_new"))
    if joined["target_new"].isna().any() or (joined["target_old"] != joined["target_new"]).any():
        return False
    return all(np.array_equal(a, b) for a, b in zip(joined["history_old"], joined["history_new"]))


def new_sample_ids(old: Dataset, new: Dataset) -> np.ndarray:
    """Ids of samples in `new` that `old` did not have (sorted int64)."""
    return np.setdiff1d(new.samples["sample_id"].to_numpy(), old.samples["sample_id"].to_numpy()).astype(np.int64)


def find_base(layout: Layout, dataset: Dataset, teacher_hash: str) -> Base | None:
    """The newest teacher run with the same config on an older version that `dataset` extends."""
    for teacher_dir in layout.teacher_dirs(teacher_hash):
        manifest_path = teacher_dir / TEACHER_MANIFEST_FILE
        if not manifest_path.exists():
            continue
        old_hash = read_json(manifest_path).get("dataset_hash", "")
        if old_hash == dataset.content_hash:
            continue
        version = layout.version_dir(old_hash)
        if not (version / MANIFEST_FILE).exists():
            continue
        try:
            old = load_dataset(version)
        except DataError:
            continue
        if is_extension(old, dataset):
            return Base(teacher_dir=teacher_dir, dataset=old)
    return None


def ranking_metrics(rankings: TeacherRankings, dataset: Dataset) -> dict[str, dict[str, float]]:
    """Teacher HR/NDCG@K on valid and test from its top-N lists (same code as the students)."""
    ks = tuple(k for k in DEFAULT_KS if k <= rankings.top_n)
    out = {}
    for split in ("valid", "test"):
        rows = dataset.split(split)
        items, _, _, has = rankings.align(rows["sample_id"].to_numpy(), rankings.top_n)
        if has.any():
            out[split] = {**topk_metrics(items[has], rows["target"].to_numpy()[has], ks), "n": int(has.sum())}
    return out


def merge_rankings(base: TeacherRankings, delta: TeacherRankings) -> TeacherRankings:
    """Union by sample id; a sample in both keeps the delta's (newer) row. Widths must agree."""
    n = min(base.top_n, delta.top_n) if len(delta) else base.top_n
    keep = ~np.isin(base.sample_ids, delta.sample_ids)
    return TeacherRankings(
        sample_ids=np.concatenate([base.sample_ids[keep], delta.sample_ids]),
        topk_items=np.concatenate([base.topk_items[keep, :n], delta.topk_items[:, :n]]),
        topk_distances=np.concatenate([base.topk_distances[keep, :n], delta.topk_distances[:, :n]]),
        target_distance=np.concatenate([base.target_distance[keep], delta.target_distance]),
    )


MetricsFn = Callable[[TeacherRankings, Dataset], dict]


def merge_artifacts(base_dir: str | Path, delta_dir: str | Path | None, dataset: Dataset, out_dir: str | Path,
                    *, base_dataset: Dataset, manifest_extra: dict | None = None,
                    metrics_fn: MetricsFn = None) -> Path:
    """Write the base rankings + the delta rankings for `dataset` into `out_dir` (validated, atomic).

    The base embeddings are reused (the catalogue is unchanged); teacher metrics are
    recomputed on the new version's valid/test samples with `metrics_fn` (default:
    `ranking_metrics`; the teacher flow passes the teacher's own, which counts identical
    titles as one item).
    """
    base = load_teacher_artifacts(base_dir, base_dataset)
    rankings = base.rankings
    if delta_dir is not None:
        delta = load_teacher_artifacts(delta_dir, dataset)
        if not np.allclose(delta.embeddings, base.embeddings, atol=1e-3, rtol=1e-3):
            raise DataError(Path(delta_dir) / "item_embeddings.parquet", "embedding",
                            "differs from the base run's: the base model changed, so an incremental merge is invalid")
        rankings = merge_rankings(rankings, delta.rankings)
    manifest = {k: v for k, v in base.manifest.items() if k not in {"dataset_hash", "created_at", "n_rankings", "train_coverage"}}
    manifest.update(metrics=(metrics_fn or ranking_metrics)(rankings, dataset), **(manifest_extra or {}))
    return write_teacher_artifacts(out_dir, rankings, base.embeddings, dataset, manifest)


def describe_extension(base: Base, dataset: Dataset) -> dict:
    """Counts for the log and the report: how much of the new version is new."""
    ids = new_sample_ids(base.dataset, dataset)
    splits = dataset.samples.set_index("sample_id").loc[ids, "split"] if len(ids) else pd.Series(dtype=str)
    return {"base": str(base.teacher_dir), "new_samples": int(len(ids)), "by_split": splits.value_counts().to_dict()}
