"""Dry run: time a small batch of each step and extrapolate to the configured run.

Nothing is written. The generation probe uses the base model with a fresh (untrained)
adapter's shape, which rarely closes the quote early, so the generation estimate is an
upper bound; vLLM is not started (HF speed is reported for it too).

    >>> est = estimate_teacher("runs/demo/data", TeacherConfig(max_samples=1000))   # doctest: +SKIP
    >>> est["seconds"]["total"]                                                      # doctest: +SKIP
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from teacher.config import TeacherConfig
from teacher.embed import TextEmbedder
from teacher.finetune import encode_frame, seeded_sample
from teacher.generate import max_new_tokens_for
from teacher.generate_hf import HFGenerator
from teacher.ground import L2Scorer, chunked_topn
from teacher.model import load_causal_lm, load_tokenizer
from teacher.workspace import Workspace

log = logging.getLogger(__name__)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _train_seconds_per_sample(ws: Workspace, tokenizer, probe) -> float:
    """One forward + backward of a LoRA model on the probe batch (after a warm-up step)."""
    from peft import LoraConfig, get_peft_model

    lora = ws.config.lora
    model = load_causal_lm(ws.model_dir, ws.device, torch.float32)
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=lora.r, lora_alpha=lora.alpha,
                                             target_modules=list(lora.target_modules)))
    model.train()
    tokenizer.padding_side = "right"
    rows = encode_frame(tokenizer, ws.builder, probe, ws.config.finetune.max_length)
    batch = tokenizer.pad([{k: v for k, v in r.items() if k != "labels"} for r in rows], return_tensors="pt")
    labels = torch.full_like(batch["input_ids"], -100)
    for i, r in enumerate(rows):
        labels[i, : len(r["labels"])] = torch.tensor(r["labels"])
    batch = {k: v.to(ws.device) for k, v in {**batch, "labels": labels}.items()}

    def step() -> None:
        model(**batch).loss.backward()
        model.zero_grad(set_to_none=True)

    step()
    seconds = _timed(step) / len(rows)
    tokenizer.padding_side = "left"
    return seconds


def estimate_teacher(dataset_dir, config: TeacherConfig, out_dir: str | Path | None = None, probe: int = 8) -> dict:
    """Estimated seconds per step for `config` on this machine, from timed probe batches."""
    ws = Workspace.open(dataset_dir, config, out_dir or tempfile.mkdtemp(prefix="teacher_estimate_"))
    cfg = ws.config
    tokenizer = load_tokenizer(ws.model_dir)
    probe_rows = seeded_sample(ws.samples, probe, cfg.seed)
    n_rank, n_items = len(ws.samples), ws.dataset.n_items
    generate = cfg.mode != "retrieve"
    n_ft = min(cfg.finetune.n_samples, len(ws.dataset.split("train"))) if generate and cfg.finetune.enabled else 0
    seconds: dict[str, float] = {}
    lengths: dict | None = None
    if n_ft:
        per = _train_seconds_per_sample(ws, tokenizer, probe_rows)
        # eval passes are forward-only (~1/3 of a training step) over n_valid samples each epoch
        seconds["finetune"] = per * cfg.finetune.epochs * (n_ft + cfg.finetune.n_valid / 3)
    model = load_causal_lm(ws.model_dir, ws.device, ws.dtype)
    if generate:
        max_new, lengths = max_new_tokens_for(tokenizer, ws.builder.titles, cfg.generation.max_new_tokens)
        gen = HFGenerator(ws.model_dir, None, cfg.generation, ws.device, ws.dtype, max_new, model=model, tokenizer=tokenizer)
        prompts = ws.builder.prompts(probe_rows)
        gen.generate(prompts[:1])
        seconds["generate"] = _timed(lambda: gen.generate(prompts)) / len(prompts) * n_rank
    embedder = TextEmbedder(model, tokenizer, ws.device, cfg.ground.embed_batch_size)
    titles = ws.builder.titles[: max(probe, cfg.ground.embed_batch_size)]
    per_text = _timed(lambda: embedder(titles)) / len(titles)
    seconds["embed"] = per_text * (n_items + (n_rank if generate else 0))
    q = np.random.default_rng(0).standard_normal((min(n_rank, 256), embedder.dim)).astype(np.float32)
    items = np.random.default_rng(1).standard_normal((n_items, embedder.dim)).astype(np.float32)
    top_n = min(cfg.ground.top_n, n_items)
    per_query = _timed(lambda: chunked_topn(L2Scorer(q, items, ws.device), len(q), n_items, top_n,
                                            query_chunk=cfg.ground.query_chunk, item_chunk=cfg.ground.item_chunk,
                                            device=ws.device)) / len(q)
    seconds["ground"] = per_query * n_rank * (1 + (len(cfg.hybrid_weights) if cfg.mode == "hybrid" else 0))
    seconds["total"] = sum(seconds.values())
    result = {"device": str(ws.device), "mode": cfg.mode, "n_rank": n_rank, "n_items": n_items, "n_finetune": n_ft,
              "probe": len(probe_rows), "seconds": {k: float(f"{v:.3g}") for k, v in seconds.items()},
              "generation_length": lengths,
              "note": "generation timed with HF and the untrained base model: an upper bound"}
    log.info("estimate: %s", result)
    return result
