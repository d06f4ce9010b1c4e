"""Self-contained student checkpoints, written atomically.

`best.pt` holds what serving needs: the config, `n_items`, the dataset's `max_len`, the
teacher width (the teacher embeddings travel inside the model's state dict as a buffer)
and the weights. `last.pt` adds what resuming needs: optimizer, grad scaler, every RNG
state and the run's bookkeeping (epoch, best metric, patience counter, history).

    >>> save_checkpoint(out / "best.pt", payload)      # doctest: +SKIP
    >>> model, ckpt = load_student(out / "best.pt")    # doctest: +SKIP
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.errors import DataError
from pipeline.io import atomic_path
from student.config import StudentConfig

FORMAT = "dllm2rec-student/1"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """`torch.save` to a temp file, then rename: a crash never leaves a torn checkpoint."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise DataError(path, "checkpoint", "does not exist")
    # weights_only=False: the payload holds RNG states and plain dicts written by us.
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DataError(path, "format", f"is not a {FORMAT} checkpoint")
    return ckpt


def model_payload(model: nn.Module, config: StudentConfig, n_items: int, max_len: int,
                  teacher_dim: int | None, dataset_hash: str) -> dict[str, Any]:
    """Everything `load_student` needs to rebuild the model without the dataset or teacher files."""
    return {
        "config": config.model_dump(mode="json"),
        "n_items": int(n_items),
        "max_len": int(max_len),
        "teacher_dim": teacher_dim,
        "dataset_hash": dataset_hash,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    state = {"generator": generator.get_state(), "torch": torch.get_rng_state(),
             "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
