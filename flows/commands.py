"""`dllm2rec flow ...`: run the flows locally, register deployments, serve a local Prefect stack.

    dllm2rec flow demo                       # `make run`: the whole pipeline on the demo data (ephemeral Prefect)
    dllm2rec flow pipeline --params my.json  # the pipeline with parameters from a JSON file
    dllm2rec flow prepare --reader movielens --path ../shared/data/ml-100k --dataset ml-100k
    dllm2rec flow deploy                     # register pools + deployments on $PREFECT_API_URL
    dllm2rec flow serve                      # `make serve`: server + workers + deployments, UI on :4200
    dllm2rec flow emit-refresh demo          # send dataset.refreshed by hand (starts redistill)
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Run and serve the Prefect flows.", no_args_is_help=True)


def _quiet_defaults() -> None:
    """Offline-friendly defaults (an explicit environment wins); before Prefect reads its settings."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect's ephemeral server (no PREFECT_API_URL) needs more than the default 20 s on a busy 2-core box.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


_quiet_defaults()


def print_summary(report: str) -> None:
    """The metrics table of a finished run (from its summary.json) and the report path."""
    from flows.report import comparison_rows, md_table, recommend_command, student_rows, teacher_rows
    from pipeline.io import read_json

    summary = read_json(Path(report).parent / "summary.json")
    if summary.get("teacher"):
        typer.echo(f"\nTeacher ({summary['teacher'].get('status')}):\n" + md_table(teacher_rows(summary["teacher"])))
    typer.echo("Students (test):\n" + md_table(student_rows(summary["students"])))
    rows = comparison_rows(summary["students"])
    if rows:
        typer.echo("With vs without distillation (test):\n" + md_table(rows))
    typer.echo("Cost per stage:\n" + md_table(summary["costs"]))
    served = summary.get("served")
    if served:
        typer.echo(f"Serving checkpoint ({served['label']}, picked on valid): {served['path']}\n"
                   f"  try: {recommend_command(served['path'])}")
    typer.echo(f"Report: {report}")


@app.command()
def demo(
    root: Path = typer.Option(Path("runs"), help="Run root; outputs land under <root>/demo/."),
    profile: str = typer.Option("demo", help="Parameter preset: demo (minutes on CPU) or full (METHOD defaults)."),
    model: Optional[str] = typer.Option(None, help="Teacher model (HF dir or id); default: the built-in SmolLM2-135M."),
    users: int = typer.Option(2000, help="Demo dataset: number of users."),
) -> None:
    """The whole pipeline on the built-in demo dataset, in Prefect's ephemeral mode; prints the metrics."""
    _quiet_defaults()
    from flows.layout import RunSettings
    from flows.pipeline_flow import pipeline
    from flows.profiles import profile_parameters
    from pipeline.prepare import DataConfig

    params = profile_parameters(profile, model=model)
    report = pipeline(data=DataConfig(reader="demo", demo_users=users), teacher=params["teacher"],
                      students=params["students"], settings=RunSettings(root=str(root.resolve()), dataset="demo"))
    print_summary(report)


@app.command("pipeline")
def pipeline_cmd(
    params: Path = typer.Option(..., exists=True, help="JSON file with the pipeline's parameters (data, teacher, students, settings, ...)."),
) -> None:
    """Run the pipeline flow here with parameters from a JSON file (the same shape as the UI form)."""
    _quiet_defaults()
    from flows.pipeline_flow import pipeline

    report = pipeline(**json.loads(params.read_text()))
    print_summary(report)


@app.command()
def prepare(
    reader: str = typer.Option("demo", help="Source format (see `dllm2rec data prepare --help`)."),
    path: Optional[Path] = typer.Option(None, help="Source folder or file."),
    dataset: str = typer.Option("demo", help="Dataset name (folder and event resource id)."),
    root: Path = typer.Option(Path("runs"), help="Run root."),
    emit: bool = typer.Option(True, help="Emit dataset.refreshed when the content changed."),
) -> None:
    """Run the prepare-data flow once (what the watcher deployment runs on an interval)."""
    _quiet_defaults()
    from flows.layout import RunSettings
    from flows.prepare_flow import prepare_data
    from pipeline.prepare import DataConfig

    out = prepare_data(DataConfig(reader=reader, path=path), RunSettings(root=str(root.resolve()), dataset=dataset), emit_refresh=emit)
    typer.echo(out)


