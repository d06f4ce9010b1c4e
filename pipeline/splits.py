"""Split protocols (METHOD §1): which (history, target) samples exist, and in which split.

All three work on `Sequences` (every user's time-ordered item ids, flat + offsets) and are
vectorised: no Python loop over users or samples except for hashing sample ids.

- `time` (BIGRec / DLLM2Rec): per user with n items, targets at positions
  `range(min(L, n-1), n)`; all samples sorted by the target's timestamp (ties: user id,
  then position) and cut 80/10/10 into train/valid/test.
- `loo` (leave-one-out): last item test, second-to-last valid, every earlier position
  >= 1 a train sample.
- `given` (pre-split sources): each item keeps its source split label; every position
  >= 1 is a sample of its label's split, with the full preceding sequence (all splits)
  as history, truncated to the last L items. With `train_windows=True` the train part
  gives BIGRec windows instead of every prefix: positions `range(min(L, t-1), t)` of a
  user's t train items (valid/test unchanged).

Samples never have an empty history: a user with a single item gives no sample.

    >>> seq = Sequences.from_arrays(["a", "a", "a", "a"], [5, 6, 7, 8], order=[1, 2, 3, 4])
    >>> df = split_samples(seq, "loo", max_history=2)
    >>> df.sort_values("position")[["split", "target"]].values.tolist()
    [['train', 6], ['valid', 7], ['test', 8]]
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.dataset import SPLITS
from pipeline.errors import DataError, first_rows

PROTOCOLS = ("time", "loo", "given")
TIME_FRACTIONS = (0.8, 0.1, 0.1)


@dataclass
class Sequences:
    """Every user's item sequence in time order, flattened.

    `items[offsets[u]:offsets[u+1]]` is user `user_ids[u]`'s sequence (dense item ids);
    `timestamps` and `labels` (0/1/2 = train/valid/test) run parallel to `items`, or are None.
    """

    user_ids: np.ndarray  # object [U]
    offsets: np.ndarray  # int64 [U+1]
    items: np.ndarray  # int32 [N]
    timestamps: np.ndarray | None = None  # int64 [N]
    labels: np.ndarray | None = None  # int8 [N]

    @classmethod
    def from_arrays(cls, users: Sequence, items: Sequence[int], order: Sequence[int],
                    timestamps: Sequence[int] | None = None, labels: Sequence[int] | None = None) -> "Sequences":
        """Group by user and sort by `order` within a user (ties keep input order)."""
        users = pd.Series(np.asarray(users, dtype=object)).astype(str)
        codes, uniques = pd.factorize(users, sort=True)
        perm = np.lexsort((np.arange(len(codes)), np.asarray(order, dtype=np.int64), codes))
        counts = np.bincount(codes, minlength=len(uniques))
        take = lambda a: None if a is None else np.asarray(a)[perm]  # noqa: E731
        return cls(
            user_ids=np.asarray(uniques, dtype=object),
            offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            items=np.asarray(items, dtype=np.int32)[perm],
            timestamps=None if timestamps is None else take(timestamps).astype(np.int64),
            labels=None if labels is None else take(labels).astype(np.int8),
        )

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def user_index(self) -> np.ndarray:
        """User number of every flat position."""
        return np.repeat(np.arange(len(self.user_ids)), self.lengths)

    @property
    def positions(self) -> np.ndarray:
        """Position of every flat element inside its user's sequence."""
        return np.arange(len(self.items)) - self.offsets[self.user_index]


def time_targets(seq: Sequences, max_history: int, fractions=TIME_FRACTIONS) -> tuple[np.ndarray, np.ndarray]:
    """BIGRec windows: `(flat target index, split code)` sorted by target timestamp."""
    if seq.timestamps is None:
        raise DataError("interactions", "timestamp", "is required by the 'time' split (use 'loo' for order-only data)")
    pos, n = seq.positions, seq.lengths[seq.user_index]
    idx = np.flatnonzero((pos >= np.minimum(max_history, n - 1)) & (pos >= 1))
    # ties on timestamp: user id order (user_index is the sorted-user rank), then position
    idx = idx[np.lexsort((pos[idx], seq.user_index[idx], seq.timestamps[idx]))]
    total = len(idx)
    cut_train, cut_valid = int(total * fractions[0]), int(total * (fractions[0] + fractions[1]))
    codes = np.full(total, 2, dtype=np.int8)
    codes[:cut_train], codes[cut_train:cut_valid] = 0, 1
    return idx, codes


