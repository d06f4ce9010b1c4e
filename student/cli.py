"""`dllm2rec student ...`: train, evaluate and serve students.

    dllm2rec student train --data runs/demo/data --out runs/demo/students/sasrec --model sasrec
    dllm2rec student train --data runs/demo/data --out runs/demo/students/sasrec-kd \\
        --teacher runs/demo/teacher --distill --config my_config.json
    dllm2rec student train ... --resume            # continue an interrupted run
    dllm2rec student evaluate --checkpoint runs/demo/students/sasrec/best.pt --data runs/demo/data --split test
    dllm2rec student recommend --checkpoint .../best.pt --input histories.jsonl --out recs.parquet -k 10
    dllm2rec student recommend ... --data runs/demo/data/<hash>   # histories in your own item ids; titles out
    dllm2rec student export --checkpoint .../best.pt --out served.pt
    dllm2rec student default-config > my_config.json
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import typer
from pydantic import ValidationError

from pipeline.errors import DataError, first_rows
from pipeline.io import write_json, write_parquet
from student.config import StudentConfig

app = typer.Typer(help="Train, evaluate and serve distilled students.", no_args_is_help=True)


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def load_config(path: Path | None) -> StudentConfig:
    """A full `StudentConfig` from a JSON file (missing fields take their defaults)."""
    if path is None:
        return StudentConfig()
    try:
        return StudentConfig.model_validate_json(Path(path).read_text())
    except ValidationError as exc:
        raise DataError(path, "config", f"is not a valid StudentConfig: {exc}") from exc


@app.command()
def train(
    data: Path = typer.Option(..., "--data", help="Prepared dataset folder (dllm2rec data prepare)."),
    out: Path = typer.Option(..., "--out", help="Run folder: last.pt, best.pt, metrics.json."),
    teacher: Optional[Path] = typer.Option(None, "--teacher", help="Teacher artifact folder (needed with --distill; "
                                           "without --distill it is used only for the test overlap)."),
    model: Optional[str] = typer.Option(None, "--model", help="gru4rec, caser or sasrec (overrides --config)."),
    distill: Optional[bool] = typer.Option(None, "--distill/--no-distill", help="DLLM2Rec distillation on or off "
                                           "(overrides --config)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum epochs (overrides --config)."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON file with a full or partial StudentConfig "
                                          "(see `default-config`)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt if it exists."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda (overrides --config)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (overrides --config)."),
) -> None:
    """Train one student with model selection on valid NDCG@20; writes OUT/metrics.json."""
    from student.trainer import train_student

    _setup_logging()
    try:
        cfg = load_config(config)
        if model is not None:
            cfg.model = model
        if distill is not None:
            cfg.distill.enabled = distill
        for name, value in (("epochs", epochs), ("device", device), ("seed", seed)):
            if value is not None:
                setattr(cfg.train, name, value)
        cfg = StudentConfig.model_validate(cfg.model_dump())  # re-validate the overrides
        metrics = train_student(data, cfg, out, teacher_dir=teacher, resume=resume)
    except (DataError, ValidationError, ValueError) as exc:
        _fail(exc)
    typer.echo(json.dumps({"best_epoch": metrics["best_epoch"], "valid": metrics["valid"], "test": metrics["test"],
                           "protocol": metrics["protocol"]}, indent=2))


def dataset_of(model, checkpoint: Path, data: Path):
    """The dataset at `data`, checked against the checkpoint: same catalogue size (else an error),
    same version (else a warning)."""
    from pipeline.dataset import load_dataset

    dataset = load_dataset(data)
    if model.n_items != dataset.n_items:
        raise DataError(checkpoint, "n_items", f"is {model.n_items} but {data} has {dataset.n_items} items")
    if model.checkpoint_info.get("dataset_hash") != dataset.content_hash:
        logging.getLogger(__name__).warning("the checkpoint was trained on another version of %s", data)
    return dataset


@app.command()
def evaluate(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A student checkpoint (best.pt or last.pt)."),
    data: Path = typer.Option(..., "--data", help="The dataset folder the student was trained on."),
    split: str = typer.Option("test", "--split", help="train, valid or test."),
    mask_history: Optional[bool] = typer.Option(None, "--mask-history/--no-mask-history",
                                                help="Exclude history items from the ranking (default: as trained)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the metrics to this JSON file."),
) -> None:
    """Full-ranking HR/NDCG@{1,5,10,20} of a checkpoint on one split."""
    from student.data import split_tensors
    from student.evaluate import evaluate as run_evaluate
    from student.recommend import load_student

    _setup_logging()
    try:
        if split not in ("train", "valid", "test"):
            raise ValueError(f"--split must be train, valid or test, not {split!r}")
        model = load_student(checkpoint, device=device)
        dataset = dataset_of(model, checkpoint, data)
        mask = model.config.train.mask_history if mask_history is None else mask_history
        result = run_evaluate(model, split_tensors(dataset, split), batch_size=model.config.train.eval_batch_size,
                              mask_history=mask, top_n=0)
    except (DataError, ValueError) as exc:
        _fail(exc)
    report = {"checkpoint": str(checkpoint), "split": split, "n": int(len(result.ranks)),
              "protocol": result.protocol, "metrics": result.metrics, "seconds": result.seconds}
    if out is not None:
        write_json(report, out)
    typer.echo(json.dumps(report, indent=2))


def read_histories(path: Path) -> pd.DataFrame:
    """`history` (list of item ids) and optional `history_id` from Parquet or JSON lines."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file", "does not exist")
    if path.suffix in (".jsonl", ".json", ".ndjson"):
        frame = pd.read_json(path, lines=True, dtype=False)
    else:
        frame = pq.read_table(path).to_pandas()
    if "history" not in frame.columns:
        raise DataError(path, "history", "is missing (expected a list of item ids per row)")
    if "history_id" not in frame.columns:
        frame["history_id"] = np.arange(len(frame), dtype=np.int64)
    dup = frame["history_id"].duplicated().to_numpy()
    if dup.any():
        raise DataError(path, "history_id", "has duplicates", first_rows(dup))
    not_list = ~frame["history"].map(lambda h: isinstance(h, (list, tuple, np.ndarray))).to_numpy()
    if not_list.any():
        raise DataError(path, "history", "must be a list of item ids", first_rows(not_list))
    return frame


