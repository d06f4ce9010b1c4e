"""Every reader on small hand-made files, well-formed and malformed.

A malformed input must raise a `DataError` naming the file and the field, and leave no
output behind (`prepare_dataset` validates before it writes).
"""
from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.dataset import load_dataset
from pipeline.errors import DataError
from pipeline.prepare import DataConfig, prepare_dataset


def prepare(tmp_path: Path, **kw) -> tuple[Path, object]:
    out = tmp_path / "out"
    return out, load_dataset(prepare_dataset(DataConfig(**kw), out))


def assert_fails(tmp_path: Path, file: str, field: str, **kw) -> DataError:
    """Preparing must raise a DataError naming `file` and `field`, and write nothing."""
    out = tmp_path / "out"
    with pytest.raises(DataError) as err:
        prepare_dataset(DataConfig(**kw), out)
    assert file in err.value.path, err.value
    assert err.value.field == field, err.value
    assert not out.exists() or not any(out.iterdir())
    return err.value


def by_user(ds) -> dict:
    """{(user, split): [(history titles, target title)]} for readable assertions."""
    titles = ds.items["title"].tolist()
    out: dict = {}
    for row in ds.samples.sort_values(["user_id", "timestamp", "sample_id"]).itertuples():
        out.setdefault((row.user_id, row.split), []).append(([titles[i] for i in row.history], titles[row.target]))
    return out


# ---------------------------------------------------------------- generic interactions
def write_interactions(folder: Path, rows: str, items: str, suffix: str = ".csv") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "interactions.csv").write_text(rows)
    (folder / "items.csv").write_text(items)
    if suffix == ".parquet":
        for name in ("interactions", "items"):
            pd.read_csv(folder / f"{name}.csv", dtype=str).to_parquet(folder / f"{name}.parquet")
            (folder / f"{name}.csv").unlink()


ROWS = "user,item,timestamp\nu1,a,10\nu1,c,30\nu1,b,20\nu2,a,5\nu2,c,6\nu2,b,7\n"
ITEMS = "item,title\na,Alpha &amp; Co\nb,  Beta \nc,Gamma\nd,Delta\n"


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_interactions_reader(tmp_path, suffix):
    write_interactions(tmp_path / "src", ROWS, ITEMS, suffix)
    _, ds = prepare(tmp_path, reader="interactions", path=tmp_path / "src", split="loo")
    # unused item d is not in the catalogue; ids by sorted source id; titles unescaped and stripped
    assert ds.items[["item_id", "title", "source_id"]].values.tolist() == [
        [0, "Alpha & Co", "a"], [1, "Beta", "b"], [2, "Gamma", "c"]]
    assert by_user(ds) == {
        ("u1", "valid"): [(["Alpha & Co"], "Beta")],  # sorted by time: a(10) b(20) c(30)
        ("u1", "test"): [(["Alpha & Co", "Beta"], "Gamma")],
        ("u2", "valid"): [(["Alpha & Co"], "Gamma")],
        ("u2", "test"): [(["Alpha & Co", "Gamma"], "Beta")],
    }
    assert ds.manifest["protocol"] == "loo" and ds.manifest["reader"] == "interactions"


def test_interactions_with_order_column_default_to_leave_one_out(tmp_path):
    write_interactions(tmp_path / "src", "user_id,item_id,position\nu1,a,2\nu1,b,1\nu1,c,3\n", ITEMS)
    _, ds = prepare(tmp_path, reader="interactions", path=tmp_path / "src" / "interactions.csv")
    assert ds.manifest["protocol"] == "loo"
    assert by_user(ds)[("u1", "test")] == [(["Beta", "Alpha & Co"], "Gamma")]


