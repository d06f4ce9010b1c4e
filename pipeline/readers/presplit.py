"""Per-user item lists, already in time order, optionally already split.

Two layouts (detected from the file names in the folder):

- DEALRec (`games-dealrec`): `training_dict.npy`, `validation_dict.npy`, `testing_dict.npy`
  (pickled `{user: [item, ...]}`; a user's three lists concatenate to their sequence) and
  `title_maps.npy` (`{'recid2title': {item: title}, ...}`). The split is kept ("given").
- TransRec / P5 (`toys-p5`): `*sequential_data.txt` (`user item item ...` per line) and
  `*title_maps.npy` (`{'id2title': {'0': title}}`). Order only, no split (-> leave-one-out).

Pickles are loaded with `np.load(allow_pickle=True)`: only use files you trust.

    >>> raw = read(Path("../shared/data/games-dealrec"))   # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import DataError
from pipeline.readers.base import RawData, check_item_refs, check_unique, find_file

SPLIT_FILES = (("train", "training_dict.npy"), ("valid", "validation_dict.npy"), ("test", "testing_dict.npy"))


def load_pickled_dict(path: Path) -> dict:
    try:
        obj = np.load(path, allow_pickle=True)
        obj = obj.item() if isinstance(obj, np.ndarray) and obj.shape == () else obj
    except Exception as exc:  # a truncated or foreign file
        raise DataError(path, "file", f"is not a pickled dict ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise DataError(path, "file", f"must hold a dict, found {type(obj).__name__}")
    return obj


def read_title_map(path: Path) -> pd.DataFrame:
    """`{key: {item id: title}}` under key `recid2title` or `id2title` -> items frame."""
    maps = load_pickled_dict(path)
    key = next((k for k in ("recid2title", "id2title") if k in maps), None)
    if key is None:
        raise DataError(path, "recid2title", f"is missing (found keys {list(maps)[:5]})")
    titles = maps[key]
    items = pd.DataFrame({"source_id": [str(k).strip() for k in titles], "title": list(titles.values())})
    check_unique(items["source_id"], path, key)
    return items


def _flatten(lists: dict, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """`{user: [item, ...]}` -> (user per element, item per element), as strings."""
    for user, seq in lists.items():
        if not isinstance(seq, (list, tuple, np.ndarray)):
            raise DataError(path, "items", f"must be a list per user, found {type(seq).__name__}", [user])
    lengths = np.fromiter((len(v) for v in lists.values()), dtype=np.int64, count=len(lists))
    users = np.repeat(np.asarray([str(u) for u in lists], dtype=object), lengths)
    flat = [i for seq in lists.values() for i in seq]
    return users, np.asarray(flat).astype(str).astype(object)


def read_dealrec(folder: Path) -> RawData:
    parts = []
    for label, name in SPLIT_FILES:
        path = find_file(folder, [name])
        users, items = _flatten(load_pickled_dict(path), path)
        parts.append(pd.DataFrame({"user_id": users, "source_id": items, "split": label}))
    inter = pd.concat(parts, ignore_index=True)  # train, then valid, then test of every user
    inter.insert(2, "order", inter.groupby("user_id", sort=False).cumcount().to_numpy(dtype=np.int64))
    catalogue = read_title_map(find_file(folder, ["title_maps.npy"]))
    check_item_refs(inter, catalogue, folder / "training_dict.npy")
    return RawData(items=catalogue, interactions=inter, sources=[str(folder / n) for _, n in SPLIT_FILES],
                   notes={"layout": "dealrec"}, items_source=str(folder / "title_maps.npy"))


def read_sequences(folder: Path) -> RawData:
    seq_path = next(iter(sorted(folder.glob("*sequential_data.txt"))), None)
    title_path = next(iter(sorted(folder.glob("*title_maps.npy"))), None)
    if seq_path is None or title_path is None:
        raise DataError(folder / "sequential_data.txt", "file", "and a *title_maps.npy must exist")
    users, items, orders = [], [], []
    with open(seq_path, encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise DataError(seq_path, "items", "has a user without items", [n])
            users += [parts[0]] * (len(parts) - 1)
            items += parts[1:]
            orders += range(len(parts) - 1)
    inter = pd.DataFrame({"user_id": users, "source_id": items, "order": np.asarray(orders, dtype=np.int64)})
    catalogue = read_title_map(title_path)
    check_item_refs(inter, catalogue, seq_path)
    return RawData(items=catalogue, interactions=inter, sources=[str(seq_path), str(title_path)],
                   notes={"layout": "sequential_data"}, items_source=str(title_path))


def read(path: Path, items_path: Path | None = None) -> RawData:
    """Detect the layout of `path` (a folder) and read it."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(path, "path", "must be a folder of per-user lists")
    if (path / "training_dict.npy").exists():
        return read_dealrec(path)
    return read_sequences(path)
