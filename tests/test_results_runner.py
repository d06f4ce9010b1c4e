"""benchmarks/results.py and results_report.py: the '-tuned' row picks lambda_d per seed on valid,
never on test; gains compare the same seeds; stored summaries redraw a report without run folders."""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

SPEC = importlib.util.spec_from_file_location("results_runner", Path(__file__).parents[1] / "benchmarks" / "results.py")
results = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(results)  # puts benchmarks/ on sys.path for its own import of results_report
report = sys.modules["results_report"]


def run(label: str, seed: int, valid: float, test: float, lam: float) -> dict:
    return {"label": label, "seed": seed, "valid NDCG@20": valid, "NDCG@20": test, "lambda_d": lam}


def test_labels_keep_the_default_name_for_the_method_default():
    assert results.distilled_label("dros", "hybrid", 0.7) == "dros+dllm2rec-hybrid"
    assert results.distilled_label("dros", "hybrid", 0.1) == "dros+dllm2rec-hybrid@lambda_d0.1"
    # ranking only always names its lambda_d, so that '-tuned'/'-served' group it with its model's runs
    assert results.distilled_label("dros", "hybrid", 0.7, ranking_only=True) == "dros+dllm2rec-hybrid@lambda_d0.7-rank"


def test_a_run_that_ended_at_the_epoch_cap_resumes_when_the_cap_is_raised(tmp_path):
    def metrics(folder: str, epochs_run: int, stopped_early: bool) -> str:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "metrics.json").write_text(json.dumps({"epochs_run": epochs_run,
                                                                    "stopped_early": stopped_early}))
        return str(tmp_path / folder)

    capped, stopped = metrics("capped", 100, False), metrics("stopped", 40, True)
    cap = {100: {"train": {"epochs": 100}}, 150: {"train": {"epochs": 150}}}
    assert results.finished(capped, cap[100]) and not results.finished(capped, cap[150])
    assert results.finished(stopped, cap[100]) and results.finished(stopped, cap[150])
    assert results.finished(capped, {"train": {"epochs": 30}})  # a lower cap never re-trains
    assert not results.finished(str(tmp_path / "never-ran"), cap[100])


def test_ranking_only_runs_are_candidates_and_say_so_in_the_pick(tmp_path):
    """`students --ranking-only` trains without embedding distillation; its runs join the '-served'
    pick of their model and the pick names them ('0.1 rank'), read back from metrics.json."""
    args = argparse.Namespace(root=str(tmp_path), dataset="games", teachers=["retrieve"], bases=["sasrec"], lambdas=[0.1],
                              seeds=[0], epochs=1, patience=1, device="cpu", threads=1, ranking_only=True)
    (tmp_path / "games" / "retrieve").mkdir(parents=True)
    (tmp_path / "games" / "retrieve" / "teacher_manifest.json").write_text("{}")  # what marks a teacher folder
    jobs = results.students_jobs(args)
    distilled = [j for j in jobs if j[2]["distill"]["enabled"]]
    assert len(jobs) == 2 and Path(distilled[0][1]).parent.name == "sasrec+dllm2rec-retrieve@lambda_d0.1-rank"
    assert distilled[0][2]["distill"]["embedding"]["enabled"] is False and distilled[0][2]["distill"]["lambda_d"] == 0.1
    for _, out, cfg, _ in jobs + [(None, str(tmp_path / "students" / "sasrec+dllm2rec-retrieve@lambda_d0.1" / "seed0"),
                                   {**distilled[0][2], "distill": {"enabled": True, "lambda_d": 0.1}}, None)]:
        out = tmp_path / "students" / Path(out).parent.name / "seed0"
        out.mkdir(parents=True, exist_ok=True)
        valid = 0.05 if out.parent.name.endswith("-rank") else 0.04  # ranking only is the best on valid
        (out / "metrics.json").write_text(json.dumps({
            "test": {"HR@20": 0.1, "NDCG@20": 0.02, "HR@10": 0.08, "NDCG@10": 0.01}, "valid": {"NDCG@20": valid},
            "best_epoch": 1, "train_seconds": 1.0, "config": cfg, "teacher": None}))
    runs = report.load_runs(tmp_path / "students")
    served = report.tuned_runs(runs)
    served = served[served["label"] == "sasrec+dllm2rec-retrieve-served"]
    assert report.picked_lambdas(served) == ["0.1 rank"]
    assert report.picked_lambdas(runs[runs["label"] == "sasrec+dllm2rec-retrieve@lambda_d0.1"]) == ["0.1"]


