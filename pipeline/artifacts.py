"""The teacher -> student artifact contract (the one module that owns it).

A teacher run writes, into one folder:

- `teacher_rankings.parquet`: `sample_id` int64, `topk_items` list<int32> (ascending
  distance, N >= 10), `topk_distances` list<float32>, `target_distance` float32 (nullable);
- `item_embeddings.parquet`: `item_id` int32, `embedding` fixed_size_list<float32|float16>[d];
- `teacher_manifest.json` (written last): dataset content hash, model id, adapter hash,
  prompt hash, N, d, generation settings, backend, mode, created_at, teacher metrics.

Readers validate everything against the dataset before any training, and raise a
`DataError` naming the file and the first offending rows. Nothing is silently dropped
or reordered. See docs/artifacts.md.

    >>> art = load_teacher_artifacts("runs/demo/teacher", dataset)   # doctest: +SKIP
    >>> items, dists, target_d, has = art.rankings.align(train_ids, k=10)  # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dataset import Dataset
from pipeline.errors import DataError, first_rows
from pipeline.io import read_json, write_json, write_parquet

RANKINGS_FILE = "teacher_rankings.parquet"
EMBEDDINGS_FILE = "item_embeddings.parquet"
TEACHER_MANIFEST_FILE = "teacher_manifest.json"
MIN_TOP_N = 10

RANKINGS_SCHEMA = pa.schema(
    [
        ("sample_id", pa.int64()),
        ("topk_items", pa.list_(pa.int32())),
        ("topk_distances", pa.list_(pa.float32())),
        ("target_distance", pa.float32()),
    ]
)


@dataclass
class TeacherRankings:
    """Dense numpy view of `teacher_rankings.parquet` (one row per sample, N columns)."""

    sample_ids: np.ndarray  # int64 [n]
    topk_items: np.ndarray  # int32 [n, N]
    topk_distances: np.ndarray  # float32 [n, N]
    target_distance: np.ndarray  # float32 [n], NaN where unknown

    def __len__(self) -> int:
        return len(self.sample_ids)

    @property
    def top_n(self) -> int:
        return int(self.topk_items.shape[1])

    def align(self, sample_ids: np.ndarray, k: int | None = None):
        """Rows for `sample_ids` (any order), first `k` columns.

        Returns `(items [m,k] int64, distances [m,k] float32, target_distance [m],
        has_ranking [m] bool)`; rows without a ranking are zeros / NaN and marked False.
        """
        k = self.top_n if k is None else k
        if k > self.top_n:
            raise ValueError(f"asked for top-{k} but the teacher wrote only top-{self.top_n}")
        sample_ids = np.asarray(sample_ids, dtype=np.int64)
        m = len(sample_ids)
        if len(self.sample_ids) == 0:
            return np.zeros((m, k), np.int64), np.zeros((m, k), np.float32), np.full(m, np.nan, np.float32), np.zeros(m, bool)
        order = np.argsort(self.sample_ids, kind="stable")
        sorted_ids = self.sample_ids[order]
        pos = np.minimum(np.searchsorted(sorted_ids, sample_ids), len(sorted_ids) - 1)
        has = sorted_ids[pos] == sample_ids
        rows = order[pos]
        items = np.where(has[:, None], self.topk_items[rows, :k], 0).astype(np.int64)
        dists = np.where(has[:, None], self.topk_distances[rows, :k], 0.0).astype(np.float32)
        target = np.where(has, self.target_distance[rows], np.nan).astype(np.float32)
        return items, dists, target, has


@dataclass
class TeacherArtifacts:
    path: Path
    rankings: TeacherRankings
    embeddings: np.ndarray  # float32 [n_items, d]
    manifest: dict = field(default_factory=dict)
    coverage: float = 0.0  # share of train samples with a ranking

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])


def rankings_table(r: TeacherRankings) -> pa.Table:
    n, top_n = r.topk_items.shape
    offsets = pa.array(np.arange(0, (n + 1) * top_n, top_n, dtype=np.int32))
    target = r.target_distance.astype(np.float32)
    return pa.Table.from_arrays(
        [
            pa.array(r.sample_ids.astype(np.int64)),
            pa.ListArray.from_arrays(offsets, pa.array(r.topk_items.reshape(-1).astype(np.int32))),
            pa.ListArray.from_arrays(offsets, pa.array(r.topk_distances.reshape(-1).astype(np.float32))),
            pa.array(target, mask=np.isnan(target)),
        ],
        schema=RANKINGS_SCHEMA,
    )


def embeddings_table(embeddings: np.ndarray, dtype: str = "float32") -> pa.Table:
    n, d = embeddings.shape
    values = pa.array(np.ascontiguousarray(embeddings, dtype=np.dtype(dtype)).reshape(-1))
    return pa.table(
        {
            "item_id": pa.array(np.arange(n, dtype=np.int32)),
            "embedding": pa.FixedSizeListArray.from_arrays(values, d),
        }
    )


def validate_rankings(r: TeacherRankings, dataset: Dataset, path: str | Path) -> float:
    """Check rankings against the dataset; return the train coverage (0..1)."""
    if r.topk_items.ndim != 2 or r.topk_items.shape != r.topk_distances.shape:
        raise DataError(path, "topk_distances", "must have the same length as topk_items in every row")
    if r.top_n < MIN_TOP_N:
        raise DataError(path, "topk_items", f"has only {r.top_n} items per row; the contract needs N >= {MIN_TOP_N}")
    dup = _duplicated(r.sample_ids)
    if dup.any():
        raise DataError(path, "sample_id", "has more than one row per sample", first_rows(dup))
    known = dataset.samples["sample_id"].to_numpy()
    unknown = ~np.isin(r.sample_ids, known)
    if unknown.any():
        raise DataError(path, "sample_id", "names samples that are not in the dataset", first_rows(unknown))
    bad = ((r.topk_items < 0) | (r.topk_items >= dataset.n_items)).any(axis=1)
    if bad.any():
        raise DataError(path, "topk_items", f"has item ids out of range 0..{dataset.n_items - 1}", first_rows(bad))
    unsorted = (np.diff(r.topk_distances, axis=1) < -1e-5).any(axis=1)
    if unsorted.any():
        raise DataError(path, "topk_distances", "must be in ascending order", first_rows(unsorted))
    train = dataset.samples.loc[dataset.samples["split"] == "train", "sample_id"].to_numpy()
    return float(np.isin(train, r.sample_ids).mean()) if len(train) else 0.0


def _duplicated(values: np.ndarray) -> np.ndarray:
    _, first = np.unique(values, return_index=True)
    mask = np.ones(len(values), dtype=bool)
    mask[first] = False
    return mask


def validate_embeddings(emb: np.ndarray, item_ids: np.ndarray, n_items: int, path: str | Path) -> None:
    if len(item_ids) != n_items or not np.array_equal(np.sort(item_ids), np.arange(n_items)):
        missing = np.setdiff1d(np.arange(n_items), item_ids)
        raise DataError(path, "item_id", f"must cover every item 0..{n_items - 1} once "
                        f"({len(item_ids)} rows, missing {missing[:5].tolist()})", first_rows(_duplicated(item_ids)))
    if not np.isfinite(emb).all():
        raise DataError(path, "embedding", "has NaN or infinite values", first_rows(~np.isfinite(emb).all(axis=1)))


def write_teacher_artifacts(
    out_dir: str | Path,
    rankings: TeacherRankings,
    embeddings: np.ndarray,
    dataset: Dataset,
    manifest: dict,
    *,
    embedding_dtype: str = "float32",
) -> Path:
    """Validate, then write rankings, embeddings and (last) the manifest, each atomically."""
    out_dir = Path(out_dir)
    coverage = validate_rankings(rankings, dataset, out_dir / RANKINGS_FILE)
    validate_embeddings(embeddings, np.arange(len(embeddings)), dataset.n_items, out_dir / EMBEDDINGS_FILE)
    write_parquet(rankings_table(rankings), out_dir / RANKINGS_FILE)
    write_parquet(embeddings_table(embeddings, embedding_dtype), out_dir / EMBEDDINGS_FILE)
    full = {
        "dataset_hash": dataset.content_hash,
        "top_n": rankings.top_n,
        "dim": int(embeddings.shape[1]),
        "n_rankings": len(rankings),
        "train_coverage": coverage,
        "created_at": datetime.now(timezone.utc).isoformat(),
        **manifest,
    }
    write_json(full, out_dir / TEACHER_MANIFEST_FILE)
    return out_dir


def read_rankings(path: str | Path) -> TeacherRankings:
    table = pq.read_table(path)
    for col in RANKINGS_SCHEMA.names:
        if col not in table.column_names:
            raise DataError(path, col, "is missing")
    items_col, dist_col = table["topk_items"].combine_chunks(), table["topk_distances"].combine_chunks()
    lengths = items_col.value_lengths().to_numpy(zero_copy_only=False)
    dist_lengths = dist_col.value_lengths().to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != lengths[0]).any():
        raise DataError(path, "topk_items", f"rows have different lengths (first row has {lengths[0]})", first_rows(lengths != lengths[0]))
    if (dist_lengths != lengths).any():
        raise DataError(path, "topk_distances", "must have the same length as topk_items", first_rows(dist_lengths != lengths))
    top_n = int(lengths[0]) if len(lengths) else MIN_TOP_N
    n = table.num_rows
    target = table["target_distance"].to_numpy(zero_copy_only=False)
    return TeacherRankings(
        sample_ids=table["sample_id"].to_numpy().astype(np.int64),
        topk_items=items_col.flatten().to_numpy().astype(np.int32).reshape(n, top_n),
        topk_distances=dist_col.flatten().to_numpy().astype(np.float32).reshape(n, top_n),
        target_distance=np.asarray(target, dtype=np.float32),
    )


def read_embeddings(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Return `(item_ids, embeddings [n, d] float32)` in file order."""
    table = pq.read_table(path)
    for col in ("item_id", "embedding"):
        if col not in table.column_names:
            raise DataError(path, col, "is missing")
    col = table["embedding"].combine_chunks()
    if not pa.types.is_fixed_size_list(col.type):
        raise DataError(path, "embedding", f"must be fixed_size_list<float>[d], found {col.type}")
    d = col.type.list_size
    emb = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, d)
    return table["item_id"].to_numpy().astype(np.int64), emb


