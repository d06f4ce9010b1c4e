"""Sharded, resumable work over a fixed list of sample ids.

A `ShardedWork` folder holds `plan.json` (fingerprint, shard size, key count and hash),
`keys.npy` and one `shard_00000.parquet` per finished shard, each written atomically.
A crashed run re-opens the folder, finds the finished shards and continues at the first
unfinished one; every shard's output must hold exactly its keys, in order, so the union
has no duplicate and no missing row.

    >>> work = ShardedWork("runs/x/work/gen-ab12", sample_ids, shard_size=2048, fingerprint="ab12")  # doctest: +SKIP
    >>> work.run(lambda keys: pa.table({"sample_id": keys, "text": gen(keys)}), desc="generate")       # doctest: +SKIP
    >>> table = work.read()                                                                           # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import logging
import time
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from pipeline.errors import DataError
from pipeline.io import atomic_path, read_json, write_json, write_parquet

log = logging.getLogger(__name__)

PLAN_FILE, KEYS_FILE = "plan.json", "keys.npy"


def keys_hash(keys: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(keys, dtype=np.int64).tobytes()).hexdigest()[:16]


class ShardedWork:
    def __init__(self, folder: str | Path, keys: np.ndarray, shard_size: int, fingerprint: str = ""):
        self.folder = Path(folder)
        self.keys = np.asarray(keys, dtype=np.int64)
        self.shard_size = int(shard_size)
        self.plan = {"fingerprint": fingerprint, "shard_size": self.shard_size, "n_keys": int(len(self.keys)),
                     "keys_hash": keys_hash(self.keys)}
        self._open()

    def _open(self) -> None:
        """Write the plan on first use; on resume, refuse a folder planned for other keys or settings."""
        plan_path = self.folder / PLAN_FILE
        if plan_path.exists():
            old = read_json(plan_path)
            if old != self.plan:
                raise DataError(plan_path, "plan", f"was made for other work ({old}) than this run ({self.plan}): "
                                "delete the folder or use another output folder")
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / KEYS_FILE) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, self.keys)
        write_json(self.plan, plan_path)

    @property
    def n_shards(self) -> int:
        return -(-len(self.keys) // self.shard_size) if len(self.keys) else 0

    def shard_path(self, i: int) -> Path:
        return self.folder / f"shard_{i:05d}.parquet"

    def shard_keys(self, i: int) -> np.ndarray:
        return self.keys[i * self.shard_size: (i + 1) * self.shard_size]

    def pending(self) -> list[int]:
        return [i for i in range(self.n_shards) if not self.shard_path(i).exists()]

    @property
    def done(self) -> bool:
        return not self.pending()

    def run(self, fn: Callable[[np.ndarray], pa.Table], desc: str = "shards") -> None:
        """Compute every unfinished shard with `fn(keys) -> table` (first column `sample_id` == keys)."""
        todo = self.pending()
        if len(todo) < self.n_shards:
            log.info("%s: resuming, %d of %d shards already done", desc, self.n_shards - len(todo), self.n_shards)
        start, done = time.perf_counter(), 0
        bar = tqdm(todo, desc=desc, unit="shard", leave=False)
        for i in bar:
            keys = self.shard_keys(i)
            table = fn(keys)
            got = table.column("sample_id").to_numpy()
            if len(got) != len(keys) or not np.array_equal(got, keys):
                raise RuntimeError(f"{desc}: shard {i} returned {len(got)} rows that are not its {len(keys)} sample ids in order")
            write_parquet(table, self.shard_path(i))
            done += len(keys)
            rate = done / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(samples_per_s=f"{rate:.1f}")
            log.info("%s: shard %d/%d done (%d samples, %.1f samples/s)", desc, i + 1, self.n_shards, len(keys), rate)

    def read_shard(self, i: int) -> pa.Table:
        return pq.read_table(self.shard_path(i))

    @cached_property
    def _key_index(self) -> pd.Index:
        return pd.Index(self.keys)  # built once: take() is called once per shard of the caller

    def take(self, keys: np.ndarray) -> pa.Table:
        """The rows of `keys`, in that order, reading only the shards that hold them (bounded memory)."""
        pos = self._key_index.get_indexer(np.asarray(keys, dtype=np.int64))
        if (pos < 0).any():
            raise KeyError(f"{self.folder}: no rows for keys {np.asarray(keys)[pos < 0][:5].tolist()}")
        shard_of = pos // self.shard_size
        parts = [self.read_shard(int(i)).take(pa.array(pos[shard_of == i] - i * self.shard_size))
                 for i in np.unique(shard_of)]
        if not parts:
            return self.read_shard(0).slice(0, 0)
        by_shard = np.argsort(shard_of, kind="stable")  # the order of the concatenated parts
        return pa.concat_tables(parts).take(pa.array(np.argsort(by_shard)))

    def read(self) -> pa.Table:
        """All shards in key order; raises if any is missing."""
        missing = self.pending()
        if missing:
            raise DataError(self.shard_path(missing[0]), "shard", f"is missing ({len(missing)} of {self.n_shards} unfinished)")
        tables = [self.read_shard(i) for i in range(self.n_shards)]
        return pa.concat_tables(tables) if tables else pa.table({"sample_id": pa.array([], pa.int64())})
