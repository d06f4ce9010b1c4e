"""Importing BIGRec / DLLM2Rec teacher files (myrank_train.txt, confidence_train.txt, all_embeddings.pt)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from pipeline.artifacts import load_teacher_artifacts
from pipeline.bigrec_import import import_bigrec
from pipeline.cli import app
from pipeline.dataset import load_dataset
from pipeline.errors import DataError
from pipeline.prepare import DataConfig, prepare_dataset
from pipeline.readers.dros import export_dros

N, DIM = 10, 6


def oracle_files(folder: Path, next_items: np.ndarray, n_items: int, *, rows=None, conf=None, emb=None) -> Path:
    """Teacher files whose row r ranks the true next item of train row r first (as DLLM2Rec writes: floats)."""
    folder.mkdir(parents=True, exist_ok=True)
    ranks = (next_items[:, None] + np.arange(N)[None, :]) % n_items
    ranks = ranks if rows is None else ranks[:rows]
    np.savetxt(folder / "myrank_train.txt", ranks.astype(float))
    conf = np.tile(np.linspace(0.5, 3.0, N), (len(ranks), 1)) if conf is None else conf
    np.savetxt(folder / "confidence_train.txt", conf)
    torch.save(torch.arange(n_items * DIM, dtype=torch.float32).reshape(n_items, DIM) if emb is None else emb,
               folder / "all_embeddings.pt")
    return folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A demo dataset, its DROS export, and the train rows' targets in file order."""
    root = tmp_path_factory.mktemp("bigrec")
    ds = load_dataset(prepare_dataset(DataConfig(reader="demo", demo_users=40), root / "data"))
    dros = export_dros(ds, root / "dros")
    return ds, dros, pd.read_pickle(dros / "train_data.df")["next"].to_numpy()


def test_import_after_export_aligns_rows_by_sample_id(exported, tmp_path):
    ds, dros, nxt = exported
    teacher = oracle_files(tmp_path / "tocf", nxt, ds.n_items)
    art = load_teacher_artifacts(import_bigrec(teacher, ds, tmp_path / "out", dros_dir=dros), ds)
    train = ds.split("train")
    items, dists, target_d, has = art.rankings.align(train["sample_id"].to_numpy(), k=N)
    assert has.all() and art.coverage == 1.0
    np.testing.assert_array_equal(items[:, 0], train["target"].to_numpy())  # the oracle's first item = the target
    np.testing.assert_allclose(dists[0], np.linspace(0.5, 3.0, N), rtol=1e-6)
    assert np.isnan(target_d).all()
    assert art.dim == DIM and art.embeddings[1, 0] == DIM  # row 1 of the tensor = item 1
    assert art.manifest["backend"] == "bigrec-import" and art.manifest["metrics"]["train"]["HR@1"] == 1.0


def test_import_for_a_dataset_read_from_dros_files(tmp_path):
    src = tmp_path / "d"
    src.mkdir()
    pd.DataFrame({"seq_size": [3], "item_num": [12]}).to_pickle(src / "data_statis.df")
    train = pd.DataFrame({"seq": [[1, 12, 12], [1, 2, 12], [4, 12, 12]], "len_seq": [1, 2, 1], "next": [2, 3, 5]})
    train.to_pickle(src / "train_data.df")
    for name in ("val_data.csv", "test_data.csv"):
        pd.DataFrame({"seq": ["[1, 2, 3]"], "len_seq": [3], "next": [4.0]}).to_csv(src / name, index=False)
    ds = load_dataset(prepare_dataset(DataConfig(reader="dros", path=src, max_history=3), tmp_path / "data"))
    teacher = oracle_files(tmp_path / "tocf", train["next"].to_numpy(), 12)
    art = load_teacher_artifacts(import_bigrec(teacher, ds, tmp_path / "out"), ds)
    row_of = {f"train:{i}": i for i in range(3)}
    t = ds.split("train")
    items, *_ = art.rankings.align(t["sample_id"].to_numpy(), k=N)
    assert [items[j, 0] for j in range(3)] == [train["next"][row_of[u]] for u in t["user_id"]]


@pytest.mark.parametrize("kw,file,field", [
    ({"rows": 5}, "myrank_train.txt", "rows"),  # misaligned with train_data.df
    ({"conf": np.ones((3, N))}, "confidence_train.txt", "rows"),
    ({"conf": None, "emb": torch.zeros(7, DIM)}, "all_embeddings.pt", "embedding"),  # too few item rows
    ({"emb": {"a": "not a tensor"}}, "all_embeddings.pt", "embedding"),
])
def test_malformed_teacher_files(exported, tmp_path, kw, file, field):
    ds, dros, nxt = exported
    kw = {k: v for k, v in kw.items() if v is not None}
    teacher = oracle_files(tmp_path / "tocf", nxt, ds.n_items, **kw)
    with pytest.raises(DataError) as err:
        import_bigrec(teacher, ds, tmp_path / "out", dros_dir=dros)
    assert err.value.path.endswith(file) and err.value.field == field, err.value
    assert not (tmp_path / "out").exists()


def test_out_of_range_items_unsorted_distances_and_width(exported, tmp_path):
    ds, dros, nxt = exported
    teacher = oracle_files(tmp_path / "tocf", nxt, ds.n_items)
    with pytest.raises(DataError, match="width 6, expected 4096"):
        import_bigrec(teacher, ds, tmp_path / "out", dros_dir=dros, expected_dim=4096)
    ranks = np.loadtxt(teacher / "myrank_train.txt")
    ranks[3, 2] = ds.n_items  # the pad id is not an item
    np.savetxt(teacher / "myrank_train.txt", ranks)
    with pytest.raises(DataError) as err:
        import_bigrec(teacher, ds, tmp_path / "out", dros_dir=dros)
    assert err.value.path.endswith("myrank_train.txt") and err.value.rows == [3]
    oracle_files(teacher, nxt, ds.n_items, conf=np.tile(np.linspace(3.0, 0.5, N), (len(nxt), 1)))
    with pytest.raises(DataError, match="ascending"):
        import_bigrec(teacher, ds, tmp_path / "out", dros_dir=dros)
    assert not (tmp_path / "out").exists()


def test_rows_cannot_be_aligned_without_the_export_sidecar(exported, tmp_path):
    ds, _, nxt = exported
    teacher = oracle_files(tmp_path / "tocf", nxt, ds.n_items)
    with pytest.raises(DataError, match="sample_ids.csv"):
        import_bigrec(teacher, ds, tmp_path / "out")


def test_cli_import_bigrec(exported, tmp_path):
    ds, dros, nxt = exported
    teacher = oracle_files(tmp_path / "tocf", nxt, ds.n_items)
    args = ["import-bigrec", "--dataset", str(ds.path), "--teacher-dir", str(teacher), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, args + ["--dros-dir", str(dros)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "teacher_manifest.json").exists()
    failed = CliRunner().invoke(app, args[:-1] + [str(tmp_path / "o2")])  # no sidecar: a clear error, exit 2
    assert failed.exit_code == 2 and "sample_ids.csv" in failed.output
