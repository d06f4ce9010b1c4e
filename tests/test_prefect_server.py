"""Integration: a real `prefect server start` (SQLite, free loopback port, own PREFECT_HOME),
the deployments registered by `flows.deploy`, a process worker, runs triggered through the API.

Checks: the pipeline deployment completes and writes Parquet + UI artifacts; a second run hits
the teacher cache; emitting `dataset.refreshed` starts the redistill deployment (an incremental
teacher run on the refreshed version). The same stack then feeds the UI screenshot test.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.filters import (  # noqa: E402
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    TaskRunFilter,
    TaskRunFilterName,
)
from prefect.settings import PREFECT_API_URL, temporary_settings  # noqa: E402

from flows.deploy import DeploySettings  # noqa: E402
from flows.layout import Layout  # noqa: E402
from flows.serve import LocalStack, free_port  # noqa: E402
from pipeline.dataset import load_dataset  # noqa: E402
from pipeline.prepare import DataConfig  # noqa: E402
from student.config import DistillConfig, StudentConfig, TrainConfig  # noqa: E402

RUN_TIMEOUT = 300
DATA = DataConfig(reader="demo", demo_users=60, demo_franchises_per_genre=2)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Server + deployments + a worker for the teacher pool, torn down at the end of the module."""
    from tests.teacher_helpers import template_corpus, tiny_config, tiny_llama_dir
    from tests.test_flows import prepare_dataset_dir

    tmp = tmp_path_factory.mktemp("prefect_stack")
    probe = load_dataset(prepare_dataset_dir(DATA, tmp / "probe"))
    teacher = tiny_config(tiny_llama_dir(tmp / "tiny", template_corpus(probe.titles)))
    students = [StudentConfig(model="sasrec", distill=DistillConfig(enabled=True),
                              train=TrainConfig(epochs=2, batch_size=64, num_threads=1))]
    settings = DeploySettings(root=str(tmp / "runs"), dataset="demo", data=DATA, teacher=teacher, students=students,
                              working_dir=str(tmp))
    env = {"PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_LOCAL_STORAGE_PATH": str(tmp / "results"),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    local = LocalStack(port=free_port(), home=tmp / "prefect_home", log_dir=tmp / "logs", extra_env=env)
    try:
        local.start_server(timeout=120)
        ids = local.register(settings)
        local.start_worker(settings.teacher_pool)
        with temporary_settings(updates={PREFECT_API_URL: local.api_url}):
            yield {"stack": local, "ids": ids, "settings": settings, "tmp": tmp, "layout": Layout(settings.root, "demo")}
    finally:
        local.stop()
        for log in sorted((tmp / "logs").glob("*.log")):
            print(f"---- {log.name} (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))


def wait_final(flow_run_id, timeout: float = RUN_TIMEOUT):
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state and run.state.is_final():
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"flow run {run.name} still {run.state.name if run.state else None} after {timeout}s")
            time.sleep(1)


def trigger(name: str):
    from prefect.deployments import run_deployment

    return run_deployment(name, timeout=0)


def task_state(flow_run_id, task_name: str) -> str:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                     task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=task_name)))
    assert runs, f"no task run like {task_name}"
    return runs[0].state.name


def artifacts_of(flow_run_id) -> dict:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a for a in found if a.key}


def latest_summary(layout: Layout) -> dict:
    report = sorted((layout.base / "reports").glob("*/summary.json"))[-1]
    return json.loads(report.read_text())


def event_diagnostics(stack) -> str:
    """What the server made of the refresh event: the events it stored, its dead letters, its errors.

    (A failed trigger is otherwise silent: the automation just never fires.)
    """
    from prefect.events.filters import EventFilter, EventNameFilter

    with get_client(sync_client=True) as client:
        page = client.read_events(EventFilter(event=EventNameFilter(prefix=["dataset.", "prefect.automation."])),
                                  limit=50)
    lines = [f"events stored: {len(page.events)}"]
    lines += [f"  {e.occurred.isoformat()} {e.event} {e.resource.id} {dict(e.payload)}" for e in page.events]
    dlq = stack["tmp"] / "prefect_home" / "dlq"
    lines.append(f"dead letters: {len(list(dlq.glob('*'))) if dlq.exists() else 0}")
    log = stack["tmp"] / "logs" / "server.log"
    errors = [ln for ln in log.read_text(errors="replace").splitlines()
              if ("ERROR" in ln or "WARNING" in ln) and "mark_deployments_ready" not in ln]
    lines += ["server errors/warnings (last 20):", *errors[-20:]]
    return "\n".join(lines)