def test_tuned_rows_pick_the_best_valid_run_per_seed():
    runs = pd.DataFrame([
        run("dros", 0, 0.09, 0.07, 0.7),  # plain: never a candidate
        run("dros+dllm2rec-hybrid", 0, 0.05, 0.09, 0.7),  # best on test, worse on valid
        run("dros+dllm2rec-hybrid@lambda_d0.1", 0, 0.06, 0.06, 0.1),
        run("dros+dllm2rec-hybrid", 1, 0.08, 0.05, 0.7),
        run("dros+dllm2rec-hybrid@lambda_d0.1", 1, 0.07, 0.08, 0.1),
        run("dros+dllm2rec-hybrid", 2, 0.09, 0.09, 0.7),  # seed 2 ran one lambda only: nothing to tune
        run("sasrec+dllm2rec-hybrid", 0, 0.05, 0.05, 0.7),  # one lambda only: no tuned row
    ])
    picked = report.tuned_runs(runs)
    tuned = picked[picked["label"].str.endswith("-tuned")].set_index("seed")
    assert set(tuned["label"]) == {"dros+dllm2rec-hybrid-tuned"} and sorted(tuned.index) == [0, 1]
    assert tuned.loc[0, "lambda_d"] == 0.1 and tuned.loc[0, "NDCG@20"] == 0.06
    assert tuned.loc[1, "lambda_d"] == 0.7 and tuned.loc[1, "NDCG@20"] == 0.05


def test_served_rows_fall_back_to_the_plain_student_when_valid_says_so():
    runs = pd.DataFrame([
        run("sasrec", 0, 0.09, 0.05, 0.7),  # plain wins on valid (not on test) -> served
        run("sasrec+dllm2rec-retrieve@lambda_d0.1", 0, 0.08, 0.07, 0.1),
        run("sasrec", 1, 0.06, 0.06, 0.7),
        run("sasrec+dllm2rec-retrieve@lambda_d0.1", 1, 0.07, 0.04, 0.1),  # distilled wins on valid
        run("sasrec+dllm2rec-retrieve@lambda_d0.1", 2, 0.07, 0.04, 0.1),  # no plain run for seed 2: no row
    ])
    served = report.tuned_runs(runs).set_index("seed")
    assert set(served["label"]) == {"sasrec+dllm2rec-retrieve-served"} and sorted(served.index) == [0, 1]
    assert served.loc[0, "NDCG@20"] == 0.05 and pd.isna(served.loc[0, "lambda_d"])
    assert served.loc[1, "NDCG@20"] == 0.04 and served.loc[1, "lambda_d"] == 0.1
    assert report.picked_lambdas(served.reset_index()) == ["plain", "0.1"]


def test_gain_compares_with_the_plain_student_on_the_same_seeds_only():
    runs = pd.DataFrame([run("dros", 0, 0.1, 0.05, 0.7), run("dros", 1, 0.1, 0.07, 0.7),
                         run("dros+dllm2rec-hybrid", 0, 0.1, 0.06, 0.7)])
    distilled = runs[runs["label"] == "dros+dllm2rec-hybrid"]
    # seed 0 only: 0.06 / 0.05 - 1 = +20%, not 0.06 / mean(0.05, 0.07) - 1 = 0%
    assert abs(report.gain_over_plain(runs, "dros+dllm2rec-hybrid", distilled) - 0.2) < 1e-12
    assert report.gain_over_plain(runs, "dros", runs[runs["label"] == "dros"]) is None


def student_row(label: str, seeds: int, hr: float, ndcg: float, gain: float | None) -> dict:
    return {"label": label, "seeds": seeds, "HR@20_mean": hr, "NDCG@20_mean": ndcg, "gain NDCG@20": gain}


