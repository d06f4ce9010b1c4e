"""Train one student: seeded, resumable, model selection on VALID, test reported once.

Each epoch trains on shuffled batches (tqdm shows samples/s), evaluates full ranking on the
valid split, keeps `best.pt` by valid NDCG@20 and stops after `patience` epochs without
improvement. `last.pt` (weights, optimizer, every RNG state, history) is written atomically
after every epoch, so `resume=True` continues a crashed run and ends exactly where an
uninterrupted run with the same seed would. At the end `best.pt` is evaluated on test once
and `metrics.json` is written.

    >>> cfg = StudentConfig(model="sasrec", distill=DistillConfig(enabled=True))   # doctest: +SKIP
    >>> metrics = train_student("runs/demo/data", cfg, "runs/demo/sasrec", teacher_dir="runs/demo/teacher")  # doctest: +SKIP
    >>> metrics["test"]["NDCG@20"]                                                    # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import logging
import random
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from pipeline.artifacts import load_teacher_artifacts
from pipeline.dataset import load_dataset
from pipeline.io import write_json, write_parquet
from pipeline.metrics import topk_overlap
from student.checkpoint import load_checkpoint, model_payload, rng_state, save_checkpoint, set_rng_state
from student.config import StudentConfig
from student.data import StudentData
from student.evaluate import EvalResult, evaluate, protocol_string
from student.losses import default_tau
from student.models import Batch, build_model

log = logging.getLogger(__name__)

SELECT_METRIC = "NDCG@20"
TEST_RANKS_FILE = "test_ranks.parquet"  # per-sample test ranks of the selected checkpoint
# Config fields that may change between a run and its resumption (they do not change the math).
RESUMABLE_CHANGES = {("train", "epochs"), ("train", "patience"), ("train", "device"),
                     ("train", "num_threads"), ("train", "eval_batch_size"), ("train", "compile")}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    return device


def setup_runtime(config: StudentConfig) -> torch.device:
    """Pick the device; on CPU set the thread count and flush subnormal floats to zero
    (exp() of very negative DRO logits makes subnormals, ~100x slower on x86)."""
    device = resolve_device(config.train.device)
    if device.type == "cpu":
        if config.train.num_threads:
            torch.set_num_threads(config.train.num_threads)
        torch.set_flush_denormal(True)
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast_context(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA (no grad scaler needed, fp32 range for the exp in DRO)."""
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16)


def make_optimizer(model: torch.nn.Module, config: StudentConfig) -> torch.optim.Optimizer:
    """Adam, fused: on CPU the default per-parameter loop costs ~100 ms per step on a
    [17k, 64] item table (2 cores), the fused kernel ~3 ms."""
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        return torch.optim.Adam(params, lr=config.train.lr, weight_decay=config.train.weight_decay, fused=True)
    except (RuntimeError, ValueError):  # a device without a fused kernel
        return torch.optim.Adam(params, lr=config.train.lr, weight_decay=config.train.weight_decay, foreach=True)


def config_changes(old: dict, new: dict, prefix: tuple = ()) -> list[tuple]:
    """Paths where two config dicts differ (nested), e.g. `[("train", "lr")]`."""
    keys = set(old) | set(new)
    out = []
    for k in sorted(keys):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_changes(a, b, prefix + (k,))
        elif a != b:
            out.append(prefix + (k,))
    return out


def confidence_tau(config: StudentConfig, data: StudentData) -> float | None:
    """Temperature of the confidence weight over ALL train rankings (not per batch)."""
    if data.teacher is None or config.distill.tau is not None:
        return config.distill.tau
    t = data.teacher
    d = t.target_distance[t.has] if config.distill.confidence == "target" else t.distances[t.has]
    return default_tau(d)


def training_loss(model, config: StudentConfig) -> Callable[[Batch], dict[str, torch.Tensor]]:
    """`model.loss`, compiled when `train.compile` asks for it (Inductor fuses the DRO / KD
    elementwise chains; 'reduce-overhead' replays the step as a CUDA graph). Static shapes:
    the short last batch of an epoch gets its own graph. Compiling the bound method keeps the
    module itself, so checkpoints have the same keys with and without it."""
    if config.train.compile == "off":
        return model.loss
    return torch.compile(model.loss, mode=config.train.compile, dynamic=False)


