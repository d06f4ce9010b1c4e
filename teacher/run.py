"""The teacher run: fine-tune -> generate -> ground -> write artifacts (METHOD §2).

Every step is resumable: the adapter is reused when its fingerprint matches, generation
and grounding are sharded (`teacher.shards`), item embeddings are cached, and the
manifest is written last. Each step is also callable on its own (the CLI and the flows
do), with the same `(dataset_dir, config, out_dir)` signature.

    >>> run_teacher("runs/demo/data", TeacherConfig(max_samples=200), "runs/demo/teacher")  # doctest: +SKIP
    PosixPath('runs/demo/teacher')
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.artifacts import TeacherRankings, rankings_table, write_teacher_artifacts
from pipeline.dataset import Dataset
from pipeline.io import atomic_path, read_json, write_json, write_parquet
from pipeline.metrics import metrics_from_ranks
from teacher.config import TeacherConfig
from teacher.embed import TextEmbedder, embed_titles
from teacher.finetune import finetune_lora, read_adapter_meta, seeded_sample
from teacher.generate import choose_backend, make_generator, max_new_tokens_for
from teacher.ground import L2Scorer, chunked_topn, teacher_ranks, title_groups
from teacher.model import empty_cache, load_causal_lm, load_tokenizer
from teacher.modes import HybridScorer, PopularityScorer, grid_key, retrieve_queries, select_on_valid
from teacher.prompts import parse_generation
from teacher.shards import ShardedWork, keys_hash
from teacher.workspace import Workspace

log = logging.getLogger(__name__)

DatasetArg = str | Path | Dataset


# ---------------------------------------------------------------- fine-tune
def finetune_step(dataset_dir: DatasetArg, config: TeacherConfig, out_dir: str | Path) -> Path | None:
    """Train (or reuse) the LoRA adapter; returns its folder, or None when fine-tuning is disabled."""
    return _finetune(Workspace.open(dataset_dir, config, out_dir))


def _finetune(ws: Workspace) -> Path | None:
    cfg = ws.config
    if not cfg.finetune.enabled:
        return None
    fp = ws.fingerprint("finetune", ws.builder.hash, cfg.lora, cfg.finetune)
    meta = read_adapter_meta(ws.adapter_dir)
    if meta and meta.get("fingerprint") == fp:
        log.info("adapter %s is up to date (hash %s)", ws.adapter_dir, meta["adapter_hash"][:12])
        return ws.adapter_dir
    train_all = ws.dataset.split("train")
    train = seeded_sample(train_all, cfg.finetune.n_samples, cfg.finetune.seed)
    valid = ws.dataset.split("valid")
    if len(valid) == 0:  # no valid split: hold out train samples not used for training
        valid = train_all[~train_all["sample_id"].isin(train["sample_id"])]
    valid = seeded_sample(valid, cfg.finetune.n_valid, cfg.finetune.seed + 1)
    if len(train) == 0 or len(valid) == 0:
        raise ValueError("fine-tuning needs train samples and valid (or spare train) samples")
    meta = finetune_lora(ws.model_dir, ws.builder, train, valid, cfg.lora, cfg.finetune, ws.adapter_dir,
                         ws.work_dir / f"finetune-{fp}", ws.device,
                         extra_meta={"fingerprint": fp, "prompt_hash": ws.builder.hash, "model": cfg.model.name})
    ws.record_timing("finetune", seconds=meta["train_seconds"], samples_per_s=meta["train_samples_per_second"] or 0.0)
    return ws.adapter_dir


def _adapter(ws: Workspace) -> Path | None:
    """The adapter to generate with: a subset run reuses one already in place, else fine-tune (or reuse)."""
    if ws.sample_ids is not None and ws.config.finetune.enabled and read_adapter_meta(ws.adapter_dir):
        log.info("subset run: reusing the adapter in %s", ws.adapter_dir)
        return ws.adapter_dir
    return _finetune(ws)


# ---------------------------------------------------------------- generate
def generate_step(dataset_dir: DatasetArg, config: TeacherConfig, out_dir: str | Path, *,
                  sample_ids: np.ndarray | None = None) -> Path:
    """Generate one title per selected sample (sharded); writes and returns `generations.parquet`.

    `sample_ids`: rank exactly these samples instead of the configured splits and budgets.
    """
    ws = Workspace.open(dataset_dir, config, out_dir, sample_ids)
    return _generate(ws, _adapter(ws))


def _generate(ws: Workspace, adapter_dir: Path | None) -> Path:
    cfg = ws.config.generation
    tokenizer = load_tokenizer(ws.model_dir)
    max_new, lengths = max_new_tokens_for(tokenizer, ws.builder.titles, cfg.max_new_tokens)
    backend = choose_backend(cfg, ws.device)
    adapter_hash = read_adapter_meta(adapter_dir)["adapter_hash"] if adapter_dir else "none"
    fp = ws.fingerprint("generate", ws.builder.hash, adapter_hash, backend, cfg.num_beams, max_new, cfg.length_penalty,
                        keys_hash(ws.keys))
    work = ShardedWork(ws.work_dir / f"generate-{fp}", ws.keys, ws.config.shard_size, fp)
    if not work.done:
        start, n = time.perf_counter(), sum(len(work.shard_keys(i)) for i in work.pending())
        with make_generator(ws.model_dir, adapter_dir, cfg, ws.device, ws.dtype, max_new) as gen:
            def shard(keys: np.ndarray) -> pa.Table:
                raw = gen.generate_raw(ws.builder.prompts(ws.rows(keys)), progress=True)
                return pa.table({"sample_id": pa.array(keys, pa.int64()),
                                 "generation": [parse_generation(t) for t in raw], "raw": raw})
            work.run(shard, desc=f"generate ({gen.backend}, beams={cfg.num_beams})")
        seconds = time.perf_counter() - start
        ws.record_timing("generate", seconds=seconds, samples_per_s=n / max(seconds, 1e-9), samples=n)
    empty_cache()
    table = work.read()
    splits = ws.rows(table.column("sample_id").to_numpy())["split"].tolist()
    table = table.append_column("split", pa.array(splits, pa.string()))
    write_parquet(table.select(["sample_id", "split", "generation", "raw"]), ws.generations_path)
    write_json({"fingerprint": fp, "backend": backend, "num_beams": cfg.num_beams, "max_new_tokens": max_new,
                "adapter_hash": adapter_hash, "title_lengths": lengths}, ws.work_dir / "generation_info.json")
    return ws.generations_path


# ---------------------------------------------------------------- ground
def ground_step(dataset_dir: DatasetArg, config: TeacherConfig, out_dir: str | Path, *,
                sample_ids: np.ndarray | None = None) -> Path:
    """Embed, rank every selected sample and write the teacher artifacts (needs generations unless mode=retrieve)."""
    return _ground(Workspace.open(dataset_dir, config, out_dir, sample_ids))


def _item_embeddings(ws: Workspace, embedder: TextEmbedder) -> np.ndarray:
    path = ws.work_dir / f"items-{ws.fingerprint('items', ws.builder.titles, str(ws.dtype))}.npy"
    if path.exists():
        emb = np.load(path)
    else:
        start = time.perf_counter()
        emb = embed_titles(embedder, ws.builder.titles)
        seconds = time.perf_counter() - start
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, emb)
        ws.record_timing("embed_items", seconds=seconds, items_per_s=len(emb) / max(seconds, 1e-9))
    embedder.remember(ws.builder.titles, emb)
    return emb


def _generations(ws: Workspace) -> pd.Series:
    if not ws.generations_path.exists():
        raise FileNotFoundError(f"{ws.generations_path} is missing: run the generate step first (mode {ws.config.mode})")
    table = pq.read_table(ws.generations_path, columns=["sample_id", "generation"]).to_pandas()
    gens = table.set_index("sample_id")["generation"]
    missing = ~np.isin(ws.keys, gens.index.to_numpy())
    if missing.any():
        raise ValueError(f"{ws.generations_path} lacks {int(missing.sum())} of the selected samples: rerun generate")
    return gens


def _generation_embeddings(ws: Workspace, embedder: TextEmbedder) -> ShardedWork:
    """Every selected sample's generation embedded once, sharded and cached in work/gen-embed-<fp>/.

    Why: hybrid mode embeds the valid generations to choose its weight and then every shard, and
    a hybrid run in a folder copied from a generate run would embed them all again (Toys' hybrid
    grounding on CPU took 661 s, most of it that). The cache key is the generations, the model
    and the dtype, not the mode, so generate and hybrid share it. Read back with `.take(ids)`.
    """
    gens = _generations(ws)
    gen_fp = read_json(ws.work_dir / "generation_info.json")["fingerprint"]
    fp = ws.fingerprint("gen-embed", gen_fp, str(ws.dtype), keys_hash(ws.keys))
    work = ShardedWork(ws.work_dir / f"gen-embed-{fp}", ws.keys, ws.config.shard_size, fp)
    titles_known = dict(embedder.known)

    def shard(keys: np.ndarray) -> pa.Table:
        emb = embedder(gens.loc[keys].tolist(), desc="embed generations", progress=True)
        embedder.known = dict(titles_known)  # bounded memory: forget the shard's generations
        return pa.table({"sample_id": pa.array(keys, pa.int64()),
                         "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), emb.shape[1])})

    start, n = time.perf_counter(), sum(len(work.shard_keys(i)) for i in work.pending())
    work.run(shard, desc="embed generations")
    if n:
        seconds = time.perf_counter() - start
        ws.record_timing("embed_generations", seconds=seconds, samples_per_s=n / max(seconds, 1e-9), samples=n)
    return work


def _embedding_matrix(table: pa.Table) -> np.ndarray:
    column = table["embedding"].combine_chunks()
    return column.flatten().to_numpy().astype(np.float32).reshape(table.num_rows, column.type.list_size)


def _ground(ws: Workspace) -> Path:
    cfg, g = ws.config, ws.config.ground
    device, n_items = ws.device, ws.dataset.n_items
    model = load_causal_lm(ws.model_dir, device, ws.dtype)
    embedder = TextEmbedder(model, load_tokenizer(ws.model_dir), device, g.embed_batch_size)
    items = _item_embeddings(ws, embedder)
    gen_work = _generation_embeddings(ws, embedder) if cfg.mode != "retrieve" else None
    groups = title_groups(ws.builder.titles)
    hist = (lambda rows: list(rows["history"]) if g.exclude_history else None)

    def queries(rows: pd.DataFrame) -> tuple[np.ndarray | None, np.ndarray | None]:
        gen_q = _embedding_matrix(gen_work.take(rows["sample_id"].to_numpy())) if gen_work is not None else None
        ret_q = retrieve_queries(items, list(rows["history"]), cfg.retrieve_last, cfg.retrieve_decay) \
            if cfg.mode != "generate" else None
        return gen_q, ret_q

    popularity = ws.dataset.train_item_counts()

    def scorer(gen_q, ret_q, point: dict[str, float]):
        if cfg.mode == "generate":
            base = L2Scorer(gen_q, items, device)
        elif cfg.mode == "retrieve":
            base = L2Scorer(ret_q, items, device)
        else:
            base = HybridScorer(gen_q, ret_q, items, point["weight"], device, g.query_chunk, g.item_chunk)
        if point["gamma"] == 0:
            return base  # METHOD's plain L2 distances
        n_queries = len(gen_q if gen_q is not None else ret_q)
        return PopularityScorer(base, popularity, point["gamma"], n_queries, n_items, g.query_chunk, g.item_chunk, device)

    point, grid_scores = _select_grounding(ws, queries, scorer, hist, groups)
    fp = ws.fingerprint("ground", keys_hash(ws.keys), cfg.mode, g.top_n, g.exclude_history, cfg.retrieve_last,
                        cfg.retrieve_decay, point.get("weight"), point["gamma"] or None,
                        read_json(ws.work_dir / "generation_info.json")["fingerprint"] if gen_work is not None else None)

    def shard(keys: np.ndarray) -> pa.Table:
        rows = ws.rows(keys)
        s = scorer(*queries(rows), point)
        idx, dist = chunked_topn(s, len(keys), n_items, g.top_n, hist(rows), g.query_chunk, g.item_chunk, device)
        target = s.at(np.arange(len(keys)), rows["target"].to_numpy(np.int64)).astype(np.float32)
        return rankings_table(TeacherRankings(keys, idx, dist, target))

    work = ShardedWork(ws.work_dir / f"ground-{fp}", ws.keys, cfg.shard_size, fp)
    start, n = time.perf_counter(), sum(len(work.shard_keys(i)) for i in work.pending())
    work.run(shard, desc=f"ground ({cfg.mode})")
    if n:
        seconds = time.perf_counter() - start
        ws.record_timing("ground", seconds=seconds, samples_per_s=n / max(seconds, 1e-9), samples=n)
    del model, embedder
    empty_cache()
    rankings = _to_rankings(work.read())
    metrics = teacher_metrics(rankings, ws.dataset, groups, [k for k in cfg.ks if k <= g.top_n])
    manifest = _manifest(ws, metrics, point, grid_scores)
    write_teacher_artifacts(ws.out_dir, rankings, items, ws.dataset, manifest, embedding_dtype=g.embedding_dtype)
    log.info("teacher artifacts in %s: %s", ws.out_dir, {s: {k: round(v, 4) for k, v in m.items() if "@" in k}
                                                          for s, m in metrics.items()})
    return ws.out_dir


def grounding_grid(config: TeacherConfig) -> list[dict[str, float]]:
    """The (hybrid weight, popularity gamma) points to choose from; one point = nothing to choose."""
    weights = config.hybrid_weights if config.mode == "hybrid" else [None]
    return [{**({"weight": w} if w is not None else {}), "gamma": gamma}
            for w in weights for gamma in config.popularity_gammas]


def _select_grounding(ws: Workspace, queries, scorer, hist, groups) -> tuple[dict[str, float], dict | None]:
    """Pick the hybrid weight and popularity gamma on the selected valid samples (cached in work/select-<fp>.json)."""
    cfg, g = ws.config, ws.config.ground
    grid = grounding_grid(cfg)
    if len(grid) == 1:
        return grid[0], None
    valid = ws.samples[ws.samples["split"] == "valid"]
    if len(valid) == 0:
        raise ValueError(f"mode {cfg.mode!r} with popularity_gammas {cfg.popularity_gammas} chooses its grounding on "
                         "valid samples: add 'valid' to splits")
    k = min(int(cfg.select_metric.split("@")[1]), g.top_n)
    metric = f"{cfg.select_metric.split('@')[0]}@{k}"
    gen_info = ws.work_dir / "generation_info.json"
    fp = ws.fingerprint("select", grid, metric, g.top_n, g.exclude_history, cfg.retrieve_last, cfg.retrieve_decay,
                        read_json(gen_info)["fingerprint"] if cfg.mode != "retrieve" else None, ws.keys.tolist())
    path = ws.work_dir / f"select-{fp}.json"
    if path.exists():
        saved = read_json(path)
        return saved["point"], saved["scores"]
    gen_q, ret_q = queries(valid)
    point, scores = select_on_valid(lambda p: scorer(gen_q, ret_q, p), grid, ws.dataset.n_items, hist(valid),
                                    valid["target"].to_numpy(np.int64), groups, metric, g.top_n, g.query_chunk,
                                    g.item_chunk, ws.device)
    scores = {"metric": metric, **scores}
    log.info("grounding chosen on %d valid samples: %s (%s %.4f)", len(valid), grid_key(point), metric, scores[grid_key(point)])
    write_json({"point": point, "scores": scores}, path)
    return point, scores


def _to_rankings(table: pa.Table) -> TeacherRankings:
    n = table.num_rows
    items = table["topk_items"].combine_chunks()
    top_n = len(items[0]) if n else 0
    return TeacherRankings(
        sample_ids=table["sample_id"].to_numpy().astype(np.int64),
        topk_items=items.flatten().to_numpy().astype(np.int32).reshape(n, top_n),
        topk_distances=table["topk_distances"].combine_chunks().flatten().to_numpy().astype(np.float32).reshape(n, top_n),
        target_distance=table["target_distance"].to_numpy(zero_copy_only=False).astype(np.float32),
    )


def teacher_metrics(rankings: TeacherRankings, dataset: Dataset, groups: np.ndarray | None, ks: list[int]) -> dict:
    """HR@K / NDCG@K of the teacher on each ranked valid/test split (identical titles: best rank)."""
    out = {}
    samples = dataset.samples.set_index("sample_id")
    for split in ("valid", "test"):
        ids = samples.index[samples["split"] == split].to_numpy()
        mask = np.isin(rankings.sample_ids, ids)
        if not mask.any():
            continue
        targets = samples.loc[rankings.sample_ids[mask], "target"].to_numpy(np.int64)
        ranks = teacher_ranks(rankings.topk_items[mask], targets, groups)
        out[split] = {"n": int(mask.sum()), **metrics_from_ranks(ranks, ks)}
    return out


def _manifest(ws: Workspace, metrics: dict, point: dict[str, float], grid_scores: dict | None) -> dict:
    cfg = ws.config
    meta = read_adapter_meta(ws.adapter_dir) if cfg.mode != "retrieve" and cfg.finetune.enabled else None
    gen_info = read_json(ws.work_dir / "generation_info.json") if cfg.mode != "retrieve" else None
    counts = ws.samples["split"].value_counts()
    return {
        "model_id": cfg.model.name,
        "model_dir": str(ws.model_dir),
        "adapter_hash": meta["adapter_hash"] if meta else None,
        "finetune": {k: meta.get(k) for k in ("n_train", "n_valid", "epochs_run", "best_eval_loss", "eval_losses")} if meta else None,
        "prompt_hash": ws.builder.hash,
        "prompt_words": ws.builder.words.__dict__,
        "mode": cfg.mode,
        "backend": gen_info["backend"] if gen_info else None,
        "generation": {"num_beams": cfg.generation.num_beams, "max_new_tokens": gen_info["max_new_tokens"],
                       "length_penalty": cfg.generation.length_penalty,
                       "title_lengths": gen_info.get("title_lengths")} if gen_info else None,
        "retrieve": {"last": cfg.retrieve_last, "decay": cfg.retrieve_decay} if cfg.mode != "generate" else None,
        "hybrid_weight": point.get("weight"),
        "popularity_gamma": point["gamma"],
        "grounding_valid_scores": grid_scores,
        "exclude_history": cfg.ground.exclude_history,
        "metrics": metrics,
        "metrics_protocol": {"history_excluded": cfg.ground.exclude_history, "identical_titles": "best rank",
                             "ranking": f"top-{cfg.ground.top_n} by L2 of base-model last-token embeddings"
                                        + (f", popularity gamma {point['gamma']:g}" if point["gamma"] else "")},
        "counts": {s: int(counts.get(s, 0)) for s in ("train", "valid", "test")},
        "device": str(ws.device),
        "timings": ws.timings(),
        "config": cfg.model_dump(mode="json"),
    }


# ---------------------------------------------------------------- all steps
def run_teacher(dataset_dir: DatasetArg, config: TeacherConfig, out_dir: str | Path, *,
                sample_ids: np.ndarray | None = None) -> Path:
    """All steps for `config.mode`; returns `out_dir` holding the teacher artifacts.

    `sample_ids` ranks exactly those samples (e.g. the new samples of a refreshed dataset); with
    `sample_ids`, an adapter already in `out_dir/adapter` (say, copied from an earlier run) is reused
    as is instead of fine-tuning on the refreshed data.
    """
    ws = Workspace.open(dataset_dir, config, out_dir, sample_ids)
    start = time.perf_counter()
    log.info("teacher run: mode %s, %d samples (%s), model %s, device %s", config.mode, len(ws.samples),
             ws.samples["split"].value_counts().to_dict(), config.model.name, ws.device)
    if config.mode != "retrieve":
        _generate(ws, _adapter(ws))
    out = _ground(ws)
    log.info("teacher run finished in %.1fs", time.perf_counter() - start)
    return out
