"""What every reader returns (`RawData`) and the checks they share.

A reader turns one source format into raw items + interactions (or, for the DROS
format, ready-made samples). `pipeline.prepare` does the rest: title cleaning, dense
ids, splitting and writing. Readers never write files.

    >>> raw = RawData(items=pd.DataFrame({"source_id": ["a"], "title": ["A"]}),
    ...               interactions=pd.DataFrame({"user_id": ["u"], "source_id": ["a"], "order": [0]}))
    >>> raw.has_timestamps
    False
"""
from __future__ import annotations

import ast
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd

from pipeline.errors import DataError, first_rows

SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}


@dataclass
class RawData:
    """A source read into memory, before dense ids and splits.

    - `items`: `source_id` (str, unique), `title` (raw; cleaned by prepare). Extra columns
      (genre, platform, ...) are allowed and ignored by prepare.
    - `interactions`: `user_id` (str), `source_id` (str), `order` (int64, the within-user sort
      key: the timestamp or the position), optional `timestamp` (int64 seconds), optional
      `split` (train/valid/test, a split given by the source). Ties in `order` keep file order.
    - `samples` (DROS format only, instead of interactions): `user_id`, `position`, `split`,
      `history` (list of item row numbers), `target`; the item row number is the dense id.
    """

    items: pd.DataFrame
    interactions: pd.DataFrame | None = None
    samples: pd.DataFrame | None = None
    sources: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    items_source: str = ""  # the file the titles come from (named in title errors)

    @property
    def has_timestamps(self) -> bool:
        df = self.interactions
        return df is not None and "timestamp" in df.columns and bool(df["timestamp"].notna().all()) and len(df) > 0

    @property
    def has_given_split(self) -> bool:
        return self.samples is not None or (self.interactions is not None and "split" in self.interactions.columns)


def require_columns(df: pd.DataFrame, columns: Iterable[str], path: str | Path) -> None:
    for col in columns:
        if col not in df.columns:
            raise DataError(path, col, f"is missing (found columns {list(df.columns)[:10]})")


def pick_column(df: pd.DataFrame, candidates: Iterable[str]) -> str | None:
    """First of `candidates` present in `df` (case-insensitive); None if none is."""
    lower = {str(c).lower(): c for c in df.columns}
    for cand in candidates:
        if cand.lower() in lower:
            return lower[cand.lower()]
    return None


def check_unique(values: pd.Series, path: str | Path, field_name: str) -> None:
    dup = values.duplicated().to_numpy()
    if dup.any():
        raise DataError(path, field_name, "has duplicate ids", first_rows(dup))


def require_file(path: Path, field_name: str = "file") -> Path:
    if not path.exists():
        raise DataError(path, field_name, "does not exist")
    return path


def find_file(folder: Path, names: Iterable[str], required: bool = True) -> Path | None:
    """The first existing `folder/name` (case-insensitive on the file name)."""
    names = list(names)
    present = {p.name.lower(): p for p in folder.iterdir()} if folder.is_dir() else {}
    for name in names:
        if name.lower() in present:
            return present[name.lower()]
    if required:
        raise DataError(folder / names[0], "file", f"does not exist (looked for {names})")
    return None


def integer_column(values: pd.Series, path: str | Path, field_name: str) -> np.ndarray:
    """Parse a column as int64 ("12", 12.0 are fine; "x", 1.5, NaN are errors)."""
    num = pd.to_numeric(values, errors="coerce")
    bad = num.isna().to_numpy() | (num.to_numpy(dtype=float, na_value=np.nan) % 1 != 0)
    if bad.any():
        raise DataError(path, field_name, "must be an integer", first_rows(bad))
    return num.to_numpy(dtype=np.int64)


def json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield `(line_no, obj)` from a JSON-lines file (.gz allowed).

    Old Amazon dumps hold Python literals (`{'asin': ...}`), not JSON: those lines are
    parsed with `ast.literal_eval`.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                try:
                    obj = ast.literal_eval(line)
                except (ValueError, SyntaxError):
                    raise DataError(path, "line", "is neither JSON nor a Python literal", [n]) from None
            if not isinstance(obj, dict):
                raise DataError(path, "line", "must be an object", [n])
            yield n, obj


def check_item_refs(interactions: pd.DataFrame, items: pd.DataFrame, path: str | Path) -> None:
    """Every interaction must name an item of the catalogue (a typo is not silently dropped)."""
    known = pd.Index(items["source_id"].to_numpy(dtype=object))
    unknown = known.get_indexer(interactions["source_id"].to_numpy(dtype=object)) < 0
    if unknown.any():
        raise DataError(path, "item", "names items that are not in the items file", first_rows(unknown))
