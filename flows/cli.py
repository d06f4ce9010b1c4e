"""The `dllm2rec` command: one sub-app per stage, mounted here.

    dllm2rec data prepare --reader demo --out runs/demo/data
    dllm2rec teacher --help
    dllm2rec student train --data runs/demo/data --out runs/demo/students/sasrec
"""
from __future__ import annotations

import importlib

import typer

app = typer.Typer(help="DLLM2Rec: distil an LLM recommender into a small sequential one.", no_args_is_help=True)

# Each stage owns its sub-commands; flows only mounts them (and adds the orchestration ones).
for name, module, help_text in [
    ("data", "pipeline.cli", "Prepare canonical datasets and convert formats."),
    ("teacher", "teacher.cli", "Run the LLM teacher: fine-tune, generate, ground, write artifacts."),
    ("student", "student.cli", "Train, evaluate and serve distilled students."),
    ("flow", "flows.commands", "Run and serve the Prefect flows."),
]:
    try:
        sub = importlib.import_module(module).app
    except ModuleNotFoundError as exc:  # a stage not installed in this environment
        if exc.name and not exc.name.startswith(module.split(".")[0]):
            raise
        continue
    app.add_typer(sub, name=name, help=help_text)

if __name__ == "__main__":
    app()
