"""Source readers, one small module per format, all returning `RawData` (see `base`).

`read_source(config)` picks the reader named by `DataConfig.reader`:

| name           | module                         | reads                                             |
|----------------|--------------------------------|---------------------------------------------------|
| `demo`         | `pipeline.demo`                | nothing: generates the synthetic demo             |
| `interactions` | `pipeline.readers.interactions`| CSV/Parquet `user,item,timestamp` + `item,title`  |
| `amazon`       | `pipeline.readers.amazon`      | Amazon reviews + meta JSON lines (.gz ok)         |
| `movielens`    | `pipeline.readers.movielens`   | ml-100k `u.data`/`u.item`, ml-1m/10m `*.dat`      |
| `dros`         | `pipeline.readers.dros`        | DROS / DLLM2Rec `*_data.df/.csv`, `data_statis.df` |
| `presplit`     | `pipeline.readers.presplit`    | per-user train/valid/test lists (games-dealrec, toys-p5) |

    >>> raw = read_source(DataConfig(reader="movielens", path="../shared/data/ml-100k"))  # doctest: +SKIP
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import DataError
from pipeline.readers.base import RawData

if TYPE_CHECKING:
    from pipeline.prepare import DataConfig

READERS = {
    "interactions": "pipeline.readers.interactions",
    "amazon": "pipeline.readers.amazon",
    "movielens": "pipeline.readers.movielens",
    "dros": "pipeline.readers.dros",
    "presplit": "pipeline.readers.presplit",
}


def read_source(config: "DataConfig") -> RawData:
    """Run the reader named by `config.reader` on `config.path` (and `config.items_path`)."""
    if config.reader == "demo":
        from pipeline.demo import make_demo

        return make_demo(seed=config.seed, n_users=config.demo_users,
                         franchises_per_genre=config.demo_franchises_per_genre,
                         mean_extra_len=config.demo_mean_length - 5)
    if config.reader not in READERS:
        raise ValueError(f"unknown reader {config.reader!r}; choose one of demo, {', '.join(READERS)}")
    if config.path is None:
        raise DataError("config", "path", f"is required by the {config.reader!r} reader")
    path = Path(config.path)
    if not path.exists():
        raise DataError(path, "path", "does not exist")
    module = importlib.import_module(READERS[config.reader])
    return module.read(path, items_path=Path(config.items_path) if config.items_path else None)


__all__ = ["RawData", "READERS", "read_source"]
