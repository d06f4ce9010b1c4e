"""Tiny random Llama: embeddings, HF generation, the Trainer/LoRA step, the vLLM wiring, model errors."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.io import read_json
from teacher.config import FinetuneConfig, GenerationConfig, LoraSettings, ModelConfig, PromptConfig
from teacher.embed import TextEmbedder
from teacher.finetune import adapter_hash, finetune_lora, read_adapter_meta
from teacher.generate import (auto_max_new_tokens, choose_backend, max_new_tokens_for, stop_token_ids,
                              title_token_lengths)
from teacher.generate_hf import HFGenerator
from teacher.model import ModelNotFoundError, load_causal_lm, load_tokenizer, resolve_model_dir
from teacher.prompts import PromptBuilder
from tests.teacher_helpers import demo_dataset, template_corpus, tiny_llama_dir

torch.set_num_threads(1)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    ds = demo_dataset(root / "data", users=40)
    model_dir = tiny_llama_dir(root / "model", template_corpus(ds.titles))
    builder = PromptBuilder(ds.titles, PromptConfig(max_history=3), ds.max_history, ds.manifest)
    return types.SimpleNamespace(root=root, ds=ds, model_dir=model_dir, builder=builder)


def test_tokenizer_gets_pad_token_and_left_padding(env):
    tok = load_tokenizer(env.model_dir)
    assert tok.pad_token == tok.eos_token and tok.padding_side == "left"


def test_embeddings_are_last_token_final_hidden_state_and_batch_invariant(env):
    tok = load_tokenizer(env.model_dir)
    model = load_causal_lm(env.model_dir, CPU)
    emb = TextEmbedder(model, tok, CPU, batch_size=3)
    texts = ["Star", "Star Blaster 2 (PS4) and a much longer title here", "Gem Match (PC)", "Star", ""]
    out = emb(texts)
    assert out.shape == (5, model.config.hidden_size) and out.dtype == np.float32
    with torch.no_grad():
        for i in (0, 2):  # unpadded single text: hidden_states[-1] at the last token, not normalised
            ids = tok(texts[i], return_tensors="pt")
            ref = model(**ids, output_hidden_states=True).hidden_states[-1][0, -1].numpy()
            np.testing.assert_allclose(out[i], ref, rtol=1e-4, atol=1e-5)
    alone = TextEmbedder(model, tok, CPU, batch_size=1)(texts[:3])
    np.testing.assert_allclose(out[:3], alone, rtol=1e-4, atol=1e-5)  # padding does not change a text's vector
    assert np.array_equal(out[0], out[3])  # identical texts -> identical vectors
    assert np.isfinite(out[4]).all() and abs(np.linalg.norm(out[1]) - 1) > 1e-3  # empty text ok; not normalised


def test_stop_tokens_and_max_new_tokens(env):
    tok = load_tokenizer(env.model_dir)
    stops = stop_token_ids(tok)
    assert tok.eos_token_id in stops
    assert all('"' in tok.decode([i]) for i in stops if i != tok.eos_token_id)
    assert tok.convert_tokens_to_ids('"') in stops
    longest = max(len(tok(t, add_special_tokens=False)["input_ids"]) for t in env.ds.titles)
    assert auto_max_new_tokens(tok, env.ds.titles) == longest + 2
    assert auto_max_new_tokens(tok, env.ds.titles, cap=3) == 3


class _CharTokenizer:
    """One token per character: lengths are plain to compute by hand."""

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [list(t) for t in texts]}


def test_max_new_tokens_reports_what_it_cuts():
    titles = ["ab", "abcd", "abcdefgh", "abcd", "a" * 20]  # distinct lengths 2, 4, 8, 20
    assert title_token_lengths(_CharTokenizer(), titles).tolist() == [2, 4, 8, 20]
    max_new, summary = max_new_tokens_for(_CharTokenizer(), titles, None)
    assert max_new == 22 and summary["titles_cut"] == 0 and summary["title_tokens_max"] == 20
    max_new, summary = max_new_tokens_for(_CharTokenizer(), titles, 8)  # 6 tokens fit: the 8 and 20 are cut
    assert max_new == 8 and summary["titles_cut"] == 2 and summary["titles"] == 4
    assert summary["title_tokens_p50"] == 6  # numpy's linear percentile of 2, 4, 8, 20
    assert max_new_tokens_for(_CharTokenizer(), ["a" * 100], None)[0] == 64  # the automatic cap


def test_backend_choice():
    assert choose_backend(GenerationConfig(backend="auto"), CPU) == "hf"
    assert choose_backend(GenerationConfig(backend="hf"), torch.device("cuda")) == "hf"


@pytest.mark.parametrize("beams", [1, 3])
def test_hf_generator_batches_keep_prompt_order(env, beams):
    prompts = env.builder.prompts(env.ds.split("test").iloc[:7])
    cfg = GenerationConfig(backend="hf", num_beams=beams, batch_size=3)
    gen = HFGenerator(env.model_dir, None, cfg, CPU, torch.float32, max_new_tokens=5)
    raw = gen.generate_raw(prompts)
    assert len(raw) == 7 and all(isinstance(t, str) for t in raw)
    one_by_one = [gen.generate_raw([p])[0] for p in prompts]
    assert raw == one_by_one  # length-sorted batches are put back in prompt order
    assert gen.generate(prompts) == [t.split('"')[0].strip() for t in raw]
    gen.close()


def test_shared_prefill_gives_the_same_beams_and_runs_each_prompt_once(env):
    prompts = env.builder.prompts(env.ds.split("test").iloc[:6])  # different lengths: left padding in the batch
    tokens_seen: list[tuple[int, int]] = []

    def count(_module, args, kwargs):
        tokens_seen.append(tuple(kwargs["input_ids"].shape))

    outputs = {}
    for shared in (False, True):
        cfg = GenerationConfig(backend="hf", num_beams=3, batch_size=6, shared_prefill=shared, length_penalty=1.0)
        gen = HFGenerator(env.model_dir, None, cfg, CPU, torch.float32, max_new_tokens=8)
        hook = gen.model.register_forward_pre_hook(count, with_kwargs=True)
        tokens_seen.clear()
        outputs[shared] = gen.generate_raw(prompts)
        hook.remove()
        calls = list(tokens_seen)
        gen.close()
        longest = max(len(ids) for ids in gen.tokenizer(prompts)["input_ids"])
        if shared:  # prompt minus its last token once per prompt, then the last token once per beam
            assert calls[:2] == [(6, longest - 1), (18, 1)]
        else:       # HF alone: the whole prompt once per beam
            assert calls[0] == (18, longest)
    assert outputs[True] == outputs[False]


def test_finetune_lora_trains_saves_and_hashes(env, tmp_path):
    ds = env.ds
    cfg = FinetuneConfig(n_samples=16, n_valid=8, epochs=2, batch_size=8, lr=1e-2, patience=2)
    meta = finetune_lora(env.model_dir, env.builder, ds.split("train").iloc[:16], ds.split("valid").iloc[:8],
                         LoraSettings(), cfg, tmp_path / "adapter", tmp_path / "work", CPU, extra_meta={"tag": "x"})
    adapter = tmp_path / "adapter"
    assert (adapter / "adapter_config.json").exists() and meta["adapter_hash"] == adapter_hash(adapter)
    assert read_adapter_meta(adapter)["tag"] == "x"
    assert [e["epoch"] for e in meta["eval_losses"]] == [1.0, 2.0]
    assert meta["best_eval_loss"] == min(e["eval_loss"] for e in meta["eval_losses"])
    assert meta["n_train"] == 16 and meta["train_samples_per_second"] > 0
    assert not (tmp_path / "work" / "checkpoints").exists()
    from safetensors.torch import load_file

    weights = load_file(adapter / "adapter_model.safetensors")
    assert any("q_proj" in k for k in weights) and any("v_proj" in k for k in weights)
    assert all(v.abs().sum() > 0 for k, v in weights.items() if "lora_B" in k)  # B starts at 0: training moved it
    # the merged model differs from the base (the adapter is really applied)
    base = load_causal_lm(env.model_dir, CPU)
    gen = HFGenerator(env.model_dir, adapter, GenerationConfig(), CPU, torch.float32, 4)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(base.state_dict()[name], gen.model.state_dict()[name])


def test_finetune_lora_is_reproducible_whatever_the_process_drew_before(env, tmp_path):
    """The same seed gives the same adapter even when the process used its RNG differently before
    (in a flow, other tasks do): the demo's teacher differed between two runs until LoRA's init was seeded."""
    from safetensors.torch import load_file

    ds = env.ds
    cfg = FinetuneConfig(n_samples=8, n_valid=4, epochs=1, batch_size=4, lr=1e-2, patience=1)
    weights, hashes = [], []
    for run, draws in enumerate((0, 1000)):
        torch.rand(draws)
        meta = finetune_lora(env.model_dir, env.builder, ds.split("train").iloc[:8], ds.split("valid").iloc[:4],
                             LoraSettings(), cfg, tmp_path / f"adapter{run}", tmp_path / f"work{run}", CPU)
        weights.append(load_file(tmp_path / f"adapter{run}" / "adapter_model.safetensors"))
        hashes.append(meta["adapter_hash"])
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert hashes[0] == hashes[1]
    # peft stores target_modules from a set (order varies per process): the saved config is sorted
    assert read_json(tmp_path / "adapter0" / "adapter_config.json")["target_modules"] == ["q_proj", "v_proj"]


class FakeLLM:
    """Records what VllmGenerator passes to vLLM; answers like vLLM would."""

    calls: list = []

    def __init__(self, **kwargs):
        FakeLLM.calls.append(("init", kwargs))

    def generate(self, inputs, params, lora_request=None, use_tqdm=False):
        FakeLLM.calls.append(("generate", inputs, params, lora_request))
        out = types.SimpleNamespace(text='Star Blaster"')
        return [types.SimpleNamespace(outputs=[out]) for _ in inputs]

    def beam_search(self, inputs, params, lora_request=None, use_tqdm=False):
        FakeLLM.calls.append(("beam", inputs, params, lora_request))
        tok = self.tokenizer
        new = tok('Gem Match"', add_special_tokens=False)["input_ids"]
        return [types.SimpleNamespace(sequences=[types.SimpleNamespace(tokens=i["prompt_token_ids"] + new)]) for i in inputs]


def fake_vllm(monkeypatch):
    """A stand-in `vllm` package (the real one is exercised in the slow tests)."""
    mod = types.ModuleType("vllm")
    mod.LLM = FakeLLM
    mod.SamplingParams = lambda **kw: ("sampling", kw)
    sp = types.ModuleType("vllm.sampling_params")
    sp.BeamSearchParams = lambda **kw: ("beam", kw)
    lora = types.ModuleType("vllm.lora.request")
    lora.LoRARequest = lambda name, id_, path: ("lora", name, id_, path)
    for name, m in {"vllm": mod, "vllm.sampling_params": sp, "vllm.lora": types.ModuleType("vllm.lora"),
                    "vllm.lora.request": lora}.items():
        monkeypatch.setitem(sys.modules, name, m)


def test_vllm_generator_wiring(env, tmp_path, monkeypatch):
    fake_vllm(monkeypatch)
    from teacher.generate_vllm import VllmGenerator

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 16}')
    FakeLLM.calls = []
    prompts = env.builder.prompts(env.ds.split("test").iloc[:3])
    gen = VllmGenerator(env.model_dir, adapter, GenerationConfig(num_beams=1, max_model_len=512), CPU, torch.float32, 7)
    init = FakeLLM.calls[0][1]
    assert init["enable_lora"] and init["max_lora_rank"] == 16 and init["enforce_eager"]
    assert init["dtype"] == "float32" and init["kv_cache_memory_bytes"] == 1 << 30 and init["max_model_len"] == 512
    assert gen.generate(prompts) == ["Star Blaster"] * 3
    _, inputs, params, lora = FakeLLM.calls[1]
    tok = load_tokenizer(env.model_dir)
    assert [i["prompt_token_ids"] for i in inputs] == tok(prompts)["input_ids"]  # same tokens as the HF backend
    assert params[1]["temperature"] == 0.0 and params[1]["max_tokens"] == 7
    assert params[1]["stop"] == ['"'] and params[1]["include_stop_str_in_output"]
    assert lora == ("lora", "teacher", 1, str(adapter))
    gen.config = GenerationConfig(num_beams=4)
    gen.llm.tokenizer = tok
    assert gen.generate(prompts) == ["Gem Match"] * 3  # prompt tokens stripped from the beam
    assert FakeLLM.calls[2][2][1]["beam_width"] == 4


def test_missing_models_raise_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelNotFoundError, match="never downloads"):
        resolve_model_dir(ModelConfig(name="someone/not-cached-model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model_dir(ModelConfig(name=str(tmp_path / "empty")))
    monkeypatch.setenv("DLLM2REC_SMOLLM2_GGUF", str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model_dir(ModelConfig(name="smollm2", cache_dir=tmp_path / "cache"))


def test_model_folder_is_used_as_is(env):
    assert resolve_model_dir(ModelConfig(name=str(env.model_dir))) == Path(env.model_dir)
