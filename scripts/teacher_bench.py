"""Teacher throughput benchmark: fine-tune, generate (HF / vLLM, greedy / beam), embed, ground.

Runs the teacher's own code (`finetune_lora`, `HFGenerator`, `VllmGenerator`,
`TextEmbedder`, `chunked_topn`) on the demo dataset (or `--data`) and prints samples/s
per step plus a few generations. Used on CPU here and on a GPU by
scripts/gpu_teacher_bench.sh; numbers go to docs/benchmarks.md ("## Teacher").

    .venv/bin/python scripts/teacher_bench.py --n-prompts 32 --backends hf,vllm --beams 1,4
    python scripts/teacher_bench.py --device cuda --n-train 1024 --epochs 1 --n-prompts 4096 --beams 4 --batch-size 256,1024 \
        --prefill shared,per-beam
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="canonical dataset folder (default: a fresh demo dataset)")
    p.add_argument("--model", default="smollm2", help="teacher model name or folder")
    p.add_argument("--device", default="auto")
    p.add_argument("--n-train", type=int, default=64, help="fine-tuning samples (0 = skip fine-tuning)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--train-batch", type=int, default=16)
    p.add_argument("--n-prompts", type=int, default=32, help="prompts to generate for")
    p.add_argument("--prompt-split", default="test", help="split the prompts are drawn from (train has the most)")
    p.add_argument("--demo-users", type=int, default=2000, help="users of the generated demo dataset")
    p.add_argument("--batch-size", default="32", help="comma list of HF generation batch sizes (the fastest is reported)")
    p.add_argument("--prefill", default="shared", help="comma list of shared,per-beam (HF beams: prompt prefilled once or per beam)")
    p.add_argument("--embed-batch", type=int, default=64, help="titles / generations per embedding forward pass")
    p.add_argument("--backends", default="hf", help="comma list of hf,vllm")
    p.add_argument("--beams", default="1,4", help="comma list of beam widths")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="generation length (default: automatic, longest title + 2, at most 64); a title's p99 "
                        "length + 2 measures what the cap costs")
    p.add_argument("--out", default=None, help="write the results JSON here too")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p.parse_args()


def time_generation(model_dir, adapter, device, dtype, max_new: int, prompts: list[str], cfg) -> tuple[list[str], dict]:
    """Generations and the timed rate of one backend / beam width / batch size (load and warm-up untimed)."""
    from teacher.generate import make_generator

    t0 = time.perf_counter()
    with make_generator(model_dir, adapter, cfg, device, dtype, max_new) as gen:
        load_s = time.perf_counter() - t0
        gen.generate(prompts[: min(4, len(prompts))])  # warm-up
        t1 = time.perf_counter()
        texts = gen.generate(prompts, progress=True)
        seconds = time.perf_counter() - t1
    return texts, {"samples_per_s": round(len(prompts) / seconds, 2), "seconds": round(seconds, 2),
                   "load_s": round(load_s, 1), "n": len(prompts), "batch_size": cfg.batch_size}


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    from pipeline.dataset import load_dataset
    from pipeline.prepare import DataConfig, prepare_dataset
    from teacher.config import FinetuneConfig, GenerationConfig, LoraSettings, ModelConfig, PromptConfig
    from teacher.embed import TextEmbedder
    from teacher.finetune import finetune_lora, seeded_sample
    from teacher.generate import max_new_tokens_for
    from teacher.ground import L2Scorer, chunked_topn
    from teacher.model import load_causal_lm, load_tokenizer, resolve_device, resolve_dtype, resolve_model_dir
    from teacher.prompts import PromptBuilder

    tmp = Path(tempfile.mkdtemp(prefix="teacher_bench_"))
    data = Path(args.data) if args.data else prepare_dataset(DataConfig(reader="demo", demo_users=args.demo_users), tmp / "data")
    ds = load_dataset(data)
    device = resolve_device(args.device)
    dtype = resolve_dtype("auto", device)
    start = time.perf_counter()
    model_dir = resolve_model_dir(ModelConfig(name=args.model))
    results: dict = {"device": str(device), "dtype": str(dtype), "model": args.model, "n_items": ds.n_items,
                     "torch_threads": torch.get_num_threads(), "resolve_model_s": round(time.perf_counter() - start, 2)}
    if device.type == "cuda":
        results["gpu"] = torch.cuda.get_device_name(device)
    builder = PromptBuilder(ds.titles, PromptConfig(), ds.max_history, ds.manifest)
    tokenizer = load_tokenizer(model_dir)

    adapter = None
    if args.n_train:
        train = seeded_sample(ds.split("train"), args.n_train, 0)
        valid = seeded_sample(ds.split("valid"), 32, 1)
        ft = FinetuneConfig(n_samples=args.n_train, epochs=args.epochs, batch_size=args.train_batch, patience=args.epochs)
        meta = finetune_lora(model_dir, builder, train, valid, LoraSettings(), ft, tmp / "adapter", tmp / "ft", device)
        adapter = tmp / "adapter"
        results["finetune"] = {k: meta[k] for k in ("n_train", "epochs_run", "train_seconds", "train_samples_per_second",
                                                    "train_tokens_per_second", "best_eval_loss")}

    test = seeded_sample(ds.split(args.prompt_split), args.n_prompts, 2)
    prompts = builder.prompts(test)
    max_new, results["title_lengths"] = max_new_tokens_for(tokenizer, builder.titles, args.max_new_tokens)
    results["max_new_tokens"] = max_new
    generations: dict[str, list[str]] = {}
    for backend in args.backends.split(","):
        for beams in [int(b) for b in args.beams.split(",")]:
            key = f"{backend}_beams{beams}"
            batch_sizes = [int(b) for b in args.batch_size.split(",")]
            if backend != "hf":  # vLLM batches and shares prefixes itself: one run
                batch_sizes = batch_sizes[:1]
            prefills = args.prefill.split(",") if backend == "hf" and beams > 1 else ["n/a"]  # greedy has no beams to share
            for batch_size, prefill in [(bs, pf) for bs in batch_sizes for pf in prefills]:
                cfg = GenerationConfig(backend=backend, num_beams=beams, batch_size=batch_size, shared_prefill=prefill == "shared")
                texts, rate = time_generation(model_dir, adapter, device, dtype, max_new, prompts, cfg)
                rate["prefill"] = prefill
                if key in generations:  # bf16 kernels may differ with batch shape: how often the top beam agrees
                    rate["same_top_beam_as_first"] = round(float(np.mean([a == b for a, b in zip(texts, generations[key])])), 4)
                results[f"generate_{key}_bs{batch_size}" + ("_per_beam" if prefill == "per-beam" else "")] = rate
                if rate["samples_per_s"] > results.get(f"generate_{key}", {}).get("samples_per_s", 0):
                    results[f"generate_{key}"] = rate  # the fastest variant
                generations.setdefault(key, texts)

    model = load_causal_lm(model_dir, device, dtype)
    embedder = TextEmbedder(model, tokenizer, device, batch_size=args.embed_batch)
    t0 = time.perf_counter()
    items = embedder(builder.titles)
    seconds = time.perf_counter() - t0
    results["embed_titles"] = {"items_per_s": round(len(items) / seconds, 1), "n": len(items)}
    texts = next(iter(generations.values()), builder.titles[: len(prompts)])
    embedder.known = {}
    t0 = time.perf_counter()
    queries = embedder(texts)
    idx, _ = chunked_topn(L2Scorer(queries, items, device), len(queries), len(items), 50, list(test["history"]),
                          device=device)
    seconds = time.perf_counter() - t0
    results["embed_and_ground"] = {"samples_per_s": round(len(queries) / seconds, 1), "n": len(queries)}
    hits = (idx[:, :20] == test["target"].to_numpy()[:, None]).any(1).mean()
    results["hr20_on_these_prompts"] = round(float(hits), 4)
    for key in [k for k in results if k.startswith("generate_") and k.endswith("beams4")]:  # the fastest batch size
        gen_rate, ground_rate = results[key]["samples_per_s"], results["embed_and_ground"]["samples_per_s"]
        results[f"{key}_plus_ground_samples_per_s"] = round(1 / (1 / gen_rate + 1 / ground_rate), 2)
    results["samples"] = [{"target": builder.titles[t], **{k: v[i] for k, v in generations.items()}}
                          for i, t in enumerate(test["target"].tolist()[:5])]
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
