"""The DROS / DLLM2Rec file format, both ways (import as a reader, and `export_dros`).

A DROS folder holds ready-made samples, one row each, with columns `seq, len_seq, next`:
`seq` is exactly `seq_size` ids padded **at the end** with the pad id `item_num`,
`len_seq` the number of real ids, `next` the target (CSV files write it as a float).

- `train_data.df` (pickled DataFrame; optional: DLLM2Rec's Games files lack it),
- `val_data.csv` / `test_data.csv` (or pickled `Val_data.df` / `Test_data.df`, as LLaRA),
- `data_statis.df` (pickled DataFrame with `seq_size`, `item_num`),
- optional `id2name.txt`: `id::name` (LLaRA) or `title<TAB>id` (BIGRec) per line.

Quirk (LLaRA LastFM): an empty history is written as `len_seq=1` with an all-pad `seq`.
The export writes empty histories the same way, because DROS code reads position
`len_seq - 1`.

Ids are kept as they are (item `i` -> dense id `i`), so results stay comparable with
other tools. DROS rows have no user: row `r` of split `s` becomes user `"s:r"`, so its
sample id is stable and row-addressable (the BIGRec importer relies on this). Items
without a name get the placeholder title `item <id>` (the manifest says how many).

    >>> raw = read(Path("../shared/data/lastfm-llara"))             # doctest: +SKIP
    >>> export_dros(load_dataset("runs/demo/data"), "runs/demo/dros")  # doctest: +SKIP
"""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.dataset import Dataset, clean_title
from pipeline.errors import DataError, first_rows
from pipeline.io import atomic_path
from pipeline.readers.base import RawData, find_file, integer_column, require_columns

SPLIT_FILES = {
    "train": ["train_data.df", "train_data.csv"],
    "valid": ["val_data.csv", "val_data.df"],
    "test": ["test_data.csv", "test_data.df"],
}
STATS_FILE, NAMES_FILE, ROW_IDS_FILE = "data_statis.df", "id2name.txt", "sample_ids.csv"


def _load_frame(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype={"seq": str})
    try:
        return pd.read_pickle(path)
    except Exception as exc:
        raise DataError(path, "file", f"is not a pickled DataFrame ({type(exc).__name__}: {exc})") from None


def read_stats(folder: Path, names_file: Path | None) -> tuple[int, int, str]:
    """`(seq_size, item_num, where from)`: `data_statis.df`, else inferred.

    Without `data_statis.df` (LLaRA's folders) `seq_size` is the length of the first `seq`
    and `item_num` is one more than the largest id in `id2name.txt`; the pad id found in
    the files must then equal it (checked when the rows are read).
    """
    path = find_file(folder, [STATS_FILE], required=False)
    if path is not None:
        stats = _load_frame(path)
        require_columns(stats, ["seq_size", "item_num"], path)
        return int(stats["seq_size"].iloc[0]), int(stats["item_num"].iloc[0]), str(path)
    if names_file is None:
        raise DataError(folder / STATS_FILE, "file", f"does not exist (nor {NAMES_FILE} to infer item_num from)")
    item_num = max(read_names(names_file, None)) + 1
    first = find_file(folder, SPLIT_FILES["valid"] + SPLIT_FILES["test"] + SPLIT_FILES["train"])
    seq_size = len(_seq_matrix(_load_frame(first)["seq"].iloc[:1], None, first)[0])
    return seq_size, item_num, f"inferred from {names_file.name} and {first.name}"


def _seq_matrix(values: pd.Series, seq_size: int | None, path: Path) -> np.ndarray:
    """`seq` column (lists or "[1, 2]" strings) -> int64 [n, seq_size] (None: the first row's length)."""
    rows = []
    for n, v in enumerate(values):
        if isinstance(v, str):
            try:
                v = ast.literal_eval(v)
            except (ValueError, SyntaxError):
                raise DataError(path, "seq", "is not a list of ids", [n]) from None
        seq_size = len(v) if seq_size is None and hasattr(v, "__len__") else seq_size
        if not hasattr(v, "__len__") or len(v) != seq_size:
            raise DataError(path, "seq", f"must hold exactly seq_size={seq_size} ids", [n])
        rows.append(v)
    try:
        return np.asarray(rows, dtype=np.float64).astype(np.int64).reshape(len(rows), seq_size)
    except (TypeError, ValueError):
        raise DataError(path, "seq", "has non-numeric ids") from None