def loo_targets(seq: Sequences) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out: last = test, second-to-last = valid, positions 1..n-3 = train."""
    pos, n = seq.positions, seq.lengths[seq.user_index]
    idx = np.flatnonzero(pos >= 1)
    back = n[idx] - 1 - pos[idx]  # 0 for the last item
    codes = np.where(back == 0, 2, np.where(back == 1, 1, 0)).astype(np.int8)
    return idx, codes


def given_targets(seq: Sequences, max_history: int = 10, train_windows: bool = False,
                  path: str | Path = "interactions") -> tuple[np.ndarray, np.ndarray]:
    """Keep the source's labels; they must not go back in time (train < valid < test)."""
    if seq.labels is None:
        raise DataError(path, "split", "is required by the 'given' split")
    same_user = seq.user_index[1:] == seq.user_index[:-1]
    backwards = same_user & (np.diff(seq.labels.astype(np.int16)) < 0)
    if backwards.any():
        raise DataError(path, "split", "goes back (e.g. test before train) inside a user's sequence",
                        first_rows(np.concatenate([[False], backwards])))
    pos = seq.positions
    keep = pos >= 1
    if train_windows:
        n_train = np.bincount(seq.user_index, weights=seq.labels == 0, minlength=len(seq.user_ids)).astype(np.int64)
        t = n_train[seq.user_index]
        keep &= (seq.labels != 0) | (pos >= np.minimum(max_history, t - 1))
    idx = np.flatnonzero(keep)
    return idx, seq.labels[idx]


def sample_ids(user_ids: Sequence[str], positions: Sequence[int]) -> np.ndarray:
    """`make_sample_id` for many samples at once (same values, less per-call overhead)."""
    blake = hashlib.blake2b
    digests = b"".join([blake(f"{u}\x1f{p}".encode(), digest_size=8).digest() for u, p in zip(user_ids, positions)])
    return (np.frombuffer(digests, dtype="<u8") & np.uint64(0x7FFF_FFFF_FFFF_FFFF)).astype(np.int64)


def make_samples(seq: Sequences, idx: np.ndarray, codes: np.ndarray, max_history: int) -> pd.DataFrame:
    """Samples for the flat target indices `idx`: history = up to L previous items, oldest first."""
    user, pos = seq.user_index[idx], seq.positions[idx]
    hist_len = np.minimum(pos, max_history)
    list_off = np.concatenate([[0], np.cumsum(hist_len)]).astype(np.int64)
    flat = np.repeat(idx - hist_len - list_off[:-1], hist_len) + np.arange(list_off[-1])
    history = pa.ListArray.from_arrays(pa.array(list_off.astype(np.int32)), pa.array(seq.items[flat], pa.int32()))
    user_ids = seq.user_ids[user]
    return pd.DataFrame(
        {
            "sample_id": sample_ids(user_ids, pos.tolist()),
            "user_id": user_ids,
            "split": np.asarray(SPLITS, dtype=object)[codes],
            "history": history.to_pandas(),
            "target": seq.items[idx].astype(np.int32),
            "timestamp": pd.array(seq.timestamps[idx], dtype="Int64") if seq.timestamps is not None
            else pd.array([pd.NA] * len(idx), dtype="Int64"),
            "position": pos.astype(np.int64),
        }
    )


def split_samples(seq: Sequences, protocol: str, max_history: int, train_windows: bool = False) -> pd.DataFrame:
    """All samples of `seq` under `protocol` (time | loo | given), as a samples frame."""
    if protocol == "time":
        idx, codes = time_targets(seq, max_history)
    elif protocol == "loo":
        idx, codes = loo_targets(seq)
    elif protocol == "given":
        idx, codes = given_targets(seq, max_history, train_windows)
    else:
        raise ValueError(f"unknown split protocol {protocol!r}; choose one of {PROTOCOLS}")
    return make_samples(seq, idx, codes, max_history)
