"""Issue 5, the report: tables, side by side with the paper, plot, and stored summaries.

Reads runs/<dataset>/ as laid out by benchmarks/results.py (teacher folders, students/<label>/seed<k>/,
ablations/<teacher>/<label>/seed<k>/). Each dataset's summary is also stored as JSON
(docs/results/<dataset>.json), so that the report and the plot can be redrawn after only some
datasets were re-run: run folders are git-ignored and do not outlive a machine.

    python benchmarks/results.py report --datasets ml100k toys games --plot docs/img/results.png --store docs/results
"""
from __future__ import annotations

import json
import logging
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.artifacts import load_teacher_artifacts
from pipeline.dataset import load_dataset
from pipeline.io import read_json, write_json
from student.config import DistillConfig
from student.trainer import TEST_RANKS_FILE
from teacher.ground import teacher_ranks, title_groups

log = logging.getLogger("results")
MODES = ("generate", "retrieve", "hybrid")
DEFAULT_LAMBDA_D = DistillConfig().lambda_d
# the run layout, shared with the runner (benchmarks/results.py): base name -> (model, DRO alpha)
BASES = {"gru4rec": ("gru4rec", 0.0), "sasrec": ("sasrec", 0.0), "dros": ("sasrec", 0.5)}
PAPER_TABLE5 = {  # METHOD.md section 7: (HR@20, NDCG@20); per model (plain, + DLLM2Rec); LLaMA2-7B BIGRec teacher
    "games": {"name": "Games", "teacher": (0.0532, 0.0341), "gru4rec": ((0.0305, 0.0150), (0.0446, 0.0205)),
              "sasrec": ((0.0346, 0.0190), (0.0600, 0.0262)), "dros": ((0.0473, 0.0267), (0.0751, 0.0331))},
    "ml100k": {"name": "MovieLens", "teacher": (0.0541, 0.0370), "gru4rec": ((0.0608, 0.0236), (0.0815, 0.0308)),
               "sasrec": ((0.0626, 0.0228), (0.0840, 0.0323)), "dros": ((0.0852, 0.0363), (0.1063, 0.0437))},
    "toys": {"name": "Toys", "teacher": (0.0420, 0.0207), "gru4rec": ((0.0172, 0.0081), (0.0281, 0.0118)),
             "sasrec": ((0.0207, 0.0130), (0.0409, 0.0177)), "dros": ((0.0231, 0.0144), (0.0463, 0.0225))},
}


def teacher_dirs(base: Path, modes) -> dict[str, Path]:
    found = {m: base / m for m in modes if (base / m / "teacher_manifest.json").exists()}
    missing = sorted(set(modes) - set(found))
    if missing:
        log.warning("no teacher artifacts for %s under %s: those students are skipped", missing, base)
    return found


def teacher_names(base: Path) -> list[str]:
    """Every teacher folder under a dataset (the three modes, plus variants such as `retrieve-pop`)."""
    return sorted(p.parent.name for p in base.glob("*/teacher_manifest.json"))


