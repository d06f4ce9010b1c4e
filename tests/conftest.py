"""Shared fixtures: the demo dataset prepared once per session, teacher folders, tiny data.

    def test_x(demo_dir, demo_teacher_dir): ...
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.dataset import load_dataset, make_sample_id, write_dataset


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """The default demo dataset (seed 0), prepared once into a temp folder."""
    from pipeline.prepare import DataConfig, prepare_dataset

    return Path(prepare_dataset(DataConfig(reader="demo", seed=0), tmp_path_factory.mktemp("demo") / "data"))


@pytest.fixture(scope="session")
def demo_dataset(demo_dir):
    return load_dataset(demo_dir)


@pytest.fixture(scope="session")
def demo_teacher_dir(demo_dataset, tmp_path_factory) -> Path:
    """Synthetic teacher artifacts for the demo (random rankings for every split, 24-wide embeddings),
    written through `pipeline.artifacts.write_teacher_artifacts`."""
    from student.synthetic import write_synthetic_teacher

    return write_synthetic_teacher(demo_dataset, tmp_path_factory.mktemp("teacher") / "teacher", dim=24, top_n=20)


def tiny_frames(n_items: int = 12, n_users: int = 8, seq_len: int = 7, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Items and leave-one-out samples for a handful of users (every prefix a train sample)."""
    rng = np.random.default_rng(seed)
    items = pd.DataFrame({"item_id": np.arange(n_items, dtype=np.int32),
                          "title": [f"Item {i}" for i in range(n_items)], "source_id": [f"s{i}" for i in range(n_items)]})
    rows = []
    for u in range(n_users):
        seq = rng.choice(n_items, size=seq_len, replace=False)
        for pos in range(1, seq_len):
            split = "test" if pos == seq_len - 1 else "valid" if pos == seq_len - 2 else "train"
            rows.append({"sample_id": make_sample_id(f"u{u}", pos), "user_id": f"u{u}", "split": split,
                         "history": np.asarray(seq[max(0, pos - 5):pos], dtype=np.int32), "target": int(seq[pos]),
                         "timestamp": pd.NA})
    samples = pd.DataFrame(rows)
    samples["timestamp"] = samples["timestamp"].astype("Int64")
    return items, samples


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A 12-item dataset (L = 5) written directly with `write_dataset`."""
    items, samples = tiny_frames()
    out = tmp_path_factory.mktemp("tiny") / "data"
    return write_dataset(out, items, samples, max_history=5, reader="test", sources=[], protocol="loo")