def test_side_by_side_puts_the_paper_next_to_the_most_used_teacher():
    rep = {"dataset": "toys", "students": [
        student_row("gru4rec", 3, 0.03, 0.012, None),
        student_row("gru4rec+dllm2rec-retrieve", 3, 0.035, 0.0138, 0.15),
        student_row("gru4rec+dllm2rec-retrieve@lambda_d0.1", 3, 0.04, 0.017, 0.4),
        student_row("gru4rec+dllm2rec-generate", 1, 0.01, 0.005, -0.5),  # fewer runs: not the compared teacher
        student_row("gru4rec+dllm2rec-retrieve-served", 3, 0.04, 0.017, 0.4),
    ]}
    assert report.distillation_teacher(rep) == "retrieve"
    (row,) = report.paper_side_by_side(rep)  # no sasrec / dros runs: no rows for them
    # paper Toys GRU4Rec: NDCG@20 0.0081 -> 0.0118 = +45.7%
    assert row["model"] == "gru4rec" and abs(row["paper gain"] - (0.0118 / 0.0081 - 1)) < 1e-12
    assert row["ours kd"]["label"] == "gru4rec+dllm2rec-retrieve"
    assert row["ours served"]["label"] == "gru4rec+dllm2rec-retrieve-served"
    assert report.pair(row["ours plain"]) == "0.0300 / 0.0120 (3)" and report.gain_text(row["ours served"]) == "+40.0%"
    assert report.paper_side_by_side({"dataset": "lastfm", "students": rep["students"]}) == []


def test_plot_draws_one_panel_per_dataset_with_the_teacher_line(tmp_path):
    rows = [student_row("sasrec", 1, 0.07, 0.026, None), student_row("sasrec+dllm2rec-retrieve", 1, 0.05, 0.019, -0.28),
            student_row("sasrec+dllm2rec-retrieve-served", 1, 0.07, 0.026, 0.0)]
    rep = {"dataset": "toys", "students": rows, "teachers": {"retrieve": {"metrics": {"test": {"NDCG@20": 0.027}}}}}
    out = tmp_path / "results.png"
    report.plot([rep, {**rep, "dataset": "games"}], out)
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"


def strict_json(path: Path) -> dict:
    def reject(constant: str):
        raise ValueError(f"{path} holds {constant}: not strict JSON")
    return json.loads(path.read_text(), parse_constant=reject)


def test_runs_find_their_teacher_by_folder_name_after_the_root_moved(tmp_path):
    """metrics.json records the teacher's path at training time; a run root moved since (or one
    reached through a symlink) must still match the teacher folder of its dataset."""
    path = tmp_path / "students" / "dros+dllm2rec-retrieve" / "seed0" / "metrics.json"
    path.parent.mkdir(parents=True)
    metrics = {"test": {"HR@20": 0.1, "NDCG@20": 0.05, "HR@10": 0.08, "NDCG@10": 0.04}, "valid": {"NDCG@20": 0.06},
               "best_epoch": 3, "train_seconds": 9.0, "config": {"distill": {"lambda_d": 0.7}},
               "teacher": {"path": "/old/root/toys/retrieve"}}
    path.write_text(json.dumps(metrics))
    (path.parents[2] / "dros" / "seed0").mkdir(parents=True)
    (path.parents[2] / "dros" / "seed0" / "metrics.json").write_text(json.dumps({**metrics, "teacher": None}))
    runs = report.load_runs(tmp_path / "students").set_index("label")
    assert runs.loc["dros+dllm2rec-retrieve", "teacher"] == "retrieve" and runs.loc["dros", "teacher"] == ""


def test_runs_that_ended_at_the_epoch_cap_are_counted_in_the_report(tmp_path, capsys):
    for seed, stopped in enumerate([True, False, None]):  # None: a metrics.json without the field counts as stopped
        path = tmp_path / "students" / "sasrec" / f"seed{seed}" / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"test": {"HR@20": 0.1, "NDCG@20": 0.05, "HR@10": 0.08, "NDCG@10": 0.04},
                                    "valid": {"NDCG@20": 0.06}, "best_epoch": 30, "train_seconds": 9.0, "config": {},
                                    "teacher": None, **({} if stopped is None else {"stopped_early": stopped})}))
    assert report.load_runs(tmp_path / "students")["capped"].tolist() == [False, True, False]
    row = {**student_row("sasrec", 3, 0.1, 0.05, None), "HR@20": "0.1", "NDCG@20": "0.05", "lambda_d": None,
           "overlap@20": float("nan"), "teacher_wins": None, "best_epoch": 30.0, "train_s": 9.0}
    report.print_report({"dataset": "toys", "teachers": {}, "ablations": [], "students": [{**row, "capped": 1}, row]})
    table = capsys.readouterr().out
    assert "| 30.0 (1 at the epoch cap) | 9 |" in table and table.count("at the epoch cap") == 1