def to_item_ids(frame: pd.DataFrame, catalogue: pd.DataFrame, path: Path) -> list[list[int]]:
    """Histories of source ids (strings or numbers, compared as text) -> item ids; unknown ids fail."""
    lookup = dict(zip(catalogue["source_id"].astype(str), catalogue["item_id"].astype(int)))
    histories = [[lookup.get(str(x), -1) for x in h] for h in frame["history"]]
    bad = np.array([-1 in h for h in histories], dtype=bool)
    if bad.any():
        first = next(str(x) for x in frame["history"].iloc[int(np.flatnonzero(bad)[0])] if str(x) not in lookup)
        raise DataError(path, "history", f"has source ids that are not in the dataset's items (first: {first!r})",
                        first_rows(bad))
    return histories


@app.command()
def recommend(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A student checkpoint (best.pt or an export)."),
    input: Path = typer.Option(..., "--input", help="Parquet or JSONL file with `history` (list of item ids, "
                               "oldest first) and optional `history_id`."),
    out: Path = typer.Option(..., "--out", help="Parquet file to write: history_id, items list<int32>, "
                             "scores list<float32> (+ source_ids, titles with --data)."),
    data: Optional[Path] = typer.Option(None, "--data", help="The prepared dataset folder the student was trained on: "
                                        "histories then hold its source item ids (your ids, e.g. ASINs), and the "
                                        "output adds `source_ids` and `titles`."),
    k: int = typer.Option(10, "-k", "--k", min=1, help="Items per history."),
    exclude_history: bool = typer.Option(True, "--exclude-history/--include-history",
                                         help="Never recommend items already in the history."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    batch_size: int = typer.Option(1024, "--batch-size", min=1, help="Histories scored per batch."),
) -> None:
    """Top-k items for every history in a file, written atomically to Parquet."""
    from student.recommend import load_student, recommend as run_recommend

    _setup_logging()
    catalogue = None
    try:
        frame = read_histories(input)
        model = load_student(checkpoint, device=device)
        if data is not None:
            catalogue = dataset_of(model, checkpoint, data).items.sort_values("item_id").reset_index(drop=True)
            histories = to_item_ids(frame, catalogue, input)
        else:
            histories = [list(map(int, h)) for h in frame["history"]]
        bad = np.array([any(not 0 <= i < model.n_items for i in h) for h in histories], dtype=bool)
        if bad.any():
            raise DataError(input, "history", f"has item ids out of range 0..{model.n_items - 1}", first_rows(bad))
        items, scores = run_recommend(model, histories, k=k, exclude_history=exclude_history, batch_size=batch_size)
    except (DataError, ValueError) as exc:
        _fail(exc)
    n, width = items.shape
    offsets = pa.array(np.arange(0, (n + 1) * width, width, dtype=np.int32))
    columns = {
        "history_id": pa.array(frame["history_id"].tolist()),
        "items": pa.ListArray.from_arrays(offsets, pa.array(items.reshape(-1).astype(np.int32))),
        "scores": pa.ListArray.from_arrays(offsets, pa.array(scores.reshape(-1).astype(np.float32))),
    }
    if catalogue is not None:
        for name, column in (("source_ids", "source_id"), ("titles", "title")):
            values = catalogue[column].astype(object).where(catalogue[column].notna(), None).to_numpy()
            columns[name] = pa.ListArray.from_arrays(offsets, pa.array(values[items.reshape(-1)], pa.string()))
    write_parquet(pa.table(columns), out)
    typer.echo(f"wrote top-{width} for {n} histories to {out}")


@app.command()
def export(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A trained student checkpoint (best.pt)."),
    out: Path = typer.Option(..., "--out", help="Serving checkpoint to write (e.g. served.pt)."),
) -> None:
    """Write a serving checkpoint: embedding distillation folded into one item table, no teacher table."""
    from student.recommend import export_student

    _setup_logging()
    try:
        export_student(checkpoint, out)
    except (DataError, ValueError) as exc:
        _fail(exc)
    typer.echo(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MB, from {checkpoint.stat().st_size / 2**20:.1f} MB)")


@app.command("default-config")
def default_config() -> None:
    """Print the default StudentConfig as JSON (a starting point for --config)."""
    typer.echo(StudentConfig().model_dump_json(indent=2))


if __name__ == "__main__":
    app()
