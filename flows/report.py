"""The run report: one summary dict -> report.md + report.png + summary.json + Prefect UI artifacts.

A summary holds the dataset stats, the teacher (manifest, metrics, cache status), every
student's metrics.json and the wall time of each stage. `publish_report` writes the files
next to the run's outputs (`<root>/<dataset>/reports/<stamp>/`), with `served.pt`, the student
selected on valid exported for serving (`dllm2rec student export`), and publishes:

- markdown `report-<dataset>`: the whole report (students with vs without distillation side by side);
- tables `student-metrics-<dataset>`, `teacher-metrics-<dataset>`, `stage-costs-<dataset>`:
  stable keys, so every re-distillation adds a new version of the same artifact;
- link `serving-checkpoint-<dataset>` to `served.pt`;
- link `training-plot-<dataset>` to the PNG on disk, and image `training-plot-image-<dataset>`
  (the PNG inline, so the UI shows it without file access).

    >>> rows = comparison_rows([{"model": "sasrec", "distill": False, "test": {"NDCG@20": 0.1}},
    ...                         {"model": "sasrec", "distill": True, "label": "kd", "test": {"NDCG@20": 0.12}}], ("NDCG@20",))
    >>> rows[0]["change"]
    '+20.0%'
"""
from __future__ import annotations

import base64
from datetime import datetime, timezone
from pathlib import Path

from prefect.artifacts import create_image_artifact, create_link_artifact, create_markdown_artifact, create_table_artifact

from flows.common import logger
from flows.distill_flow import student_label, without_distillation
from flows.layout import Layout, RunSettings, slug
from pipeline.artifacts import TEACHER_MANIFEST_FILE
from pipeline.dataset import MANIFEST_FILE
from pipeline.io import read_json, write_json

REPORT_KS = ("HR@10", "NDCG@10", "HR@20", "NDCG@20")
INLINE_IMAGE_LIMIT = 400_000  # bytes; larger plots are only linked


def model_name(config) -> str:
    """The model as the report groups it: SASRec with the DRO term is DROS, its own baseline.

    >>> from student.config import LossConfig, StudentConfig
    >>> model_name(StudentConfig(model="sasrec")), model_name(StudentConfig(loss=LossConfig(dro_alpha=0.5)))
    ('sasrec', 'sasrec+dro')
    """
    return f"{config.model}+dro" if config.loss.dro_alpha > 0 else config.model


def student_record(config, metrics_path: str) -> dict:
    """The parts of a student's metrics.json the report uses; `baseline` names the distilled
    student's no-distillation twin (same model, loss, seed and training settings)."""
    m = read_json(metrics_path)
    overlap = m.get("teacher_student_overlap") or {}
    return {
        "label": Path(metrics_path).parent.name,
        "model": model_name(config),
        "distill": bool(config.distill.enabled),
        "baseline": student_label(without_distillation(config)) if config.distill.enabled else None,
        "path": str(Path(metrics_path).parent),
        "valid": m.get("valid", {}),
        "test": m.get("test", {}),
        "overlap": overlap.get("overlap"),
        "overlap_k": overlap.get("k"),
        "best_epoch": m.get("best_epoch"),
        "epochs_run": m.get("epochs_run"),
        "stopped_early": m.get("stopped_early"),
        "train_seconds": m.get("train_seconds"),
        "curve": m.get("curve", []),
        "protocol": m.get("protocol"),
    }