def read_split(path: Path, split: str, seq_size: int, item_num: int) -> pd.DataFrame:
    """One DROS file -> samples (`user_id`, `position`, `split`, `history`, `target`), validated."""
    df = _load_frame(path)
    require_columns(df, ["seq", "len_seq", "next"], path)
    seq = _seq_matrix(df["seq"], seq_size, path)
    length = integer_column(df["len_seq"], path, "len_seq")
    target = integer_column(df["next"], path, "next")
    bad = (seq < 0) | (seq > item_num)
    if bad.any():
        raise DataError(path, "seq", f"has ids out of range 0..{item_num} (pad {item_num})", first_rows(bad.any(axis=1)))
    bad = (target < 0) | (target >= item_num)
    if bad.any():
        raise DataError(path, "next", f"is out of range 0..{item_num - 1}", first_rows(bad))
    is_pad = seq == item_num
    real = (~is_pad).sum(axis=1)
    pad_inside = (np.diff(is_pad.astype(np.int8), axis=1) < 0).any(axis=1)
    if pad_inside.any():
        raise DataError(path, "seq", "has padding before real ids (padding must be at the end)", first_rows(pad_inside))
    quirk = (real == 0) & (length == 1)  # LastFM: empty history written as len_seq=1
    bad = (real != length) & ~quirk
    if bad.any():
        raise DataError(path, "len_seq", "does not match the number of real ids in seq", first_rows(bad))
    history = [row[:k] for row, k in zip(seq.astype(np.int32), real)]
    return pd.DataFrame({"user_id": [f"{split}:{r}" for r in range(len(df))], "position": real.astype(np.int64),
                         "split": split, "history": history, "target": target.astype(np.int32)})


def read_names(path: Path, item_num: int | None) -> dict[int, str]:
    """`id::name` or `title<TAB>id` lines -> {id: title}; ids must be in range and unique."""
    names: dict[int, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines()):
        if not line.strip():
            continue
        if "::" in line:
            key, _, title = line.partition("::")
        elif "\t" in line:
            title, _, key = line.rpartition("\t")
        else:
            raise DataError(path, "line", "must be 'id::name' or 'title<TAB>id'", [n])
        try:
            item = int(key.strip())
        except ValueError:
            raise DataError(path, "id", "must be an integer", [n]) from None
        if item < 0 or (item_num is not None and item >= item_num):
            raise DataError(path, "id", f"is out of range 0..{item_num - 1 if item_num else 'n'}", [n])
        if item in names:
            raise DataError(path, "id", "has duplicate ids", [n])
        if not clean_title(title):
            raise DataError(path, "name", "is empty", [n])
        names[item] = title
    return names


def read(path: Path, items_path: Path | None = None) -> RawData:
    """Read a DROS folder; `items_path` may name an id2name file stored elsewhere."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(folder, "path", "must be a folder of DROS files")
    names_file = Path(items_path) if items_path else find_file(folder, [NAMES_FILE], required=False)
    seq_size, item_num, stats_from = read_stats(folder, names_file)
    parts, sources = [], [stats_from]
    for split, names in SPLIT_FILES.items():
        file = find_file(folder, names, required=split != "train")
        if file is not None:
            parts.append(read_split(file, split, seq_size, item_num))
            sources.append(str(file))
    names = read_names(names_file, item_num) if names_file else {}
    if names_file:
        sources.append(str(names_file))
    items = pd.DataFrame({"source_id": [str(i) for i in range(item_num)],
                          "title": [names.get(i, f"item {i}") for i in range(item_num)]})
    return RawData(items=items, samples=pd.concat(parts, ignore_index=True), sources=sources,
                   notes={"dros": {"seq_size": seq_size, "item_num": item_num, "untitled_items": item_num - len(names)}})


def _seq_rows(samples: pd.DataFrame, seq_size: int, pad: int) -> tuple[list[list[int]], list[int]]:
    seqs, lengths = [], []
    for h in samples["history"]:
        h = [int(x) for x in h][-seq_size:]
        seqs.append(h + [pad] * (seq_size - len(h)))
        lengths.append(max(len(h), 1))  # empty history -> len_seq 1, all pad (DROS convention)
    return seqs, lengths


def export_dros(dataset: Dataset, out_dir: str | Path) -> Path:
    """Write `dataset` as DROS files (+ `sample_ids.csv`: split,row,sample_id for the way back).

    Rows keep the dataset's sample order (sorted by sample id); every file is written atomically.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seq_size, pad = dataset.max_history, dataset.pad_id
    row_ids = []
    for split, names in SPLIT_FILES.items():
        part = dataset.split(split)
        seqs, lengths = _seq_rows(part, seq_size, pad)
        frame = pd.DataFrame({"seq": seqs, "len_seq": lengths, "next": part["target"].astype(np.int64).to_numpy()})
        with atomic_path(out_dir / names[0]) as tmp:
            if names[0].endswith(".csv"):
                frame.assign(seq=[str(s) for s in seqs]).to_csv(tmp, index=False)
            else:
                frame.to_pickle(tmp)
        row_ids.append(pd.DataFrame({"split": split, "row": np.arange(len(part)), "sample_id": part["sample_id"]}))
    with atomic_path(out_dir / NAMES_FILE) as tmp:
        tmp.write_text("".join(f"{i}::{t}\n" for i, t in zip(dataset.items["item_id"], dataset.items["title"])),
                       encoding="utf-8")
    with atomic_path(out_dir / ROW_IDS_FILE) as tmp:
        pd.concat(row_ids, ignore_index=True).to_csv(tmp, index=False)
    with atomic_path(out_dir / STATS_FILE) as tmp:
        pd.DataFrame({"seq_size": [seq_size], "item_num": [dataset.n_items]}).to_pickle(tmp)
    return out_dir
