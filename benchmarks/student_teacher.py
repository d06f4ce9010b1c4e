"""A control teacher: trained students' own rankings, written as a teacher folder.

Why: on real data the SmolLM2-135M teacher is 2-20x weaker than DROS, and DLLM2Rec then makes the
students worse (docs/results.md). That fits "the teacher is too weak", but it would also fit a loss
that is wrong. This script separates the two. It writes a teacher that is as strong as the students:
the mean log-softmax of trained checkpoints, e.g. the three plain DROS seeds. It uses the artifact
contract of `pipeline.artifacts`, and it copies the item embeddings of an LLM teacher folder. A
student distilled from it therefore differs from one distilled from the LLM teacher only in the
quality of the rankings.

Rankings are made as a served recommender makes them: the history is masked, so the positives
are new items. Distances are `best score - score`, so they run from 0 in ascending order. The
confidence temperature is the median distance (METHOD), which makes their scale irrelevant.
`target_distance` uses the unmasked score of the train target. The teacher's own valid and test
metrics go into the manifest, measured with the same protocol (history masked, every sample of
the split).

    python benchmarks/student_teacher.py --data runs/p10-ml100k/ml100k/data \\
        --checkpoints runs/p10-ml100k/ml100k/students/dros/seed{0,1,2}/best.pt \\
        --embeddings-from runs/p10-ml100k/ml100k/retrieve --out runs/p10-ml100k/ml100k/dros-ensemble
    python benchmarks/results.py students --root runs/p10-ml100k --dataset ml100k --teachers dros-ensemble ...
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.artifacts import TeacherRankings, load_teacher_artifacts, write_teacher_artifacts  # noqa: E402
from pipeline.dataset import Dataset, load_dataset  # noqa: E402
from student.data import split_tensors  # noqa: E402
from student.evaluate import evaluate, exclude_items  # noqa: E402
from student.recommend import load_student, require_trained_on  # noqa: E402

log = logging.getLogger("student_teacher")


class Ensemble(nn.Module):
    """Mean log-softmax over the items of several students. It has the students' `scores`
    interface, so `student.evaluate.evaluate` measures it like any student."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.n_items = int(members[0].n_items)

    def scores(self, history: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return torch.stack([m.scores(history, lengths).float().log_softmax(-1) for m in self.members]).mean(0)


def load_ensemble(checkpoints: list[str | Path], dataset: Dataset) -> Ensemble:
    members = [load_student(p) for p in checkpoints]
    for path, m in zip(checkpoints, members):
        require_trained_on(m, dataset, path)
    return Ensemble(members).eval()


@torch.inference_mode()
def rank_train(model: nn.Module, dataset: Dataset, top_n: int = 20, batch_size: int = 1024) -> TeacherRankings:
    """Top-`top_n` of every train sample, history masked; distances `best - score` (ascending)."""
    split = split_tensors(dataset, "train")
    items, dists, target_d = [], [], []
    start = time.perf_counter()
    bar = tqdm(range(0, len(split), batch_size), desc="rank train samples", unit="batch")
    for lo in bar:
        hist, lengths = split.history[lo:lo + batch_size], split.lengths[lo:lo + batch_size]
        scores = model.scores(hist, lengths).float()
        target_score = scores.gather(1, split.target[lo:lo + batch_size, None]).squeeze(1)
        top = exclude_items(scores, hist).topk(top_n, dim=1)
        best = top.values[:, 0]
        items.append(top.indices)
        dists.append(best[:, None] - top.values)
        target_d.append((best - target_score).clamp(min=0))  # a repeated target may beat every new item
        bar.set_postfix(samples_per_s=f"{(lo + len(hist)) / (time.perf_counter() - start):.0f}")
    return TeacherRankings(sample_ids=split.sample_ids.numpy(), topk_items=torch.cat(items).numpy().astype(np.int32),
                           topk_distances=torch.cat(dists).numpy().astype(np.float32),
                           target_distance=torch.cat(target_d).numpy().astype(np.float32))


def write_student_teacher(data_dir: str | Path, checkpoints: list[str | Path], embeddings_from: str | Path,
                          out_dir: str | Path, top_n: int = 20) -> Path:
    """Rank the train samples with the ensemble of `checkpoints`, measure it on valid and test,
    and write a teacher folder with the embeddings of the teacher folder `embeddings_from`."""
    dataset = load_dataset(data_dir)
    embeddings = load_teacher_artifacts(embeddings_from, dataset).embeddings
    model = load_ensemble(checkpoints, dataset)
    start = time.perf_counter()
    rankings = rank_train(model, dataset, top_n)
    seconds = time.perf_counter() - start
    log.info("ranked %d train samples in %.1f s (%.0f/s)", len(rankings), seconds, len(rankings) / max(seconds, 1e-9))
    metrics = {}
    for split in ("valid", "test"):
        result = evaluate(model, split_tensors(dataset, split), mask_history=True, top_n=0)
        metrics[split] = {**result.metrics, "n": len(result.ranks)}
        log.info("teacher %s: HR@20 %.4f NDCG@20 %.4f (%d samples, %s)", split, result.metrics["HR@20"],
                 result.metrics["NDCG@20"], len(result.ranks), result.protocol)
    manifest = {"mode": "student-ensemble", "model": [str(p) for p in checkpoints],
                "embeddings_from": str(embeddings_from), "device": "cpu", "metrics": metrics,
                "metrics_protocol": "history masked, every sample of the split",
                "timings": {"rank_train": {"seconds": round(seconds, 3), "samples": len(rankings)}}}
    return write_teacher_artifacts(out_dir, rankings, embeddings, dataset, manifest)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="Prepared dataset folder (dllm2rec data prepare).")
    p.add_argument("--checkpoints", nargs="+", required=True, help="Students' best.pt files, averaged.")
    p.add_argument("--embeddings-from", required=True, help="Teacher folder whose item embeddings to copy.")
    p.add_argument("--out", required=True, help="Teacher folder to write.")
    p.add_argument("--top-n", type=int, default=20, help="Items per train sample (the contract needs >= 10).")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    print(write_student_teacher(args.data, args.checkpoints, args.embeddings_from, args.out, args.top_n))


if __name__ == "__main__":
    main()
