"""The teacher -> student artifact contract: write, read, validate, align."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline.artifacts import (EMBEDDINGS_FILE, RANKINGS_FILE, TEACHER_MANIFEST_FILE, TeacherRankings,
                                embeddings_table, load_teacher_artifacts, rankings_table, write_teacher_artifacts)
from pipeline.dataset import load_dataset
from pipeline.errors import DataError
from pipeline.io import atomic_path, write_parquet
from pipeline.prepare import DataConfig, prepare_dataset

TOP_N, DIM = 12, 8


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "data"
    return load_dataset(prepare_dataset(DataConfig(reader="demo", demo_users=40, split="loo"), out))


def make_rankings(dataset, share: float = 1.0, seed: int = 0) -> TeacherRankings:
    rng = np.random.default_rng(seed)
    train = dataset.split("train")["sample_id"].to_numpy()
    ids = train[: int(len(train) * share)]
    items = np.stack([rng.choice(dataset.n_items, TOP_N, replace=False) for _ in ids]).astype(np.int32)
    dists = np.sort(rng.uniform(0, 5, (len(ids), TOP_N)), axis=1).astype(np.float32)
    target = rng.uniform(0, 5, len(ids)).astype(np.float32)
    target[::3] = np.nan
    return TeacherRankings(ids, items, dists, target)


def embeddings(dataset, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((dataset.n_items, dim)).astype(np.float32)


def write(dataset, out: Path, rankings=None, emb=None, **kw) -> Path:
    rankings = make_rankings(dataset) if rankings is None else rankings
    emb = embeddings(dataset) if emb is None else emb
    return write_teacher_artifacts(out, rankings, emb, dataset, {"model_id": "test", "backend": "test"}, **kw)


def test_round_trip(dataset, tmp_path):
    r, emb = make_rankings(dataset), embeddings(dataset)
    art = load_teacher_artifacts(write(dataset, tmp_path / "t", r, emb), dataset)
    np.testing.assert_array_equal(art.rankings.sample_ids, r.sample_ids)
    np.testing.assert_array_equal(art.rankings.topk_items, r.topk_items)
    np.testing.assert_array_equal(art.rankings.topk_distances, r.topk_distances)
    np.testing.assert_array_equal(np.isnan(art.rankings.target_distance), np.isnan(r.target_distance))
    np.testing.assert_array_equal(art.embeddings, emb)
    assert art.dim == DIM and art.coverage == 1.0
    m = art.manifest
    assert m["dataset_hash"] == dataset.content_hash and m["top_n"] == TOP_N and m["dim"] == DIM
    assert m["model_id"] == "test" and "created_at" in m


def test_float16_embeddings_and_rows_in_any_order(dataset, tmp_path):
    out = write(dataset, tmp_path / "t", embedding_dtype="float16")
    emb = embeddings(dataset)
    art = load_teacher_artifacts(out, dataset)
    np.testing.assert_allclose(art.embeddings, emb, atol=1e-2)
    perm = np.random.default_rng(0).permutation(dataset.n_items)  # rows stored shuffled: read back in item order
    table = embeddings_table(emb[perm]).set_column(0, "item_id", pa.array(perm.astype(np.int32)))
    write_parquet(table, out / EMBEDDINGS_FILE)
    np.testing.assert_array_equal(load_teacher_artifacts(out, dataset).embeddings, emb)


def test_partial_coverage_and_align(dataset, tmp_path):
    r = make_rankings(dataset, share=0.5)
    art = load_teacher_artifacts(write(dataset, tmp_path / "t", r), dataset)
    train = dataset.split("train")["sample_id"].to_numpy()
    assert art.coverage == pytest.approx(len(r) / len(train))
    query = np.concatenate([train[-3:], r.sample_ids[[4, 0]]])  # 3 without a ranking, 2 with, any order
    items, dists, target, has = art.rankings.align(query, k=10)
    assert has.tolist() == [False, False, False, True, True]
    np.testing.assert_array_equal(items[3], r.topk_items[4, :10])
    np.testing.assert_array_equal(dists[4], r.topk_distances[0, :10])
    assert (items[:3] == 0).all() and np.isnan(target[:3]).all()
    assert np.isnan(target[4]) and target[3] == r.target_distance[4]  # row 0 had no target distance
    with pytest.raises(ValueError):
        art.rankings.align(query, k=TOP_N + 1)


def bad(r: TeacherRankings, **fields) -> TeacherRankings:
    return TeacherRankings(**{**r.__dict__, **fields})


@pytest.mark.parametrize("mutate,field,rows", [
    (lambda r: bad(r, sample_ids=np.concatenate([r.sample_ids[:1], r.sample_ids[:-1]])), "sample_id", [1]),  # duplicate
    (lambda r: bad(r, sample_ids=r.sample_ids + 1), "sample_id", [0, 1, 2, 3, 4]),  # unknown samples
    (lambda r: bad(r, topk_items=np.where(np.arange(len(r))[:, None] == 2, 10_000, r.topk_items).astype(np.int32)),
     "topk_items", [2]),  # item id out of range in row 2
    (lambda r: bad(r, topk_items=r.topk_items[:, :5], topk_distances=r.topk_distances[:, :5]), "topk_items", []),  # N < 10
    (lambda r: bad(r, topk_distances=r.topk_distances[:, ::-1].copy()), "topk_distances", [0, 1, 2, 3, 4]),
])
def test_bad_rankings_are_refused_before_writing(dataset, tmp_path, mutate, field, rows):
    with pytest.raises(DataError) as err:
        write(dataset, tmp_path / "t", mutate(make_rankings(dataset)))
    assert err.value.field == field and err.value.path.endswith(RANKINGS_FILE)
    assert err.value.rows == rows  # the first offending rows are named
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("emb", [
    lambda n: np.zeros((n - 1, DIM), np.float32),  # an item without an embedding
    lambda n: np.where(np.arange(n)[:, None] == 2, np.nan, 0).astype(np.float32) + np.zeros((n, DIM), np.float32),
])
def test_bad_embeddings_are_refused_before_writing(dataset, tmp_path, emb):
    with pytest.raises(DataError) as err:
        write(dataset, tmp_path / "t", emb=emb(dataset.n_items))
    assert err.value.path.endswith(EMBEDDINGS_FILE)
    assert not (tmp_path / "t").exists()


def test_embedding_width_must_match_the_manifest(dataset, tmp_path):
    out = write(dataset, tmp_path / "t")
    manifest = json.loads((out / TEACHER_MANIFEST_FILE).read_text())
    (out / TEACHER_MANIFEST_FILE).write_text(json.dumps({**manifest, "dim": DIM * 2}))
    with pytest.raises(DataError, match="width"):
        load_teacher_artifacts(out, dataset)


def test_dataset_hash_mismatch_and_missing_manifest(dataset, tmp_path):
    out = write(dataset, tmp_path / "t")
    other = load_dataset(prepare_dataset(DataConfig(reader="demo", demo_users=40, split="loo", seed=3), tmp_path / "o"))
    with pytest.raises(DataError) as err:
        load_teacher_artifacts(out, other)
    assert err.value.field == "dataset_hash"
    (out / TEACHER_MANIFEST_FILE).unlink()  # an unfinished run: rankings without a manifest
    with pytest.raises(DataError, match="did not finish"):
        load_teacher_artifacts(out, dataset)


def test_rows_of_different_lengths_in_the_file(dataset, tmp_path):
    out = write(dataset, tmp_path / "t")
    r = make_rankings(dataset)
    table = rankings_table(r)
    lists = table["topk_items"].to_pylist()
    lists[2] = lists[2][:-1]
    table = table.set_column(1, "topk_items", pa.array(lists, pa.list_(pa.int32())))
    write_parquet(table, out / RANKINGS_FILE)
    with pytest.raises(DataError) as err:
        load_teacher_artifacts(out, dataset)
    assert err.value.rows == [2]


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.parquet"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