def test_a_report_is_stored_as_strict_json_and_read_back_when_the_runs_are_gone(tmp_path, monkeypatch):
    (tmp_path / "runs" / "toys" / "data").mkdir(parents=True)
    rep = {"dataset": "toys", "teachers": {}, "ablations": [],
           "students": [{**student_row("sasrec", 3, 0.07, 0.026, None), "HR@20": "0.0700 ± 0.0010", "NDCG@20": "0.0260 ± 0.0005",
                         "lambda_d": None, "overlap@20": float("nan"), "teacher_wins": None, "best_epoch": 12.0,
                         "train_s": 90.0}]}
    monkeypatch.setattr(report, "report_dataset", lambda root, name: rep)
    store = tmp_path / "store"
    (written,) = report.dataset_reports(tmp_path / "runs", ["toys"], store)
    stored = strict_json(store / "toys.json")
    assert stored["students"][0]["overlap@20"] is None and stored["students"][0]["NDCG@20_mean"] == 0.026
    assert "stored" in stored and written["students"] == stored["students"]

    (tmp_path / "runs" / "toys" / "data").rmdir()  # the machine changed: no run folders any more
    monkeypatch.setattr(report, "report_dataset", lambda root, name: pytest.fail("no runs to read"))
    (read,) = report.dataset_reports(tmp_path / "runs", ["toys"], store)
    assert read["students"] == stored["students"]
    report.print_report(read)  # the stored form prints like a fresh one


def test_a_dataset_without_runs_or_stored_summary_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no run folders for dataset 'games'.*no stored summary at"):
        report.dataset_reports(tmp_path / "runs", ["games"], tmp_path / "store")
    with pytest.raises(SystemExit, match="pass --store"):
        report.dataset_reports(tmp_path / "runs", ["games"])


def test_ablations_start_from_the_given_lambda_d_and_keep_whole_seeds_together():
    args = argparse.Namespace(root="runs", dataset="games", teacher="retrieve", lambdas=[0.1], seeds=[0, 1],
                              only=["no-ranking-loss", "confidence-candidate"], epochs=30, patience=5, device="cpu",
                              threads=1)
    jobs = results.ablation_jobs(args)
    runs = [Path(out).relative_to("runs/games/ablations").parts for _, out, _, _ in jobs]
    assert runs == [("retrieve@lambda_d0.1", name, seed) for seed in ("seed0", "seed1")
                    for name in ("no-ranking-loss", "confidence-candidate")]
    distill = [cfg["distill"] for _, _, cfg, _ in jobs[:2]]
    assert distill[0]["lambda_d"] == 0.0  # the ablation's own setting wins over the base lambda_d
    assert distill[1]["lambda_d"] == 0.1 and distill[1]["confidence"] == "candidate"
    assert all(cfg["loss"]["dro_alpha"] == 0.5 and teacher == "runs/games/retrieve" for _, _, cfg, teacher in jobs)
    assert not any(cfg["train"]["mask_history"] for _, _, cfg, _ in jobs)  # the paper's protocol, as the tables
    default = results.ablation_jobs(argparse.Namespace(**{**vars(args), "lambdas": [results.DEFAULT_LAMBDA_D]}))
    assert Path(default[0][1]).parts[3] == "retrieve"  # the METHOD default keeps the plain teacher folder name


def test_ablations_compare_with_their_full_model_on_the_seeds_both_ran():
    runs = pd.DataFrame([run("dros+dllm2rec-retrieve@lambda_d0.1", 0, 0.1, 0.020, 0.1),
                         run("dros+dllm2rec-retrieve@lambda_d0.1", 1, 0.1, 0.030, 0.1)])
    ablation = pd.DataFrame([run("no-ranking-loss", 1, 0.1, 0.027, 0.0), run("no-ranking-loss", 2, 0.1, 0.5, 0.0)])
    # seed 1 only (seed 0 has no ablation run, seed 2 no full run): 0.027 / 0.030 - 1 = -10%
    assert abs(report.gain_over(runs, "dros+dllm2rec-retrieve@lambda_d0.1", ablation) + 0.1) < 1e-12
    assert report.gain_over(runs, "dros", ablation) is None
    assert report.gain_text({"vs full": -0.1}, "vs full") == "-10.0%" and report.gain_text({}, "vs plain") == "-"


