"""`train.compile`: the compiled training loss is the eager one, in one graph (no host sync).

On a GPU the student step is bound by kernel launches (docs/benchmarks.md); 'reduce-overhead'
replays it as a CUDA graph, which only works when the loss traces as one graph with no
`.item()` / `if tensor:` inside. These tests hold that on CPU (Inductor's C++ backend); the
CUDA-graph run itself is in tests/test_gpu.py. Each compilation takes ~10-30 s on 2 cores.
"""
from __future__ import annotations

import shutil

import pytest
import torch

from student.config import TrainConfig
from student.trainer import train_student
from tests.test_models import batch, make

torch.set_num_threads(1)
# Inductor's CPU backend compiles C++: without a compiler the feature (a GPU option) cannot run here
pytestmark = pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")), reason="needs a C++ compiler")


def eager_and_compiled(model, b):
    """Loss terms and parameter gradients, eager then compiled."""
    results = []
    for fn in (model.loss, torch.compile(model.loss, dynamic=False)):
        model.zero_grad(set_to_none=True)
        out = fn(b)
        out["loss"].backward()
        results.append(({k: v.detach().clone() for k, v in out.items()},
                        {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    return results


@pytest.mark.parametrize("name,tau", [("sasrec", 2.0), ("caser", None)])
def test_compiled_distillation_loss_matches_eager_in_one_graph(name, tau):
    """SASRec+DRO+KD+ED (issue 2's GPU configuration) with the train-wide temperature fixed, and
    Caser with the batch-median fallback (tau None -> `median_tau` inside the graph)."""
    torch._dynamo.reset()
    model = make(name, distill=True, dropout=0.0, alpha=0.5).train()
    if tau is not None:
        model.set_confidence_tau(tau)
    b = batch(teacher=True)
    # one graph: no graph break, no data-dependent op (fullgraph=True would accept `unique`
    # through unbacked sizes, but that still syncs with the host and rules out a CUDA graph)
    explained = torch._dynamo.explain(model.loss)(b)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    torch._dynamo.reset()
    (eager, eager_grads), (compiled, compiled_grads) = eager_and_compiled(model, b)
    assert eager["kd"] > 0 and eager["dro"] > 0  # every term is exercised
    for key, value in eager.items():
        assert torch.allclose(compiled[key], value, rtol=1e-5, atol=1e-6), key
    assert compiled_grads.keys() == eager_grads.keys()
    for n, g in eager_grads.items():  # the projector's first layer may run in bf16 (CPU_BF16): ~0.4% rounding
        assert (compiled_grads[n] - g).norm() <= 1e-2 * g.norm() + 1e-7, n


@pytest.mark.slow
def test_compiled_training_run_matches_eager(demo_dir, demo_teacher_dir, tmp_path):
    """One epoch of train_student with train.compile='default' ends near the eager run (same seed;
    dropout off so both draw the same random numbers) and writes the same checkpoint keys."""
    from student.config import DistillConfig, LossConfig, ModelConfig, StudentConfig
    torch._dynamo.reset()
    runs = {}
    for mode in ("off", "default"):
        cfg = StudentConfig(model="sasrec", arch=ModelConfig(dropout=0.0), loss=LossConfig(dro_alpha=0.5),
                            distill=DistillConfig(enabled=True),
                            train=TrainConfig(epochs=1, patience=1, device="cpu", compile=mode))
        runs[mode] = train_student(demo_dir, cfg, tmp_path / mode, teacher_dir=demo_teacher_dir)
    assert runs["default"]["curve"][0]["loss"] == pytest.approx(runs["off"]["curve"][0]["loss"], rel=1e-3)
    assert runs["default"]["valid"]["NDCG@20"] == pytest.approx(runs["off"]["valid"]["NDCG@20"], abs=5e-3)
    keys = {mode: set(torch.load(tmp_path / mode / "best.pt", weights_only=False)["model"]) for mode in runs}
    assert keys["default"] == keys["off"]