def test_interactions_with_dates(tmp_path):
    src = tmp_path / "src"
    write_interactions(src, ROWS, ITEMS)
    when = pd.to_datetime(["2020-01-01 00:00:10", "2020-01-01 00:00:30", "2020-01-01 00:00:20"] * 2)
    pd.read_csv(src / "interactions.csv").assign(timestamp=when).to_parquet(src / "events.parquet")
    _, ds = prepare(tmp_path, reader="interactions", path=src / "events.parquet", items_path=src / "items.csv")
    assert ds.manifest["protocol"] == "time"
    assert ds.samples["timestamp"].tolist() == [1577836830] * 2  # each user's last item, in seconds (not ns)


def test_interactions_with_given_split_column(tmp_path):
    rows = "user,item,timestamp,split\nu1,a,1,train\nu1,b,2,train\nu1,c,3,test\n"
    write_interactions(tmp_path / "src", rows, ITEMS)
    _, ds = prepare(tmp_path, reader="interactions", path=tmp_path / "src")
    assert ds.manifest["protocol"] == "given"
    assert ds.manifest["counts"] == {"train": 1, "valid": 0, "test": 1}


@pytest.mark.parametrize("rows,items,file,field", [
    ("person,item,timestamp\nu1,a,1\nu1,b,2\n", ITEMS, "interactions.csv", "user"),  # missing column
    ("user,item\nu1,a\nu1,b\n", ITEMS, "interactions.csv", "timestamp"),  # neither time nor order
    ("user,item,timestamp\nu1,a,1\nu1,zz,2\n", ITEMS, "interactions.csv", "item"),  # unknown item id
    ("user,item,timestamp\nu1,a,1\nu1,b,yesterday-ish\n", ITEMS, "interactions.csv", "timestamp"),
    ("user,item,timestamp\nu1,a,1\n,b,2\n", ITEMS, "interactions.csv", "user"),  # empty user
    (ROWS, "item,name\na,A\na,B\nb,C\nc,D\n", "items.csv", "item"),  # duplicate item ids
    (ROWS, "item,label\na,A\n", "items.csv", "title"),  # no title column
    ("user,item,timestamp,split\nu1,a,1,train\nu1,b,2,later\n", ITEMS, "interactions.csv", "split"),
])
def test_interactions_malformed(tmp_path, rows, items, file, field):
    write_interactions(tmp_path / "src", rows, items)
    assert_fails(tmp_path, file, field, reader="interactions", path=tmp_path / "src")


def test_untitled_items_are_dropped_and_logged_or_rejected(tmp_path, caplog):
    items = "item,title\na,Alpha\nb,\nc,title_17\nd,Delta\n"
    rows = "user,item,timestamp\nu1,a,1\nu1,b,2\nu1,d,3\nu1,c,4\nu2,a,1\nu2,d,2\n"
    write_interactions(tmp_path / "src", rows, items)
    with caplog.at_level(logging.INFO, logger="pipeline.prepare"):
        _, ds = prepare(tmp_path, reader="interactions", path=tmp_path / "src", split="loo")
    assert ds.items["title"].tolist() == ["Alpha", "Delta"]
    assert "dropping 2 of 4 items" in caplog.text and "dropping 2 of 6 interactions" in caplog.text
    assert by_user(ds)[("u1", "test")] == [(["Alpha"], "Delta")]  # b and c removed from the sequence
    err = assert_fails(tmp_path / "strict", "items.csv", "title", reader="interactions", path=tmp_path / "src",
                       untitled="error")
    assert err.rows == [1, 2]
    _, kept = prepare(tmp_path / "keep", reader="interactions", path=tmp_path / "src", split="loo", untitled="keep")
    assert kept.items["title"].tolist() == ["Alpha", "item b", "title_17", "Delta"]


