"""Everything one teacher run shares: dataset, config, output folder layout, chosen samples.

Layout of `out_dir`:

    adapter/                    LoRA adapter (+ adapter_meta.json with its hash)
    generations.parquet         sample_id, split, generation (generate / hybrid modes)
    teacher_rankings.parquet    the contract (pipeline/artifacts.py)
    item_embeddings.parquet
    teacher_manifest.json       written last
    work/                       resumable intermediate state (shards, checkpoints, caches)

    >>> ws = Workspace.open("runs/demo/data", TeacherConfig(), "runs/demo/teacher")   # doctest: +SKIP
    >>> ws.keys[:3], ws.builder.hash                                                   # doctest: +SKIP
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.dataset import Dataset, load_dataset
from pipeline.io import read_json, write_json
from teacher.config import TeacherConfig, fingerprint
from teacher.finetune import seeded_sample
from teacher.model import resolve_device, resolve_dtype, resolve_model_dir
from teacher.prompts import PromptBuilder

log = logging.getLogger(__name__)

SPLIT_ORDER = ("train", "valid", "test")


@dataclass
class Workspace:
    dataset: Dataset
    config: TeacherConfig
    out_dir: Path
    sample_ids: np.ndarray | None = None  # rank exactly these samples (budgets and splits ignored)
    device: torch.device = field(init=False)
    dtype: torch.dtype = field(init=False)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.device = resolve_device(self.config.model.device)
        self.dtype = resolve_dtype(self.config.model.dtype, self.device)

    @classmethod
    def open(cls, dataset_dir: str | Path | Dataset, config: TeacherConfig, out_dir: str | Path,
             sample_ids: np.ndarray | None = None) -> "Workspace":
        dataset = dataset_dir if isinstance(dataset_dir, Dataset) else load_dataset(dataset_dir)
        ids = None if sample_ids is None else np.asarray(sample_ids, dtype=np.int64)
        return cls(dataset=dataset, config=config, out_dir=Path(out_dir), sample_ids=ids)

    @cached_property
    def model_dir(self) -> Path:
        return resolve_model_dir(self.config.model)

    @cached_property
    def builder(self) -> PromptBuilder:
        return PromptBuilder(self.dataset.titles, self.config.prompt, self.dataset.max_history, self.dataset.manifest)

    @property
    def adapter_dir(self) -> Path:
        return self.out_dir / "adapter"

    @property
    def work_dir(self) -> Path:
        return self.out_dir / "work"

    @property
    def generations_path(self) -> Path:
        return self.out_dir / "generations.parquet"

    @cached_property
    def samples(self) -> pd.DataFrame:
        """The samples to rank: the configured splits, each cut to its seeded budget, in split order.

        With `sample_ids` (incremental runs: only the new samples of a refreshed dataset), exactly
        those samples, in split order.
        """
        if self.sample_ids is not None:
            return self._given_samples()
        cfg, frames = self.config, []
        for i, split in enumerate(s for s in SPLIT_ORDER if s in cfg.splits):
            budget = cfg.max_samples if split == "train" else cfg.max_eval_samples
            frames.append(seeded_sample(self.dataset.split(split), budget, cfg.seed + i))
        samples = pd.concat(frames, ignore_index=True) if frames else self.dataset.samples.iloc[:0]
        if len(samples) == 0:
            raise ValueError(f"no samples to rank in splits {cfg.splits}")
        return samples

    def _given_samples(self) -> pd.DataFrame:
        all_samples = self.dataset.samples
        unknown = ~np.isin(self.sample_ids, all_samples["sample_id"].to_numpy())
        if unknown.any():
            raise ValueError(f"{int(unknown.sum())} of the given sample ids are not in the dataset, "
                             f"e.g. {self.sample_ids[unknown][:3].tolist()}")
        chosen = all_samples[all_samples["sample_id"].isin(self.sample_ids)]
        order = chosen["split"].map({s: i for i, s in enumerate(SPLIT_ORDER)}).to_numpy()
        chosen = chosen.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)
        if len(chosen) == 0:
            raise ValueError("no samples to rank: sample_ids is empty")
        return chosen

    @property
    def keys(self) -> np.ndarray:
        return self.samples["sample_id"].to_numpy(np.int64)

    def rows(self, keys: np.ndarray) -> pd.DataFrame:
        """Sample rows for `keys`, in that order."""
        index = pd.Index(self.samples["sample_id"])
        return self.samples.iloc[index.get_indexer(keys)]

    def fingerprint(self, *parts: object) -> str:
        return fingerprint(self.dataset.content_hash, self.config.model.name, *parts)

    def record_timing(self, step: str, **values: float) -> None:
        """Merge one step's timings into work/timings.json (they end up in the manifest)."""
        path = self.work_dir / "timings.json"
        timings = read_json(path) if path.exists() else {}
        timings[step] = {k: round(float(v), 3) for k, v in values.items()}
        write_json(timings, path)

    def timings(self) -> dict:
        path = self.work_dir / "timings.json"
        return read_json(path) if path.exists() else {}