def test_pipeline_deployment_runs_then_hits_teacher_cache(stack):
    run = wait_final(trigger("pipeline/pipeline").id)
    assert run.state.is_completed(), run.state.message
    summary = latest_summary(stack["layout"])
    assert summary["flow_run"]["id"] == str(run.id) and summary["teacher"]["status"] == "full"
    teacher_dir = Path(summary["teacher"]["path"])
    for name in ("teacher_rankings.parquet", "item_embeddings.parquet", "teacher_manifest.json"):
        assert (teacher_dir / name).exists()
    for student in summary["students"]:
        assert (Path(student["path"]) / "metrics.json").exists() and (Path(student["path"]) / "best.pt").exists()
    arts = artifacts_of(run.id)
    assert {"report-demo", "student-metrics-demo", "teacher-metrics-demo", "stage-costs-demo",
            "training-plot-demo", "training-plot-image-demo"} <= set(arts)
    assert "with vs without distillation" in arts["report-demo"].data
    assert task_state(run.id, "teacher-artifacts") == "Completed"
    stack["first_run"] = run

    again = wait_final(trigger("pipeline/pipeline").id)
    assert again.state.is_completed(), again.state.message
    assert task_state(again.id, "teacher-artifacts") == "Cached"
    assert latest_summary(stack["layout"])["teacher"]["status"] == "cached"


def test_refresh_event_starts_redistill_on_the_new_version(stack):
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    from flows.prepare_flow import refresh_event
    from tests.test_flows import extend_dataset

    layout = stack["layout"]
    latest = layout.read_latest()
    assert latest is not None, "the pipeline run records the version it prepared"
    v2 = extend_dataset(load_dataset(latest["path"]), layout.data_dir / "v2-tmp", n_new=4)
    v2_dir = layout.version_dir(load_dataset(v2).content_hash)
    os.replace(v2, v2_dir)
    record = {"dataset": "demo", "content_hash": load_dataset(v2_dir).content_hash, "counts": {}, "n_items": None,
              "path": str(v2_dir)}
    emit_event(**refresh_event(record, latest["content_hash"]))
    EventsWorker.drain_all()

    deadline, started = time.monotonic() + 120, None  # the trigger fires in ~1 s; CI on 2 busy cores is slower
    with get_client(sync_client=True) as client:
        while started is None and time.monotonic() < deadline:
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["redistill"])))
            started = next((r for r in runs if r.parameters.get("dataset_dir") == str(v2_dir)), None)
            time.sleep(1)
    assert started is not None, "dataset.refreshed did not start the redistill deployment\n" + event_diagnostics(stack)
    run = wait_final(started.id)
    assert run.state.is_completed(), run.state.message
    summary = latest_summary(layout)
    assert summary["dataset"]["path"] == str(v2_dir)
    assert summary["teacher"]["status"] == "incremental" and summary["teacher"]["new_samples"] == 4
    stack["redistill_run"] = run


def test_scheduler_creates_the_cron_and_interval_runs(stack):
    """The server's scheduler turns the redistill cron and the watcher interval into Scheduled runs.

    (Prefect 3.7's scheduler fails on SQLAlchemy 2.1 - `Can't evaluate bulk DML statement` - so
    this catches an environment with the wrong SQLAlchemy.)
    """
    wanted = {"redistill", "watch-demo"}
    deadline, found = time.monotonic() + 90, set()
    with get_client(sync_client=True) as client:
        while found != wanted and time.monotonic() < deadline:
            for name in wanted - found:
                runs = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name])))
                if any(r.state and r.state.name == "Scheduled" for r in runs):
                    found.add(name)
            time.sleep(2)
    assert found == wanted, f"no scheduled runs for {wanted - found}"


def test_ui_screenshots(stack):
    """Headless Chromium shots of the pipeline deployment page and a finished run's artifacts."""
    from scripts.ui_screenshots import chromium_binary, take_screenshots

    if chromium_binary() is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    run = stack.get("first_run")
    if run is None:
        pytest.skip("needs the finished pipeline run of test_pipeline_deployment_runs_then_hits_teacher_cache")
    out = Path(__file__).resolve().parents[1] / "docs" / "img" if os.environ.get("DLLM2REC_UPDATE_SCREENSHOTS") \
        else stack["tmp"] / "shots"
    shots = take_screenshots(stack["stack"].url, stack["ids"], str(run.id), out)
    assert len(shots) == 6
    for path in shots:
        assert path.exists() and path.stat().st_size > 20_000, f"{path} looks empty"
    sizes = {p.name: p.stat().st_size for p in shots}
    assert len(set(sizes.values())) == len(sizes), f"identical screenshots (blank pages?): {sizes}"