# ---------------------------------------------------------------- Amazon
def write_amazon(folder: Path, reviews: list, meta: list, gz: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    opener, suffix = (gzip.open, ".json.gz") if gz else (open, ".json")
    for name, lines in (("Games_5", reviews), ("meta_Games", meta)):
        with opener(folder / f"{name}{suffix}", "wt", encoding="utf-8") as fh:
            fh.write("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")


REVIEWS = [
    {"reviewerID": "U1", "asin": "A1", "unixReviewTime": 100, "overall": 5.0},
    {"reviewerID": "U1", "asin": "A2", "unixReviewTime": 200},
    "{'reviewerID': 'U1', 'asin': 'A3', 'unixReviewTime': 300}",  # python-literal line (2014 dumps)
    {"reviewerID": "U1", "asin": "A4", "unixReviewTime": 400},
    {"reviewerID": "U1", "asin": "A4", "unixReviewTime": 400},  # exact duplicate: dropped
    {"reviewerID": "U2", "asin": "A2", "unixReviewTime": 150},
    {"reviewerID": "U2", "asin": "A1", "unixReviewTime": 250},
]
META = [
    {"asin": "A1", "title": "Space Game &amp; Friends"},
    {"asin": "A2", "title": "Racer"},
    "{'asin': 'A3', 'title': ''}",  # empty title: dropped
    {"asin": "A2", "title": "Racer (duplicate meta row)"},
    {"asin": "A9", "title": "Never reviewed"},
]  # A4 has no meta row: untitled, dropped


@pytest.mark.parametrize("gz", [False, True])
def test_amazon_reader(tmp_path, gz):
    write_amazon(tmp_path / "src", REVIEWS, META, gz)
    _, ds = prepare(tmp_path, reader="amazon", path=tmp_path / "src", split="loo")
    assert ds.items["title"].tolist() == ["Space Game & Friends", "Racer"]
    assert by_user(ds) == {("U1", "test"): [(["Space Game & Friends"], "Racer")],
                           ("U2", "test"): [(["Racer"], "Space Game & Friends")]}


def test_amazon_time_split_uses_review_times(tmp_path):
    write_amazon(tmp_path / "src", REVIEWS, META)
    _, ds = prepare(tmp_path, reader="amazon", path=tmp_path / "src" / "Games_5.json",
                    items_path=tmp_path / "src" / "meta_Games.json")
    assert ds.manifest["protocol"] == "time"
    assert sorted(ds.samples["timestamp"].tolist()) == [200, 250]


@pytest.mark.parametrize("reviews,field", [
    ([{"asin": "A1", "unixReviewTime": 1}], "reviewerID"),
    ([{"reviewerID": "U1", "asin": "A1", "unixReviewTime": "soon"}], "unixReviewTime"),
    (["{not json, not python"], "line"),
])
def test_amazon_malformed(tmp_path, reviews, field):
    write_amazon(tmp_path / "src", reviews, META)
    err = assert_fails(tmp_path, "Games_5.json", field, reader="amazon", path=tmp_path / "src")
    assert err.rows == [0]


# ---------------------------------------------------------------- MovieLens
def write_ml100k(folder: Path, data: str, items: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text(data)
    (folder / "u.item").write_bytes(items.encode("latin-1"))


UDATA = "1\t1\t5\t100\n1\t2\t3\t50\n1\t3\t4\t200\n2\t2\t1\t10\n2\t1\t2\t20\n"
UITEM = "1|Café Society (1999)|01-Jan-1999||http://x|0|1\n2|Toy Story (1995)|01-Jan-1995||http://y|1|0\n" \
        "3|unknown|||http://z|0|0\n"


def test_movielens_100k(tmp_path):
    write_ml100k(tmp_path / "ml", UDATA, UITEM)
    _, ds = prepare(tmp_path, reader="movielens", path=tmp_path / "ml", split="loo")
    assert ds.items["title"].tolist() == ["Café Society (1999)", "Toy Story (1995)"]  # latin-1; "unknown" dropped
    assert by_user(ds) == {("1", "test"): [(["Toy Story (1995)"], "Café Society (1999)")],
                           ("2", "test"): [(["Toy Story (1995)"], "Café Society (1999)")]}


def test_movielens_1m_format(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::10::5::978300760\n1::20::3::978300761\n1::30::3::978300762\n")
    (folder / "movies.dat").write_bytes("10::GoldenEye (1995)::Action\n20::Amélie (2001)::Comedy\n"
                                        "30::Heat (1995)::Crime\n".encode("latin-1"))
    _, ds = prepare(tmp_path, reader="movielens", path=folder, split="time", max_history=1)
    assert ds.items["title"].tolist() == ["GoldenEye (1995)", "Amélie (2001)", "Heat (1995)"]
    # L=1: targets at range(min(1, 2), 3) = positions 1, 2; two samples: int(2*.8) = 1 train, the rest test
    assert by_user(ds) == {("1", "train"): [(["GoldenEye (1995)"], "Amélie (2001)")],
                           ("1", "test"): [(["Amélie (2001)"], "Heat (1995)")]}


@pytest.mark.parametrize("data,items,file,field", [
    ("1\t1\t5\n", UITEM, "u.data", "timestamp"),  # a line with 3 fields
    ("1\t9\t5\t100\n1\t1\t5\t101\n", UITEM, "u.data", "item"),  # item not in u.item
    ("x\t1\t5\t100\n", UITEM, "u.data", "user"),
    (UDATA, "1|A (1990)|\n1|B (1991)|\n2|C|\n3|D|\n", "u.item", "item"),  # duplicate ids
])
def test_movielens_malformed(tmp_path, data, items, file, field):
    write_ml100k(tmp_path / "ml", data, items)
    assert_fails(tmp_path, file, field, reader="movielens", path=tmp_path / "ml")


# ---------------------------------------------------------------- pre-split lists
def write_dealrec(folder: Path, train: dict, valid: dict, test: dict, titles: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, d in (("training_dict", train), ("validation_dict", valid), ("testing_dict", test)):
        np.save(folder / f"{name}.npy", d, allow_pickle=True)
    np.save(folder / "title_maps.npy", {"recid2title": titles, "seqid2title": {}}, allow_pickle=True)


def test_presplit_dealrec_keeps_the_split(tmp_path):
    titles = {0: "Zero", 1: "One", 2: "Two", 3: "title_3", 4: "Four"}
    write_dealrec(tmp_path / "g", {0: [0, 1, 3, 2], 1: [4]}, {0: [4], 1: [0]}, {0: [], 1: [2]}, titles)
    _, ds = prepare(tmp_path, reader="presplit", path=tmp_path / "g")
    assert ds.manifest["protocol"] == "given"
    assert ds.items["title"].tolist() == ["Zero", "One", "Two", "Four"]  # placeholder title_3 dropped
    assert by_user(ds) == {
        ("0", "train"): [(["Zero"], "One"), (["Zero", "One"], "Two")],
        ("0", "valid"): [(["Zero", "One", "Two"], "Four")],
        ("1", "valid"): [(["Four"], "Zero")],
        ("1", "test"): [(["Four", "Zero"], "Two")],
    }


def test_presplit_dealrec_item_without_title_entry_is_an_error(tmp_path):
    write_dealrec(tmp_path / "g", {0: [0, 1, 7]}, {}, {}, {0: "Zero", 1: "One"})
    err = assert_fails(tmp_path, "training_dict.npy", "item", reader="presplit", path=tmp_path / "g")
    assert err.rows == [2]


def test_presplit_sequences_layout_uses_leave_one_out(tmp_path):
    folder = tmp_path / "toys"
    folder.mkdir()
    (folder / "transrec_sequential_data.txt").write_text("1 0 1 2 3\n2 3 2\n")
    np.save(folder / "transrec_title_maps.npy", {"id2title": {"0": "A", "1": "B", "2": "C", "3": "D &quot;E&quot;"}})
    _, ds = prepare(tmp_path, reader="presplit", path=folder)
    assert ds.manifest["protocol"] == "loo"
    assert ds.manifest["counts"] == {"train": 1, "valid": 1, "test": 2}
    assert by_user(ds)[("2", "test")] == [(['D "E"'], "C")]


@pytest.mark.parametrize("maps,field", [({"other": {}}, "recid2title"), ({"id2title": {"0": "A", " 0": "B"}}, "id2title")])
def test_presplit_bad_title_maps(tmp_path, maps, field):
    folder = tmp_path / "toys"
    folder.mkdir()
    (folder / "transrec_sequential_data.txt").write_text("1 0 0\n")
    np.save(folder / "transrec_title_maps.npy", maps)
    assert_fails(tmp_path, "title_maps.npy", field, reader="presplit", path=folder)


def test_missing_source_path_is_a_data_error(tmp_path):
    assert_fails(tmp_path, "nowhere", "path", reader="movielens", path=tmp_path / "nowhere")
    assert_fails(tmp_path, "config", "path", reader="dros")


# ---------------------------------------------------------------- the real datasets (not committed)
SHARED = Path(__file__).parents[2] / "shared" / "data"

# (folder, reader, protocol, n_items, train, valid, test, interactions in the source). The README gives
# the source sizes (games-dealrec: 17,332 items with 19 placeholders, 342,329 interactions; toys-p5: 11,924
# items with 59 placeholders, 167,597 interactions; ml-100k: 1,682 items, one titled "unknown", 100,000
# ratings; lastfm: 50,800/122/122 rows; dllm2rec-game-partial: 14,980 valid and test rows, item_num
# 17,408); the sample counts follow from them and the split rules (re-derived in test_real_samples_add_up).
REAL = [
    ("games-dealrec", "presplit", "given", 17313, 250343, 22594, 19725, 342329),
    ("toys-p5", "presplit", "loo", 11865, 108553, 19395, 19403, 167597),
    ("ml-100k", "movielens", "time", 1681, 72448, 9056, 9057, 100000),
    ("lastfm-llara", "dros", "given", 4606, 50800, 122, 122, None),
    ("dllm2rec-game-partial", "dros", "given", 17408, 0, 14980, 14980, None),
]


@pytest.mark.shared_data
@pytest.mark.parametrize("folder,reader,protocol,n_items,train,valid,test,n_inter", REAL, ids=[r[0] for r in REAL])
def test_real_dataset_counts(tmp_path, folder, reader, protocol, n_items, train, valid, test, n_inter):
    if not (SHARED / folder).is_dir():
        pytest.skip(f"{SHARED / folder} is not here")
    _, ds = prepare(tmp_path, reader=reader, path=SHARED / folder)
    assert ds.manifest["protocol"] == protocol
    assert ds.n_items == n_items
    assert ds.manifest["counts"] == {"train": train, "valid": valid, "test": test}
    assert ds.samples["history"].map(len).max() == 10
    if n_inter is not None:
        assert ds.manifest["n_interactions"] + ds.manifest["dropped_interactions"] == n_inter
        if protocol != "time":  # every item but each user's first is a target exactly once
            assert ds.manifest["n_interactions"] - len(ds.samples) == users_with_items(ds)


def users_with_items(ds) -> int:
    """Users left with at least one item: from the samples, plus users whose only item has no sample."""
    return int(ds.manifest["n_users"] + ds.manifest.get("single_item_users", 0))


@pytest.mark.shared_data
def test_games_dealrec_in_dros_window_form(tmp_path):
    """The benchmark's configuration (issue: about 88k train windows of L=10, 17,332 items)."""
    if not (SHARED / "games-dealrec").is_dir():
        pytest.skip("games-dealrec is not here")
    _, ds = prepare(tmp_path, reader="presplit", path=SHARED / "games-dealrec", untitled="keep", given_train="windows")
    assert ds.n_items == 17332
    assert ds.manifest["counts"] == {"train": 88024, "valid": 22609, "test": 19733}  # README: 22,609 / 19,733 items
