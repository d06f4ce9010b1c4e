"""Source data -> canonical dataset directory (`items.parquet`, `samples.parquet`, `manifest.json`).

One path for every reader: read (`pipeline.readers`), clean titles and drop items without
a usable one (as BIGRec does), map items to dense ids (sorted source id, numbers
numerically), build samples under a split protocol (`pipeline.splits`), validate, write.

    >>> cfg = DataConfig(reader="demo", seed=0)
    >>> out = prepare_dataset(cfg, "runs/demo/data")          # doctest: +SKIP
    >>> cfg = DataConfig(reader="movielens", path="../shared/data/ml-100k")
"""
from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from pipeline.dataset import clean_title, write_dataset
from pipeline.errors import DataError, first_rows
from pipeline.readers import read_source
from pipeline.readers.base import SPLIT_CODES, RawData
from pipeline.splits import Sequences, sample_ids, split_samples

log = logging.getLogger(__name__)

# Titles that name nothing: DEALRec/P5 placeholders (`title_123`), ML-100K's "unknown".
PLACEHOLDER_TITLE = re.compile(r"^(title_\d+|unknown|none|null|nan|n/a)$", re.IGNORECASE)


class DataConfig(BaseModel):
    """Which source to read and how to turn it into samples."""

    reader: Literal["demo", "interactions", "amazon", "movielens", "dros", "presplit"] = Field(
        "demo", description="Source format: demo (generated), interactions (CSV/Parquet), amazon (reviews + meta JSON), "
        "movielens (ml-100k / ml-1m / ml-10m), dros (DLLM2Rec/DROS files), presplit (per-user train/valid/test lists).")
    path: Path | None = Field(None, description="Source folder or file (not needed for demo).")
    items_path: Path | None = Field(None, description="Items / meta file for the interactions and amazon readers "
                                    "(default: looked up next to `path`).")
    split: Literal["auto", "time", "loo", "given"] = Field(
        "auto", description="Split protocol: time (BIGRec 8:1:1 by target time), loo (leave-one-out), given (keep the "
        "source's split); auto = given if the source has one, else time if it has timestamps, else loo.")
    max_history: int = Field(10, ge=1, description="L: at most this many previous items in a sample's history.")
    seed: int = Field(0, description="Seed of the demo generator.")
    untitled: Literal["drop", "error", "keep"] = Field(
        "drop", description="Items whose title is empty or a placeholder (title_123, unknown): drop them and their "
        "interactions (BIGRec), make them an error, or keep them (empty titles become 'item <id>').")
    given_train: Literal["prefixes", "windows"] = Field(
        "prefixes", description="Given split only: train samples at every position of a user's train part "
        "(prefixes), or only BIGRec windows range(min(L, t-1), t) of it (windows, as DROS-format train files).")
    demo_users: int = Field(2000, ge=10, description="Demo: number of users.")
    demo_franchises_per_genre: int = Field(8, ge=1, le=16, description="Demo: franchises per genre (8 genres).")
    demo_mean_length: float = Field(13.0, ge=6, description="Demo: mean sequence length (minimum 5).")


def resolve_protocol(config: DataConfig, raw: RawData) -> str:
    if config.split != "auto":
        return config.split
    if raw.has_given_split:
        return "given"
    return "time" if raw.has_timestamps else "loo"


def usable_titles(items: pd.DataFrame, policy: str, path: str) -> pd.DataFrame:
    """Clean titles; drop, reject or keep the items whose title is empty or a placeholder."""
    items = items.assign(title=[clean_title(t) for t in items["title"]])
    empty = (items["title"] == "").to_numpy()
    bad = empty | items["title"].str.fullmatch(PLACEHOLDER_TITLE).to_numpy()
    if not bad.any():
        return items
    if policy == "error":
        raise DataError(path, "title", "is empty or a placeholder", first_rows(bad))
    if policy == "keep":
        log.info("keeping %d items without a usable title", bad.sum())
        return items.assign(title=np.where(empty, "item " + items["source_id"].astype(str), items["title"]))
    log.info("dropping %d of %d items without a usable title (e.g. %s)", bad.sum(), len(items),
             items.loc[bad, "source_id"].head(3).tolist())
    return items.loc[~bad].reset_index(drop=True)


