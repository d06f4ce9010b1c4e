"""Flows against a temporary Prefect server (`prefect_test_harness`), on small demo data.

One harness for the module (starting it costs ~10-20 s on 2 cores). The teacher here is the
student stage's synthetic teacher (contract-valid artifacts) or, in the slow test, a tiny
random Llama run through the real teacher code.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("prefect")
torch = pytest.importorskip("torch")

from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey  # noqa: E402
from prefect.events.filters import EventFilter, EventNameFilter  # noqa: E402
from prefect.events.worker import EventsWorker  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from flows.distill_flow import distill, student_label  # noqa: E402
from flows.layout import Layout, RunSettings  # noqa: E402
from flows.prepare_flow import REFRESH_EVENT, prepare_data  # noqa: E402
from pipeline.dataset import load_dataset  # noqa: E402
from pipeline.prepare import DataConfig  # noqa: E402
from student.config import DistillConfig, StudentConfig, TrainConfig  # noqa: E402
from student.recommend import load_student, recommend  # noqa: E402
from student.synthetic import write_synthetic_teacher  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def harness(tmp_path_factory):
    """A temporary server, and result storage (the cache records) in a temporary folder."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    torch.set_num_threads(1)
    with prefect_test_harness(server_startup_timeout=120), \
            temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: tmp_path_factory.mktemp("results")}):
        yield


def refresh_events(dataset: str, expect: int, timeout: float = 30) -> list:
    """`dataset.refreshed` events for `dataset` once the server has stored `expect` of them."""
    EventsWorker.drain_all()
    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            page = client.read_events(EventFilter(event=EventNameFilter(name=[REFRESH_EVENT])), limit=50)
        events = [e for e in page.events if e.resource.id == dataset]
        if len(events) >= expect or time.monotonic() > deadline:
            return sorted(events, key=lambda e: e.occurred)
        time.sleep(0.5)


def latest_artifact(key: str):
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return max(found, key=lambda a: a.created) if found else None


def test_prepare_data_versions_and_emits_refresh_only_on_change(tmp_path):
    settings = RunSettings(root=str(tmp_path), dataset="tiny")
    first = prepare_data(DataConfig(reader="demo", demo_users=40), settings)
    again = prepare_data(DataConfig(reader="demo", demo_users=40), settings)
    other = prepare_data(DataConfig(reader="demo", demo_users=40, seed=1), settings)
    assert first == again != other
    assert Path(first).parent == Path(other).parent == Layout.of(settings).data_dir
    assert load_dataset(other).content_hash.startswith(Path(other).name)
    assert not list(Layout.of(settings).data_dir.glob(".staging-*"))

    events = refresh_events("tiny", expect=2)
    assert len(events) == 2, "an unchanged dataset must not emit"
    h1, h2 = load_dataset(first).content_hash, load_dataset(other).content_hash
    assert [e.payload["content_hash"] for e in events] == [h1, h2]
    assert events[0].payload["previous_hash"] is None and events[1].payload["previous_hash"] == h1
    assert events[1].payload["path"] == other
    assert events[1].payload["counts"] == load_dataset(other).manifest["counts"]
    assert Layout.of(settings).read_latest()["content_hash"] == h2

    quiet = prepare_data(DataConfig(reader="demo", demo_users=40, seed=2), settings, emit_refresh=False)
    assert Layout.of(settings).read_latest()["path"] == quiet
    assert len(refresh_events("tiny", expect=3, timeout=3)) == 2


def test_distill_maps_students_caches_and_publishes_report(tmp_path):
    settings = RunSettings(root=str(tmp_path), dataset="tiny")
    data_dir = prepare_data(DataConfig(reader="demo", demo_users=60), settings, emit_refresh=False)
    teacher_dir = tmp_path / "teacher"
    write_synthetic_teacher(load_dataset(data_dir), teacher_dir, dim=16, oracle=True)
    kd = StudentConfig(model="gru4rec", distill=DistillConfig(enabled=True), train=TrainConfig(epochs=2, batch_size=64))

    paths = distill(data_dir, [kd], teacher_dir=str(teacher_dir), settings=settings)
    assert len(paths) == 2, "a no-distillation twin is added"
    metrics = [json.loads(Path(p).read_text()) for p in paths]
    assert [m["config"]["distill"]["enabled"] for m in metrics] == [True, False]
    assert all(m["teacher_student_overlap"] is not None for m in metrics)
    assert Path(paths[0]).parent.name == student_label(kd)

    # seeded and reproducible although the two students train at the same time
    again = distill(data_dir, [kd], teacher_dir=str(teacher_dir), settings=settings.model_copy(update={"root": str(tmp_path / "again")}), publish=False)
    def learned(m: dict) -> list:  # the curve without its timings
        return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in m["curve"]]
    assert [learned(json.loads(Path(p).read_text())) for p in again] == [learned(m) for m in metrics]

    mtimes = [Path(p).stat().st_mtime_ns for p in paths]
    assert distill(data_dir, [kd], teacher_dir=str(teacher_dir), settings=settings) == paths
    assert [Path(p).stat().st_mtime_ns for p in paths] == mtimes, "second run must come from the cache"

    reports = sorted((tmp_path / "tiny" / "reports").glob("*/report.md"))
    assert len(reports) == 2 and (reports[-1].parent / "report.png").stat().st_size > 1000
    text = reports[-1].read_text()
    assert "with vs without distillation" in text and student_label(kd) in text
    served = reports[-1].parent / "served.pt"  # the student picked on valid, exported for serving
    picked = json.loads((reports[-1].parent / "summary.json").read_text())["served"]
    assert f"Serving checkpoint: `{served.resolve()}`" in text and picked["label"] in {Path(p).parent.name for p in paths}
    assert served.resolve().as_uri() in latest_artifact("serving-checkpoint-tiny").data
    histories = [[1, 2, 3], [4]]
    assert (recommend(load_student(served), histories)[0].tolist()
            == recommend(load_student(Path(picked["from"]) / "best.pt", bake=False), histories)[0].tolist())
    table = latest_artifact("student-metrics-tiny")
    assert table is not None and table.type == "table"
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert {r["student"] for r in rows} == {Path(p).parent.name for p in paths}
    assert latest_artifact("report-tiny").type == "markdown"
    link = latest_artifact("training-plot-tiny")  # a link artifact (stored as markdown)
    assert (reports[-1].parent / "report.png").resolve().as_uri() in link.data
    image = latest_artifact("training-plot-image-tiny")
    assert image.type == "image" and image.data.startswith("data:image/png;base64,")

    # Outputs deleted from disk: the cache must not hand back a dead path.
    Path(paths[0]).unlink()
    assert distill(data_dir, [kd], teacher_dir=str(teacher_dir), settings=settings) == paths
    assert Path(paths[0]).exists()


