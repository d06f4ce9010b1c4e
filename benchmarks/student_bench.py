"""Student speed: one training epoch and one full-ranking evaluation per model, with and
without DLLM2Rec distillation. A script, not a test: numbers go to docs/benchmarks.md.

Configurations (issue 2 §4): "plain" = the model + DRO (alpha 0.5, i.e. DROS for SASRec);
"distill" = plain + ranking KD (lambda 0.7, K 10) + embedding distillation (w_ed 0.3).
Batch 256, dim 64. Without --teacher a synthetic teacher of width --teacher-dim (4096, a
LLaMA-7B hidden size) is written once into the cache folder.

    python benchmarks/student_bench.py                         # demo data, prepared into runs/bench
    python benchmarks/student_bench.py --games                 # ../shared/data/games-dealrec, DROS-like windows
    python benchmarks/student_bench.py --games --models sasrec --distill on --max-steps 60
    python benchmarks/student_bench.py --data runs/x/data --teacher runs/x/teacher --device cuda
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.artifacts import load_teacher_artifacts  # noqa: E402
from pipeline.dataset import MANIFEST_FILE, load_dataset  # noqa: E402
from pipeline.prepare import DataConfig, prepare_dataset  # noqa: E402
from student.config import DistillConfig, LossConfig, StudentConfig, TrainConfig  # noqa: E402
from student.data import StudentData, SplitTensors  # noqa: E402
from student.evaluate import evaluate  # noqa: E402
from student.models import build_model  # noqa: E402
from student.synthetic import write_synthetic_teacher  # noqa: E402
from student.trainer import confidence_tau, make_optimizer, setup_runtime, train_epoch, training_loss  # noqa: E402

GAMES = REPO.parent / "shared" / "data" / "games-dealrec"
log = logging.getLogger("student_bench")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def prepared(config: DataConfig, folder: Path) -> Path:
    """Prepare once; later runs reuse the folder (the manifest is written last)."""
    if not (folder / MANIFEST_FILE).exists():
        log.info("preparing %s into %s", config.reader, folder)
        prepare_dataset(config, folder)
    return folder


def synthetic_teacher(dataset, folder: Path, dim: int) -> Path:
    if not (folder / "teacher_manifest.json").exists():
        log.info("writing a synthetic %d-wide teacher into %s", dim, folder)
        write_synthetic_teacher(dataset, folder, dim=dim, top_n=20, splits=("train", "test"), embedding_dtype="float16")
    return folder


def bench_config(model: str, distill: bool, device: str, batch_size: int, compile: str = "off") -> StudentConfig:
    return StudentConfig(model=model, loss=LossConfig(dro_alpha=0.5), distill=DistillConfig(enabled=distill),
                         train=TrainConfig(batch_size=batch_size, device=device, seed=0, compile=compile))


def first_rows(split: SplitTensors, n: int) -> SplitTensors:
    return SplitTensors(split.sample_ids[:n], split.history[:n], split.lengths[:n], split.target[:n])


class Capped:
    """`StudentData` whose epoch stops after `max_steps` batches (for quick extrapolated runs)."""

    def __init__(self, data: StudentData, max_steps: int | None):
        self.data, self.max_steps = data, max_steps
        self.splits = data.splits

    def epoch(self, *args, **kwargs):
        for step, batch in enumerate(self.data.epoch(*args, **kwargs)):
            if self.max_steps is not None and step >= self.max_steps:
                return
            yield batch


def run_one(dataset, teacher, model_name: str, distill: bool, args, device: torch.device) -> dict:
    cfg = bench_config(model_name, distill, str(device), args.batch_size, args.compile)
    data = StudentData.build(dataset, teacher if distill else None, k=cfg.distill.k)
    torch.manual_seed(0)
    model = build_model(cfg, data.n_items, teacher_embeddings=data.teacher_embeddings, item_popularity=data.popularity)
    if distill:
        model.set_confidence_tau(confidence_tau(cfg, data))
    model.to(device)
    optimizer = make_optimizer(model, cfg)
    generator = torch.Generator(device=device).manual_seed(0)
    data = data.to(device)
    n_train = len(data.splits["train"])
    steps_total = -(-n_train // args.batch_size)
    capped = Capped(data, args.max_steps)
    warmup_s = time.perf_counter()
    loss_fn = training_loss(model, cfg)
    if args.warmup:  # first steps pay one-off allocation / kernel-selection / compilation costs
        train_epoch(model, optimizer, Capped(data, args.warmup), cfg, generator, device, 0, loss_fn=loss_fn)
    short = n_train % args.batch_size
    if cfg.train.compile != "off" and short and args.max_steps is None:  # the epoch's short last batch: its own graph
        short_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"batch_size": short})})
        train_epoch(model, optimizer, Capped(data, 1), short_cfg, generator, device, 0, loss_fn=loss_fn)
    warmup_s = time.perf_counter() - warmup_s
    cpu0 = time.process_time()
    stats = train_epoch(model, optimizer, capped, cfg, generator, device, 1, loss_fn=loss_fn)
    if device.type == "cuda":
        torch.cuda.synchronize()
    cpu_train = time.process_time() - cpu0
    steps = min(steps_total, args.max_steps or steps_total)
    epoch_seconds = stats["train_seconds"] * steps_total / steps
    valid = first_rows(data.splits["valid"], args.eval_rows)  # timed unmasked, as docs/benchmarks.md recorded
    evaluate(model, first_rows(valid, 256), batch_size=args.eval_batch_size, mask_history=False)  # warm-up
    cpu0 = time.process_time()
    result = evaluate(model, valid, batch_size=args.eval_batch_size, top_n=0, mask_history=False)
    cpu_eval = time.process_time() - cpu0
    with_topk = evaluate(model, valid, batch_size=args.eval_batch_size, top_n=20, mask_history=False)
    return {"model": model_name, "distill": distill, "train_windows": n_train, "steps_timed": steps,
            "epoch_seconds": round(epoch_seconds, 2), "samples_per_second": round(n_train / epoch_seconds),
            "ms_per_step": round(1000 * stats["train_seconds"] / steps, 1),
            "epoch_cpu_seconds": round(cpu_train * steps_total / steps, 2), "eval_rows": len(valid),
            "eval_cpu_seconds": round(cpu_eval, 2),
            "eval_seconds": round(result.seconds, 2), "eval_top20_seconds": round(with_topk.seconds, 2),
            "loss": round(stats["loss"], 4), "compile": args.compile, "warmup_seconds": round(warmup_s, 1)}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="A prepared dataset folder (default: the demo).")
    p.add_argument("--games", action="store_true", help=f"Use {GAMES} (DROS-like 10-item train windows).")
    p.add_argument("--teacher", type=Path, help="Teacher artifact folder (default: synthetic).")
    p.add_argument("--teacher-dim", type=int, default=4096, help="Width of the synthetic teacher embeddings.")
    p.add_argument("--models", nargs="+", default=["gru4rec", "caser", "sasrec"])
    p.add_argument("--distill", choices=["both", "on", "off"], default="both")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--eval-rows", type=int, default=20000, help="Valid windows to rank (full catalogue).")
    p.add_argument("--eval-batch-size", type=int, default=1024)
    p.add_argument("--max-steps", type=int, default=None, help="Time only this many steps and extrapolate the epoch.")
    p.add_argument("--warmup", type=int, default=3, help="Untimed steps before the timed epoch.")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto.")
    p.add_argument("--compile", default="off", choices=["off", "default", "reduce-overhead"],
                   help="train.compile (compilation happens in the untimed warm-up).")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
    p.add_argument("--cache", type=Path, default=REPO / "runs" / "bench", help="Where prepared data / teachers live.")
    p.add_argument("--out", type=Path, help="Also write the rows as JSON.")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    device = setup_runtime(StudentConfig(train=TrainConfig(device=args.device, num_threads=args.threads)))

    if args.data is not None:
        data_dir = args.data
    elif args.games:
        if not GAMES.exists():
            sys.exit(f"{GAMES} is not here")
        data_dir = prepared(DataConfig(reader="presplit", path=GAMES, untitled="keep", given_train="windows"),
                            args.cache / "games-dealrec" / "data")
    else:
        data_dir = prepared(DataConfig(reader="demo"), args.cache / "demo" / "data")
    dataset = load_dataset(data_dir)
    modes = {"both": [False, True], "on": [True], "off": [False]}[args.distill]
    teacher = None
    if True in modes:
        teacher_dir = args.teacher or synthetic_teacher(dataset, data_dir.parent / f"teacher-synthetic-{args.teacher_dim}",
                                                        args.teacher_dim)
        teacher = load_teacher_artifacts(teacher_dir, dataset)

    rows = [run_one(dataset, teacher, m, d, args, device) for m in args.models for d in modes]
    header = (f"device {device} ({torch.cuda.get_device_name(0) if device.type == 'cuda' else cpu_name()}), "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads, data {data_dir}, "
              f"{dataset.n_items} items, batch {args.batch_size}, compile {args.compile}")
    print(header)
    # CPU seconds (all threads) next to wall seconds: on a shared, busy machine the wall clock
    # also counts time the process was not running; with one thread, CPU time ~ quiet wall time.
    print("| model | distill | train windows | epoch s | epoch CPU s | samples/s | ms/step | eval rows | eval s "
          "| eval CPU s | eval+top20 s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {'KD+ED' if r['distill'] else 'no'} | {r['train_windows']} | {r['epoch_seconds']} | "
              f"{r['epoch_cpu_seconds']} | {r['samples_per_second']} | {r['ms_per_step']} | {r['eval_rows']} | "
              f"{r['eval_seconds']} | {r['eval_cpu_seconds']} | {r['eval_top20_seconds']} |")
    if args.out:
        args.out.write_text(json.dumps({"header": header, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