def collect_summary(settings: RunSettings, dataset_dir: str, teacher_dir: str | None, teacher_info: dict | None,
                    students: list[tuple], costs: list[dict]) -> dict:
    """Gather everything the report shows from the files the stages wrote."""
    manifest = read_json(Path(dataset_dir) / MANIFEST_FILE)
    teacher = None
    if teacher_dir:
        tm = read_json(Path(teacher_dir) / TEACHER_MANIFEST_FILE)
        teacher = {"path": teacher_dir, "manifest": tm, "metrics": teacher_metrics(tm), **(teacher_info or {})}
    return {
        "dataset": {"name": settings.dataset, "path": dataset_dir, **{k: manifest.get(k) for k in (
            "content_hash", "counts", "n_items", "n_users", "max_history", "reader", "protocol")}},
        "teacher": teacher,
        "students": [student_record(cfg, path) for cfg, path in students],
        "costs": costs,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def teacher_metrics(manifest: dict) -> dict[str, dict]:
    """`{split: {HR@K: ..}}` from a teacher manifest (`metrics` holds valid/test dicts)."""
    metrics = manifest.get("metrics") or {}
    return {split: vals for split, vals in metrics.items() if isinstance(vals, dict)}


def fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def md_table(rows: list[dict]) -> str:
    if not rows:
        return "_none_\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def comparison_rows(students: list[dict], ks=REPORT_KS) -> list[dict]:
    """Each distilled student (test) next to its no-distillation twin, with the relative change.

    The twin is the run with the same config but distillation off (`baseline`), so DROS is
    compared with plain DROS, not plain SASRec, and seed with seed. Without one, the same
    model's baseline with the best *valid* NDCG@20 is the reference: test never chooses.
    """
    rows = []
    for model in dict.fromkeys(s["model"] for s in students):
        base = [s for s in students if s["model"] == model and not s["distill"]]
        if not base:
            continue
        for d in (s for s in students if s["model"] == model and s["distill"]):
            twin = [s for s in base if d.get("baseline") and s.get("label") == d["baseline"]]
            b = twin[0] if twin else max(base, key=valid_ndcg)
            metrics = [(k, b["test"].get(k), d["test"].get(k)) for k in ks]
            if b.get("overlap") is not None or d.get("overlap") is not None:
                metrics.append((f"overlap@{d.get('overlap_k') or 20} with teacher", b.get("overlap"), d.get("overlap")))
            for name, x, y in metrics:
                change = f"{(y - x) / x * 100:+.1f}%" if x and y is not None else "-"
                rows.append({"model": model, "student": d.get("label", "-"), "metric": name,
                             "no distillation": x, "distilled": y, "change": change})
    return rows


def valid_ndcg(student: dict) -> float:
    return (student.get("valid") or {}).get("NDCG@20", 0.0)


def best_student(students: list[dict]) -> dict | None:
    """The student to serve: best valid NDCG@20 over all students (distilled or not)."""
    return max(students, key=valid_ndcg) if students else None


def selected_student(students: list[dict], served: dict | None = None) -> str:
    """The selection sentence, with its test numbers and, when exported, the serving checkpoint."""
    best = best_student(students)
    if best is None:
        return ""
    note = "" if best["distill"] else " Distillation did not beat the plain student on valid: serve the plain one."
    text = (f"\nSelected by valid NDCG@20: **{best.get('label', best['model'])}** (valid {valid_ndcg(best):.4f}, "
            f"test {best['test'].get('NDCG@20', 0.0):.4f}).{note}\n")
    if served:
        text += f"\nServing checkpoint: `{served['path']}` ({served['mb']:.1f} MB; `{recommend_command(served['path'])}`).\n"
    return text


def recommend_command(checkpoint: str) -> str:
    """How to query a serving checkpoint (shown in the report and by `flow demo`)."""
    return f"dllm2rec student recommend --checkpoint {checkpoint} --input histories.jsonl --out recs.parquet"


def export_selected(students: list[dict], out_dir: Path) -> dict | None:
    """Write the selected student as a serving checkpoint (`served.pt`) next to the report."""
    from student.recommend import export_student

    best = best_student(students)
    if best is None:
        return None
    path = export_student(Path(best["path"]) / "best.pt", out_dir / "served.pt").resolve()
    return {"label": best.get("label"), "from": best["path"], "path": str(path), "mb": path.stat().st_size / 2**20}


def teacher_vs_students(teacher: dict | None, students: list[dict]) -> str:
    """How the teacher compares with each plain student on valid NDCG@20, with what to expect.

    docs/results.md found that distillation pays where the teacher beats the plain student
    (GRU4Rec on Toys and Games) and hurts at lambda_d 0.7 where it does not, so the report says
    which case a run is in. The teacher's valid numbers come from its seeded valid sample, so the
    ratio is an estimate.

    >>> teacher_vs_students({"metrics": {"valid": {"NDCG@20": 0.03}}},
    ...                     [{"model": "gru4rec", "distill": False, "valid": {"NDCG@20": 0.015}}])
    '\\nTeacher vs plain students, valid NDCG@20: teacher 0.0300; gru4rec 0.0150 (teacher 2.00x: stronger, distillation is likely to help).\\n'
    """
    t = ((teacher or {}).get("metrics", {}).get("valid") or {}).get("NDCG@20")
    if not t:
        return ""
    parts = []
    for model in dict.fromkeys(s["model"] for s in students if not s["distill"]):
        v = max(valid_ndcg(s) for s in students if s["model"] == model and not s["distill"])
        if not v:
            continue
        verdict = ("stronger, distillation is likely to help" if t >= v else
                   "weaker, expect little gain or a loss at a large lambda_d")
        parts.append(f"{model} {v:.4f} (teacher {t / v:.2f}x: {verdict})")
    if not parts:
        return ""
    return f"\nTeacher vs plain students, valid NDCG@20: teacher {t:.4f}; " + "; ".join(parts) + ".\n"


def student_rows(students: list[dict]) -> list[dict]:
    return [{"student": s["label"], "model": s["model"], "distill": "yes" if s["distill"] else "no",
             "best epoch": s["best_epoch"], "valid NDCG@20": s["valid"].get("NDCG@20"),
             **{f"test {k}": s["test"].get(k) for k in REPORT_KS}, "overlap with teacher": s["overlap"],
             "train s": s["train_seconds"]} for s in students]


def epoch_cap_note(students: list[dict]) -> str:
    """Name the students that ran out of epochs before patience ran out: their valid metric may still
    have been rising, so comparing them (or serving one) understates them.

    >>> print(epoch_cap_note([{"label": "dros", "stopped_early": False, "best_epoch": 30, "epochs_run": 30},
    ...                       {"label": "sasrec", "stopped_early": True, "best_epoch": 12, "epochs_run": 22}]).strip())
    Reached the epoch cap before early stopping (may be under-trained; raise `train.epochs`): dros (best epoch 30 of 30).
    """
    capped = [f"{s['label']} (best epoch {s['best_epoch']} of {s['epochs_run']})"
              for s in students if s.get("stopped_early") is False]
    if not capped:
        return ""
    return ("\nReached the epoch cap before early stopping (may be under-trained; raise `train.epochs`): "
            + ", ".join(capped) + ".\n")


def teacher_rows(teacher: dict | None) -> list[dict]:
    if not teacher:
        return []
    return [{"split": split, **{k: vals.get(k) for k in REPORT_KS}} for split, vals in teacher["metrics"].items()]


def render_markdown(summary: dict, plot_name: str | None) -> str:
    ds, teacher = summary["dataset"], summary["teacher"]
    out = [f"# DLLM2Rec run on `{ds['name']}` ({(ds['content_hash'] or '')[:12]})\n",
           f"_{summary['created_at']}_\n", "## Dataset\n",
           md_table([{"reader": ds["reader"], "protocol": ds["protocol"], "items": ds["n_items"], "users": ds["n_users"],
                      "L": ds["max_history"], **(ds["counts"] or {})}]), f"\nPath: `{ds['path']}`\n"]
    if teacher:
        tm = teacher["manifest"]
        out += ["\n## Teacher\n", md_table([{
            "model": tm.get("model_id") or tm.get("model"), "mode": tm.get("mode"), "backend": tm.get("backend"), "top-N": tm.get("top_n"),
            "dim": tm.get("dim"), "train coverage": tm.get("train_coverage"), "run": teacher.get("status", "-"),
            "new samples": teacher.get("new_samples")}]), "\n", md_table(teacher_rows(teacher)),
            f"\nArtifacts: `{teacher['path']}`\n"]
    students = summary["students"]
    out += ["\n## Students: with vs without distillation (test)\n", selected_student(students, summary.get("served")),
            teacher_vs_students(teacher, students), md_table(comparison_rows(students)),
            "\n## All students\n", md_table(student_rows(students)), epoch_cap_note(students)]
    if students and students[0].get("protocol"):
        out.append(f"\nProtocol: {students[0]['protocol']}.\n")
    out += ["\n## Cost per stage\n", md_table(summary["costs"])]
    if plot_name:
        out += [f"\n## Training curves\n\n![training curves and metrics]({plot_name})\n"]
    return "".join(out)


def plot(summary: dict, path: Path) -> Path:
    """Training loss and valid NDCG@20 per epoch per student, and test metric bars (teacher included)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    students = summary["students"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for s in students:
        epochs = [c["epoch"] for c in s["curve"]]
        style = "-" if s["distill"] else "--"
        axes[0].plot(epochs, [c.get("loss") for c in s["curve"]], style, marker=".", label=s["label"])
        axes[1].plot(epochs, [c.get("valid_ndcg@20") for c in s["curve"]], style, marker=".", label=s["label"])
    axes[0].set(title="training loss", xlabel="epoch")
    axes[1].set(title="valid NDCG@20", xlabel="epoch")
    bars = ("HR@10", "NDCG@10", "HR@20", "NDCG@20")
    names = [s["label"] for s in students]
    values = [[s["test"].get(k) for k in bars] for s in students]
    teacher = summary.get("teacher")
    if teacher and "test" in teacher["metrics"]:
        names.insert(0, "teacher")
        values.insert(0, [teacher["metrics"]["test"].get(k) for k in bars])
    width = 0.8 / len(bars)
    for j, metric in enumerate(bars):
        axes[2].bar([i + (j - (len(bars) - 1) / 2) * width for i in range(len(names))],
                    [v[j] or 0.0 for v in values], width, label=f"test {metric}")
    axes[2].set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    axes[2].set(title="test metrics (missing bars: K > teacher top-N)")
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{summary['dataset']['name']} ({(summary['dataset']['content_hash'] or '')[:12]})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def publish_report(summary: dict, settings: RunSettings, stamp: str | None = None) -> Path:
    """Write report.md/.png/summary.json and the selected student's `served.pt` under the run root,
    and publish the UI artifacts. Returns report.md."""
    stamp = stamp or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    out = Layout.of(settings).report_dir(stamp)
    png = plot(summary, out / "report.png").resolve() if summary["students"] else None
    report = out / "report.md"
    out.mkdir(parents=True, exist_ok=True)
    summary["served"] = export_selected(summary["students"], out)
    markdown = render_markdown(summary, png.name if png else None)
    report.write_text(markdown)
    write_json(summary, out / "summary.json")
    key = slug(settings.dataset)
    data = png.read_bytes() if png else b""
    inline = "data:image/png;base64," + base64.b64encode(data).decode() if 0 < len(data) <= INLINE_IMAGE_LIMIT else None
    # The UI cannot read local files: its copy of the report carries the plot inline.
    ui_markdown = markdown.replace(f"]({png.name})", f"]({inline or png.as_uri()})") if png else markdown
    create_markdown_artifact(ui_markdown, key=f"report-{key}", description=f"DLLM2Rec report, {report.resolve()}")
    create_table_artifact(student_rows(summary["students"]), key=f"student-metrics-{key}",
                          description="Student metrics (test, full ranking); one version per run")
    if summary["teacher"]:
        create_table_artifact(teacher_rows(summary["teacher"]), key=f"teacher-metrics-{key}",
                              description=f"Teacher metrics, {summary['teacher']['path']}")
    create_table_artifact(summary["costs"], key=f"stage-costs-{key}", description="Wall time per stage (s)")
    if summary["served"]:
        served = Path(summary["served"]["path"])
        create_link_artifact(served.as_uri(), link_text=str(served), key=f"serving-checkpoint-{key}",
                             description=f"The student picked on valid ({summary['served']['label']}), exported for serving")
    if png:
        create_link_artifact(png.as_uri(), link_text=str(png), key=f"training-plot-{key}",
                             description="Training curves and metric bars (PNG next to the report)")
        if inline:
            create_image_artifact(inline, key=f"training-plot-image-{key}", description=str(png))
    logger().info("report: %s", report.resolve())
    return report