def load_teacher_artifacts(path: str | Path, dataset: Dataset) -> TeacherArtifacts:
    """Read and validate a teacher folder against `dataset`; embeddings come back in item order."""
    path = Path(path)
    manifest_path = path / TEACHER_MANIFEST_FILE
    if not manifest_path.exists():
        raise DataError(manifest_path, "manifest", "does not exist: the teacher run did not finish")
    manifest = read_json(manifest_path)
    if manifest.get("dataset_hash") != dataset.content_hash:
        raise DataError(manifest_path, "dataset_hash",
                        f"is {str(manifest.get('dataset_hash'))[:12]} but the dataset is {dataset.content_hash[:12]}: "
                        "the teacher ran on other data")
    rankings = read_rankings(path / RANKINGS_FILE)
    coverage = validate_rankings(rankings, dataset, path / RANKINGS_FILE)
    item_ids, emb = read_embeddings(path / EMBEDDINGS_FILE)
    validate_embeddings(emb, item_ids, dataset.n_items, path / EMBEDDINGS_FILE)
    if "dim" in manifest and int(manifest["dim"]) != emb.shape[1]:
        raise DataError(path / EMBEDDINGS_FILE, "embedding", f"has width {emb.shape[1]} but the manifest says dim={manifest['dim']}")
    embeddings = np.empty_like(emb)
    embeddings[item_ids] = emb
    return TeacherArtifacts(path=path, rankings=rankings, embeddings=embeddings, manifest=manifest, coverage=coverage)