def _deploy_settings(root: Path, dataset: str, reader: str, path: Optional[Path], profile: str, cron: Optional[str],
                     watch_interval: Optional[int]):
    from flows.deploy import DeploySettings
    from pipeline.prepare import DataConfig

    extra = {k: v for k, v in {"cron": cron, "watch_interval": watch_interval}.items() if v is not None}
    return DeploySettings(root=str(root.resolve()), dataset=dataset, data=DataConfig(reader=reader, path=path),
                          profile=profile, **extra)


_ROOT = typer.Option(Path(os.environ.get("DLLM2REC_ROOT", "runs")), help="Run root (made absolute).")
_DATASET = typer.Option(os.environ.get("DLLM2REC_DATASET", "demo"), help="Dataset name.")
_READER = typer.Option(os.environ.get("DLLM2REC_READER", "demo"), help="Source format the watcher/pipeline prepare.")
_PATH = typer.Option(os.environ.get("DLLM2REC_SOURCE") or None, help="Source folder or file.")
_PROFILE = typer.Option(os.environ.get("DLLM2REC_PROFILE", "demo"), help="Parameter preset: demo or full.")
_CRON = typer.Option(None, help="Cron of the periodic re-distillation (default 0 3 * * *).")
_WATCH = typer.Option(None, help="Seconds between watcher runs (default 600).")


@app.command()
def deploy(root: Path = _ROOT, dataset: str = _DATASET, reader: str = _READER, path: Optional[Path] = _PATH,
           profile: str = _PROFILE, cron: Optional[str] = _CRON, watch_interval: Optional[int] = _WATCH) -> None:
    """Create the work pools, the gpu concurrency limit and all deployments on $PREFECT_API_URL."""
    from flows.deploy import register

    for name, dep_id in register(_deploy_settings(root, dataset, reader, path, profile, cron, watch_interval)).items():
        typer.echo(f"{name}  {dep_id}")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Bind address of the server (loopback unless you mean otherwise)."),
    port: int = typer.Option(4200, help="Server port (UI at http://host:port)."),
    home: Optional[Path] = typer.Option(None, help="PREFECT_HOME for the server and workers (default: Prefect's)."),
    root: Path = _ROOT, dataset: str = _DATASET, reader: str = _READER, path: Optional[Path] = _PATH,
    profile: str = _PROFILE, cron: Optional[str] = _CRON, watch_interval: Optional[int] = _WATCH,
) -> None:
    """Local Prefect server + deployments + one process worker per pool; Ctrl-C stops everything."""
    _quiet_defaults()
    from flows.serve import serve as run_serve

    settings = _deploy_settings(root, dataset, reader, path, profile, cron, watch_interval)
    run_serve(settings, host=host, port=port, home=str(home) if home else None)


@app.command("emit-refresh")
def emit_refresh(
    dataset: str = typer.Argument("demo", help="Dataset name (the event's resource id)."),
    root: Path = _ROOT,
    api_url: str = typer.Option(os.environ.get("PREFECT_API_URL") or "http://127.0.0.1:4200/api",
                                help="Prefect API holding the trigger (default: $PREFECT_API_URL, else `flow serve`'s)."),
) -> None:
    """Emit dataset.refreshed for the latest prepared version of DATASET (starts the redistill deployment)."""
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.layout import Layout
    from flows.prepare_flow import refresh_event

    latest = Layout(root.resolve(), dataset).read_latest()
    if latest is None:
        raise typer.BadParameter(f"no prepared version of {dataset!r} under {root}")
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        event = emit_event(**refresh_event(latest, latest.get("previous_hash")))
        EventsWorker.drain_all()  # send it before this process exits
    typer.echo(f"emitted {event.event if event else 'nothing'} for {dataset} {latest['content_hash'][:12]} to {api_url}")
