"""`dllm2rec teacher ...`: one sub-command per teacher step.

    dllm2rec teacher run --data runs/demo/data --out runs/demo/teacher --max-samples 500
    dllm2rec teacher estimate --data runs/demo/data --config teacher.json
    dllm2rec teacher prompts --data runs/demo/data --show 2
    dllm2rec teacher finetune|generate|ground --data ... --out ...

Every command takes `--config teacher.json` (a TeacherConfig as JSON) plus the common
overrides below; overrides win over the file.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(help="LLM teacher (BIGRec): prompts, LoRA fine-tune, generate, ground, artifacts.", no_args_is_help=True)

Data = Annotated[Path, typer.Option("--data", help="Canonical dataset folder (dllm2rec data prepare).")]
Out = Annotated[Path, typer.Option("--out", help="Teacher output folder (adapter, generations, artifacts, work/).")]
ConfigFile = Annotated[Optional[Path], typer.Option("--config", help="TeacherConfig JSON file.")]
Mode = Annotated[Optional[str], typer.Option("--mode", help="generate | retrieve | hybrid.")]
Model = Annotated[Optional[str], typer.Option("--model", help="'smollm2', a model folder, or a cached Hub id.")]
Backend = Annotated[Optional[str], typer.Option("--backend", help="Generation backend: auto | vllm | hf.")]
Beams = Annotated[Optional[int], typer.Option("--beams", help="Beam width (1 = greedy).")]
MaxSamples = Annotated[Optional[int], typer.Option("--max-samples", help="Seeded budget of train samples to rank.")]
MaxEval = Annotated[Optional[int], typer.Option("--max-eval-samples", help="Seeded budget per valid/test split.")]
Device = Annotated[Optional[str], typer.Option("--device", help="auto | cpu | cuda.")]
TopN = Annotated[Optional[int], typer.Option("--top-n", help="Items per sample in the rankings (>= 10).")]


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _config(config: Optional[Path], mode=None, model=None, backend=None, beams=None, max_samples=None,
            max_eval_samples=None, device=None, top_n=None):
    from teacher.config import load_config

    return load_config(config, **{"mode": mode, "model.name": model, "generation.backend": backend,
                                  "generation.num_beams": beams, "max_samples": max_samples,
                                  "max_eval_samples": max_eval_samples, "model.device": device, "ground.top_n": top_n})


@app.command()
def prompts(data: Data, config: ConfigFile = None, out: Annotated[Optional[Path], typer.Option(
        "--out", help="Write sample_id, split, prompt, response to this Parquet file.")] = None,
        show: Annotated[int, typer.Option("--show", help="Print this many prompts.")] = 1,
        max_samples: MaxSamples = None, max_eval_samples: MaxEval = None) -> None:
    """Build BIGRec prompts for the selected samples (prints a few, optionally writes them all)."""
    import pyarrow as pa

    from pipeline.io import write_parquet
    from teacher.workspace import Workspace

    ws = Workspace.open(data, _config(config, max_samples=max_samples, max_eval_samples=max_eval_samples), out or ".")
    rows = ws.samples
    texts, responses = ws.builder.prompts(rows), ws.builder.responses(rows)
    for text, resp in list(zip(texts, responses))[:show]:
        typer.echo(text + resp + "\n" + "-" * 40)
    typer.echo(f"{len(texts)} prompts, prompt hash {ws.builder.hash}, words {ws.builder.words.__dict__}")
    if out:
        write_parquet(pa.table({"sample_id": rows["sample_id"].to_numpy(), "split": rows["split"].tolist(),
                                "prompt": texts, "response": responses}), out)
        typer.echo(f"wrote {out}")


@app.command()
def finetune(data: Data, out: Out, config: ConfigFile = None, model: Model = None, device: Device = None) -> None:
    """Fine-tune (or reuse) the LoRA adapter into OUT/adapter."""
    from teacher.run import finetune_step

    _setup_logging()
    path = finetune_step(data, _config(config, model=model, device=device), out)
    typer.echo(f"adapter: {path}")


@app.command()
def generate(data: Data, out: Out, config: ConfigFile = None, model: Model = None, backend: Backend = None,
             beams: Beams = None, max_samples: MaxSamples = None, max_eval_samples: MaxEval = None,
             device: Device = None) -> None:
    """Generate one title per selected sample (fine-tunes first if needed); resumable shards."""
    from teacher.run import generate_step

    _setup_logging()
    cfg = _config(config, model=model, backend=backend, beams=beams, max_samples=max_samples,
                  max_eval_samples=max_eval_samples, device=device)
    typer.echo(f"generations: {generate_step(data, cfg, out)}")


@app.command()
def ground(data: Data, out: Out, config: ConfigFile = None, mode: Mode = None, model: Model = None,
           max_samples: MaxSamples = None, max_eval_samples: MaxEval = None, device: Device = None,
           top_n: TopN = None) -> None:
    """Embed, rank by L2 and write the teacher artifacts (after generate, or directly for --mode retrieve)."""
    from teacher.run import ground_step

    _setup_logging()
    cfg = _config(config, mode=mode, model=model, max_samples=max_samples, max_eval_samples=max_eval_samples,
                  device=device, top_n=top_n)
    _report(ground_step(data, cfg, out))


@app.command()
def run(data: Data, out: Out, config: ConfigFile = None, mode: Mode = None, model: Model = None,
        backend: Backend = None, beams: Beams = None, max_samples: MaxSamples = None,
        max_eval_samples: MaxEval = None, device: Device = None, top_n: TopN = None) -> None:
    """All steps for the mode: fine-tune, generate, ground, write artifacts + teacher metrics."""
    from teacher.run import run_teacher

    _setup_logging()
    cfg = _config(config, mode, model, backend, beams, max_samples, max_eval_samples, device, top_n)
    _report(run_teacher(data, cfg, out))


@app.command()
def estimate(data: Data, config: ConfigFile = None, mode: Mode = None, model: Model = None,
             max_samples: MaxSamples = None, max_eval_samples: MaxEval = None, device: Device = None,
             probe: Annotated[int, typer.Option("--probe", help="Samples in each timed probe batch.")] = 8) -> None:
    """Dry run: time small batches of each step and print the estimated seconds of the whole run."""
    from teacher.estimate import estimate_teacher

    _setup_logging()
    cfg = _config(config, mode=mode, model=model, max_samples=max_samples, max_eval_samples=max_eval_samples, device=device)
    typer.echo(json.dumps(estimate_teacher(data, cfg, probe=probe), indent=2))


@app.command("model")
def model_cmd(model: Model = None) -> None:
    """Resolve (and for 'smollm2' convert once) the model; print its local folder."""
    from teacher.config import ModelConfig
    from teacher.model import resolve_model_dir

    _setup_logging()
    typer.echo(str(resolve_model_dir(ModelConfig(name=model or "smollm2"))))


def _report(out: Path) -> None:
    from pipeline.io import read_json

    manifest = read_json(Path(out) / "teacher_manifest.json")
    typer.echo(json.dumps({"out": str(out), "mode": manifest["mode"], "metrics": manifest["metrics"]}, indent=2))


if __name__ == "__main__":
    app()