def train_epoch(model, optimizer, data: StudentData, config: StudentConfig, generator: torch.Generator,
                device: torch.device, epoch: int,
                loss_fn: Callable[[Batch], dict[str, torch.Tensor]] | None = None) -> dict[str, float]:
    """One pass over the shuffled train split; returns mean losses and timing.

    `loss_fn` is `model.loss` or what `training_loss` made of it."""
    loss_fn = model.loss if loss_fn is None else loss_fn
    graphs = config.train.compile == "reduce-overhead"
    model.train()
    n = len(data.splits["train"])
    sums: dict[str, torch.Tensor] = {}
    steps = 0
    start = time.perf_counter()
    bar = tqdm(total=n, desc=f"epoch {epoch}", unit="sample", unit_scale=True, mininterval=2.0, leave=False)
    for batch in data.epoch(config.train.batch_size, config.loss.negatives, generator,
                            with_teacher=config.distill.enabled):
        if graphs:  # a new training step: the previous step's graph outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        with autocast_context(device, config.train.amp):
            out = loss_fn(batch)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        for key, value in out.items():
            sums[key] = sums.get(key, 0.0) + value.detach().float()
        steps += 1
        bar.update(len(batch.target))
        if steps % 50 == 0:
            bar.set_postfix(loss=f"{float(sums['loss']) / steps:.4f}")
    bar.close()
    seconds = time.perf_counter() - start
    means = {key: float(value) / max(steps, 1) for key, value in sums.items()}
    if not np.isfinite(means.get("loss", 0.0)):
        raise FloatingPointError(f"epoch {epoch}: training loss is {means['loss']} (lower train.lr?)")
    return {**means, "train_seconds": seconds, "samples_per_second": n / max(seconds, 1e-9)}


def teacher_overlap(teacher, test_ids: np.ndarray, student_topk: np.ndarray, k: int = 20) -> dict[str, Any] | None:
    """Mean top-k overlap of teacher and student lists on the test rows the teacher ranked."""
    if teacher is None:
        return None
    k = min(k, teacher.rankings.top_n, student_topk.shape[1])
    items, _, _, has = teacher.rankings.align(test_ids, k)
    if not has.any():
        return None
    return {"k": k, "rows": int(has.sum()), "overlap": topk_overlap(items[has], student_topk[has], k)}


