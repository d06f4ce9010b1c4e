"""End-to-end teacher runs on a tiny random Llama: artifacts, manifest, resume, modes, CLI, dry run."""
from __future__ import annotations

import json
import types

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import teacher.run as run_mod
from pipeline.artifacts import load_teacher_artifacts
from pipeline.metrics import metrics_from_ranks
from teacher.cli import app
from teacher.finetune import read_adapter_meta
from teacher.ground import teacher_ranks, title_groups
from teacher.model import load_tokenizer
from teacher.prompts import PromptBuilder
from tests.teacher_helpers import demo_dataset, template_corpus, tiny_config, tiny_llama_dir

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher_run")
    ds = demo_dataset(root / "data", users=60)
    model_dir = tiny_llama_dir(root / "model", template_corpus(ds.titles))
    cfg = tiny_config(model_dir, max_samples=30, max_eval_samples=12)
    out = run_mod.run_teacher(ds.path, cfg, root / "teacher")
    return types.SimpleNamespace(root=root, ds=ds, model_dir=model_dir, cfg=cfg, out=out)


def test_artifacts_load_and_cover_the_selected_samples(env):
    art = load_teacher_artifacts(env.out, env.ds)
    r = art.rankings
    counts = art.manifest["counts"]
    assert counts == {"train": 30, "valid": 12, "test": 12}
    assert len(r) == 54 and len(np.unique(r.sample_ids)) == 54
    assert art.coverage == pytest.approx(30 / len(env.ds.split("train")))
    assert r.top_n == 10 and art.embeddings.shape == (env.ds.n_items, 64)
    assert (np.diff(r.topk_distances, axis=1) >= 0).all() and np.isfinite(r.target_distance).all()
    samples = env.ds.samples.set_index("sample_id").loc[r.sample_ids]
    for items, hist in zip(r.topk_items, samples["history"]):
        assert not set(items.tolist()) & set(np.asarray(hist).tolist())  # history excluded
    gens = pd.read_parquet(env.out / "generations.parquet")
    assert sorted(gens["sample_id"]) == sorted(r.sample_ids.tolist())


def test_rankings_are_the_l2_ranking_of_the_generation_embeddings(env):
    """Recompute one sample by brute force from the stored item embeddings and the generated text."""
    from teacher.embed import TextEmbedder
    from teacher.model import load_causal_lm

    art = load_teacher_artifacts(env.out, env.ds)
    gens = pd.read_parquet(env.out / "generations.parquet").set_index("sample_id")["generation"]
    sid = int(art.rankings.sample_ids[5])
    row = env.ds.samples.set_index("sample_id").loc[sid]
    emb = TextEmbedder(load_causal_lm(env.model_dir, "cpu"), load_tokenizer(env.model_dir), torch.device("cpu"))
    q = torch.from_numpy(emb([gens.loc[sid]]))
    d = torch.cdist(q, torch.from_numpy(art.embeddings))[0].numpy()
    assert art.rankings.target_distance[5] == pytest.approx(d[row["target"]], rel=1e-4)
    d[np.asarray(row["history"])] = np.inf
    np.testing.assert_array_equal(art.rankings.topk_items[5], np.argsort(d, kind="stable")[:10])


def test_manifest_contents(env):
    art = load_teacher_artifacts(env.out, env.ds)
    m = art.manifest
    builder = PromptBuilder(env.ds.titles, env.cfg.prompt, env.ds.max_history, env.ds.manifest)
    assert m["dataset_hash"] == env.ds.content_hash
    assert m["model_id"] == str(env.model_dir) and m["mode"] == "generate" and m["backend"] == "hf"
    assert m["adapter_hash"] == read_adapter_meta(env.out / "adapter")["adapter_hash"]
    assert m["prompt_hash"] == builder.hash and m["prompt_words"]["verb"] == "played"
    lengths = m["generation"].pop("title_lengths")
    assert m["generation"] == {"num_beams": 2, "max_new_tokens": 6, "length_penalty": 1.0}
    tokens = load_tokenizer(env.model_dir)(list(dict.fromkeys(env.ds.titles)), add_special_tokens=False)["input_ids"]
    assert lengths["titles_cut"] == sum(len(t) > 4 for t in tokens) > 0  # 6 new tokens leave 4 for the title
    assert m["exclude_history"] is True and m["metrics_protocol"]["identical_titles"] == "best rank"
    assert m["top_n"] == 10 and m["dim"] == 64
    assert set(m["timings"]) >= {"finetune", "generate", "embed_items", "ground"}
    assert m["config"]["max_samples"] == 30
    # teacher metrics = pipeline.metrics on the stored rankings (valid and test)
    samples = env.ds.samples.set_index("sample_id")
    groups = title_groups(env.ds.titles)
    for split in ("valid", "test"):
        mask = samples.loc[art.rankings.sample_ids, "split"].to_numpy() == split
        targets = samples.loc[art.rankings.sample_ids[mask], "target"].to_numpy()
        expected = metrics_from_ranks(teacher_ranks(art.rankings.topk_items[mask], targets, groups), (1, 5, 10))
        assert m["metrics"][split] == {"n": 12, **expected}
        assert "HR@20" not in m["metrics"][split]  # K capped at top_n


