"""benchmarks/student_teacher.py: the control teacher made from trained students ranks the train
samples as `recommend` serves them (history masked), its distances and target distances follow
the ensemble's scores, it is measured like a student, and it passes the artifact contract."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.artifacts import load_teacher_artifacts
from student.config import LossConfig, ModelConfig, StudentConfig, TrainConfig
from student.recommend import load_student, recommend
from student.trainer import train_student

SPEC = importlib.util.spec_from_file_location("student_teacher", Path(__file__).parents[1] / "benchmarks" / "student_teacher.py")
student_teacher = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(student_teacher)


@pytest.fixture(scope="module")
def checkpoints(demo_dir, tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("students")
    paths = []
    for seed, model in enumerate(("sasrec", "gru4rec")):
        cfg = StudentConfig(model=model, arch=ModelConfig(dim=16), loss=LossConfig(dro_alpha=0.5),
                            train=TrainConfig(epochs=2, seed=seed))
        train_student(demo_dir, cfg, out / model)
        paths.append(out / model / "best.pt")
    return paths


def test_one_checkpoint_ranks_like_the_served_student(demo_dir, demo_dataset, demo_teacher_dir, checkpoints, tmp_path):
    out = student_teacher.write_student_teacher(demo_dir, checkpoints[:1], demo_teacher_dir, tmp_path / "t", top_n=12)
    art = load_teacher_artifacts(out, demo_dataset)
    train = demo_dataset.split("train")
    assert art.coverage == 1.0 and art.rankings.top_n == 12
    items, dists, target_d, has = art.rankings.align(train["sample_id"].to_numpy(), 12)
    served, scores = recommend(load_student(checkpoints[0]), train["history"].tolist(), k=12)
    # same lists (log-softmax keeps the order), same gaps to the best (log-softmax only shifts each row)
    same = (items == served).all(axis=1)
    assert same.mean() > 0.99  # float ties may swap neighbours
    np.testing.assert_allclose(dists[same], (scores[:, :1] - scores)[same], atol=1e-4)
    assert (dists[:, 0] == 0).all() and (np.diff(dists, axis=1) >= -1e-6).all()
    assert not any(set(row) & set(h) for row, h in zip(items, train["history"]))  # history masked
    np.testing.assert_array_equal(art.embeddings, load_teacher_artifacts(demo_teacher_dir, demo_dataset).embeddings)
    # target distance: best masked score minus the target's score, by hand for a few rows
    model = load_student(checkpoints[0])
    for row in range(5):
        hist = [int(i) for i in train["history"].iloc[row]]
        full = model.scores(*_padded(hist, demo_dataset)).detach()[0]
        masked = full.clone()
        masked[hist] = float("-inf")
        expected = max(float(masked.max() - full[int(train["target"].iloc[row])]), 0.0)
        assert target_d[row] == pytest.approx(expected, abs=1e-4)
    metrics = art.manifest["metrics"]
    assert set(metrics) == {"valid", "test"} and metrics["test"]["n"] == len(demo_dataset.split("test"))
    assert 0 < metrics["valid"]["NDCG@20"] <= metrics["valid"]["HR@20"] <= 1


def test_ensemble_averages_log_softmax(demo_dataset, checkpoints):
    model = student_teacher.load_ensemble(checkpoints, demo_dataset)
    hist, lengths = _padded([3, 17, 42], demo_dataset)
    expected = sum(load_student(p).scores(hist, lengths).log_softmax(-1) for p in checkpoints) / len(checkpoints)
    torch.testing.assert_close(model.scores(hist, lengths), expected)


def test_checkpoint_of_other_data_is_refused(tiny_dir, checkpoints):
    from pipeline.dataset import load_dataset
    with pytest.raises(ValueError, match="was trained on dataset version"):
        student_teacher.load_ensemble(checkpoints, load_dataset(tiny_dir))


def _padded(history: list[int], dataset) -> tuple[torch.Tensor, torch.Tensor]:
    from student.data import pad_histories
    return pad_histories([history], dataset.max_history, dataset.pad_id)