def dense_items(items: pd.DataFrame, used: pd.Series) -> pd.DataFrame:
    """Keep catalogue items that occur in `used`; ids 0..n-1 by sorted source id."""
    items = items[items["source_id"].isin(pd.unique(used.to_numpy(dtype=object)))]
    numeric = pd.to_numeric(items["source_id"], errors="coerce")
    key = numeric if numeric.notna().all() else items["source_id"]
    items = items.assign(_key=key.to_numpy()).sort_values("_key", kind="stable").reset_index(drop=True)
    return pd.DataFrame({"item_id": np.arange(len(items), dtype=np.int32), "title": items["title"],
                         "source_id": items["source_id"].astype(str)})


def samples_from_interactions(raw: RawData, config: DataConfig, protocol: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    source = raw.sources[0] if raw.sources else config.reader
    items = usable_titles(raw.items, config.untitled, raw.items_source or source)
    inter = raw.interactions
    keep = pd.Index(items["source_id"]).get_indexer(inter["source_id"].to_numpy(dtype=object)) >= 0
    if not keep.all():
        log.info("dropping %d of %d interactions with items without a usable title", (~keep).sum(), len(inter))
    inter = inter.loc[keep]
    items = dense_items(items, inter["source_id"])
    item_ids = pd.Index(items["source_id"]).get_indexer(inter["source_id"].to_numpy(dtype=object))
    labels = None
    if "split" in inter.columns:
        labels = pd.Index(list(SPLIT_CODES)).get_indexer(inter["split"].to_numpy(dtype=object))
        if (labels < 0).any():
            raise DataError(source, "split", f"must be one of {list(SPLIT_CODES)}", first_rows(labels < 0))
    seq = Sequences.from_arrays(inter["user_id"].to_numpy(), item_ids, inter["order"].to_numpy(),
                                inter["timestamp"].to_numpy() if raw.has_timestamps else None, labels)
    samples = split_samples(seq, protocol, config.max_history, train_windows=config.given_train == "windows")
    stats = {"n_interactions": int(len(inter)), "n_source_items": int(len(raw.items)),
             "dropped_interactions": int((~keep).sum()), "single_item_users": int((seq.lengths == 1).sum())}
    if stats["single_item_users"]:
        log.info("%d users have a single item left: they give no sample", stats["single_item_users"])
    return items, samples, stats


def samples_from_ready(raw: RawData, config: DataConfig) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """DROS-style ready samples: ids are already dense; only truncate and id them."""
    items = raw.items.reset_index(drop=True)
    items = pd.DataFrame({"item_id": np.arange(len(items), dtype=np.int32),
                          "title": [clean_title(t) for t in items["title"]], "source_id": items["source_id"].astype(str)})
    s = raw.samples
    history = s["history"].map(lambda h: np.asarray(h, dtype=np.int32)[-config.max_history:])
    samples = pd.DataFrame({
        "sample_id": sample_ids(s["user_id"].astype(str).tolist(), s["position"].tolist()),
        "user_id": s["user_id"].astype(str), "split": s["split"], "history": history,
        "target": s["target"].astype(np.int32), "timestamp": pd.array([pd.NA] * len(s), dtype="Int64"),
    })
    return items, samples, {}


def prepare_dataset(config: DataConfig, out_dir: str | Path) -> Path:
    """Read, split, validate and write the dataset to `out_dir`; nothing is written on bad input."""
    start = time.perf_counter()
    raw = read_source(config)
    protocol = resolve_protocol(config, raw)
    if raw.samples is not None:
        if protocol != "given":
            raise DataError(raw.sources[0] if raw.sources else config.reader, "split",
                            f"is fixed by the {config.reader} files: use split 'given' or 'auto', not {protocol!r}")
        items, samples, stats = samples_from_ready(raw, config)
    else:
        items, samples, stats = samples_from_interactions(raw, config, protocol)
    extra = {"config": config.model_dump(mode="json"), **stats, **raw.notes}
    write_dataset(out_dir, items, samples, max_history=config.max_history, reader=config.reader,
                  sources=raw.sources, protocol=protocol, extra=extra)
    counts = samples["split"].value_counts().to_dict()
    log.info("prepared %s (%s split): %d items, train/valid/test = %d/%d/%d samples in %.2fs -> %s",
             config.reader, protocol, len(items), counts.get("train", 0), counts.get("valid", 0),
             counts.get("test", 0), time.perf_counter() - start, out_dir)
    return Path(out_dir)
