"""Issue 5: students on real data, plain and + DLLM2Rec from each teacher mode, ablations, report.

Runs live under runs/<dataset>/ (git-ignored): data/ (dllm2rec data prepare), one teacher folder
per mode (dllm2rec teacher run), and students/<label>/seed<k>/ (best.pt, metrics.json,
test_ranks.parquet). Every student is `student.trainer.train_student` with `resume=True`, so a
killed grid resumes where it stopped; finished runs are skipped (a run that ended at the epoch cap
resumes when `--epochs` is raised). The report lives in
results_report.py. Commands: docs/results.md.

    python benchmarks/results.py students --dataset ml100k --teachers generate retrieve hybrid --seeds 0 1 2
    python benchmarks/results.py ablations --dataset ml100k --teacher retrieve --seeds 0 1 2
    python benchmarks/results.py report --datasets ml100k toys games --plot docs/img/results.png --store docs/results
    python benchmarks/results.py masked --root runs/p10-games --dataset games --store docs/results/p10-games
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(Path(__file__).resolve().parent)]

from results_masked import masked_report  # noqa: E402
from results_report import BASES, DEFAULT_LAMBDA_D, MODES, dataset_reports, plot, print_report, teacher_dirs  # noqa: E402
from student.config import DistillConfig, LossConfig, StudentConfig, TrainConfig  # noqa: E402
from student.trainer import train_student  # noqa: E402

log = logging.getLogger("results")
ABLATIONS = {  # SASRec + DRO + DLLM2Rec with one part removed (METHOD §4); the full model is dros+dllm2rec-<mode>
    "no-position-weight": {"gamma_position": 0.0},
    "no-confidence-weight": {"gamma_confidence": 0.0},
    "no-consistency-weight": {"gamma_consistency": 0.0},
    "no-ranking-loss": {"lambda_d": 0.0},
    "no-embedding-distillation": {"embedding": {"enabled": False}},
    "confidence-candidate": {"confidence": "candidate"},  # the default is the paper's "target"
    "lambda_d-0.1": {"lambda_d": 0.1},  # METHOD: lambda_d is tuned in {0.1 .. 1.0}
    "lambda_d-0.3": {"lambda_d": 0.3},
}


def student_config(base: str, seed: int, args, distill: dict | None = None) -> StudentConfig:
    model, alpha = BASES[base]
    return StudentConfig(model=model, loss=LossConfig(dro_alpha=alpha),
                         distill=DistillConfig.model_validate({"enabled": distill is not None, **(distill or {})}),
                         train=TrainConfig(epochs=args.epochs, patience=args.patience, seed=seed, device=args.device,
                                           num_threads=args.threads, mask_history=False))  # the paper's protocol


def run_one(job: tuple[str, str, dict, str | None]) -> str:
    data_dir, out_dir, config, teacher_dir = job
    start = time.perf_counter()
    metrics = train_student(data_dir, StudentConfig.model_validate(config), out_dir, teacher_dir=teacher_dir, resume=True)
    return (f"{out_dir}: test NDCG@20 {metrics['test']['NDCG@20']:.4f} HR@20 {metrics['test']['HR@20']:.4f} "
            f"(best epoch {metrics['best_epoch']}, {time.perf_counter() - start:.0f}s)")


def finished(out_dir: str, config: dict) -> bool:
    """A run is done once it stopped early or used up the epochs asked for now: raising `--epochs`
    resumes the runs that ended at the old cap (from last.pt, the same as an uninterrupted run)."""
    path = Path(out_dir) / "metrics.json"
    if not path.exists():
        return False
    metrics = json.loads(path.read_text())
    return metrics.get("stopped_early", True) or metrics["epochs_run"] >= config["train"]["epochs"]


def run_jobs(jobs: list[tuple[str, str, dict, str | None]], workers: int) -> None:
    todo = [j for j in jobs if not finished(j[1], j[2])]
    log.info("%d runs, %d already done, %d to train with %d workers", len(jobs), len(jobs) - len(todo), len(todo), workers)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for done, line in enumerate(pool.map(run_one, todo), 1):
            log.info("[%d/%d] %s", done, len(todo), line)


def students_jobs(args) -> list:
    base = Path(args.root) / args.dataset
    teachers = teacher_dirs(base, args.teachers)
    overlap_teacher = next(iter(teachers.values()), None)  # plain students: overlap "before distillation"
    jobs = []
    for name in args.bases:
        for seed in args.seeds:
            cfg = student_config(name, seed, args)
            jobs.append((str(base / "data"), str(base / "students" / name / f"seed{seed}"), cfg.model_dump(mode="json"),
                         str(overlap_teacher) if overlap_teacher else None))
            for mode, folder in teachers.items():
                for lam in args.lambdas:
                    distill = {"lambda_d": lam, **(ABLATIONS["no-embedding-distillation"] if args.ranking_only else {})}
                    label = distilled_label(name, mode, lam, ranking_only=args.ranking_only)
                    jobs.append((str(base / "data"), str(base / "students" / label / f"seed{seed}"),
                                 student_config(name, seed, args, distill=distill).model_dump(mode="json"), str(folder)))
    return jobs


def teacher_label(mode: str, lambda_d: float) -> str:
    """`hybrid` at the METHOD default lambda_d, `hybrid@lambda_d0.1` otherwise: what a student distilled
    from, in its run label and in the name of an ablation folder."""
    return mode if lambda_d == DEFAULT_LAMBDA_D else f"{mode}@lambda_d{lambda_d:g}"


def distilled_label(base: str, mode: str, lambda_d: float, ranking_only: bool = False) -> str:
    """`dros+dllm2rec-hybrid` at the METHOD default lambda_d, `dros+dllm2rec-hybrid@lambda_d0.1` otherwise;
    without embedding distillation `dros+dllm2rec-hybrid@lambda_d0.1-rank` (a '-tuned'/'-served' candidate too)."""
    if ranking_only:
        return f"{base}+dllm2rec-{mode}@lambda_d{lambda_d:g}-rank"
    return f"{base}+dllm2rec-{teacher_label(mode, lambda_d)}"


def ablation_jobs(args) -> list:
    """Each ablation at each of --lambdas (the full model it is compared with is
    dros+dllm2rec-<teacher>[@lambda_d...]); seed-major, so that a grid stopped early has whole seeds."""
    base = Path(args.root) / args.dataset
    return [(str(base / "data"),
             str(base / "ablations" / teacher_label(args.teacher, lam) / name / f"seed{seed}"),
             student_config("dros", seed, args, distill={"lambda_d": lam, **overrides}).model_dump(mode="json"),
             str(base / args.teacher))
            for seed in args.seeds for lam in args.lambdas for name, overrides in ABLATIONS.items()
            if not args.only or name in args.only]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["students", "ablations", "report", "masked"],
                   help="masked: re-evaluate the finished students of --dataset with the history masked (results_masked.py)")
    p.add_argument("--root", default="runs", help="Run root holding <dataset>/data and the teacher folders.")
    p.add_argument("--dataset", help="Dataset folder name under --root (students, ablations, masked).")
    p.add_argument("--datasets", nargs="+", default=[], help="report: datasets to summarise.")
    p.add_argument("--teachers", nargs="+", default=list(MODES),
                   help="students: teacher folders under <root>/<dataset> to distil from (modes or variants like retrieve-pop).")
    p.add_argument("--teacher", default="retrieve", help="ablations: the teacher mode.")
    p.add_argument("--only", nargs="+", choices=list(ABLATIONS), help="ablations: run only these.")
    p.add_argument("--bases", nargs="+", default=list(BASES), choices=list(BASES), help="students: base models.")
    p.add_argument("--lambdas", nargs="+", type=float, default=[DEFAULT_LAMBDA_D],
                   help="students: lambda_d values to train (the report adds '-tuned' and '-served' rows picked on "
                        "valid per seed); ablations: the lambda_d of the full model each ablation starts from.")
    p.add_argument("--ranking-only", action="store_true",
                   help="students: train the distilled runs without embedding distillation (the ranking loss alone, "
                        "a `full`-profile candidate), labelled '...@lambda_d<x>-rank'.")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--workers", type=int, default=2, help="runs in parallel")
    p.add_argument("--plot", type=Path, help="report: write a bar chart here")
    p.add_argument("--store", type=Path, help="report: folder of per-dataset summaries (<dataset>.json; masked: <dataset>-masked.json); a dataset "
                   "with run folders is written there, one without them is read from there")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.command == "report":
        reports = dataset_reports(Path(args.root), args.datasets, args.store)
        for rep in reports:
            print_report(rep)
        if args.plot:
            plot(reports, args.plot)
        return
    if args.command == "masked":
        masked_report(Path(args.root), args.dataset, args.store)
        return
    jobs = students_jobs(args) if args.command == "students" else ablation_jobs(args)
    run_jobs(jobs, args.workers)


if __name__ == "__main__":
    main()