def train_student(dataset_dir: str | Path, config: StudentConfig, out_dir: str | Path,
                  teacher_dir: str | Path | None = None, resume: bool = False) -> dict[str, Any]:
    """Train, select on valid NDCG@20, test once; write `metrics.json`, return it as a dict."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = setup_runtime(config)
    dataset = load_dataset(dataset_dir)
    if dataset.max_history > config.arch.max_len:
        raise ValueError(f"dataset histories have up to {dataset.max_history} items but arch.max_len="
                         f"{config.arch.max_len}; raise arch.max_len")
    if config.distill.enabled and teacher_dir is None:
        raise ValueError("distill.enabled needs teacher_dir (or turn distillation off)")
    teacher = load_teacher_artifacts(teacher_dir, dataset) if teacher_dir is not None else None
    if teacher is not None and not config.distill.enabled:
        log.info("distillation is off: the teacher at %s is used only for the test overlap", teacher_dir)
    data = StudentData.build(dataset, teacher if config.distill.enabled else None, k=config.distill.k)
    if data.teacher is not None and data.teacher_coverage == 0:
        raise ValueError(f"the teacher at {teacher_dir} ranked none of the train samples")

    seed_everything(config.train.seed)
    model = build_model(config, data.n_items, teacher_embeddings=data.teacher_embeddings,
                        item_popularity=data.popularity)
    tau = confidence_tau(config, data)
    if tau is not None and config.distill.enabled:
        model.set_confidence_tau(tau)
    model.to(device)
    optimizer = make_optimizer(model, config)
    loss_fn = training_loss(model, config)
    generator = torch.Generator(device=device).manual_seed(config.train.seed)
    gpu_data = data.to(device)
    teacher_dim = data.teacher_embeddings.shape[1] if data.teacher_embeddings is not None else None

    state: dict[str, Any] = {"epoch": 0, "best_metric": -1.0, "best_epoch": 0, "bad_epochs": 0,
                             "stopped": False, "history": [], "train_seconds": 0.0}
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    if resume and last_path.exists():
        ckpt = load_checkpoint(last_path)  # on CPU: RNG states must stay CPU tensors
        changed = [c for c in config_changes(ckpt["config"], config.model_dump(mode="json"))
                   if c not in RESUMABLE_CHANGES]
        if changed or ckpt["dataset_hash"] != dataset.content_hash:
            raise ValueError(f"cannot resume {last_path}: config fields {changed} or the dataset changed")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"], generator)
        state = ckpt["state"]
        state["stopped"] = state["bad_epochs"] >= config.train.patience  # patience may have changed
        log.info("resumed from %s after epoch %d (best valid %s %.4f at epoch %d)", last_path, state["epoch"],
                 SELECT_METRIC, state["best_metric"], state["best_epoch"])
    elif resume:
        log.info("nothing to resume in %s: starting from scratch", out_dir)

    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("training %s (%d trainable params) on %s: %d train samples, batch %d, distill=%s",
             config.model, n_params, device, len(data.splits["train"]), config.train.batch_size,
             config.distill.enabled)
    while not state["stopped"] and state["epoch"] < config.train.epochs:
        epoch = state["epoch"] + 1
        stats = train_epoch(model, optimizer, gpu_data, config, generator, device, epoch, loss_fn=loss_fn)
        valid = evaluate(model, gpu_data.splits["valid"], batch_size=config.train.eval_batch_size,
                         mask_history=config.train.mask_history, top_n=0)
        metric = valid.metrics[SELECT_METRIC]
        improved = metric > state["best_metric"]
        state["train_seconds"] += stats["train_seconds"]
        state["history"].append({"epoch": epoch, **stats, "valid": valid.metrics, "eval_seconds": valid.seconds})
        if improved:
            state.update(best_metric=metric, best_epoch=epoch, bad_epochs=0)
            save_checkpoint(best_path, {**model_payload(model, config, data.n_items, data.max_len, teacher_dim,
                                                        dataset.content_hash), "epoch": epoch, "valid": valid.metrics})
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        state["stopped"] = state["bad_epochs"] >= config.train.patience
        save_checkpoint(last_path, {**model_payload(model, config, data.n_items, data.max_len, teacher_dim,
                                                    dataset.content_hash),
                                    "optimizer": optimizer.state_dict(), "rng": rng_state(generator), "state": state})
        log.info("epoch %d: loss %.4f (bce %.4f dro %.4f kd %.4f) %.1fs %.0f samples/s | valid %s %.4f "
                 "HR@20 %.4f (%.1fs)%s", epoch, stats["loss"], stats["bce"], stats["dro"], stats["kd"],
                 stats["train_seconds"], stats["samples_per_second"], SELECT_METRIC, metric,
                 valid.metrics["HR@20"], valid.seconds, " *best*" if improved else "")
        if state["stopped"]:
            log.info("early stop: no better valid %s for %d epochs", SELECT_METRIC, config.train.patience)
    if not state["stopped"]:
        log.warning("reached the epoch cap (train.epochs=%d) before early stopping: best valid %s at epoch %d, "
                    "patience %d not used up; the student may be under-trained, raise train.epochs",
                    config.train.epochs, SELECT_METRIC, state["best_epoch"], config.train.patience)
    return finish(model, gpu_data, dataset, config, teacher, state, out_dir, tau)


def finish(model, data: StudentData, dataset, config: StudentConfig, teacher, state: dict,
           out_dir: Path, tau: float | None) -> dict[str, Any]:
    """Load best.pt, evaluate test once, write metrics.json."""
    best = load_checkpoint(out_dir / "best.pt")
    model.load_state_dict(best["model"])
    test: EvalResult = evaluate(model, data.splits["test"], batch_size=config.train.eval_batch_size,
                                mask_history=config.train.mask_history, top_n=20)
    best_row = state["history"][state["best_epoch"] - 1]
    n_train = len(data.splits["train"])
    seen = n_train * state["epoch"]
    metrics = {
        "config": config.model_dump(mode="json"),
        "protocol": protocol_string(config.train.mask_history),
        "selection": f"best valid {SELECT_METRIC}, patience {config.train.patience}",
        "dataset": {"path": str(dataset.path), "hash": dataset.content_hash, "n_items": dataset.n_items,
                    "counts": dataset.manifest.get("counts")},
        "teacher": None if teacher is None else {
            "path": str(teacher.path), "model": teacher.manifest.get("model_id"), "top_n": teacher.rankings.top_n,
            "dim": teacher.dim, "train_coverage": teacher.coverage, "used_for_distillation": config.distill.enabled,
            "confidence_tau": tau},
        "best_epoch": state["best_epoch"],
        "epochs_run": state["epoch"],
        "stopped_early": state["stopped"],
        "valid": best_row["valid"],
        "test": test.metrics,
        "test_eval_seconds": test.seconds,
        "train_seconds": state["train_seconds"],
        "samples_per_second": seen / max(state["train_seconds"], 1e-9),
        "teacher_student_overlap": teacher_overlap(teacher, data.splits["test"].sample_ids.cpu().numpy(), test.topk),
        "curve": [{"epoch": h["epoch"], "loss": h["loss"], "bce": h["bce"], "dro": h["dro"], "kd": h["kd"],
                   "valid_ndcg@20": h["valid"]["NDCG@20"], "valid_hr@20": h["valid"]["HR@20"],
                   "train_seconds": h["train_seconds"], "eval_seconds": h["eval_seconds"]} for h in state["history"]],
    }
    # per-sample test ranks: paired comparisons (teacher vs student, significance) without re-evaluating
    write_parquet(pa.table({"sample_id": pa.array(data.splits["test"].sample_ids.cpu().numpy(), pa.int64()),
                            "rank": pa.array(test.ranks, pa.int64())}), out_dir / TEST_RANKS_FILE)
    write_json(metrics, out_dir / "metrics.json")
    log.info("test (best epoch %d): NDCG@20 %.4f HR@20 %.4f NDCG@10 %.4f HR@10 %.4f; metrics in %s",
             state["best_epoch"], test.metrics["NDCG@20"], test.metrics["HR@20"], test.metrics["NDCG@10"],
             test.metrics["HR@10"], out_dir / "metrics.json")
    return metrics
