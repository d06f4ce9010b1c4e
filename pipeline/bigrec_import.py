"""Import teacher files from an existing BIGRec / DLLM2Rec run into the artifact contract.

DLLM2Rec reads three files from `tocf/<data>/` (DLLM2Rec README and main.py):

- `myrank_train.txt`: `np.loadtxt` matrix [train rows, N], the teacher's top-N item ids
  of row r of `train_data.df`;
- `confidence_train.txt`: same shape, the grounding distance of each of those items
  (DLLM2Rec weighs candidates by `exp(-confidence)`, so smaller = closer);
- `all_embeddings.pt`: a torch tensor [item_num, d] of item-title embeddings.

Rows are matched to sample ids, never assumed: a dataset imported with the `dros` reader
names row r of `train_data.df` user `train:r`; a dataset exported with `export_dros`
carries `sample_ids.csv` (pass that folder as `dros_dir`). The files have no
generated-text-to-target distance, so `target_distance` is null (the `candidate`
confidence variant still works).

    >>> import_bigrec("tocf/game", load_dataset("runs/game/data"), "runs/game/teacher")  # doctest: +SKIP
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.artifacts import TeacherRankings, validate_rankings, write_teacher_artifacts
from pipeline.dataset import Dataset, load_dataset
from pipeline.errors import DataError, first_rows
from pipeline.io import file_sha256
from pipeline.metrics import topk_metrics
from pipeline.readers.dros import ROW_IDS_FILE, SPLIT_FILES

log = logging.getLogger(__name__)
RANK_FILE, CONFIDENCE_FILE, EMBEDDINGS_FILE = "myrank_train.txt", "confidence_train.txt", "all_embeddings.pt"


def load_matrix(path: Path) -> np.ndarray:
    if not path.exists():
        raise DataError(path, "file", "does not exist")
    try:
        return np.loadtxt(path, ndmin=2, dtype=np.float64)
    except ValueError as exc:
        raise DataError(path, "values", f"are not a numeric matrix ({exc})") from None


def load_embeddings(path: Path, n_items: int, expected_dim: int | None = None) -> np.ndarray:
    """`all_embeddings.pt` (a tensor, or a dict holding one 2-D tensor) -> float32 [n_items, d]."""
    import torch

    if not path.exists():
        raise DataError(path, "file", "does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickles of other types are refused by weights_only
        raise DataError(path, "file", f"is not a tensor file ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, dict):
        tensors = [v for v in obj.values() if isinstance(v, torch.Tensor) and v.ndim == 2]
        obj = tensors[0] if len(tensors) == 1 else obj
    if not isinstance(obj, torch.Tensor) or obj.ndim != 2:
        raise DataError(path, "embedding", f"must be one 2-D tensor [item_num, d], found {type(obj).__name__}"
                        + (f" of shape {tuple(obj.shape)}" if isinstance(obj, torch.Tensor) else ""))
    if obj.shape[0] != n_items:
        raise DataError(path, "embedding", f"has {obj.shape[0]} rows but the dataset has {n_items} items")
    if expected_dim is not None and obj.shape[1] != expected_dim:
        raise DataError(path, "embedding", f"has width {obj.shape[1]}, expected {expected_dim}")
    return obj.detach().to(torch.float32).numpy()


def train_row_ids(dataset: Dataset, dros_dir: Path | None) -> tuple[np.ndarray, Path]:
    """Sample id of every row of the DROS train file, and the file that defines the rows."""
    if dros_dir is not None and (Path(dros_dir) / ROW_IDS_FILE).exists():
        path = Path(dros_dir) / ROW_IDS_FILE
        rows = pd.read_csv(path)
        rows = rows[rows["split"] == "train"].sort_values("row")
        if not np.array_equal(rows["row"].to_numpy(), np.arange(len(rows))):
            raise DataError(path, "row", "must number the train rows 0..n-1")
        return rows["sample_id"].to_numpy(np.int64), path
    if dataset.manifest.get("reader") == "dros":
        train = dataset.split("train")
        row = train["user_id"].str.removeprefix("train:").astype(np.int64).to_numpy()
        ids = np.empty(len(train), np.int64)
        if not np.array_equal(np.sort(row), np.arange(len(train))):
            raise DataError(dataset.path, "user_id", "train rows are not numbered 0..n-1 ('train:<row>')")
        ids[row] = train["sample_id"].to_numpy(np.int64)
        return ids, dataset.path / "samples.parquet"
    raise DataError(dros_dir or dataset.path, ROW_IDS_FILE,
                    "is needed to align teacher rows with samples: pass the folder written by export-dros "
                    "(or prepare the dataset from the DROS files with the dros reader)")


def _check_train_file(dros_dir: Path | None, n_rows: int) -> None:
    """If the DROS train file is at hand, its row count must match too."""
    if dros_dir is None:
        return
    path = Path(dros_dir) / SPLIT_FILES["train"][0]
    if path.exists():
        n = len(pd.read_pickle(path))
        if n != n_rows:
            raise DataError(path, "rows", f"has {n} rows but the teacher files have {n_rows}")


def import_bigrec(teacher_dir: str | Path, dataset: Dataset | str | Path, out_dir: str | Path, *,
                  dros_dir: str | Path | None = None, model_id: str = "bigrec (imported)",
                  expected_dim: int | None = None) -> Path:
    """Validate the three files against `dataset`, then write teacher artifacts to `out_dir`."""
    teacher_dir = Path(teacher_dir)
    dataset = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    dros_dir = Path(dros_dir) if dros_dir is not None else None
    rank_path, conf_path = teacher_dir / RANK_FILE, teacher_dir / CONFIDENCE_FILE
    ranks, conf = load_matrix(rank_path), load_matrix(conf_path)
    if conf.shape != ranks.shape:
        raise DataError(conf_path, "rows", f"has shape {conf.shape} but {RANK_FILE} has {ranks.shape}")
    not_int = (ranks % 1 != 0).any(axis=1)
    if not_int.any():
        raise DataError(rank_path, "item", "must be whole item ids", first_rows(not_int))
    sample_ids, rows_from = train_row_ids(dataset, dros_dir)
    if len(sample_ids) != len(ranks):
        raise DataError(rank_path, "rows", f"has {len(ranks)} rows but {rows_from.name} defines {len(sample_ids)} train rows")
    _check_train_file(dros_dir, len(ranks))
    rankings = TeacherRankings(sample_ids=sample_ids, topk_items=ranks.astype(np.int32),
                               topk_distances=conf.astype(np.float32),
                               target_distance=np.full(len(ranks), np.nan, np.float32))
    validate_rankings(rankings, dataset, rank_path)  # errors name the source file, not the output
    embeddings = load_embeddings(teacher_dir / EMBEDDINGS_FILE, dataset.n_items, expected_dim)
    targets = dataset.samples.set_index("sample_id").loc[sample_ids, "target"].to_numpy()
    ks = [k for k in (1, 5, 10, 20) if k <= rankings.top_n]
    manifest = {
        "model_id": model_id, "backend": "bigrec-import", "adapter_hash": None, "prompt_hash": None,
        "generation": {}, "metrics": {"train": topk_metrics(rankings.topk_items, targets, ks)},
        "source_files": {p.name: file_sha256(p) for p in (rank_path, conf_path, teacher_dir / EMBEDDINGS_FILE)},
    }
    out = write_teacher_artifacts(out_dir, rankings, embeddings, dataset, manifest)
    log.info("imported %d BIGRec rankings (top-%d) and %d x %d embeddings -> %s",
             len(rankings), rankings.top_n, *embeddings.shape, out)
    return out
