"""Flow `prepare-data`: a source -> an immutable canonical dataset version (+ a refresh event).

Walkthrough:
1. `build_dataset` runs the data layer (`pipeline.prepare.prepare_dataset`) into a staging folder;
2. `publish_version` moves it to `<root>/<dataset>/data/<hash12>/` (a version that already
   exists is kept, the staging copy dropped), so versions are never overwritten;
3. when the content hash differs from the one recorded in `LATEST.json`, the flow emits a
   `dataset.refreshed` event (resource id = the dataset name; payload = content hash,
   previous hash, split counts, n_items and the version path). The `redistill` deployment
   has a trigger on that event.

The watcher deployment runs this flow on an interval, so a refreshed source file becomes an
event without anyone watching.

    >>> prepare_data(DataConfig(reader="demo"), RunSettings(root="runs", dataset="demo"))  # doctest: +SKIP
    'runs/demo/data/4f0c1e9a2b3d'
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.events import emit_event

from flows.common import IO_RETRIES, logger
from flows.layout import Layout, RunSettings, slug
from pipeline.dataset import MANIFEST_FILE
from pipeline.io import read_json
from pipeline.prepare import DataConfig, prepare_dataset

REFRESH_EVENT = "dataset.refreshed"


@task(name="build-dataset", **IO_RETRIES)
def build_dataset(data: DataConfig, staging: str) -> str:
    """Read the source, split, and write a canonical dataset into `staging`."""
    shutil.rmtree(staging, ignore_errors=True)  # a retried attempt starts clean
    return str(prepare_dataset(data, staging))


@task(name="publish-version", **IO_RETRIES)
def publish_version(staging: str, root: str, dataset: str) -> dict:
    """Move the staged dataset to its content-addressed version folder; return its record."""
    manifest = read_json(Path(staging) / MANIFEST_FILE)
    target = Layout(root, dataset).version_dir(manifest["content_hash"])
    if (target / MANIFEST_FILE).exists():
        shutil.rmtree(staging)
    else:
        shutil.rmtree(target, ignore_errors=True)  # a half-moved earlier attempt
        os.replace(staging, target)
    return {
        "dataset": dataset,
        "content_hash": manifest["content_hash"],
        "path": str(target),
        "counts": manifest.get("counts", {}),
        "n_items": manifest.get("n_items"),
        "reader": manifest.get("reader"),
    }


def refresh_event(record: dict, previous_hash: str | None) -> dict:
    """The `dataset.refreshed` event's fields (a function so tests and docs can see its shape)."""
    return {
        "event": REFRESH_EVENT,
        "resource": {"prefect.resource.id": record["dataset"], "prefect.resource.name": record["dataset"]},
        "payload": {
            "content_hash": record["content_hash"],
            "previous_hash": previous_hash,
            "counts": record["counts"],
            "n_items": record["n_items"],
            "path": record["path"],
        },
    }


@flow(name="prepare-data", log_prints=True)
def prepare_data(
    data: DataConfig = DataConfig(),
    settings: RunSettings = RunSettings(),
    emit_refresh: bool = True,
) -> str:
    """Prepare `data` as a new version of `settings.dataset`; emit `dataset.refreshed` if it changed.

    Returns the version folder. `emit_refresh=False` is what the pipeline uses when it
    prepares and consumes the data itself (so its own refresh does not trigger a second run).
    """
    log = logger()
    layout = Layout.of(settings)
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    staging = layout.data_dir / f".staging-{uuid.uuid4().hex[:8]}"
    record = publish_version(build_dataset(data, str(staging)), settings.root, settings.dataset)
    previous = layout.read_latest()
    previous_hash = previous["content_hash"] if previous else None
    changed = previous_hash != record["content_hash"]
    layout.write_latest({**record, "previous_hash": previous_hash if changed else (previous or {}).get("previous_hash")})
    log.info("dataset %s: version %s (%s), counts %s", settings.dataset, record["content_hash"][:12],
             "changed" if changed else "unchanged", record["counts"])
    create_table_artifact(
        [{"split": s, "samples": n} for s, n in record["counts"].items()] + [{"split": "items", "samples": record["n_items"]}],
        key=f"dataset-{slug(settings.dataset)}",
        description=f"Dataset {settings.dataset} version {record['content_hash'][:12]}",
    )
    if changed and emit_refresh:
        emit_event(**refresh_event(record, previous_hash))
        log.info("emitted %s for %s (previous %s)", REFRESH_EVENT, settings.dataset, (previous_hash or "none")[:12])
    return record["path"]
