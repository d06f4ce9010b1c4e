"""`dllm2rec data ...`: prepare datasets, show them, convert to and from other tools' formats.

    dllm2rec data prepare --reader demo --out runs/demo/data
    dllm2rec data prepare --reader presplit --path ../shared/data/games-dealrec --out runs/games/data
    dllm2rec data info runs/demo/data
    dllm2rec data export-dros runs/demo/data runs/demo/dros
    dllm2rec data import-bigrec --dataset runs/games/data --teacher-dir tocf/game --out runs/games/teacher
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError

from pipeline.errors import DataError
from pipeline.prepare import DataConfig, prepare_dataset

app = typer.Typer(help="Prepare canonical datasets and convert formats.", no_args_is_help=True)
FIELDS = DataConfig.model_fields


def _help(name: str) -> str:
    return FIELDS[name].description or ""


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


@app.command()
def prepare(
    out: Path = typer.Option(..., "--out", help="Dataset folder to write (items.parquet, samples.parquet, manifest.json)."),
    reader: str = typer.Option("demo", help=_help("reader")),
    path: Optional[Path] = typer.Option(None, help=_help("path")),
    items_path: Optional[Path] = typer.Option(None, help=_help("items_path")),
    split: str = typer.Option("auto", help=_help("split")),
    max_history: int = typer.Option(10, help=_help("max_history")),
    seed: int = typer.Option(0, help=_help("seed")),
    untitled: str = typer.Option("drop", help=_help("untitled")),
    given_train: str = typer.Option("prefixes", help=_help("given_train")),
    demo_users: int = typer.Option(FIELDS["demo_users"].default, help=_help("demo_users")),
    demo_franchises_per_genre: int = typer.Option(FIELDS["demo_franchises_per_genre"].default,
                                                  help=_help("demo_franchises_per_genre")),
    demo_mean_length: float = typer.Option(FIELDS["demo_mean_length"].default, help=_help("demo_mean_length")),
) -> None:
    """Read a source, split it into samples and write the canonical dataset folder."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        config = DataConfig(reader=reader, path=path, items_path=items_path, split=split, max_history=max_history,
                            seed=seed, untitled=untitled, given_train=given_train, demo_users=demo_users,
                            demo_franchises_per_genre=demo_franchises_per_genre, demo_mean_length=demo_mean_length)
        prepare_dataset(config, out)
    except (DataError, ValidationError) as exc:
        _fail(exc)
    info(out)


@app.command()
def info(dataset: Path = typer.Argument(..., help="A prepared dataset folder.")) -> None:
    """Print a dataset's manifest and its sample / item counts."""
    from pipeline.dataset import load_dataset

    try:
        ds = load_dataset(dataset)
    except DataError as exc:
        _fail(exc)
    manifest = {k: v for k, v in ds.manifest.items() if k != "config"}
    typer.echo(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    lengths = ds.samples["history"].map(len)
    typer.echo(f"{ds.n_items} items, pad id {ds.pad_id}, {ds.samples['user_id'].nunique()} users, "
               f"mean history length {lengths.mean():.2f}")
    for name in ("train", "valid", "test"):
        typer.echo(f"  {name:5s} {int((ds.samples['split'] == name).sum()):>9,d} samples")


@app.command("export-dros")
def export_dros_cmd(
    dataset: Path = typer.Argument(..., help="A prepared dataset folder."),
    out: Path = typer.Argument(..., help="Folder to write the DROS / DLLM2Rec files into."),
) -> None:
    """Write a dataset as DROS / DLLM2Rec files (train_data.df, val/test_data.csv, data_statis.df, id2name.txt)."""
    from pipeline.dataset import load_dataset
    from pipeline.readers.dros import export_dros

    try:
        export_dros(load_dataset(dataset), out)
    except DataError as exc:
        _fail(exc)
    typer.echo(f"wrote DROS files to {out}")


@app.command("import-bigrec")
def import_bigrec_cmd(
    dataset: Path = typer.Option(..., help="The prepared dataset the teacher files belong to."),
    teacher_dir: Path = typer.Option(..., help="Folder with myrank_train.txt, confidence_train.txt, all_embeddings.pt."),
    out: Path = typer.Option(..., help="Teacher artifact folder to write."),
    dros_dir: Optional[Path] = typer.Option(None, help="The export-dros folder whose train_data.df the teacher ran on "
                                            "(its sample_ids.csv aligns rows); not needed for datasets read with --reader dros."),
    model_id: str = typer.Option("bigrec (imported)", help="Name of the teacher model, recorded in the manifest."),
    expected_dim: Optional[int] = typer.Option(None, help="Fail unless the embeddings have this width."),
) -> None:
    """Import an existing BIGRec / DLLM2Rec teacher run into teacher artifacts (validated first)."""
    from pipeline.bigrec_import import import_bigrec

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        import_bigrec(teacher_dir, dataset, out, dros_dir=dros_dir, model_id=model_id, expected_dim=expected_dim)
    except DataError as exc:
        _fail(exc)
    typer.echo(f"wrote teacher artifacts to {out}")


if __name__ == "__main__":
    app()