def tuned_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (base+teacher, seed), two rows picked on **valid** NDCG@20, never on test:

    `...-tuned`: the best lambda_d among the distilled runs (METHOD's "lambda_d tuned in
    {0.1 .. 1.0}"), only for seeds that ran more than one lambda_d;
    `...-served`: the best of those and the plain student (lambda_d NaN), which is what the
    full profile serves (`flows/report.py`): distillation only where valid says it helps."""
    if not len(runs):
        return runs
    distilled = runs[runs["label"].str.contains(r"\+dllm2rec-")].copy()
    distilled["group"] = distilled["label"].str.split("@").str[0]
    several = distilled.groupby(["group", "seed"])["label"].transform("nunique") > 1
    tuned = best_on_valid(distilled[several], "-tuned")
    plain = runs[~runs["label"].str.contains("+", regex=False)]
    pairs = distilled[["group", "seed"]].drop_duplicates()
    pairs = pairs.assign(label=pairs["group"].str.split("+").str[0]).merge(plain, on=["label", "seed"])
    served = best_on_valid(pd.concat([distilled, pairs.assign(lambda_d=np.nan)]), "-served")
    served = served.merge(pairs[["group", "seed"]].assign(label=lambda d: d["group"] + "-served").drop(columns="group"))
    return pd.concat([tuned, served], ignore_index=True).sort_values(["label", "seed"])


def best_on_valid(candidates: pd.DataFrame, suffix: str) -> pd.DataFrame:
    """Per (group, seed), the candidate with the best valid NDCG@20, relabelled `<group><suffix>`."""
    best = candidates.sort_values("valid NDCG@20", ascending=False).groupby(["group", "seed"]).head(1)
    return best.assign(label=best["group"] + suffix).drop(columns="group")


# ------------------------------------------------------------------ report
def load_runs(folder: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(folder.glob("*/seed*/metrics.json")):
        m = json.loads(path.read_text())
        overlap = (m.get("teacher_student_overlap") or {}).get("overlap")
        rows.append({"label": path.parent.parent.name, "seed": int(path.parent.name[4:]), "run": path.parent,
                     "HR@20": m["test"]["HR@20"], "NDCG@20": m["test"]["NDCG@20"], "HR@10": m["test"]["HR@10"],
                     "NDCG@10": m["test"]["NDCG@10"], "valid NDCG@20": m["valid"]["NDCG@20"], "overlap@20": overlap,
                     "best_epoch": m["best_epoch"], "train_s": m["train_seconds"],
                     "capped": m.get("stopped_early") is False,  # ended at the epoch cap: maybe under-trained
                     "lambda_d": (m.get("config", {}).get("distill") or {}).get("lambda_d"),
                     "ranking_only": ranking_only(m.get("config", {}).get("distill") or {}),
                     # plain runs too: the teacher of the overlap ("before distillation"), by its folder
                     # name under the dataset, so that a run root moved elsewhere still finds it
                     "teacher": Path(m["teacher"]["path"]).name if m.get("teacher") else ""})
    return pd.DataFrame(rows)


def teacher_split_ranks(teacher, samples: pd.DataFrame, groups: np.ndarray, split: str, k: int):
    """The teacher's ranked samples of `split`: (sample ids, top-k items, 1-based rank of the target, 0 = absent)."""
    ids = teacher.rankings.sample_ids[np.isin(teacher.rankings.sample_ids, samples.index[samples["split"] == split])]
    items, _, _, _ = teacher.rankings.align(ids, k)
    return ids, items, teacher_ranks(items, samples.loc[ids, "target"].to_numpy(np.int64), groups)


def teacher_wins(run_dir: Path, teacher, groups: np.ndarray, samples: pd.DataFrame, k: int = 20) -> float | None:
    """Share of the teacher's test samples where its rank of the target is within top-k and better than the student's."""
    ranks_path = run_dir / TEST_RANKS_FILE
    ids, _, t_rank = teacher_split_ranks(teacher, samples, groups, "test", teacher.rankings.top_n)
    if not ranks_path.exists() or len(ids) == 0:
        return None
    student = pd.read_parquet(ranks_path).set_index("sample_id")["rank"].reindex(ids).to_numpy()
    t_rank = np.where(t_rank == 0, np.iinfo(np.int64).max, t_rank)
    return float(np.mean((t_rank <= k) & (t_rank < student)))


def kd_signal(teacher, samples: pd.DataFrame, groups: np.ndarray, k: int = 10) -> dict:
    """What ranking distillation feeds the student: how often the teacher's top-k (the KD positives)
    hold the train target, and how popular those items are next to the targets (train-target counts)."""
    ids, items, ranks = teacher_split_ranks(teacher, samples, groups, "train", k)
    if len(ids) == 0:
        return {}
    train_targets = samples.loc[samples["split"] == "train", "target"].to_numpy(np.int64)
    counts = np.bincount(train_targets, minlength=len(groups))
    return {"train_hr@10": float(np.mean(ranks > 0)), "kd_items_median_count": float(np.median(counts[items])),
            "target_median_count": float(np.median(counts[samples.loc[ids, "target"].to_numpy(np.int64)]))}


def gain_over(runs: pd.DataFrame, reference: str, group: pd.DataFrame) -> float | None:
    """Relative test NDCG@20 gain of `group` over the `reference` runs **on the seeds both have**."""
    ref = runs[runs["label"] == reference].set_index("seed")["NDCG@20"] if len(runs) else pd.Series(dtype=float)
    seeds = sorted(set(group["seed"]) & set(ref.index))
    if not seeds:
        return None
    return float(group.set_index("seed").loc[seeds, "NDCG@20"].mean() / ref.loc[seeds].mean() - 1)


def gain_over_plain(runs: pd.DataFrame, label: str, group: pd.DataFrame) -> float | None:
    """Relative test NDCG@20 gain over the plain student on the same seeds (None for plain rows)."""
    return gain_over(runs, label.split("+")[0], group) if "+" in label else None


def ranking_only(distill: dict) -> bool:
    """A distilled run without embedding distillation (the ranking loss alone)."""
    return bool(distill.get("enabled")) and (distill.get("embedding") or {}).get("enabled") is False


def picked_lambdas(runs: pd.DataFrame) -> list[str]:
    """The lambda_d values the valid selection picked, one per seed; NaN (the plain student) as 'plain',
    the ranking loss alone as '0.1 rank'."""
    runs = runs.sort_values("seed")
    rank = runs.get("ranking_only", pd.Series(False, index=runs.index)).eq(True)  # missing / NaN: not ranking only
    return ["plain" if pd.isna(x) else f"{x:g}" + (" rank" if r else "") for x, r in zip(runs["lambda_d"], rank)]


def fmt(values: pd.Series) -> str:
    return f"{values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0:.4f}"


def report_dataset(root: Path, name: str) -> dict:
    base = root / name
    dataset = load_dataset(base / "data")
    samples, groups = dataset.samples.set_index("sample_id"), title_groups(dataset.titles)
    out = {"dataset": name, "teachers": {}, "students": [], "ablations": []}
    teachers = {}
    for mode, folder in teacher_dirs(base, teacher_names(base)).items():
        art = load_teacher_artifacts(folder, dataset)
        teachers[folder.name] = art
        out["teachers"][mode] = {"coverage": art.coverage, "metrics": art.manifest["metrics"],
                                 "timings": art.manifest.get("timings"), "device": art.manifest.get("device"),
                                 **kd_signal(art, samples, groups)}
    runs = load_runs(base / "students") if (base / "students").exists() else pd.DataFrame()
    runs = pd.concat([runs, tuned_runs(runs)], ignore_index=True) if len(runs) else runs
    for label, g in (runs.groupby("label", sort=False) if len(runs) else []):
        t_path = g["teacher"].iloc[0] or next(iter(teachers), "")
        wins = [teacher_wins(r, teachers[t_path], groups, samples) for r in g["run"]] if t_path in teachers else []
        out["students"].append({"label": label, "seeds": len(g),
                                "lambda_d": picked_lambdas(g) if label.endswith(("-tuned", "-served")) else None, "HR@20": fmt(g["HR@20"]), "NDCG@20": fmt(g["NDCG@20"]),
                                "HR@20_mean": g["HR@20"].mean(), "NDCG@20_mean": g["NDCG@20"].mean(),
                                "overlap@20": g["overlap@20"].mean(), "best_epoch": g["best_epoch"].mean(),
                                "capped": int(g["capped"].sum()),
                                "train_s": g["train_s"].mean(), "gain NDCG@20": gain_over_plain(runs, label, g),
                                "teacher_wins": float(np.mean([w for w in wins if w is not None])) if wins else None})
    ablations = load_ablation_runs(base)
    for (source, label), g in (ablations.groupby(["from", "label"], sort=False) if len(ablations) else []):
        out["ablations"].append({"teacher": source, "label": label, "seeds": len(g), "HR@20": fmt(g["HR@20"]),
                                 "NDCG@20": fmt(g["NDCG@20"]), "NDCG@20_mean": g["NDCG@20"].mean(),
                                 # the full model of this folder (teacher[@lambda_d]) and plain DROS, same seeds
                                 "vs full": gain_over(runs, f"dros+dllm2rec-{source}", g),
                                 "vs plain": gain_over(runs, "dros", g)})
    return out


def load_ablation_runs(base: Path) -> pd.DataFrame:
    """The runs under `base/ablations/<teacher[@lambda_d]>/<ablation>/seed<k>`, labelled by the
    ablation, with `from` = the folder of the full DROS + DLLM2Rec model each one changes."""
    folders = sorted((base / "ablations").glob("*")) if (base / "ablations").exists() else []
    parts = [runs.assign(**{"from": folder.name}) for folder in folders if len(runs := load_runs(folder))]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def without_nan(value):
    """NaN (a mean over no values) as null, so that the stored summary is strict JSON."""
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nan(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def dataset_reports(root: Path, names: list[str], store: Path | None = None) -> list[dict]:
    """One summary per dataset: from its run folders when they exist (and then written to `store`),
    otherwise the one stored earlier, so that a partial re-run can still redraw every panel."""
    reports = []
    for name in names:
        stored = store / f"{name}.json" if store else None
        if (root / name / "data").exists():
            rep = without_nan(report_dataset(root, name))
            if stored:
                write_json({**rep, "stored": datetime.now(timezone.utc).isoformat(timespec="seconds")}, stored)
                log.info("%s: summary of %s written to %s", name, root / name, stored)
        elif stored and stored.exists():
            rep = read_json(stored)
            log.warning("%s: no run folders under %s; using the summary in %s (stored: %s)",
                        name, root / name, stored, rep.get("stored", "?"))
        else:
            raise SystemExit(f"report: no run folders for dataset {name!r} under {root / name} "
                             f"and no stored summary{f' at {stored}' if stored else ' (pass --store)'}")
        reports.append(rep)
    return reports


def print_report(rep: dict) -> None:
    print(f"\n## {rep['dataset']}\n\n| teacher | train coverage | valid HR@20 / NDCG@20 | test HR@20 / NDCG@20 (n) "
          "| train HR@10 | KD items / targets: median train count |\n|---|---|---|---|---|---|")
    for mode, t in rep["teachers"].items():
        v, s = t["metrics"].get("valid", {}), t["metrics"].get("test", {})
        print(f"| {mode} | {t['coverage']:.1%} | {v.get('HR@20', 0):.4f} / {v.get('NDCG@20', 0):.4f} | "
              f"{s.get('HR@20', 0):.4f} / {s.get('NDCG@20', 0):.4f} ({s.get('n')}) | {t.get('train_hr@10', 0):.4f} | "
              f"{t.get('kd_items_median_count', 0):.0f} / {t.get('target_median_count', 0):.0f} |")
    print("\n| student | seeds | test HR@20 | test NDCG@20 | gain NDCG@20 (same seeds) | overlap@20 | teacher wins | best epoch | train s |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for s in rep["students"]:
        gain = f"{s['gain NDCG@20']:+.1%}" if s.get("gain NDCG@20") is not None else ""
        wins = f"{s['teacher_wins']:.3f}" if s["teacher_wins"] is not None else ""
        ov = f"{s['overlap@20']:.3f}" if pd.notna(s["overlap@20"]) else ""
        picked = f" (lambda_d picked: {', '.join(s['lambda_d'])})" if s.get("lambda_d") else ""
        capped = f" ({s['capped']} at the epoch cap)" if s.get("capped") else ""  # absent in older stored summaries
        print(f"| {s['label']}{picked} | {s['seeds']} | {s['HR@20']} | {s['NDCG@20']} | {gain} | {ov} | {wins} | "
              f"{s['best_epoch']:.1f}{capped} | {s['train_s']:.0f} |")
    if rep["ablations"]:
        print("\n| ablation (SASRec + DRO + DLLM2Rec) | teacher | seeds | test HR@20 | test NDCG@20 "
              "| NDCG@20 vs full model (same seeds) | vs plain DROS |\n|---|---|---|---|---|---|---|")
        for a in rep["ablations"]:
            print(f"| {a['label']} | {a['teacher']} | {a['seeds']} | {a['HR@20']} | {a['NDCG@20']} | "
                  f"{gain_text(a, 'vs full')} | {gain_text(a, 'vs plain')} |")
    print_side_by_side(rep)


def distillation_teacher(rep: dict) -> str | None:
    """The teacher most student runs distilled from (hybrid on ml-100k, retrieve on Toys and Games)."""
    seeds: dict[str, int] = {}
    for s in rep["students"]:
        if "+dllm2rec-" in s["label"] and not s["label"].endswith(("-tuned", "-served")):
            mode = s["label"].split("+dllm2rec-")[1].split("@")[0]
            seeds[mode] = seeds.get(mode, 0) + s["seeds"]
    return max(seeds, key=seeds.get) if seeds else None


def paper_side_by_side(rep: dict) -> list[dict]:
    """Per base model: the paper's Table 5 (plain, + DLLM2Rec, gain) next to ours (plain, + DLLM2Rec at the
    METHOD default lambda_d, and the `-served` pick on valid), from the distillation teacher's runs."""
    paper, mode = PAPER_TABLE5.get(rep["dataset"]), distillation_teacher(rep)
    if paper is None or mode is None:
        return []
    by_label = {s["label"]: s for s in rep["students"]}
    rows = []
    for base in BASES:
        (p_plain, p_kd), ours = paper[base], by_label.get(base)
        default, served = by_label.get(f"{base}+dllm2rec-{mode}"), by_label.get(f"{base}+dllm2rec-{mode}-served")
        if ours is None:
            continue
        rows.append({"model": base, "paper plain": p_plain, "paper kd": p_kd, "paper gain": p_kd[1] / p_plain[1] - 1,
                     "ours plain": ours, "ours kd": default, "ours served": served, "teacher": mode})
    return rows


def pair(s: dict | None) -> str:
    return f"{s['HR@20_mean']:.4f} / {s['NDCG@20_mean']:.4f} ({s['seeds']})" if s else "-"


def gain_text(s: dict | None, key: str = "gain NDCG@20") -> str:
    return f"{s[key]:+.1%}" if s and s.get(key) is not None else "-"


def print_side_by_side(rep: dict) -> None:
    rows = paper_side_by_side(rep)
    if not rows:
        return
    paper = PAPER_TABLE5[rep["dataset"]]
    print(f"\nPaper Table 5 ({paper['name']}, LLaMA2-7B teacher at {paper['teacher'][0]:.4f} / {paper['teacher'][1]:.4f}) "
          f"next to ours (teacher: {rows[0]['teacher']}), HR@20 / NDCG@20 (seeds), gain in NDCG@20 on the same seeds:\n\n"
          f"| model | paper plain | paper + DLLM2Rec | paper gain | ours plain | ours + DLLM2Rec (lambda_d {DEFAULT_LAMBDA_D:g}) "
          "| gain | ours served (picked on valid) | gain |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        (ph, pn), (kh, kn) = r["paper plain"], r["paper kd"]
        print(f"| {r['model']} | {ph:.4f} / {pn:.4f} | {kh:.4f} / {kn:.4f} | {r['paper gain']:+.1%} | {pair(r['ours plain'])} | "
              f"{pair(r['ours kd'])} | {gain_text(r['ours kd'])} | {pair(r['ours served'])} | {gain_text(r['ours served'])} |")
    gains = [r["ours served"]["gain NDCG@20"] for r in rows if r["ours served"] and r["ours served"].get("gain NDCG@20") is not None]
    if gains:
        print(f"\nMean NDCG@20 gain of the served students over their plain versions: {np.mean(gains):+.1%} ({len(gains)} models).")


def plot(reports: list[dict], path: Path) -> None:
    """Per dataset and model: plain, + DLLM2Rec at the default lambda_d, the student served on valid, and the teacher."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = (("ours plain", "plain", "tab:gray"), ("ours kd", f"+ DLLM2Rec, lambda_d {DEFAULT_LAMBDA_D:g}", "tab:orange"),
            ("ours served", "served (picked on valid)", "tab:blue"))
    fig, axes = plt.subplots(1, len(reports), figsize=(4.5 * len(reports), 3.6), squeeze=False)
    for ax, rep in zip(axes[0], reports):
        rows = paper_side_by_side(rep)
        for i, (key, name, color) in enumerate(bars):
            ax.bar([j + 0.27 * (i - 1) for j in range(len(rows))], [r[key]["NDCG@20_mean"] if r[key] else 0 for r in rows],
                   width=0.27, color=color, label=name)
        if rows:  # the teacher's own test NDCG@20: distillation helps the students below this line
            ax.axhline(rep["teachers"][rows[0]["teacher"]]["metrics"]["test"]["NDCG@20"], color="black", ls="--", lw=1,
                       label="teacher (its own test samples)")
        ax.set_xticks(range(len(rows)), [r["model"] for r in rows])
        ax.set_title(f"{rep['dataset']} (teacher: {rows[0]['teacher'] if rows else '-'})")
        ax.set_ylabel("test NDCG@20, mean of seeds")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="upper center", ncol=4, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(path, dpi=110)
