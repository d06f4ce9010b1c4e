"""The demo dataset: deterministic, meaningful titles, learnable structure."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from pipeline.dataset import load_dataset
from pipeline.demo import PLATFORMS, make_demo
from pipeline.prepare import DataConfig, prepare_dataset


@pytest.fixture(scope="module")
def raw():
    return make_demo(seed=0)


def test_same_seed_same_data_other_seed_other_data(raw):
    again = make_demo(seed=0)
    pd.testing.assert_frame_equal(raw.items, again.items)
    pd.testing.assert_frame_equal(raw.interactions, again.interactions)
    other = make_demo(seed=1)
    assert not raw.interactions["source_id"].equals(other.interactions["source_id"])


def test_size_and_titles(raw):
    assert 250 <= len(raw.items) <= 400
    assert raw.interactions["user_id"].nunique() == 2000
    assert raw.items["title"].is_unique
    pattern = re.compile(r"^[A-Z][a-z]+ [A-Z][a-z]+( \d)? \((%s)\)$" % "|".join(PLATFORMS))
    assert all(pattern.match(t) for t in raw.items["title"]), raw.items["title"].head().tolist()


def test_sequences_have_time_order_and_no_repeats(raw):
    inter = raw.interactions
    assert raw.has_timestamps
    assert (inter.groupby("user_id")["timestamp"].diff().dropna() > 0).all()
    assert not inter.duplicated(["user_id", "source_id"]).any()


def test_structure_is_learnable(raw):
    """Sequel chains and platform loyalty are far above chance: both an LLM and an ID model can learn them."""
    meta = raw.items.set_index("source_id")
    seq = raw.interactions.join(meta[["franchise", "entry", "platform"]], on="source_id")
    nxt = seq.groupby("user_id").shift(-1)
    pairs = seq.assign(nf=nxt["franchise"], ne=nxt["entry"], np_=nxt["platform"]).dropna(subset=["nf"])
    sequel = ((pairs["franchise"] == pairs["nf"]) & (pairs["ne"] == pairs["entry"] + 1)).mean()
    same_platform = (pairs["platform"] == pairs["np_"]).mean()
    assert sequel > 0.3  # chance is about 1 / n_items
    assert same_platform > 0.55  # chance is about 0.3


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    return prepare_dataset(DataConfig(reader="demo", seed=0), tmp_path_factory.mktemp("demo") / "data")


def test_prepared_demo_counts_and_protocol(demo_dir):
    ds = load_dataset(demo_dir)
    counts = ds.manifest["counts"]
    assert ds.manifest["protocol"] == "time"
    assert 3000 <= counts["train"] <= 10000
    assert counts["valid"] > 300 and counts["test"] > 300
    assert ds.n_items == ds.manifest["n_items"] == ds.pad_id
    assert ds.samples["history"].map(len).between(1, 10).all()


def test_next_sequel_rule_beats_popularity_on_test(demo_dir):
    """A title-only rule ("the next number of the last game") already hits often: the titles carry signal."""
    ds = load_dataset(demo_dir)
    titles = ds.items["title"].tolist()
    by_title = {t: i for i, t in enumerate(titles)}

    def next_sequel(item):
        m = re.match(r"^(.*?)(?: (\d))? \((.*)\)$", titles[item])
        name, num, platform = m.group(1), int(m.group(2) or 1), m.group(3)
        return by_title.get(f"{name} {num + 1} ({platform})", -1)

    test = ds.split("test")
    guess = np.array([next_sequel(int(h[-1])) for h in test["history"]])
    hit_rule = (guess == test["target"].to_numpy()).mean()
    most_popular = ds.split("train")["target"].value_counts().index[0]
    hit_pop = (test["target"] == most_popular).mean()
    assert hit_rule > 0.15 and hit_rule > 5 * hit_pop
