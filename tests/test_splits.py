"""Split protocols on hand-computed cases (METHOD §1)."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.dataset import make_sample_id
from pipeline.errors import DataError
from pipeline.splits import Sequences, sample_ids, split_samples


def rows(df):
    """(user, position, split, history, target) tuples sorted by user and position."""
    df = df.sort_values(["user_id", "position"])
    return [(u, int(p), s, [int(x) for x in h], int(t))
            for u, p, s, h, t in zip(df.user_id, df.position, df.split, df.history, df.target)]


def test_sequences_sort_by_order_and_keep_ties_in_input_order():
    seq = Sequences.from_arrays(["b", "a", "b", "a", "a"], [10, 20, 11, 21, 22], order=[2, 5, 1, 5, 3])
    assert seq.user_ids.tolist() == ["a", "b"]
    assert seq.offsets.tolist() == [0, 3, 5]
    # user a: order 3 (22), then the tie at 5 in input order (20, 21); user b: 11, 10
    assert seq.items.tolist() == [22, 20, 21, 11, 10]
    assert seq.positions.tolist() == [0, 1, 2, 0, 1]


def test_leave_one_out_hand_case():
    # user a: 1 2 3 4 5 ; user b: 7 8 ; user c: 9 (single item -> no sample)
    seq = Sequences.from_arrays(list("aaaaabbc"), [1, 2, 3, 4, 5, 7, 8, 9], order=[0, 1, 2, 3, 4, 0, 1, 0])
    got = rows(split_samples(seq, "loo", max_history=2))
    assert got == [
        ("a", 1, "train", [1], 2),
        ("a", 2, "train", [1, 2], 3),
        ("a", 3, "valid", [2, 3], 4),  # history truncated to the last L=2 items
        ("a", 4, "test", [3, 4], 5),
        ("b", 1, "test", [7], 8),  # b's second-to-last item would have an empty history
    ]


def test_time_split_bigrec_windows_and_80_10_10_cut():
    # L=2. user a has 5 items -> targets at positions 2,3,4; user b has 2 items -> position 1;
    # user c has 3 items -> positions 2. Timestamps decide the global order.
    users = list("aaaaabbccc")
    items = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    ts = [0, 1, 50, 60, 90, 0, 10, 0, 5, 70]
    seq = Sequences.from_arrays(users, items, order=ts, timestamps=ts)
    df = split_samples(seq, "time", max_history=2)
    order = df.sort_values("timestamp", kind="stable")
    # 5 samples sorted by target time: b@10, a@50, a@60, c@70, a@90 -> int(5*.8)=4 train, int(5*.9)=4 -> 0 valid, 1 test
    assert order[["user_id", "target", "split"]].values.tolist() == [
        ["b", 7, "train"], ["a", 3, "train"], ["a", 4, "train"], ["c", 10, "train"], ["a", 5, "test"]]
    assert rows(df)[0] == ("a", 2, "train", [1, 2], 3)
    assert rows(df)[2] == ("a", 4, "test", [3, 4], 5)


def test_time_split_twenty_samples_gives_16_2_2_and_ties_are_deterministic():
    # 20 two-item users, all targets at the same time: ties broken by user id, then position
    users = np.repeat([f"u{i:02d}" for i in range(20)], 2)
    ts = np.zeros(40, dtype=np.int64)
    seq = Sequences.from_arrays(users, np.arange(40), order=ts, timestamps=ts)
    df = split_samples(seq, "time", max_history=10).sort_values("user_id")
    assert df["split"].tolist() == ["train"] * 16 + ["valid"] * 2 + ["test"] * 2
    shuffled = np.random.default_rng(0).permutation(40)
    again = split_samples(Sequences.from_arrays(users[shuffled], np.arange(40)[shuffled], order=ts, timestamps=ts),
                          "time", max_history=10)
    assert dict(zip(again.sample_id, again.split)) == dict(zip(df.sample_id, df.split))


def test_short_user_gives_one_sample_its_last_item():
    seq = Sequences.from_arrays(["a"] * 4, [1, 2, 3, 4], order=[1, 2, 3, 4], timestamps=[1, 2, 3, 4])
    got = rows(split_samples(seq, "time", max_history=10))
    # n=4 <= L: only range(min(10, 3), 4) = [3]; one sample: int(1*0.8) = int(1*0.9) = 0 -> test
    assert got == [("a", 3, "test", [1, 2, 3], 4)]


def test_given_split_keeps_labels_and_uses_full_preceding_history():
    # user a: train 1 2 3 | valid 4 | test 5 6 ; user b: valid 7 8 (no train part)
    labels = [0, 0, 0, 1, 2, 2, 1, 1]
    seq = Sequences.from_arrays(list("aaaaaabb"), [1, 2, 3, 4, 5, 6, 7, 8], order=[0, 1, 2, 3, 4, 5, 0, 1], labels=labels)
    got = rows(split_samples(seq, "given", max_history=3))
    assert got == [
        ("a", 1, "train", [1], 2),
        ("a", 2, "train", [1, 2], 3),
        ("a", 3, "valid", [1, 2, 3], 4),
        ("a", 4, "test", [2, 3, 4], 5),
        ("a", 5, "test", [3, 4, 5], 6),
        ("b", 1, "valid", [7], 8),
    ]


def test_given_split_going_back_in_time_is_an_error():
    seq = Sequences.from_arrays(["a"] * 3, [1, 2, 3], order=[0, 1, 2], labels=[0, 2, 1])
    with pytest.raises(DataError, match="split"):
        split_samples(seq, "given", max_history=3)


def test_time_split_needs_timestamps():
    seq = Sequences.from_arrays(["a"] * 3, [1, 2, 3], order=[0, 1, 2])
    with pytest.raises(DataError, match="timestamp"):
        split_samples(seq, "time", max_history=3)


def test_sample_ids_are_make_sample_id_and_depend_on_user_and_position_only():
    users, positions = ["a", "a", "b", "user 7"], [1, 2, 1, 30]
    assert sample_ids(users, positions).tolist() == [make_sample_id(u, p) for u, p in zip(users, positions)]
    seq1 = Sequences.from_arrays(["a"] * 3, [1, 2, 3], order=[0, 1, 2])
    seq2 = Sequences.from_arrays(["a"] * 4 + ["z"] * 2, [1, 2, 3, 9, 5, 6], order=[0, 1, 2, 3, 0, 1])
    first = split_samples(seq1, "loo", 10).set_index("position")["sample_id"]
    second = split_samples(seq2, "loo", 10)
    second = second[second.user_id == "a"].set_index("position")["sample_id"]
    assert first.loc[[1, 2]].tolist() == second.loc[[1, 2]].tolist()  # appending items keeps old ids


def test_given_split_with_bigrec_windows_in_the_train_part():
    # L=2. user a: train 1 2 3 4 | valid 5 ; user b: train 6 7 | test 8
    labels = [0, 0, 0, 0, 1, 0, 0, 2]
    seq = Sequences.from_arrays(list("aaaaabbb"), [1, 2, 3, 4, 5, 6, 7, 8], order=[0, 1, 2, 3, 4, 0, 1, 2], labels=labels)
    got = rows(split_samples(seq, "given", max_history=2, train_windows=True))
    assert got == [
        ("a", 2, "train", [1, 2], 3),  # t=4 train items: range(min(2, 3), 4) = positions 2, 3
        ("a", 3, "train", [2, 3], 4),
        ("a", 4, "valid", [3, 4], 5),
        ("b", 1, "train", [6], 7),  # t=2: range(min(2, 1), 2) = position 1
        ("b", 2, "test", [6, 7], 8),
    ]
