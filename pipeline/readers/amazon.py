"""Amazon reviews (McAuley lab dumps): reviews JSON lines + meta JSON lines with titles.

Works with the 2014, 2018 and 2023 dumps, plain or `.gz`, JSON or the Python-literal
lines of the old 2014 files:

- reviews: user `reviewerID` | `user_id`, item `asin` | `parent_asin`, time
  `unixReviewTime` (s) | `timestamp` (ms in 2023: converted to s);
- meta: item `asin` | `parent_asin`, `title`.

As BIGRec does, items without a (usable) title are dropped by `prepare`; reviewed items
missing from the meta file count as untitled. Duplicate meta rows (the 2018 dump has
some) keep the first; exact duplicate reviews (same user, item, time) are dropped.

    dllm2rec data prepare --reader amazon --path Video_Games_5.json.gz \\
        --items-path meta_Video_Games.json.gz --out runs/games/data
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.errors import DataError
from pipeline.readers.base import RawData, json_lines

log = logging.getLogger(__name__)
USER_KEYS, ITEM_KEYS, TIME_KEYS = ("reviewerID", "user_id"), ("asin", "parent_asin"), ("unixReviewTime", "timestamp")


def _get(obj: dict, keys: tuple[str, ...], path: Path, line: int, role: str):
    for key in keys:
        value = obj.get(key)
        if value not in (None, ""):
            return value
    raise DataError(path, role, f"is missing (one of {list(keys)})", [line])


def read_reviews(path: Path) -> pd.DataFrame:
    users, items, times = [], [], []
    for n, obj in tqdm(json_lines(path), desc=f"reading {path.name}", unit=" lines", mininterval=2):
        users.append(str(_get(obj, USER_KEYS, path, n, "reviewerID")))
        items.append(str(_get(obj, ITEM_KEYS, path, n, "asin")))
        t = _get(obj, TIME_KEYS, path, n, "unixReviewTime")
        try:
            times.append(int(t))
        except (TypeError, ValueError):
            raise DataError(path, "unixReviewTime", "must be an integer", [n]) from None
    if not users:
        raise DataError(path, "reviewerID", "has no rows")
    ts = np.asarray(times, dtype=np.int64)
    if ts.max() > 10**11:  # 2023 dumps: milliseconds
        ts = ts // 1000
    df = pd.DataFrame({"user_id": users, "source_id": items, "order": ts, "timestamp": ts})
    dup = df.duplicated(["user_id", "source_id", "timestamp"])
    if dup.any():
        log.info("dropping %d exact duplicate reviews", int(dup.sum()))
    return df.loc[~dup.to_numpy()].reset_index(drop=True)


def read_meta(path: Path, wanted: set[str]) -> pd.DataFrame:
    """Titles of the `wanted` items (meta files are large: everything else is skipped)."""
    titles: dict[str, str] = {}
    for n, obj in tqdm(json_lines(path), desc=f"reading {path.name}", unit=" lines", mininterval=2):
        item = str(_get(obj, ITEM_KEYS, path, n, "asin"))
        if item in wanted and item not in titles:
            titles[item] = obj.get("title") or ""
    missing = sorted(wanted - titles.keys())
    if missing:
        log.info("%d reviewed items are not in %s (no title: dropped)", len(missing), path.name)
    titles.update({m: "" for m in missing})
    return pd.DataFrame({"source_id": list(titles), "title": list(titles.values())})


def _find(folder: Path, meta: bool) -> Path:
    found = sorted(p for p in folder.iterdir() if ".json" in p.name and p.name.startswith("meta") == meta)
    if not found:
        raise DataError(folder / ("meta_*.json" if meta else "*_5.json"), "file", "does not exist")
    return found[0]


def read(path: Path, items_path: Path | None = None) -> RawData:
    """`path`: the reviews file (or a folder with one reviews and one `meta_*` file)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    reviews = path if path.is_file() else _find(folder, meta=False)
    meta = Path(items_path) if items_path else _find(folder, meta=True)
    if not meta.exists():
        raise DataError(meta, "file", "does not exist")
    inter = read_reviews(reviews)
    items = read_meta(meta, set(inter["source_id"]))
    return RawData(items=items, interactions=inter, sources=[str(reviews), str(meta)], items_source=str(meta))