PIPELINE_FILES = sorted((Path(__file__).parents[1] / "benchmarks" / "results").glob("*_pipeline.json"))
PIPELINE_TEACHERS = {"games": "retrieve", "toys": "retrieve", "ml100k": "hybrid"}  # the distillation teacher of docs/results.md


@pytest.mark.parametrize("path", PIPELINE_FILES, ids=lambda p: p.stem)
def test_one_command_per_dataset_parses_as_the_pipeline_flow_and_matches_the_results_runs(path):
    """`dllm2rec flow pipeline --params benchmarks/results/<dataset>_pipeline.json` is the one command
    per dataset of docs/results.md: Prefect must accept it, and it must hold the same teacher config
    as the results' teacher run and every base model with every distillation variant of the `full` profile."""
    from flows.pipeline_flow import pipeline
    from flows.profiles import full_distill_candidates

    raw = json.loads(path.read_text())
    params = pipeline.validate_parameters(raw)
    dataset = params["settings"].dataset
    assert path.stem == f"{dataset}_pipeline" and set(PIPELINE_TEACHERS) == {p.stem.split("_")[0] for p in PIPELINE_FILES}
    teacher_file = path.parent / f"{dataset}_teacher_{PIPELINE_TEACHERS[dataset]}.json"
    assert raw["teacher"] == json.loads(teacher_file.read_text())
    got = sorted((s.model, s.loss.dro_alpha, s.distill.lambda_d, s.distill.embedding.enabled)
                 for s in params["students"] if s.distill.enabled)
    want = sorted((model, alpha, d.lambda_d, d.embedding.enabled)
                  for model, alpha in report.BASES.values() for d in full_distill_candidates())
    assert got == want and len(params["students"]) == len(want)
    assert str(params["data"].path).startswith("../shared/data/")


def test_masked_reevaluation_matches_the_served_protocol_and_is_cached(demo_dir, demo_dataset, demo_teacher_dir,
                                                                        tmp_path, monkeypatch):
    """`results.py masked`: each run's best.pt on valid and test with the history masked, as
    `evaluate(mask_history=True)` gives it, stored next to the run and read back on a re-run
    (unless best.pt changed since);
    gains and picks are recomputed under that protocol; another dataset version is refused."""
    import shutil

    import torch

    from student.config import DistillConfig, ModelConfig, StudentConfig, TrainConfig
    from student.data import split_tensors
    from student.evaluate import evaluate
    from student.recommend import load_student
    from student.trainer import train_student

    masked_mod = sys.modules["results_masked"]
    torch.set_num_threads(1)
    base = tmp_path / "runs" / "demo"
    shutil.copytree(demo_dir, base / "data")
    for label, distill in (("sasrec", False), ("sasrec+dllm2rec-retrieve", True)):
        cfg = StudentConfig(model="sasrec", arch=ModelConfig(dim=16), distill=DistillConfig(enabled=distill),
                            train=TrainConfig(epochs=2, seed=0, mask_history=False))
        train_student(base / "data", cfg, base / "students" / label / "seed0", teacher_dir=demo_teacher_dir)

    summary = {s["label"]: s for s in masked_mod.masked_report(tmp_path / "runs", "demo", tmp_path / "store")}
    assert set(summary) == {"sasrec", "sasrec+dllm2rec-retrieve", "sasrec+dllm2rec-retrieve-served"}
    run = base / "students" / "sasrec" / "seed0"
    want = evaluate(load_student(run / "best.pt"), split_tensors(demo_dataset, "test"), mask_history=True, top_n=0)
    unmasked = json.loads((run / "metrics.json").read_text())["test"]["NDCG@20"]
    assert summary["sasrec"]["masked NDCG@20"] == pytest.approx(want.metrics["NDCG@20"], abs=1e-12)
    assert summary["sasrec"]["NDCG@20"] == pytest.approx(unmasked, abs=1e-12)
    assert abs(unmasked - want.metrics["NDCG@20"]) > 1e-3, "the demo must tell the two protocols apart"
    assert json.loads((run / "masked.json").read_text())["test"] == pytest.approx(want.metrics)
    kd = summary["sasrec+dllm2rec-retrieve"]
    assert kd["masked gain"] == pytest.approx(kd["masked NDCG@20"] / summary["sasrec"]["masked NDCG@20"] - 1)
    assert len(summary["sasrec+dllm2rec-retrieve-served"]["masked picked"]) == 1
    assert strict_json(tmp_path / "store" / "demo-masked.json")[0]["label"] == "sasrec"

    def evaluated_again(*args, **kwargs):
        raise RuntimeError("evaluated again")

    monkeypatch.setattr(masked_mod, "evaluate", evaluated_again)
    again = {s["label"]: s for s in masked_mod.masked_report(tmp_path / "runs", "demo")}
    assert again["sasrec"]["masked NDCG@20"] == summary["sasrec"]["masked NDCG@20"]

    best = run / "best.pt"  # a run resumed since has a new best.pt: its cache no longer applies
    os.utime(best, ns=(best.stat().st_atime_ns, best.stat().st_mtime_ns + 1))
    with pytest.raises(RuntimeError, match="evaluated again"):
        masked_mod.masked_metrics(run, demo_dataset)
    from pipeline.dataset import load_dataset
    from tests.test_flows import extend_dataset

    refreshed = load_dataset(extend_dataset(demo_dataset, tmp_path / "refreshed", n_new=2))  # another version
    with pytest.raises(ValueError, match="trained on dataset version"):
        masked_mod.masked_metrics(run, refreshed)


