"""Typed configs for the student stage (they become Prefect UI forms).

Defaults follow METHOD.md §3-4 and the DLLM2Rec paper.

    >>> cfg = StudentConfig(model="sasrec", distill=DistillConfig(enabled=True))
    >>> cfg.distill.gamma_position, cfg.train.batch_size
    (0.3, 256)
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ModelConfig(BaseModel):
    """Architecture of the sequential student."""

    dim: int = Field(64, ge=1, description="Item embedding / hidden size of the student.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout rate inside the model.")
    sasrec_blocks: int = Field(1, ge=1, description="SASRec: number of self-attention blocks.")
    sasrec_heads: int = Field(1, ge=1, description="SASRec: attention heads per block.")
    caser_filters: int = Field(16, ge=1, description="Caser: horizontal filters per height (heights 2, 3, 4).")
    caser_vertical: int = Field(1, ge=1, description="Caser: number of vertical filters.")
    max_len: int = Field(
        50, ge=1, description="Longest history the model accepts (SASRec positions, Caser vertical filters); at least the dataset's L."
    )


class EmbeddingDistillConfig(BaseModel):
    """Collaborative embedding distillation (METHOD §4.2): e_i = b_i + w_ed * g(z_i)."""

    enabled: bool = Field(True, description="Add the projected teacher item embedding to the student's ID embedding.")
    weight: float = Field(0.3, ge=0, description="w_ed: weight of the projected teacher embedding.")
    projector: Literal["linear", "mlp"] = Field("linear", description="g: linear map or a 2-layer MLP from the teacher width to `dim`.")
    tie_output: bool = Field(False, description="Also use e_i (not only b_i) to score items at the output.")


class DistillConfig(BaseModel):
    """Importance-aware ranking distillation (METHOD §4.1)."""

    enabled: bool = Field(False, description="Use the teacher artifacts at all (ranking + embedding distillation).")
    k: int = Field(10, ge=1, description="K: how many of the teacher's top items are distilled per sample.")
    lambda_d: float = Field(0.7, ge=0, description="lambda_d: weight of the ranking-distillation loss.")
    gamma_position: float = Field(0.3, ge=0, description="gamma_p: weight of the position importance w^p.")
    gamma_confidence: float = Field(0.5, ge=0, description="gamma_c: weight of the confidence importance w^c.")
    gamma_consistency: float = Field(0.1, ge=0, description="gamma_o: weight of the consistency importance w^o.")
    beta_position: float = Field(1.0, gt=0, description="beta_p: temperature of w^p = exp(-k / beta_p).")
    confidence: Literal["target", "candidate"] = Field(
        "target", description="'target' (paper): exp(-d(s, target)/tau) per sample; 'candidate' (reference code): softmax(-d(s, c_k)/tau) over k."
    )
    tau: float | None = Field(None, gt=0, description="Confidence temperature; None = median of the teacher distances used.")
    kd_dro: bool = Field(False, description="Also apply the DRO term to the teacher's candidates (reference-code option).")
    embedding: EmbeddingDistillConfig = Field(default_factory=EmbeddingDistillConfig, description="Collaborative embedding distillation.")


class LossConfig(BaseModel):
    """Base recommendation loss: BCE with sampled negatives, plus the optional DRO term."""

    negatives: int = Field(1, ge=1, description="Sampled negatives per sample (never history or target items).")
    dro_alpha: float = Field(0.0, ge=0, description="alpha: weight of the DRO term (0 = off; 0.5 for 'DROS').")
    dro_beta: float = Field(1.0, gt=0, description="beta: DRO radius.")


class TrainConfig(BaseModel):
    """Optimisation, model selection and checkpointing."""

    epochs: int = Field(100, ge=1, description="Maximum number of epochs.")
    batch_size: int = Field(256, ge=1, description="Training batch size.")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay.")
    patience: int = Field(10, ge=1, description="Early stopping: epochs without a better validation NDCG@20.")
    seed: int = Field(0, description="Seed for initialisation, shuffling and negative sampling.")
    eval_batch_size: int = Field(1024, ge=1, description="Batch size of full-ranking evaluation.")
    mask_history: bool = Field(
        True, description="Exclude the history items (not the target) from the ranking at evaluation, as the server "
        "does (recommend(exclude_history=True)), so that early stopping and the served pick measure what is served. "
        "False = the paper's protocol (benchmarks/results.py uses it for the tables of docs/results.md).")
    device: str = Field("auto", description="'auto' (CUDA when available), 'cpu' or 'cuda'.")
    amp: bool = Field(True, description="Mixed precision on CUDA (ignored on CPU).")
    num_threads: int | None = Field(None, ge=1, description="torch threads on CPU (None = torch default).")
    compile: Literal["off", "default", "reduce-overhead"] = Field(
        "off", description="torch.compile the training loss: 'default' fuses its elementwise chains (Inductor); "
        "'reduce-overhead' also replays each step as a CUDA graph (on a GPU the step is bound by kernel launches). "
        "Costs ~30 s of compilation per run; GRU4Rec's GRU stays uncompiled (a graph break).")


class StudentConfig(BaseModel):
    """Everything one student run needs besides its inputs."""

    model: Literal["gru4rec", "caser", "sasrec"] = Field("sasrec", description="Student architecture.")
    arch: ModelConfig = Field(default_factory=ModelConfig, description="Architecture settings.")
    loss: LossConfig = Field(default_factory=LossConfig, description="Base loss settings.")
    distill: DistillConfig = Field(default_factory=DistillConfig, description="DLLM2Rec distillation settings.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training settings.")
