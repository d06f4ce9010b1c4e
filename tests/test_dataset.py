"""The canonical dataset folder: validation, content hash, stable sample ids, DROS import/export."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.dataset import load_dataset, make_sample_id, write_dataset
from pipeline.errors import DataError
from pipeline.prepare import DataConfig, prepare_dataset
from pipeline.readers.dros import export_dros


def demo(tmp_path: Path, name: str, **kw) -> Path:
    kw = {"reader": "demo", "demo_users": 60, **kw}
    return prepare_dataset(DataConfig(**kw), tmp_path / name)


def test_manifest_names_everything(tmp_path):
    ds = load_dataset(demo(tmp_path, "a"))
    m = ds.manifest
    assert m["reader"] == "demo" and m["protocol"] == "time" and m["max_history"] == 10
    assert m["n_items"] == m["pad_id"] == ds.n_items
    assert m["counts"] == ds.samples["split"].value_counts().reindex(["train", "valid", "test"], fill_value=0).to_dict()
    assert len(m["content_hash"]) == 64 and m["sources"] == ["demo(seed=0)"]
    assert ds.items["item_id"].tolist() == list(range(ds.n_items))
    assert ds.samples["sample_id"].is_monotonic_increasing


def test_content_hash_is_deterministic_and_tracks_content(tmp_path):
    a, b = load_dataset(demo(tmp_path, "a")), load_dataset(demo(tmp_path, "b"))
    assert a.content_hash == b.content_hash
    assert load_dataset(demo(tmp_path, "c", seed=1)).content_hash != a.content_hash
    assert load_dataset(demo(tmp_path, "d", max_history=5)).content_hash != a.content_hash


def test_tampered_files_fail_the_hash_check(tmp_path):
    path = demo(tmp_path, "a")
    table = pq.read_table(path / "samples.parquet").to_pandas()
    table.loc[0, "target"] = (table.loc[0, "target"] + 1) % 5
    table.to_parquet(path / "samples.parquet", index=False)
    with pytest.raises(DataError, match="content_hash"):
        load_dataset(path)


def test_sample_ids_survive_adding_users(tmp_path):
    """Users 0..59 are generated identically with 80 users: their samples keep their ids."""
    small = load_dataset(demo(tmp_path, "s", split="loo")).samples
    big = load_dataset(demo(tmp_path, "b", split="loo", demo_users=80)).samples
    old = big[big["user_id"].isin(set(small["user_id"]))]
    assert sorted(old["sample_id"]) == sorted(small["sample_id"])
    short = small[small["history"].map(len) < 10]  # here the position is the history length
    assert len(short) > 0
    assert [make_sample_id(u, len(h)) for u, h in zip(short.user_id, short.history)] == short.sample_id.tolist()


ITEMS = pd.DataFrame({"item_id": np.arange(3, dtype=np.int32), "title": ["A", "B", "C"], "source_id": ["a", "b", "c"]})


def samples(**override):
    df = pd.DataFrame({"sample_id": [1, 2], "user_id": ["u", "u"], "split": ["train", "test"],
                       "history": [np.array([0], np.int32), np.array([0, 1], np.int32)],
                       "target": np.array([1, 2], np.int32), "timestamp": pd.array([5, 6], dtype="Int64")})
    for key, value in override.items():
        df[key] = value
    return df


@pytest.mark.parametrize("items,samples_,field", [
    (ITEMS.assign(item_id=np.array([0, 2, 1], np.int32)), samples(), "item_id"),
    (ITEMS.assign(title=["A", " ", "C"]), samples(), "title"),
    (ITEMS.assign(source_id=["a", "a", "c"]), samples(), "source_id"),
    (ITEMS, samples(sample_id=[1, 1]), "sample_id"),
    (ITEMS, samples(split=["train", "holdout"]), "split"),
    (ITEMS, samples(target=np.array([1, 3], np.int32)), "target"),
    (ITEMS, samples(history=[np.array([0], np.int32), np.array([0, 5], np.int32)]), "history"),
    (ITEMS, samples(history=[np.array([0], np.int32), np.array([0, 1, 2], np.int32)]), "history"),  # > L=2
    (ITEMS.drop(columns="title"), samples(), "title"),
])
def test_write_dataset_validates_before_writing(tmp_path, items, samples_, field):
    with pytest.raises(DataError) as err:
        write_dataset(tmp_path / "out", items, samples_, max_history=2, reader="test", sources=[], protocol="loo")
    assert err.value.field == field
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- DROS format
def write_dros(folder: Path, *, train=None, valid=None, test=None, stats=(4, 5), names=None) -> Path:
    """A DROS folder with pad 5 (= item_num), seq_size 4."""
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"seq_size": [stats[0]], "item_num": [stats[1]]}).to_pickle(folder / "data_statis.df")
    train = train if train is not None else [([5, 5, 5, 5], 1, 0), ([0, 5, 5, 5], 1, 1), ([0, 1, 5, 5], 2, 2)]
    pd.DataFrame(train, columns=["seq", "len_seq", "next"]).to_pickle(folder / "train_data.df")
    for name, rows in (("val_data.csv", valid or [("[3, 2, 1, 0]", 4, 4.0)]), ("test_data.csv", test or [("[2, 4, 5, 5]", 2, 3.0)])):
        pd.DataFrame(rows, columns=["seq", "len_seq", "next"]).to_csv(folder / name, index=False)
    if names is not None:
        (folder / "id2name.txt").write_text(names)
    return folder


def test_dros_import(tmp_path):
    src = write_dros(tmp_path / "d", names="0::Zero\n1::One\n2::Two &amp; Co\n3::Three\n4::Four\n")
    ds = load_dataset(prepare_dataset(DataConfig(reader="dros", path=src), tmp_path / "out"))
    assert ds.n_items == 5 and ds.items["title"].tolist() == ["Zero", "One", "Two & Co", "Three", "Four"]
    got = {(r.user_id, r.split, tuple(r.history), r.target) for r in ds.samples.itertuples()}
    assert got == {("train:0", "train", (), 0),  # LastFM quirk: all pad with len_seq=1 = empty history
                   ("train:1", "train", (0,), 1), ("train:2", "train", (0, 1), 2),
                   ("valid:0", "valid", (3, 2, 1, 0), 4), ("test:0", "test", (2, 4), 3)}
    assert ds.manifest["protocol"] == "given" and ds.manifest["dros"]["untitled_items"] == 0
    short = load_dataset(prepare_dataset(DataConfig(reader="dros", path=src, max_history=2), tmp_path / "short"))
    assert [list(h) for h in short.split("valid")["history"]] == [[1, 0]]  # the last L ids are kept


def test_dros_titles_in_bigrec_form_or_missing(tmp_path):
    src = write_dros(tmp_path / "d", names=" Zero game\t0\nOne\t1\n")
    ds = load_dataset(prepare_dataset(DataConfig(reader="dros", path=src), tmp_path / "out"))
    assert ds.items["title"].tolist() == ["Zero game", "One", "item 2", "item 3", "item 4"]
    assert ds.manifest["dros"]["untitled_items"] == 3


def test_dros_without_statis_infers_item_num_from_id2name(tmp_path):
    src = write_dros(tmp_path / "d", names="".join(f"{i}::Artist {i}\n" for i in range(5)))
    (src / "data_statis.df").unlink()
    ds = load_dataset(prepare_dataset(DataConfig(reader="dros", path=src), tmp_path / "out"))
    assert ds.n_items == 5 and ds.manifest["counts"] == {"train": 3, "valid": 1, "test": 1}


@pytest.mark.parametrize("kw,file,field", [
    ({"valid": [("[3, 2, 1, 6]", 4, 4.0)]}, "val_data.csv", "seq"),  # id above the pad
    ({"valid": [("[3, 5, 1, 5]", 2, 4.0)]}, "val_data.csv", "seq"),  # padding in the middle
    ({"valid": [("[3, 2, 1]", 3, 4.0)]}, "val_data.csv", "seq"),  # not seq_size long
    ({"test": [("[2, 4, 5, 5]", 3, 3.0)]}, "test_data.csv", "len_seq"),
    ({"test": [("[2, 4, 5, 5]", 2, 5.0)]}, "test_data.csv", "next"),  # target = pad
    ({"test": [("[2, 4, 5, 5]", 2, 2.5)]}, "test_data.csv", "next"),
    ({"names": "0::A\n9::B\n"}, "id2name.txt", "id"),
    ({"names": "0::A\n0::B\n"}, "id2name.txt", "id"),
    ({"names": "0::A\n1::  \n"}, "id2name.txt", "name"),
])
def test_dros_malformed(tmp_path, kw, file, field):
    src = write_dros(tmp_path / "d", **kw)
    with pytest.raises(DataError) as err:
        prepare_dataset(DataConfig(reader="dros", path=src), tmp_path / "out")
    assert err.value.path.endswith(file) and err.value.field == field, err.value
    assert not (tmp_path / "out").exists()


def test_dros_missing_columns(tmp_path):
    src = write_dros(tmp_path / "d")
    pd.DataFrame({"seq": ["[1, 5, 5, 5]"], "next": [1]}).to_csv(src / "test_data.csv", index=False)
    with pytest.raises(DataError, match="len_seq"):
        prepare_dataset(DataConfig(reader="dros", path=src), tmp_path / "out")


def test_dros_round_trip(tmp_path):
    ds = load_dataset(demo(tmp_path, "demo", max_history=4))
    out = export_dros(ds, tmp_path / "dros")
    assert pd.read_pickle(out / "data_statis.df").to_dict("records") == [{"seq_size": 4, "item_num": ds.n_items}]
    val = pd.read_csv(out / "val_data.csv")
    assert val["seq"].map(lambda s: len(eval(s))).eq(4).all()
    back = load_dataset(prepare_dataset(DataConfig(reader="dros", path=out, max_history=4), tmp_path / "back"))
    assert back.items[["item_id", "title"]].equals(ds.items[["item_id", "title"]])

    def content(d):
        return Counter((s, tuple(int(x) for x in h), int(t)) for s, h, t in zip(d.samples.split, d.samples.history, d.samples.target))

    assert content(back) == content(ds)
    rows = pd.read_csv(out / "sample_ids.csv")  # row r of each file <-> the sample it came from
    first_valid = rows[(rows.split == "valid") & (rows.row == 0)].sample_id.item()
    assert ds.samples.set_index("sample_id").loc[first_valid, "target"] == val.loc[0, "next"]


# ---------------------------------------------------------------- command line
def test_cli_prepare_info_export(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    runner = CliRunner()
    for command in ("prepare", "info", "export-dros", "import-bigrec"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output
    out = tmp_path / "data"
    result = runner.invoke(app, ["prepare", "--reader", "demo", "--demo-users", "30", "--split", "loo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert load_dataset(out).manifest["protocol"] == "loo"
    info = runner.invoke(app, ["info", str(out)])
    assert info.exit_code == 0 and "train" in info.output and '"pad_id"' in info.output
    assert runner.invoke(app, ["export-dros", str(out), str(tmp_path / "dros")]).exit_code == 0
    assert (tmp_path / "dros" / "val_data.csv").exists()
    bad = runner.invoke(app, ["prepare", "--reader", "movielens", "--path", str(tmp_path / "none"), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "does not exist" in bad.output