def test_masked_table_compares_ablations_with_plain_dros_and_never_serves_them(demo_dir, tmp_path, monkeypatch):
    """Ablation runs (`ablations/<teacher@lambda_d>/<name>/seed<k>`) get a masked row with their gain
    over plain DROS under both protocols, and are not candidates of the `-served` pick even when their
    valid is the best. The masked evaluation itself is replaced by fixed numbers here (the test above
    checks it against `evaluate`); the metrics files are the runner's format."""
    import shutil

    masked_mod = sys.modules["results_masked"]
    base = tmp_path / "runs" / "games"
    shutil.copytree(demo_dir, base / "data")
    # (folder, unmasked valid / test, masked valid / test)
    runs = {"students/dros/seed0": (0.030, 0.020, 0.040, 0.025),
            "students/dros+dllm2rec-retrieve@lambda_d0.1/seed0": (0.031, 0.022, 0.035, 0.024),
            "ablations/retrieve@lambda_d0.1/no-embedding-distillation/seed0": (0.050, 0.023, 0.050, 0.020)}
    for folder, (valid, test, _, _) in runs.items():
        (base / folder).mkdir(parents=True)
        (base / folder / "metrics.json").write_text(json.dumps({
            "test": {"HR@20": 0.1, "NDCG@20": test, "HR@10": 0.08, "NDCG@10": 0.04}, "valid": {"NDCG@20": valid},
            "best_epoch": 3, "train_seconds": 9.0, "config": {"distill": {"lambda_d": 0.1}}, "teacher": None}))
    fixed = {str(base / f): {"valid": {"NDCG@20": mv}, "test": {"NDCG@20": mt, "HR@20": 0.2, "HR@1": 0.01}}
             for f, (_, _, mv, mt) in runs.items()}
    monkeypatch.setattr(masked_mod, "masked_metrics", lambda run, dataset: fixed[str(run)])

    summary = {s["label"]: s for s in masked_mod.masked_report(tmp_path / "runs", "games")}
    ablation = summary["dros+dllm2rec-retrieve@lambda_d0.1/no-embedding-distillation"]
    assert ablation["gain"] == pytest.approx(0.023 / 0.020 - 1) and ablation["masked gain"] == pytest.approx(0.020 / 0.025 - 1)
    assert ablation["picked"] is None
    served = summary["dros+dllm2rec-retrieve-served"]  # the ablation's valid 0.050 would win if it were a candidate
    assert served["picked"] == ["0.1"] and served["masked picked"] == ["plain"]
    assert served["masked NDCG@20"] == pytest.approx(0.025)
