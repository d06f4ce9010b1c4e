"""Generic interactions: a CSV / TSV / Parquet table plus an items table with titles.

Interactions need a user column, an item column and either a timestamp or an order
column; an optional `split` column (train/valid/test) keeps a split you made yourself.
Items need an item column and a title column. Accepted column names (case-insensitive):

| role      | names                                              |
|-----------|----------------------------------------------------|
| user      | user, user_id, userid, reviewerID                  |
| item      | item, item_id, itemid, asin, movie_id, movieid     |
| timestamp | timestamp, time, ts, unixReviewTime, date (parsed) |
| order     | order, position, rank, seq                         |
| title     | title, name, item_name                             |

Every interaction must name an item of the items file (a typo is an error, not a drop);
items with an empty title are dropped by `prepare` (BIGRec).

    dllm2rec data prepare --reader interactions --path my/interactions.csv \\
        --items-path my/items.csv --out runs/mine/data
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import DataError, first_rows
from pipeline.readers.base import RawData, check_item_refs, check_unique, find_file, pick_column

USER, ITEM = ("user", "user_id", "userid", "reviewerID"), ("item", "item_id", "itemid", "asin", "movie_id", "movieid")
TIME, ORDER = ("timestamp", "time", "ts", "unixReviewTime", "date"), ("order", "position", "rank", "seq")
TITLE = ("title", "name", "item_name")
SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


def read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataError(path, "file", "does not exist")
    if path.suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    return pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str, keep_default_na=False)


def _column(df: pd.DataFrame, names: tuple[str, ...], path: Path, role: str, required: bool = True) -> str | None:
    col = pick_column(df, names)
    if col is None and required:
        raise DataError(path, role, f"is missing (a column named one of {list(names)}; found {list(df.columns)})")
    return col


def _ids(values: pd.Series, path: Path, role: str) -> np.ndarray:
    out = values.astype(str).str.strip().to_numpy(dtype=object)
    empty = (out == "") | values.isna().to_numpy()
    if empty.any():
        raise DataError(path, role, "is empty", first_rows(empty))
    return out


def _timestamps(values: pd.Series, path: Path, role: str) -> np.ndarray:
    """Integers (seconds) as they are; anything else parsed as a date."""
    is_date = pd.api.types.is_datetime64_any_dtype(values)
    num = pd.to_numeric(values, errors="coerce") if not is_date else pd.Series([np.nan])
    if num.notna().all():
        if (num % 1 != 0).any():
            raise DataError(path, role, "must be whole numbers", first_rows((num % 1 != 0).to_numpy()))
        return num.to_numpy(dtype=np.int64)
    with warnings.catch_warnings():  # "could not infer format": parsing each value is what we want
        warnings.simplefilter("ignore", UserWarning)
        dates = pd.to_datetime(values, errors="coerce", utc=True)
    if dates.isna().any():
        raise DataError(path, role, "is neither a number nor a date", first_rows(dates.isna().to_numpy()))
    return (dates - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)


def read_interactions(path: Path) -> pd.DataFrame:
    df = read_table(path)
    user, item = _column(df, USER, path, "user"), _column(df, ITEM, path, "item")
    time_col = _column(df, TIME, path, "timestamp", required=False)
    order_col = _column(df, ORDER, path, "order", required=False)
    if time_col is None and order_col is None:
        raise DataError(path, "timestamp", f"is missing, and so is an order column (one of {list(TIME + ORDER)})")
    out = pd.DataFrame({"user_id": _ids(df[user], path, user), "source_id": _ids(df[item], path, item)})
    if time_col is not None:
        out["timestamp"] = np.asarray(_timestamps(df[time_col], path, time_col), dtype=np.int64)
    out["order"] = out["timestamp"] if time_col is not None else np.asarray(_timestamps(df[order_col], path, order_col), dtype=np.int64)
    if "split" in df.columns:
        out["split"] = df["split"].astype(str).str.strip().str.lower().to_numpy()
    return out


def read_items(path: Path) -> pd.DataFrame:
    df = read_table(path)
    item, title = _column(df, ITEM, path, "item"), _column(df, TITLE, path, "title")
    items = pd.DataFrame({"source_id": _ids(df[item], path, item), "title": df[title].fillna("").astype(str).to_numpy()})
    check_unique(items["source_id"], path, item)
    return items


def read(path: Path, items_path: Path | None = None) -> RawData:
    """`path`: the interactions file, or a folder holding `interactions.*` and `items.*`."""
    path = Path(path)
    if path.is_dir():
        folder = path
        path = find_file(folder, [f"interactions{s}" for s in SUFFIXES])
    else:
        folder = path.parent
    items_path = Path(items_path) if items_path else find_file(folder, [f"items{s}" for s in SUFFIXES])
    inter, items = read_interactions(path), read_items(items_path)
    check_item_refs(inter, items, path)
    return RawData(items=items, interactions=inter, sources=[str(path), str(items_path)],
                   items_source=str(items_path))
