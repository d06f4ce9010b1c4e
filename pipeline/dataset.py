"""The canonical dataset directory: `items.parquet`, `samples.parquet`, `manifest.json`.

Every reader ends here and every stage starts here. Items are dense `0..n_items-1`,
the padding id is `n_items`, and every sample has a stable `sample_id` derived from
(user, position in the user's sequence), so artifacts are joined by id, never by row.

    >>> ds = load_dataset("runs/demo/data")            # doctest: +SKIP
    >>> ds.n_items, ds.pad_id, len(ds.split("train"))  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import DataError, first_rows
from pipeline.io import file_sha256, read_json, write_json, write_parquet

ITEMS_FILE, SAMPLES_FILE, MANIFEST_FILE = "items.parquet", "samples.parquet", "manifest.json"
SPLITS = ("train", "valid", "test")

ITEMS_SCHEMA = pa.schema(
    [("item_id", pa.int32()), ("title", pa.string()), ("source_id", pa.string())]
)
SAMPLES_SCHEMA = pa.schema(
    [
        ("sample_id", pa.int64()),
        ("user_id", pa.string()),
        ("split", pa.string()),
        ("history", pa.list_(pa.int32())),
        ("target", pa.int32()),
        ("timestamp", pa.int64()),
    ]
)


def make_sample_id(user_id: str, position: int) -> int:
    """Stable 63-bit id of the sample whose target is item `position` of `user_id`'s sequence.

    Stable across re-preparations, so a refreshed dataset keeps the ids (and the teacher
    rankings) of the samples it already had.
    """
    raw = hashlib.blake2b(f"{user_id}\x1f{position}".encode(), digest_size=8).digest()
    return int.from_bytes(raw, "little") & 0x7FFF_FFFF_FFFF_FFFF


def clean_title(title: Any) -> str:
    """Unescape HTML entities (Amazon titles carry `&amp;`, `&#39;`) and strip spaces."""
    if title is None or (isinstance(title, float) and np.isnan(title)):
        return ""
    return " ".join(html.unescape(str(title)).split())


@dataclass
class Dataset:
    """A loaded canonical dataset (pandas frames plus its manifest)."""

    path: Path
    items: pd.DataFrame
    samples: pd.DataFrame
    manifest: dict = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def pad_id(self) -> int:
        return self.n_items

    @property
    def content_hash(self) -> str:
        return self.manifest["content_hash"]

    @property
    def max_history(self) -> int:
        return int(self.manifest["max_history"])

    def split(self, name: str) -> pd.DataFrame:
        return self.samples[self.samples["split"] == name].reset_index(drop=True)

    @property
    def titles(self) -> list[str]:
        return self.items["title"].tolist()

    def train_item_counts(self) -> np.ndarray:
        """How often each item is a train target (int64 [n_items]): the popularity both stages use
        (DRO's propensity, BIGRec's popularity grounding). Train only, so valid/test never leak in."""
        targets = self.samples.loc[self.samples["split"] == "train", "target"].to_numpy(np.int64)
        return np.bincount(targets, minlength=self.n_items)[: self.n_items]


def validate_items(items: pd.DataFrame, path: str | Path) -> None:
    """Dense ids `0..n-1` in order, non-empty titles, unique source ids."""
    for col in ITEMS_SCHEMA.names:
        if col not in items.columns:
            raise DataError(path, col, "is missing")
    if len(items) == 0:
        raise DataError(path, "item_id", "has no rows")
    ids = items["item_id"].to_numpy()
    bad = ids != np.arange(len(items))
    if bad.any():
        raise DataError(path, "item_id", "must be dense 0..n_items-1 in order", first_rows(bad))
    empty = items["title"].isna().to_numpy() | (items["title"].astype(str).str.strip() == "").to_numpy()
    if empty.any():
        raise DataError(path, "title", "is empty", first_rows(empty))
    dup = items["source_id"].duplicated().to_numpy()
    if dup.any():
        raise DataError(path, "source_id", "has duplicates", first_rows(dup))


def validate_samples(samples: pd.DataFrame, n_items: int, max_history: int, path: str | Path) -> None:
    """Ids in range, known splits, unique sample ids, histories no longer than L."""
    for col in SAMPLES_SCHEMA.names:
        if col not in samples.columns:
            raise DataError(path, col, "is missing")
    if len(samples) == 0:
        raise DataError(path, "sample_id", "has no rows")
    dup = samples["sample_id"].duplicated().to_numpy()
    if dup.any():
        raise DataError(path, "sample_id", "has duplicates", first_rows(dup))
    bad_split = ~samples["split"].isin(SPLITS).to_numpy()
    if bad_split.any():
        raise DataError(path, "split", f"must be one of {SPLITS}", first_rows(bad_split))
    target = samples["target"].to_numpy()
    bad_target = (target < 0) | (target >= n_items)
    if bad_target.any():
        raise DataError(path, "target", f"is out of range 0..{n_items - 1}", first_rows(bad_target))
    histories = samples["history"].tolist()
    lengths = np.fromiter(map(len, histories), dtype=np.int64, count=len(histories))
    too_long = lengths > max_history
    if too_long.any():
        raise DataError(path, "history", f"is longer than max_history={max_history}", first_rows(too_long))
    flat = np.concatenate(histories).astype(np.int64) if lengths.sum() else np.zeros(0, np.int64)
    owner = np.repeat(np.arange(len(samples)), lengths)
    bad_hist = (flat < 0) | (flat >= n_items)
    if bad_hist.any():
        raise DataError(path, "history", f"has item ids out of range 0..{n_items - 1}", sorted(set(owner[bad_hist].tolist()))[:5])


def write_dataset(
    out_dir: str | Path,
    items: pd.DataFrame,
    samples: pd.DataFrame,
    *,
    max_history: int,
    reader: str,
    sources: list[str],
    protocol: str,
    extra: dict | None = None,
) -> Path:
    """Validate, then write the three files atomically (manifest last). Returns `out_dir`.

    Validation runs before anything is written, so bad input leaves no partial output.
    """
    out_dir = Path(out_dir)
    items = items.reset_index(drop=True)
    samples = samples.sort_values("sample_id", kind="stable").reset_index(drop=True)
    validate_items(items, out_dir / ITEMS_FILE)
    validate_samples(samples, len(items), max_history, out_dir / SAMPLES_FILE)
    items_table = pa.Table.from_pandas(items[ITEMS_SCHEMA.names], schema=ITEMS_SCHEMA, preserve_index=False)
    samples_table = pa.Table.from_pandas(samples[SAMPLES_SCHEMA.names], schema=SAMPLES_SCHEMA, preserve_index=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_parquet(items_table, out_dir / ITEMS_FILE)
    write_parquet(samples_table, out_dir / SAMPLES_FILE)
    counts = samples["split"].value_counts()
    manifest = {
        "reader": reader,
        "sources": [str(s) for s in sources],
        "protocol": protocol,
        "max_history": int(max_history),
        "n_items": int(len(items)),
        "pad_id": int(len(items)),
        "n_users": int(samples["user_id"].nunique()),
        "counts": {s: int(counts.get(s, 0)) for s in SPLITS},
        "content_hash": file_sha256(out_dir / ITEMS_FILE, out_dir / SAMPLES_FILE),
        **(extra or {}),
    }
    write_json(manifest, out_dir / MANIFEST_FILE)
    return out_dir


def load_dataset(path: str | Path, *, verify_hash: bool = True) -> Dataset:
    """Read and validate a canonical dataset directory."""
    path = Path(path)
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.exists():
        raise DataError(manifest_path, "manifest", "does not exist: prepare the dataset first")
    manifest = read_json(manifest_path)
    if verify_hash:
        actual = file_sha256(path / ITEMS_FILE, path / SAMPLES_FILE)
        if actual != manifest.get("content_hash"):
            raise DataError(manifest_path, "content_hash", f"does not match the Parquet files (found {actual[:12]})")
    items = pq.read_table(path / ITEMS_FILE).to_pandas()
    samples = pq.read_table(path / SAMPLES_FILE).to_pandas()
    validate_items(items, path / ITEMS_FILE)
    validate_samples(samples, len(items), int(manifest["max_history"]), path / SAMPLES_FILE)
    return Dataset(path=path, items=items, samples=samples, manifest=manifest)