def test_rerun_resumes_without_recomputing(env, monkeypatch):
    before = (env.out / "teacher_rankings.parquet").read_bytes()
    monkeypatch.setattr(run_mod, "make_generator", lambda *a, **k: pytest.fail("generation should be resumed"))
    monkeypatch.setattr(run_mod, "finetune_lora", lambda *a, **k: pytest.fail("the adapter should be reused"))
    ground_dir = next((env.out / "work").glob("ground-*"))
    (ground_dir / "shard_00001.parquet").unlink()  # as if the run crashed while grounding shard 1
    (env.out / "teacher_manifest.json").unlink()
    run_mod.run_teacher(env.ds.path, env.cfg, env.out)
    assert (env.out / "teacher_rankings.parquet").read_bytes() == before
    assert (ground_dir / "shard_00001.parquet").exists()


def test_retrieve_mode_needs_no_model_generation(env, monkeypatch):
    monkeypatch.setattr(run_mod, "make_generator", lambda *a, **k: pytest.fail("retrieve does not generate"))
    cfg = env.cfg.model_copy(update={"mode": "retrieve"})
    out = run_mod.run_teacher(env.ds.path, cfg, env.root / "retrieve")
    art = load_teacher_artifacts(out, env.ds)
    assert art.manifest["mode"] == "retrieve" and art.manifest["adapter_hash"] is None
    assert not (out / "adapter").exists() and not (out / "generations.parquet").exists()
    # top-1 = nearest title to the last history item, history excluded (brute force)
    row = env.ds.samples.set_index("sample_id").loc[int(art.rankings.sample_ids[0])]
    hist = np.asarray(row["history"])
    d = np.linalg.norm(art.embeddings - art.embeddings[hist[-1]], axis=1)
    d[hist] = np.inf
    assert art.rankings.topk_items[0, 0] == int(np.argmin(d))


def test_hybrid_mode_picks_a_weight_on_valid(env, monkeypatch):
    """In a folder copied from the generate run, hybrid embeds nothing again: the item and the
    generation embeddings are both cached in work/ (valid selection and shards read the cache)."""
    import shutil

    from teacher.embed import TextEmbedder

    out = env.root / "hybrid"
    shutil.copytree(env.out, out)  # reuse adapter + generations + embeddings
    for p in list((out / "work").glob("ground-*")) + [out / "teacher_manifest.json"]:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    monkeypatch.setattr(TextEmbedder, "_embed_unique", lambda *a, **k: pytest.fail("embeddings should be reused"))
    cfg = env.cfg.model_copy(update={"mode": "hybrid", "hybrid_weights": [0.0, 1.0], "select_metric": "NDCG@20"})
    art = load_teacher_artifacts(run_mod.run_teacher(env.ds.path, cfg, out), env.ds)
    m = art.manifest
    scores = m["grounding_valid_scores"]
    assert m["hybrid_weight"] in (0.0, 1.0) and m["popularity_gamma"] == 0.0 and scores["metric"] == "NDCG@10"
    best = max(scores[k] for k in ("weight=0,gamma=0", "weight=1,gamma=0"))
    assert scores[f"weight={m['hybrid_weight']:g},gamma=0"] == best
    assert m["metrics"]["valid"]["NDCG@10"] == pytest.approx(best)


def test_generation_embeddings_resume_per_shard(env, monkeypatch):
    """A crash while embedding generations costs one shard: only its samples are embedded again,
    and the rankings come out the same."""
    import shutil

    from teacher.embed import TextEmbedder

    out = env.root / "gen-embed-resume"
    shutil.copytree(env.out, out)
    for p in list((out / "work").glob("ground-*")) + [out / "teacher_manifest.json"]:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    cache = next((out / "work").glob("gen-embed-*"))
    lost = pd.read_parquet(cache / "shard_00001.parquet")["sample_id"]
    (cache / "shard_00001.parquet").unlink()
    embedded: list[str] = []
    original = TextEmbedder._embed_unique

    def spy(self, texts, desc, progress):
        embedded.extend(texts)
        return original(self, texts, desc, progress)

    monkeypatch.setattr(TextEmbedder, "_embed_unique", spy)
    run_mod.run_teacher(env.ds.path, env.cfg, out)
    gens = pd.read_parquet(out / "generations.parquet").set_index("sample_id")["generation"]
    titles = set(env.ds.titles)
    assert set(embedded) == set(gens.loc[lost]) - titles  # generations that echo a title reuse its vector
    assert (out / "teacher_rankings.parquet").read_bytes() == (env.out / "teacher_rankings.parquet").read_bytes()


