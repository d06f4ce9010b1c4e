"""Issue 5: the finished runs re-evaluated with the history masked, as the server ranks.

The runner trains and selects under the paper's protocol (history items stay in the ranking,
`train.mask_history: false`) so that its tables compare with the paper's. The server excludes
the history (`recommend(exclude_history=True)`) and the pipeline selects that way by default.
Plain students put a history item first for almost every sample, which no target is, so the
two protocols can disagree on whether distillation helps (docs/results.md, "masking the history").

This re-evaluates each run's selected checkpoint (`best.pt`: the epoch choice is unchanged) on
valid and test with the history masked, caches it next to the run (`masked.json`, reused while
best.pt is unchanged, so it resumes), and prints per student the test NDCG@20 and the gain over plain under
both protocols, and which lambda_d valid would serve under each.

    python benchmarks/results.py masked --root runs/p10-games --dataset games --store docs/results/p10-games
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from pipeline.dataset import Dataset, load_dataset
from pipeline.io import read_json, write_json
from results_report import gain_over_plain, load_ablation_runs, load_runs, picked_lambdas, tuned_runs
from student.data import split_tensors
from student.evaluate import evaluate
from student.recommend import load_student, require_trained_on

log = logging.getLogger("results")
MASKED_FILE = "masked.json"


def masked_metrics(run: Path, dataset: Dataset) -> dict:
    """`{"valid": metrics, "test": metrics}` of `run/best.pt` with the history masked, cached per
    checkpoint file (a run resumed with more epochs since gets a new best.pt and is re-evaluated)."""
    cached, stat = run / MASKED_FILE, (run / "best.pt").stat()
    key = {"checkpoint_mtime_ns": stat.st_mtime_ns, "checkpoint_bytes": stat.st_size}
    if cached.exists() and (found := read_json(cached)).get("key") == key:
        return found
    model = load_student(run / "best.pt")
    require_trained_on(model, dataset, run / "best.pt")
    out = {split: evaluate(model, split_tensors(dataset, split), batch_size=model.config.train.eval_batch_size,
                           mask_history=True, top_n=0).metrics for split in ("valid", "test")}
    out["key"] = key
    write_json(out, cached)
    return out


def masked_runs(base: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs under `base/students` as the paper measures them, and the same runs masked
    (test and valid columns replaced), each with its `-tuned`/`-served` picks appended, then the
    ablations (`dros+dllm2rec-<teacher[@lambda_d]>/<ablation>`: compared with plain DROS, never picked)."""
    runs = load_runs(base / "students")
    if not len(runs):
        raise SystemExit(f"masked: no finished runs under {base / 'students'}")
    n_students = len(runs)
    ablations = load_ablation_runs(base)
    if len(ablations):
        ablations = ablations.assign(label="dros+dllm2rec-" + ablations["from"] + "/" + ablations["label"])
        runs = pd.concat([runs, ablations.drop(columns="from")], ignore_index=True)
    dataset = load_dataset(base / "data")
    rows = [masked_metrics(run, dataset) for run in tqdm(runs["run"], desc="masked re-evaluation", unit="run")]
    masked = runs.assign(**{"NDCG@20": [r["test"]["NDCG@20"] for r in rows],
                            "HR@20": [r["test"]["HR@20"] for r in rows],
                            "HR@1": [r["test"]["HR@1"] for r in rows],
                            "valid NDCG@20": [r["valid"]["NDCG@20"] for r in rows]})
    return tuple(pd.concat([r, tuned_runs(r.iloc[:n_students])], ignore_index=True) for r in (runs, masked))


def masked_summary(runs: pd.DataFrame, masked: pd.DataFrame) -> list[dict]:
    """Per student label: mean test NDCG@20 and gain over plain (same seeds) under both protocols."""
    out = []
    for label, g in runs.groupby("label", sort=True):
        m = masked[masked["label"] == label]
        picks = label.endswith(("-tuned", "-served"))
        out.append({"label": label, "seeds": len(g),
                    "NDCG@20": g["NDCG@20"].mean(), "masked NDCG@20": m["NDCG@20"].mean(),
                    "masked HR@1": m["HR@1"].mean(),
                    "gain": gain_over_plain(runs, label, g), "masked gain": gain_over_plain(masked, label, m),
                    "picked": picked_lambdas(g) if picks else None, "masked picked": picked_lambdas(m) if picks else None})
    return out


def print_masked(name: str, summary: list[dict]) -> None:
    pct = (lambda x: f"{x:+.1%}" if x is not None else "")
    print(f"\n## {name}: history masked (selected checkpoints re-evaluated; '-served' picks on valid under each protocol)\n\n"
          "| student | seeds | test NDCG@20 unmasked -> masked | masked HR@1 | gain unmasked | gain masked | picked on unmasked / masked valid |\n"
          "|---|---|---|---|---|---|---|")
    for s in summary:
        picked = f"{', '.join(s['picked'])} / {', '.join(s['masked picked'])}" if s["picked"] else ""
        print(f"| {s['label']} | {s['seeds']} | {s['NDCG@20']:.4f} -> {s['masked NDCG@20']:.4f} | {s['masked HR@1']:.4f} | "
              f"{pct(s['gain'])} | {pct(s['masked gain'])} | {picked} |")


def masked_report(root: Path, name: str, store: Path | None = None) -> list[dict]:
    runs, masked = masked_runs(root / name)
    summary = masked_summary(runs, masked)
    print_masked(name, summary)
    if store:
        write_json(summary, store / f"{name}-masked.json")
        log.info("%s: masked summary written to %s", name, store / f"{name}-masked.json")
    return summary
