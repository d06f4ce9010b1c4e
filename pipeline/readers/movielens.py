"""MovieLens: ml-100k (`u.data` + `u.item`) and ml-1m / ml-10m (`ratings.dat` + `movies.dat`).

Every rating counts as an interaction (whatever its value), ordered by its Unix
timestamp, so the default split is BIGRec's time split. Titles keep their year
("Toy Story (1995)"). `u.item` and ml-1m's `movies.dat` are latin-1; ml-10m's is UTF-8
(both are tried).

    >>> raw = read(Path("../shared/data/ml-100k"))   # doctest: +SKIP
    >>> raw.items.loc[0, "title"]                     # doctest: +SKIP
    'Toy Story (1995)'
"""
from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from pipeline.errors import DataError
from pipeline.readers.base import RawData, check_item_refs, check_unique, find_file, integer_column


def _text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _table(path: Path, sep: str, names: list[str], min_fields: int) -> pd.DataFrame:
    """Read a headerless separated file as strings; a line with too few fields is an error."""
    text = _text(path)
    if sep == "::":  # the C parser takes one character: swap the separator first
        text, sep = text.replace("::", "\x1f"), "\x1f"
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, header=None, dtype=str, quoting=3, keep_default_na=False,
                         names=range(max(len(names), text.split("\n", 1)[0].count(sep) + 1)), engine="c")
    except pd.errors.ParserError as exc:
        raise DataError(path, "line", f"cannot be parsed ({exc})") from None
    df = df.iloc[:, : len(names)]
    df.columns = names[: df.shape[1]]
    short = (df.iloc[:, : min_fields] == "").any(axis=1).to_numpy() if df.shape[1] >= min_fields else None
    if short is None:
        raise DataError(path, names[min_fields - 1], f"is missing (lines need {min_fields} fields)")
    if short.any():
        raise DataError(path, names[int((df.iloc[:, :min_fields] == "").to_numpy()[short][0].argmax())],
                        f"is missing (lines need {min_fields} fields)", list(short.nonzero()[0][:5]))
    return df


def _interactions(path: Path, sep: str) -> pd.DataFrame:
    df = _table(path, sep, ["user", "item", "rating", "timestamp"], 4)
    ts = integer_column(df["timestamp"], path, "timestamp")
    return pd.DataFrame({
        "user_id": integer_column(df["user"], path, "user").astype(str),
        "source_id": integer_column(df["item"], path, "item").astype(str),
        "order": ts,
        "timestamp": ts,
    })


def _items(path: Path, sep: str) -> pd.DataFrame:
    df = _table(path, sep, ["item", "title"], 2)
    items = pd.DataFrame({"source_id": integer_column(df["item"], path, "item").astype(str), "title": df["title"]})
    check_unique(items["source_id"], path, "item")
    return items


def read(path: Path, items_path: Path | None = None) -> RawData:
    """`path`: the ml-* folder (or its `u.data` / `ratings.dat`)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    ratings = path if path.is_file() else find_file(folder, ["u.data", "ratings.dat"])
    sep = "\t" if ratings.name == "u.data" else "::"
    items_file = Path(items_path) if items_path else find_file(folder, ["u.item"] if sep == "\t" else ["movies.dat"])
    if not items_file.exists():
        raise DataError(items_file, "file", "does not exist")
    inter = _interactions(ratings, sep)
    items = _items(items_file, "|" if items_file.name == "u.item" else "::")
    check_item_refs(inter, items, ratings)
    return RawData(items=items, interactions=inter, sources=[str(ratings), str(items_file)],
                   items_source=str(items_file))
