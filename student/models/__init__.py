"""Student registry: `build_model(config, n_items, ...)` -> a `SequentialRecommender`.

    >>> from student.config import StudentConfig
    >>> model = build_model(StudentConfig(model="caser"), n_items=50)
    >>> type(model).__name__
    'Caser'
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch
from torch import Tensor

from student.config import StudentConfig
from student.models.base import Batch, SequentialRecommender
from student.models.caser import Caser
from student.models.gru4rec import GRU4Rec
from student.models.sasrec import SASRec

MODELS: dict[str, type[SequentialRecommender]] = {"gru4rec": GRU4Rec, "caser": Caser, "sasrec": SASRec}
TEACHER_KEY = "item_emb.teacher"
BAKED_KEY = "item_emb.input_table"


def build_model(
    config: StudentConfig,
    n_items: int,
    teacher_embeddings: Optional[Tensor] = None,
    item_popularity: Optional[Tensor] = None,
) -> SequentialRecommender:
    """A fresh student. `teacher_embeddings` [n_items, d] (any d) is needed when
    `config.distill.enabled` and `config.distill.embedding.enabled`; `item_popularity` [n_items]
    are train-target counts for the DRO propensity."""
    if config.model not in MODELS:
        raise ValueError(f"unknown model {config.model!r}; choose from {sorted(MODELS)}")
    return MODELS[config.model](n_items, config, teacher_embeddings, item_popularity)


def model_from_state_dict(config: StudentConfig, n_items: int, state_dict: Mapping[str, Tensor]) -> SequentialRecommender:
    """Rebuild a saved student without the teacher artifacts: the (standardised) teacher table,
    the propensity and the confidence tau are buffers inside the state dict. A baked (exported)
    state holds the folded input table instead, and comes back baked."""
    teacher, baked = state_dict.get(TEACHER_KEY), BAKED_KEY in state_dict
    placeholder = None if teacher is None and not baked else torch.zeros(n_items, 1 if baked else teacher.shape[1])
    model = build_model(config, n_items, placeholder, torch.zeros(n_items))  # buffers come from the state
    if baked:
        model.bake()
    elif teacher is not None:
        model.item_emb.teacher = torch.empty_like(teacher)  # keep the saved dtype
    model.load_state_dict(state_dict)
    return model


__all__ = ["Batch", "SequentialRecommender", "MODELS", "build_model", "model_from_state_dict", "GRU4Rec", "Caser", "SASRec"]
