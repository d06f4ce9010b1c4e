"""CUDA paths of the student (AMP training with distillation, GPU evaluation, resume on GPU).

Skipped without a GPU (CI has none); run on the device machine by scripts/gpu_student_check.sh.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipeline.dataset import load_dataset
from student.config import DistillConfig, StudentConfig, TrainConfig
from student.data import StudentData
from student.evaluate import evaluate
from student.recommend import load_student
from student.trainer import train_student

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


def gpu_config(model: str, **train) -> StudentConfig:
    return StudentConfig(model=model, distill=DistillConfig(enabled=True),
                         train=TrainConfig(**{"device": "cuda", "amp": True, "epochs": 2, "patience": 2, "batch_size": 128, **train}))


@pytest.mark.parametrize("model", ["gru4rec", "caser", "sasrec"])
def test_amp_distillation_trains_on_gpu(demo_dir, demo_teacher_dir, tmp_path, model):
    metrics = train_student(demo_dir, gpu_config(model), tmp_path, teacher_dir=demo_teacher_dir)
    assert metrics["config"]["train"]["device"] == "cuda" and metrics["epochs_run"] == 2
    assert all(np.isfinite(v) for v in metrics["test"].values() if isinstance(v, float))
    assert metrics["test"]["NDCG@20"] > 0.0  # 2 epochs on the demo already rank some targets in the top 20


def test_gpu_evaluation_matches_cpu(demo_dir, demo_teacher_dir, tmp_path):
    train_student(demo_dir, gpu_config("sasrec", epochs=1), tmp_path, teacher_dir=demo_teacher_dir)
    data = StudentData.build(load_dataset(demo_dir), None)
    test = data.splits["test"]
    cpu = evaluate(load_student(tmp_path / "best.pt", "cpu"), test)
    gpu = evaluate(load_student(tmp_path / "best.pt", "cuda"), test)
    for key, value in cpu.metrics.items():
        assert gpu.metrics[key] == pytest.approx(value, abs=2e-3), key


def test_resume_on_gpu(demo_dir, demo_teacher_dir, tmp_path):
    train_student(demo_dir, gpu_config("gru4rec", epochs=1), tmp_path, teacher_dir=demo_teacher_dir)
    metrics = train_student(demo_dir, gpu_config("gru4rec", epochs=2), tmp_path, teacher_dir=demo_teacher_dir, resume=True)
    assert metrics["epochs_run"] == 2
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs_run"] == 2


def test_cuda_graph_training_matches_eager(demo_dir, demo_teacher_dir, tmp_path):
    """train.compile='reduce-overhead' (issue 2's lever for the launch-bound GPU step): the same
    first-epoch loss and valid NDCG@20 as eager, dropout off so both draw no random numbers."""
    from student.config import LossConfig, ModelConfig

    runs = {}
    for mode in ("off", "reduce-overhead"):
        cfg = gpu_config("sasrec", epochs=1, patience=1, compile=mode).model_copy(
            update={"arch": ModelConfig(dropout=0.0), "loss": LossConfig(dro_alpha=0.5)})
        runs[mode] = train_student(demo_dir, cfg, tmp_path / mode, teacher_dir=demo_teacher_dir)
    eager, graphed = runs["off"], runs["reduce-overhead"]
    assert graphed["curve"][0]["loss"] == pytest.approx(eager["curve"][0]["loss"], rel=1e-2)  # bf16 autocast
    assert graphed["valid"]["NDCG@20"] == pytest.approx(eager["valid"]["NDCG@20"], abs=0.02)