def test_distill_refuses_distillation_without_teacher(tmp_path):
    settings = RunSettings(root=str(tmp_path), dataset="tiny")
    data_dir = prepare_data(DataConfig(reader="demo", demo_users=30), settings, emit_refresh=False)
    with pytest.raises(ValueError, match="no teacher_dir"):
        distill(data_dir, [StudentConfig(distill=DistillConfig(enabled=True))], settings=settings)
    assert not np.any([p.name == "students" for p in (tmp_path / "tiny").iterdir()])


def extend_dataset(ds, out: Path, n_new: int, seed: int = 0) -> Path:
    """A refreshed version that only *adds* samples: new users replaying existing histories."""
    import pandas as pd

    from pipeline.dataset import make_sample_id, write_dataset

    rng = np.random.default_rng(seed)
    picked = ds.samples.iloc[rng.choice(len(ds.samples), n_new, replace=False)]
    users = [f"new-{i}" for i in range(n_new)]
    new = picked.assign(user_id=users, sample_id=[make_sample_id(u, 99) for u in users],
                        split=["train", "test"] * (n_new // 2) + ["train"] * (n_new % 2))
    m = ds.manifest
    return write_dataset(out, ds.items, pd.concat([ds.samples, new], ignore_index=True), max_history=m["max_history"],
                         reader=m["reader"], sources=m["sources"], protocol=m["protocol"])


@pytest.mark.slow
def test_pipeline_tiny_teacher_cache_then_incremental(tmp_path):
    """Real teacher code on a tiny random Llama: full run, cached rerun, incremental run on added samples."""
    from flows.pipeline_flow import pipeline
    from pipeline.artifacts import load_teacher_artifacts
    from tests.teacher_helpers import template_corpus, tiny_config, tiny_llama_dir

    data = DataConfig(reader="demo", demo_users=60, demo_franchises_per_genre=2)
    settings = RunSettings(root=str(tmp_path / "runs"), dataset="demo")
    probe = load_dataset(prepare_dataset_dir(data, tmp_path / "probe"))
    teacher = tiny_config(tiny_llama_dir(tmp_path / "tiny", template_corpus(probe.titles)))
    students = [StudentConfig(model="sasrec", distill=DistillConfig(enabled=True), train=TrainConfig(epochs=2, batch_size=64))]

    first = json.loads((Path(pipeline(data, teacher, students, settings)).parent / "summary.json").read_text())
    assert first["teacher"]["status"] == "full"
    assert {s["distill"] for s in first["students"]} == {True, False}
    assert set(first["teacher"]["metrics"]) == {"valid", "test"}
    teacher_dir = first["teacher"]["path"]
    for name in ("teacher_rankings.parquet", "item_embeddings.parquet", "teacher_manifest.json"):
        assert (Path(teacher_dir) / name).exists()

    second = json.loads((Path(pipeline(data, teacher, students, settings)).parent / "summary.json").read_text())
    assert second["teacher"]["status"] == "cached" and second["teacher"]["path"] == teacher_dir
    assert [s["test"] for s in second["students"]] == [s["test"] for s in first["students"]]

    v1 = load_dataset(first["dataset"]["path"])
    v2_dir = extend_dataset(v1, tmp_path / "v2", n_new=6)
    third = json.loads((Path(pipeline(data, teacher, students, settings, dataset_dir=str(v2_dir))).parent
                        / "summary.json").read_text())
    assert third["teacher"]["status"] == "incremental" and third["teacher"]["new_samples"] == 6
    delta_timings = third["teacher"]["manifest"]["incremental"]["timings"]
    assert delta_timings["generate"]["samples"] == 6, "the teacher generated for the new samples only"
    v2 = load_dataset(v2_dir)
    merged = load_teacher_artifacts(third["teacher"]["path"], v2)
    base = load_teacher_artifacts(teacher_dir, v1)
    new_ids = np.setdiff1d(v2.samples["sample_id"], v1.samples["sample_id"])
    assert np.isin(new_ids, merged.rankings.sample_ids).all()
    assert len(merged.rankings) == len(base.rankings) + len(new_ids)
    items, *_ = merged.rankings.align(base.rankings.sample_ids)
    assert np.array_equal(items, base.rankings.topk_items), "old rankings are kept as they were"
    np.testing.assert_allclose(merged.embeddings, base.embeddings)
    assert not (Path(third["teacher"]["path"]) / ".delta").exists()


def prepare_dataset_dir(data: DataConfig, out: Path) -> Path:
    from pipeline.prepare import prepare_dataset

    return prepare_dataset(data, out)
