"""Loading a saved student and serving top-k on CPU (and GPU when present)."""
from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch

from pipeline.errors import DataError
from student.config import DistillConfig, EmbeddingDistillConfig, ModelConfig, StudentConfig, TrainConfig
from student.recommend import export_student, load_student, recommend
from student.trainer import train_student


@pytest.fixture(scope="module")
def trained(demo_dir, demo_teacher_dir, tmp_path_factory):
    """A 1-epoch SASRec with embedding distillation (tied output): the checkpoint must carry the teacher table."""
    torch.set_num_threads(1)
    cfg = StudentConfig(model="sasrec", arch=ModelConfig(dim=16),
                        distill=DistillConfig(enabled=True, embedding=EmbeddingDistillConfig(tie_output=True)),
                        train=TrainConfig(epochs=1, seed=0))
    out = tmp_path_factory.mktemp("rec")
    train_student(demo_dir, cfg, out, teacher_dir=demo_teacher_dir)
    return out


def test_checkpoint_is_self_contained(trained, demo_dataset):
    from student.data import StudentData
    from student.evaluate import evaluate

    model = load_student(trained / "best.pt")
    assert not model.training and model.n_items == demo_dataset.n_items
    assert model.checkpoint_info["teacher_dim"] == 24 and model.checkpoint_info["max_len"] == demo_dataset.max_history
    # reloaded weights give back the recorded validation metrics exactly (no teacher folder involved)
    ckpt = torch.load(trained / "best.pt", weights_only=False)
    data = StudentData.build(demo_dataset)
    assert evaluate(model, data.splits["valid"]).metrics == ckpt["valid"]


def test_students_are_selected_as_they_are_served(trained):
    """Early stopping and the served pick rank valid as the server ranks: without the history. Unmasked,
    a distilled student can win valid by no longer ranking history items first (docs/results.md)."""
    from student.evaluate import evaluate

    served = inspect.signature(recommend).parameters["exclude_history"].default
    assert TrainConfig().mask_history is served is True
    assert inspect.signature(evaluate).parameters["mask_history"].default is True
    assert "history masked: yes" in json.loads((trained / "metrics.json").read_text())["protocol"]


def test_recommend_excludes_history(trained):
    model = load_student(trained / "best.pt")
    histories = [[1, 2, 3], [], list(range(40)), [5]]
    items, scores = recommend(model, histories, k=15)
    assert items.shape == (4, 15) and scores.shape == (4, 15) and items.dtype == np.int64
    for h, row, s in zip(histories, items, scores):
        assert not set(h) & set(row.tolist())  # the WHOLE history, also beyond the last L items
        assert len(set(row.tolist())) == 15 and np.all(np.diff(s) <= 0) and np.isfinite(s).all()
    # without exclusion the scores are the model's raw top-k
    raw_items, raw_scores = recommend(model, histories, k=15, exclude_history=False)
    full = model.scores(*_pad(histories[:1], model)).detach()
    assert np.allclose(raw_scores[0], full.topk(15).values.numpy(), atol=1e-6)
    assert items.tolist() == recommend(model, histories, k=15, batch_size=1)[0].tolist()
    model.train()  # a model in training mode is scored in eval mode (no dropout) and handed back as it was
    assert recommend(model, histories, k=15)[0].tolist() == items.tolist() and model.training


def _pad(histories, model):
    from student.data import pad_histories

    return pad_histories(histories, model.checkpoint_info["max_len"], model.n_items)


def test_serving_is_baked_and_export_drops_the_teacher_table(trained, demo_dataset, tmp_path):
    from student.data import StudentData
    from student.evaluate import evaluate

    as_trained, baked = load_student(trained / "best.pt", bake=False), load_student(trained / "best.pt")
    assert "item_emb.teacher" in as_trained.state_dict() and baked.item_emb.baked
    histories = [[1, 2, 3], [], list(range(40)), [5]]
    (i0, s0), (i1, s1) = recommend(as_trained, histories, k=15), recommend(baked, histories, k=15)
    assert i0.tolist() == i1.tolist() and np.allclose(s0, s1, atol=1e-5)

    served = export_student(trained / "best.pt", tmp_path / "served.pt")
    # (smaller only when the teacher is wider than 2 x dim, as every LLM is; this one is 24-d)
    ckpt = torch.load(served, weights_only=False)
    assert ckpt["baked"] and "item_emb.teacher" not in ckpt["model"] and ckpt["teacher_dim"] == 24
    exported = load_student(served)
    assert exported.item_emb.baked and recommend(exported, histories, k=15)[0].tolist() == i1.tolist()
    # the exported model still reproduces the recorded validation metrics
    valid = StudentData.build(demo_dataset).splits["valid"]
    assert evaluate(exported, valid).metrics == torch.load(trained / "best.pt", weights_only=False)["valid"]


def test_export_cli(trained, tmp_path):
    from typer.testing import CliRunner

    from student.cli import app

    out = CliRunner().invoke(app, ["export", "--checkpoint", str(trained / "best.pt"), "--out", str(tmp_path / "s.pt")])
    assert out.exit_code == 0, out.output
    assert "MB" in out.output and load_student(tmp_path / "s.pt").item_emb.baked
    missing = CliRunner().invoke(app, ["export", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "t.pt")])
    assert missing.exit_code != 0 and "does not exist" in missing.output and not (tmp_path / "t.pt").exists()


def test_recommend_rejects_unknown_items(trained):
    model = load_student(trained / "best.pt")
    with pytest.raises(ValueError, match="out of range"):
        recommend(model, [[0, model.n_items]])


def test_load_rejects_other_files(tmp_path):
    bad = tmp_path / "x.pt"
    torch.save({"weights": 1}, bad)
    with pytest.raises(DataError, match="format"):
        load_student(bad)
    with pytest.raises(DataError, match="does not exist"):
        load_student(tmp_path / "missing.pt")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_recommend_on_gpu_matches_cpu(trained):
    cpu = recommend(load_student(trained / "best.pt"), [[1, 2, 3], [7]], k=10)
    gpu = recommend(load_student(trained / "best.pt", device="cuda"), [[1, 2, 3], [7]], k=10)
    assert cpu[0].tolist() == gpu[0].tolist() and np.allclose(cpu[1], gpu[1], atol=1e-4)
