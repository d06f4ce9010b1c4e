"""Sharded work: crash -> resume at the first unfinished shard, no duplicate or missing rows."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pipeline.errors import DataError
from teacher.shards import ShardedWork

KEYS = np.array([50, 7, 13, 99, 2, 31, 8, 64, 17, 5, 42], dtype=np.int64)


def table(keys: np.ndarray) -> pa.Table:
    return pa.table({"sample_id": pa.array(keys, pa.int64()), "value": pa.array(keys * 10)})


def test_crash_then_resume_computes_only_unfinished_shards(tmp_path):
    calls: list[list[int]] = []

    def crashing(keys):
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        calls.append(keys.tolist())
        return table(keys)

    work = ShardedWork(tmp_path / "w", KEYS, shard_size=3, fingerprint="fp")
    assert work.n_shards == 4
    with pytest.raises(RuntimeError, match="simulated crash"):
        work.run(crashing)
    assert calls == [[50, 7, 13], [99, 2, 31]]
    assert work.pending() == [2, 3]

    resumed: list[list[int]] = []
    again = ShardedWork(tmp_path / "w", KEYS, shard_size=3, fingerprint="fp")  # a new process
    again.run(lambda keys: resumed.append(keys.tolist()) or table(keys))
    assert resumed == [[8, 64, 17], [5, 42]]
    out = again.read()
    assert out["sample_id"].to_pylist() == KEYS.tolist()  # every key once, in order
    assert out["value"].to_pylist() == (KEYS * 10).tolist()
    again.run(lambda keys: pytest.fail("nothing left to do"))


def test_other_plan_in_the_same_folder_is_refused(tmp_path):
    ShardedWork(tmp_path / "w", KEYS, 3, "fp")
    with pytest.raises(DataError, match="other work"):
        ShardedWork(tmp_path / "w", KEYS[::-1], 3, "fp")
    with pytest.raises(DataError, match="other work"):
        ShardedWork(tmp_path / "w", KEYS, 4, "fp")
    with pytest.raises(DataError, match="other work"):
        ShardedWork(tmp_path / "w", KEYS, 3, "other")


def test_shard_output_must_hold_exactly_its_keys(tmp_path):
    work = ShardedWork(tmp_path / "w", KEYS, 4)
    with pytest.raises(RuntimeError, match="not its 4 sample ids"):
        work.run(lambda keys: table(keys[:-1]))
    with pytest.raises(RuntimeError, match="not its 4 sample ids"):
        work.run(lambda keys: table(keys[::-1]))
    assert work.pending() == [0, 1, 2]
    with pytest.raises(DataError, match="missing"):
        work.read()


def test_take_returns_the_rows_of_any_keys_in_their_order_reading_only_their_shards(tmp_path, monkeypatch):
    work = ShardedWork(tmp_path / "w", KEYS, shard_size=3, fingerprint="fp")
    work.run(table)
    read: list[int] = []
    original = work.read_shard
    monkeypatch.setattr(work, "read_shard", lambda i: read.append(i) or original(i))
    wanted = np.array([42, 7, 99, 50, 5], dtype=np.int64)  # shards 3, 0, 1, 0, 3
    out = work.take(wanted)
    assert out["sample_id"].to_pylist() == wanted.tolist() and out["value"].to_pylist() == (wanted * 10).tolist()
    assert sorted(read) == [0, 1, 3]  # shard 2 holds none of them
    assert work.take(np.array([], dtype=np.int64)).num_rows == 0
    with pytest.raises(KeyError, match=r"\[1000\]"):
        work.take(np.array([7, 1000]))
