"""Student data tensors, negative sampling, and the trainer (smoke, KD signal, resume, errors)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.artifacts import TeacherRankings, load_teacher_artifacts, write_teacher_artifacts
from pipeline.dataset import load_dataset
from pipeline.errors import DataError
from student.checkpoint import load_checkpoint
from student.config import (DistillConfig, EmbeddingDistillConfig, LossConfig, ModelConfig, StudentConfig,
                            TrainConfig)
from student.data import StudentData, pad_histories, sample_negatives
from student.trainer import train_student


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_config(model: str = "sasrec", distill: bool = False, epochs: int = 1, **train) -> StudentConfig:
    return StudentConfig(model=model, arch=ModelConfig(dim=16), loss=LossConfig(dro_alpha=0.5),
                         distill=DistillConfig(enabled=distill),
                         train=TrainConfig(epochs=epochs, seed=0, **train))


# ------------------------------------------------------------------ data
def test_pad_histories_pads_at_end_and_keeps_last_items():
    hist, lengths = pad_histories([[1, 2], [], [3, 4, 5, 6]], max_len=3, pad_id=9)
    assert hist.tolist() == [[1, 2, 9], [9, 9, 9], [4, 5, 6]]
    assert lengths.tolist() == [2, 0, 3]


def test_student_data_matches_dataset_and_aligns_teacher(demo_dataset, demo_teacher_dir):
    art = load_teacher_artifacts(demo_teacher_dir, demo_dataset)
    # shuffle the teacher rows: alignment must go by sample_id, never by row order
    perm = np.random.default_rng(1).permutation(len(art.rankings))
    r = art.rankings
    art.rankings = TeacherRankings(r.sample_ids[perm], r.topk_items[perm], r.topk_distances[perm], r.target_distance[perm])
    data = StudentData.build(demo_dataset, art, k=10)
    train = demo_dataset.split("train")
    t = data.splits["train"]
    assert t.history.shape == (len(train), demo_dataset.max_history)
    for row in (0, 17, len(train) - 1):
        h = list(train["history"][row])
        assert t.history[row, : len(h)].tolist() == h and t.lengths[row] == len(h)
        assert (t.history[row, len(h):] == demo_dataset.pad_id).all()
        assert t.target[row] == train["target"][row]
        ranked = r.topk_items[r.sample_ids == train["sample_id"][row]][0, :10]
        assert data.teacher.items[row].tolist() == ranked.tolist()
    assert data.teacher.has.all() and data.teacher_coverage == 1.0
    counts = np.bincount(train["target"], minlength=demo_dataset.n_items)
    assert data.popularity.tolist() == counts.astype(float).tolist()


@pytest.mark.parametrize("n_items", [8, 12, 1000])
def test_negatives_never_hit_history_or_target(n_items):
    g = torch.Generator().manual_seed(0)
    n, L = 500, 6
    hist = torch.stack([torch.randperm(n_items, generator=g)[:L] for _ in range(n)])
    lengths = torch.randint(0, L + 1, (n,), generator=g)
    hist[torch.arange(L)[None, :] >= lengths[:, None]] = n_items  # pads
    target = torch.randint(0, n_items, (n,), generator=g)
    neg = sample_negatives(hist, target, n_items, 7, g)
    assert neg.shape == (n, 7) and neg.min() >= 0 and neg.max() < n_items
    excluded = torch.cat([hist, target[:, None]], 1)
    assert not (neg[:, :, None] == excluded[:, None, :]).any()


def test_negatives_fail_when_nothing_is_left():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="whole catalogue"):
        sample_negatives(torch.tensor([[0, 1]]), torch.tensor([2]), 3, 1, g)


def test_epoch_covers_every_sample_once_and_is_seeded(demo_dataset):
    data = StudentData.build(demo_dataset)

    def rows(seed):  # each row as (target, history...) in the order the epoch yields them
        g = torch.Generator().manual_seed(seed)
        return torch.cat([torch.cat([b.target[:, None], b.history], 1) for b in data.epoch(100, 2, g)])

    a, b = rows(3), rows(3)
    assert torch.equal(a, b) and not torch.equal(a, rows(4))
    t = data.splits["train"]
    expected = torch.cat([t.target[:, None], t.history], 1)
    assert sorted(map(tuple, a.tolist())) == sorted(map(tuple, expected.tolist()))


# ------------------------------------------------------------------ trainer
@pytest.mark.parametrize("model", ["gru4rec", "caser", "sasrec"])
@pytest.mark.parametrize("distill", [False, True])
def test_one_epoch_smoke(model, distill, demo_dir, demo_teacher_dir, tmp_path):
    metrics = train_student(demo_dir, small_config(model, distill), tmp_path, teacher_dir=demo_teacher_dir)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test"] == metrics["test"] and saved["best_epoch"] == 1 and saved["epochs_run"] == 1
    assert set(metrics["valid"]) >= {"HR@1", "NDCG@5", "HR@10", "NDCG@20"}
    assert 0 < metrics["valid"]["HR@20"] <= 1 and np.isfinite(metrics["curve"][0]["loss"])
    assert "history masked: yes" in metrics["protocol"]  # the default: selected as the server ranks
    assert metrics["teacher"]["train_coverage"] == 1.0 and metrics["teacher"]["used_for_distillation"] == distill
    assert metrics["curve"][0]["kd"] > 0 if distill else metrics["curve"][0]["kd"] == 0
    assert 0 <= metrics["teacher_student_overlap"]["overlap"] <= 1 and metrics["teacher_student_overlap"]["k"] == 20
    assert metrics["samples_per_second"] > 0
    ranks = pd.read_parquet(tmp_path / "test_ranks.parquet")  # per-sample ranks agree with the test metrics
    assert len(ranks) == metrics["dataset"]["counts"]["test"]
    assert (ranks["rank"] <= 20).mean() == pytest.approx(metrics["test"]["HR@20"])
    assert (tmp_path / "best.pt").exists() and (tmp_path / "last.pt").exists()


def clairvoyant_teacher(dataset, out_dir):
    """A teacher that ranks each train sample's TRUE target first and the user's next item second.

    The other 8 slots are random items. (Random extra positives dilute the signal: on the demo
    distilling all K=10 of them lowers NDCG, so the test distils K=2.)
    """
    s = dataset.samples.sort_values(["user_id", "timestamp", "sample_id"]).reset_index(drop=True)
    rng = np.random.default_rng(0)
    target = s["target"].to_numpy(np.int64)
    nxt = s.groupby("user_id")["target"].shift(-1).to_numpy()
    random_other = (target + rng.integers(1, dataset.n_items, len(s))) % dataset.n_items
    second = np.where(np.isnan(nxt) | (nxt == target), random_other, np.nan_to_num(nxt)).astype(np.int64)
    items = np.column_stack([target, second, rng.integers(0, dataset.n_items, (len(s), 8))])
    train = (s["split"] == "train").to_numpy()
    dist = np.tile(np.linspace(1.0, 2.0, 10, dtype=np.float32), (int(train.sum()), 1))
    rankings = TeacherRankings(s["sample_id"].to_numpy(np.int64)[train], items[train].astype(np.int32), dist,
                               dist[:, 0].copy())
    emb = rng.standard_normal((dataset.n_items, 8)).astype(np.float32)
    return write_teacher_artifacts(out_dir, rankings, emb, dataset, {"model_id": "clairvoyant"})


def test_distilling_an_oracle_teacher_raises_valid_ndcg(demo_dir, demo_dataset, tmp_path):
    teacher = clairvoyant_teacher(demo_dataset, tmp_path / "teacher")

    def run(distill: bool) -> float:
        cfg = StudentConfig(model="sasrec", arch=ModelConfig(dim=32), loss=LossConfig(dro_alpha=0.5),
                            distill=DistillConfig(enabled=distill, k=2, embedding=EmbeddingDistillConfig(enabled=False)),
                            train=TrainConfig(epochs=3, seed=0, batch_size=64, lr=3e-3))
        out = train_student(demo_dir, cfg, tmp_path / f"kd{distill}", teacher_dir=teacher if distill else None)
        return out["valid"]["NDCG@20"]

    base, distilled = run(False), run(True)
    print(f"valid NDCG@20 without KD {base:.4f}, with oracle KD {distilled:.4f}")
    assert distilled > base + 0.005, (base, distilled)


def test_resume_after_crash_equals_uninterrupted_run(demo_dir, demo_teacher_dir, tmp_path, monkeypatch):
    cfg = small_config("sasrec", distill=True, epochs=3)
    full = train_student(demo_dir, cfg, tmp_path / "full", teacher_dir=demo_teacher_dir)

    import student.trainer as trainer

    real = trainer.train_epoch
    def crash_in_epoch_3(*args, **kwargs):
        if args[-1] == 3:
            raise KeyboardInterrupt("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_epoch", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train_student(demo_dir, cfg, tmp_path / "resumed", teacher_dir=demo_teacher_dir)
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["state"]["epoch"] == 2
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    monkeypatch.setattr(trainer, "train_epoch", real)
    resumed = train_student(demo_dir, cfg, tmp_path / "resumed", teacher_dir=demo_teacher_dir, resume=True)

    assert resumed["epochs_run"] == 3 and resumed["best_epoch"] == full["best_epoch"]
    assert [c["loss"] for c in resumed["curve"]] == [c["loss"] for c in full["curve"]]
    assert resumed["valid"] == full["valid"] and resumed["test"] == full["test"]
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "resumed" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_continues_with_more_epochs_and_refuses_other_configs(demo_dir, tmp_path):
    train_student(demo_dir, small_config("gru4rec", epochs=1), tmp_path)
    more = train_student(demo_dir, small_config("gru4rec", epochs=2), tmp_path, resume=True)
    assert more["epochs_run"] == 2 and len(more["curve"]) == 2
    with pytest.raises(ValueError, match="cannot resume"):
        train_student(demo_dir, small_config("gru4rec", epochs=3, lr=0.01), tmp_path, resume=True)


def test_early_stopping_and_selection_on_valid(demo_dir, tmp_path):
    cfg = small_config("caser", epochs=6, patience=1, lr=0.5)  # a huge lr: valid NDCG stops improving fast
    m = train_student(demo_dir, cfg, tmp_path)
    best = max(c["valid_ndcg@20"] for c in m["curve"])
    assert m["valid"]["NDCG@20"] == best
    assert m["curve"][m["best_epoch"] - 1]["valid_ndcg@20"] == best
    assert m["stopped_early"] and m["epochs_run"] == m["best_epoch"] + 1 < 6


def test_epoch_cap_before_patience_is_flagged(demo_dir, tmp_path, caplog):
    """Ending at train.epochs with patience left means valid may still be rising: say so."""
    m = train_student(demo_dir, small_config("gru4rec", epochs=1), tmp_path)
    assert m["stopped_early"] is False and m["epochs_run"] == 1
    assert "reached the epoch cap (train.epochs=1) before early stopping" in caplog.text


def test_bad_inputs(demo_dir, demo_dataset, tiny_dir, demo_teacher_dir, tmp_path):
    with pytest.raises(ValueError, match="teacher_dir"):
        train_student(demo_dir, small_config(distill=True), tmp_path / "a")
    with pytest.raises(DataError, match="dataset_hash"):  # a teacher made for another dataset
        train_student(tiny_dir, small_config(distill=True), tmp_path / "b", teacher_dir=demo_teacher_dir)
    cfg = small_config()
    cfg.arch.max_len = 3
    with pytest.raises(ValueError, match="max_len"):
        train_student(demo_dir, cfg, tmp_path / "c")


def test_partial_teacher_coverage_is_reported(demo_dir, demo_dataset, tmp_path):
    from student.synthetic import write_synthetic_teacher

    teacher = write_synthetic_teacher(demo_dataset, tmp_path / "t", dim=8, top_n=10, splits=("train",), coverage=0.5)
    m = train_student(demo_dir, small_config("gru4rec", distill=True), tmp_path / "run", teacher_dir=teacher)
    assert 0.4 < m["teacher"]["train_coverage"] < 0.6
    assert m["teacher_student_overlap"] is None  # no test rankings
    assert load_dataset(demo_dir).content_hash == m["dataset"]["hash"]