def test_popularity_gamma_is_chosen_on_valid(env, monkeypatch):
    """Retrieve mode with gammas [0, 50]: the valid winner is applied, recorded, and matches a
    brute-force popularity ranking (gamma 50 ranks almost purely by train counts)."""
    cfg = env.cfg.model_copy(update={"mode": "retrieve", "popularity_gammas": [0.0, 50.0]})
    art = load_teacher_artifacts(run_mod.run_teacher(env.ds.path, cfg, env.root / "pop"), env.ds)
    m = art.manifest
    scores = m["grounding_valid_scores"]
    assert set(scores) == {"metric", "gamma=0", "gamma=50"}
    assert m["popularity_gamma"] == max((0.0, 50.0), key=lambda g: (scores[f"gamma={g:g}"], -g))
    assert m["metrics"]["valid"]["NDCG@10"] == pytest.approx(scores[f"gamma={m['popularity_gamma']:g}"])
    if m["popularity_gamma"] == 50.0:
        counts = env.ds.train_item_counts()
        row = env.ds.samples.set_index("sample_id").loc[int(art.rankings.sample_ids[0])]
        top = [int(i) for i in np.argsort(-counts, kind="stable") if i not in set(row["history"])][:1]
        assert counts[art.rankings.topk_items[0, 0]] == counts[top[0]]


def test_cli_help_and_run(env):
    runner = CliRunner()
    for cmd in ([], ["prompts"], ["finetune"], ["generate"], ["ground"], ["run"], ["estimate"], ["model"]):
        res = runner.invoke(app, [*cmd, "--help"])
        assert res.exit_code == 0, res.output
        assert "Usage" in res.output
    res = runner.invoke(app, ["prompts", "--data", str(env.ds.path), "--show", "1", "--max-samples", "3",
                              "--out", str(env.root / "prompts.parquet")])
    assert res.exit_code == 0, res.output
    assert "### Response:" in res.output and pd.read_parquet(env.root / "prompts.parquet").shape[1] == 4
    config = env.root / "cfg.json"
    config.write_text(env.cfg.model_dump_json())
    res = runner.invoke(app, ["ground", "--data", str(env.ds.path), "--out", str(env.out), "--config", str(config)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output[res.output.index("{"):])["mode"] == "generate"


def test_estimate_dry_run(env):
    from teacher.estimate import estimate_teacher

    est = estimate_teacher(env.ds.path, env.cfg, env.root / "est", probe=4)
    assert est["n_rank"] == 54 and est["n_finetune"] == 16
    assert all(est["seconds"][k] > 0 for k in ("finetune", "generate", "embed", "ground"))
    assert est["seconds"]["total"] == pytest.approx(sum(v for k, v in est["seconds"].items() if k != "total"), abs=0.5)
    assert not (env.root / "est" / "teacher_manifest.json").exists()
    lengths = est["generation_length"]
    assert lengths["max_new_tokens"] == 6 and lengths["title_tokens_max"] > 4 and lengths["titles_cut"] > 0


def test_subset_run_ranks_exactly_the_given_samples_with_the_existing_adapter(env, monkeypatch):
    import shutil

    out = env.root / "subset"
    out.mkdir()
    shutil.copytree(env.out / "adapter", out / "adapter")
    monkeypatch.setattr(run_mod, "finetune_lora", lambda *a, **k: pytest.fail("a subset run reuses the adapter"))
    samples = env.ds.samples
    ids = np.concatenate([samples.loc[samples["split"] == "test", "sample_id"].to_numpy()[:3],
                          samples.loc[samples["split"] == "train", "sample_id"].to_numpy()[-4:]])
    art = load_teacher_artifacts(run_mod.run_teacher(env.ds.path, env.cfg, out, sample_ids=ids), env.ds)
    assert art.rankings.sample_ids.tolist() == ids[[3, 4, 5, 6, 0, 1, 2]].tolist()  # split order: train first
    assert art.manifest["counts"] == {"train": 4, "valid": 0, "test": 3} and art.manifest["metrics"]["test"]["n"] == 3
    with pytest.raises(ValueError, match="not in the dataset"):
        run_mod.run_teacher(env.ds.path, env.cfg, out, sample_ids=np.array([1, 2, 3]))
