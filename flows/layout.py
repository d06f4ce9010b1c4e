"""Where every flow reads and writes: one folder per dataset under a run root.

    <root>/<dataset>/data/<hash12>/          immutable dataset versions (items, samples, manifest)
    <root>/<dataset>/data/LATEST.json        the version the watcher saw last
    <root>/<dataset>/teacher/<hash12>-<cfg12>/  teacher artifacts for (dataset version, teacher config)
    <root>/<dataset>/students/<hash12>-<teacher12>/<label>/  checkpoints + metrics.json per student
    <root>/<dataset>/reports/<stamp>/        report.md, report.png, summary.json, served.pt of one run

Dataset versions are never overwritten, so a teacher result cached by Prefect (a path)
always points at the data it was computed from, and an incremental teacher run can diff
the new version against the one its artifacts were made for.

    >>> lay = Layout(root="runs", dataset="demo")
    >>> lay.version_dir("0123456789abcdef").as_posix()
    'runs/demo/data/0123456789ab'
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from pydantic import BaseModel, Field

from pipeline.io import read_json, write_json

HASH_CHARS = 12


def config_hash(config: BaseModel | dict, *, exclude: set[str] | None = None) -> str:
    """sha256 of a config's canonical JSON: the same settings give the same hash on any machine."""
    data = config.model_dump(mode="json", exclude=exclude) if isinstance(config, BaseModel) else config
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def slug(text: str) -> str:
    """Lowercase letters, digits and dashes (what Prefect artifact keys allow)."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-") or "x"


class RunSettings(BaseModel):
    """Where a run keeps its outputs and what the dataset is called (a UI form section)."""

    root: str = Field("runs", description="Run root folder; every output lands under <root>/<dataset>/. Use an absolute path for deployments.")
    dataset: str = Field("demo", description="Dataset name: the folder under the root, the resource id of `dataset.refreshed` events and part of artifact keys.")


class Layout:
    """Path arithmetic for one dataset under one root (no I/O except the LATEST pointer)."""

    def __init__(self, root: str | Path, dataset: str):
        self.root, self.dataset = Path(root), dataset
        self.base = self.root / dataset

    @classmethod
    def of(cls, settings: RunSettings) -> "Layout":
        return cls(settings.root, settings.dataset)

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    def version_dir(self, content_hash: str) -> Path:
        return self.data_dir / content_hash[:HASH_CHARS]

    @property
    def latest_file(self) -> Path:
        return self.data_dir / "LATEST.json"

    def read_latest(self) -> dict | None:
        """The last version `prepare_data` recorded: {content_hash, path, counts, ...} or None."""
        return read_json(self.latest_file) if self.latest_file.exists() else None

    def write_latest(self, record: dict) -> None:
        write_json(record, self.latest_file)

    def teacher_dir(self, content_hash: str, teacher_hash: str) -> Path:
        return self.base / "teacher" / f"{content_hash[:HASH_CHARS]}-{teacher_hash[:HASH_CHARS]}"

    def teacher_dirs(self, teacher_hash: str) -> list[Path]:
        """Existing teacher folders for one teacher config (any dataset version), newest first."""
        found = (self.base / "teacher").glob(f"*-{teacher_hash[:HASH_CHARS]}")
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def student_dir(self, content_hash: str, teacher_key: str, label: str) -> Path:
        return self.base / "students" / f"{content_hash[:HASH_CHARS]}-{teacher_key[:HASH_CHARS]}" / label

    def report_dir(self, stamp: str) -> Path:
        return self.base / "reports" / stamp
