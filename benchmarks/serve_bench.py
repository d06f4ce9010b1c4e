"""Student serving speed: what "serves in milliseconds" means, measured on trained checkpoints.

For each checkpoint: file size (trained and exported for serving), load time, the latency of one request (one history, top-k
over the whole catalogue, through `student.recommend.recommend`, history excluded) as
p50/p95/p99 over real test histories, the share of it spent in the model's forward pass, and
the throughput of batched requests. A script, not a test: numbers go to docs/benchmarks.md.

    python benchmarks/serve_bench.py --data runs/games/data \
        --checkpoints runs/p10/games/students/{gru4rec,sasrec,dros}/seed0/best.pt --threads 1 2
    python benchmarks/serve_bench.py                  # demo: trains two small students first
    python benchmarks/serve_bench.py --device cuda    # the same on a GPU
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.student_bench import cpu_name, prepared, synthetic_teacher  # noqa: E402
from pipeline.dataset import load_dataset  # noqa: E402
from pipeline.prepare import DataConfig  # noqa: E402
from student.config import DistillConfig, StudentConfig, TrainConfig  # noqa: E402
from student.data import pad_histories  # noqa: E402
from student.recommend import export_student, load_student, recommend  # noqa: E402
from student.trainer import train_student  # noqa: E402

log = logging.getLogger("serve_bench")


def demo_checkpoints(cache: Path) -> tuple[Path, list[Path]]:
    """Two SASRec students on the demo (plain; KD+ED from a synthetic 4096-d teacher), 2 epochs."""
    data_dir = prepared(DataConfig(reader="demo"), cache / "demo" / "data")
    teacher_dir = synthetic_teacher(load_dataset(data_dir), cache / "demo" / "teacher-synthetic-4096", 4096)
    out = []
    for distill in (False, True):
        folder = cache / "demo" / "serve" / ("sasrec+kd+ed" if distill else "sasrec")
        if not (folder / "best.pt").exists():
            cfg = StudentConfig(model="sasrec", distill=DistillConfig(enabled=distill), train=TrainConfig(epochs=2))
            train_student(data_dir, cfg, folder, teacher_dir if distill else None)
        out.append(folder / "best.pt")
    return data_dir, out


def percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {f"p{q}_ms": round(float(np.percentile(a, q)), 3) for q in (50, 95, 99)} | {"mean_ms": round(float(a.mean()), 3)}


def served_mb(path: Path) -> float:
    """Size of the checkpoint's serving export (`dllm2rec student export`)."""
    with tempfile.TemporaryDirectory() as tmp:
        return export_student(path, Path(tmp) / "served.pt").stat().st_size / 2**20


def bench_checkpoint(path: Path, histories: list[list[int]], args, exported_mb: float) -> dict:
    t0 = time.perf_counter()
    model = load_student(path, device=args.device, bake=not args.no_bake)
    load_s = time.perf_counter() - t0
    max_len = int(model.checkpoint_info.get("max_len") or model.max_len)
    singles = [histories[i % len(histories)] for i in range(args.requests + args.warmup)]

    def one(h: list[int]) -> float:
        t = time.perf_counter()
        recommend(model, [h], k=args.k)
        return 1000 * (time.perf_counter() - t)

    @torch.no_grad()
    def forward_only(h: list[int]) -> float:  # the model's share: scores for one padded history
        hist, lengths = pad_histories([h], max_len, model.n_items)
        t = time.perf_counter()
        model.scores(hist.to(args.device), lengths.to(args.device))
        if args.device == "cuda":
            torch.cuda.synchronize()
        return 1000 * (time.perf_counter() - t)

    for h in singles[: args.warmup]:
        one(h), forward_only(h)
    latency = [one(h) for h in singles[args.warmup:]]
    forward = [forward_only(h) for h in singles[args.warmup:]]
    batched = {}
    for size in args.batch_sizes:
        recommend(model, histories[:size], k=args.k, batch_size=size)  # warm-up
        t = time.perf_counter()
        recommend(model, histories, k=args.k, batch_size=size)
        batched[size] = round(len(histories) / (time.perf_counter() - t))
    teacher_dim = model.checkpoint_info.get("teacher_dim")
    return {"checkpoint": str(path), "model": model.config.model, "teacher_dim": teacher_dim,
            "n_items": int(model.n_items), "max_len": max_len, "size_mb": round(path.stat().st_size / 2**20, 1),
            "served_mb": round(exported_mb, 1), "baked": not args.no_bake,
            "load_s": round(load_s, 3), "single": percentiles(latency), "forward": percentiles(forward),
            "histories_per_s": batched, "threads": torch.get_num_threads(), "device": args.device}


def label(path: Path) -> str:
    parts = path.parts
    return "/".join(parts[-3:-1]) if len(parts) >= 3 else str(path)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="Prepared dataset whose test histories are the requests (default: demo).")
    p.add_argument("--checkpoints", type=Path, nargs="+", help="Student checkpoints (best.pt); default: demo students.")
    p.add_argument("--threads", type=int, nargs="+", default=[1], help="torch intra-op threads, one pass each.")
    p.add_argument("--requests", type=int, default=1000, help="Timed single-history requests per checkpoint.")
    p.add_argument("--warmup", type=int, default=50, help="Untimed requests first.")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 1024], help="Batched passes over all test histories.")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="Where the model serves.")
    p.add_argument("--no-bake", action="store_true", help="Serve as trained (project teacher embeddings per request).")
    p.add_argument("-k", type=int, default=20, help="Items per request.")
    p.add_argument("--cache", type=Path, default=REPO / "runs" / "bench", help="Where the demo data and students live.")
    p.add_argument("--out", type=Path, help="Also write the rows as JSON.")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.checkpoints:
        if args.data is None:
            p.error("--checkpoints needs --data (the dataset whose test histories are replayed)")
        data_dir, checkpoints = args.data, args.checkpoints
    else:
        data_dir, checkpoints = demo_checkpoints(args.cache)
    test = load_dataset(data_dir).split("test")
    histories = [list(map(int, h)) for h in test["history"]]
    log.info("%d test histories from %s (median length %d)", len(histories), data_dir,
             int(np.median([len(h) for h in histories])))
    exported = {path: served_mb(path) for path in checkpoints}  # once, not per thread count
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for path in checkpoints:
            log.info("checkpoint %s, %d thread(s)", path, threads)
            rows.append(bench_checkpoint(path, histories, args, exported[path]))
    where = torch.cuda.get_device_name(0) if args.device == "cuda" else f"CPU {cpu_name()}"
    print(f"{where}, torch {torch.__version__}, data {data_dir}, {len(histories)} test histories, top-{args.k}, "
          f"{args.requests} single requests, {'as trained' if args.no_bake else 'baked'}")
    sizes = " | ".join(f"hist/s @{b}" for b in args.batch_sizes)
    print(f"| student | threads | MB | served MB | load s | p50 ms | p95 ms | p99 ms | forward p50 ms | {sizes} |")
    print("|---|---|---|---|---|---|---|---|---|" + "---|" * len(args.batch_sizes))
    for r in rows:
        per = " | ".join(str(r["histories_per_s"][b]) for b in args.batch_sizes)
        s = r["single"]
        print(f"| {label(Path(r['checkpoint']))} | {r['threads']} | {r['size_mb']} | {r['served_mb']} | {r['load_s']} | {s['p50_ms']} | "
              f"{s['p95_ms']} | {s['p99_ms']} | {r['forward']['p50_ms']} | {per} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
