"""`dllm2rec student ...` through typer's CliRunner on tiny data."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from student.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tiny_dir, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("cli") / "run"
    config = tmp_path_factory.mktemp("cfg") / "config.json"
    config.write_text(json.dumps({"arch": {"dim": 8}, "train": {"batch_size": 8, "epochs": 5}}))
    result = runner.invoke(app, ["train", "--data", str(tiny_dir), "--out", str(out), "--model", "gru4rec",
                                 "--no-distill", "--epochs", "2", "--config", str(config), "--seed", "3"])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("command", ["train", "evaluate", "recommend", "default-config"])
def test_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_train_writes_metrics_with_overrides(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["config"]["model"] == "gru4rec" and metrics["config"]["arch"]["dim"] == 8
    assert metrics["config"]["train"]["epochs"] == 2 and metrics["config"]["train"]["seed"] == 3
    assert metrics["epochs_run"] == 2 and "NDCG@20" in metrics["test"]


def test_evaluate_reproduces_test_metrics(run_dir, tiny_dir, tmp_path):
    report = tmp_path / "eval.json"
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(run_dir / "best.pt"), "--data", str(tiny_dir),
                                 "--split", "test", "--out", str(report)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert json.loads(report.read_text())["metrics"] == metrics["test"]


def test_recommend_jsonl_to_parquet(run_dir, tmp_path):
    src = tmp_path / "h.jsonl"
    src.write_text('{"history_id": "a", "history": [1, 2, 3]}\n{"history_id": "b", "history": []}\n')
    out = tmp_path / "recs.parquet"
    result = runner.invoke(app, ["recommend", "--checkpoint", str(run_dir / "best.pt"), "--input", str(src),
                                 "--out", str(out), "-k", "4"])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.schema.field("items").type == pa.list_(pa.int32())
    assert table.schema.field("scores").type == pa.list_(pa.float32())
    rows = table.to_pylist()
    assert [r["history_id"] for r in rows] == ["a", "b"]
    assert all(len(r["items"]) == 4 for r in rows) and not {1, 2, 3} & set(rows[0]["items"])


def test_recommend_parquet_input_without_ids(run_dir, tmp_path):
    src = tmp_path / "h.parquet"
    pq.write_table(pa.table({"history": pa.array([[0], [4, 5]], pa.list_(pa.int32()))}), src)
    out = tmp_path / "recs.parquet"
    result = runner.invoke(app, ["recommend", "--checkpoint", str(run_dir / "best.pt"), "--input", str(src),
                                 "--out", str(out), "--include-history"])
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).column("history_id").to_pylist() == [0, 1]


@pytest.mark.parametrize("content, message", [
    ('{"items": [1]}\n', "history"),
    ('{"history": [1, 999]}\n', "out of range"),
    ('{"history_id": 1, "history": [1]}\n{"history_id": 1, "history": [2]}\n', "duplicates"),
])
def test_recommend_bad_input_writes_nothing(run_dir, tmp_path, content, message):
    src = tmp_path / "bad.jsonl"
    src.write_text(content)
    out = tmp_path / "recs.parquet"
    result = runner.invoke(app, ["recommend", "--checkpoint", str(run_dir / "best.pt"), "--input", str(src),
                                 "--out", str(out)])
    assert result.exit_code == 2 and message in result.output
    assert not out.exists() and not list(tmp_path.glob(".recs*"))


def test_recommend_with_source_ids_and_titles(run_dir, tiny_dir, demo_dir, tmp_path):
    by_id, by_source = tmp_path / "ids.jsonl", tmp_path / "src.jsonl"
    by_id.write_text('{"history": [1, 2, 3]}\n{"history": []}\n')
    by_source.write_text('{"history": ["s1", "s2", "s3"]}\n{"history": []}\n')  # the dataset's source_id column
    args = ["recommend", "--checkpoint", str(run_dir / "best.pt"), "-k", "4"]
    assert runner.invoke(app, args + ["--input", str(by_id), "--out", str(tmp_path / "a.parquet")]).exit_code == 0
    result = runner.invoke(app, args + ["--input", str(by_source), "--out", str(tmp_path / "b.parquet"), "--data", str(tiny_dir)])
    assert result.exit_code == 0, result.output
    plain, named = pq.read_table(tmp_path / "a.parquet").to_pylist(), pq.read_table(tmp_path / "b.parquet").to_pylist()
    assert [r["items"] for r in named] == [r["items"] for r in plain]
    assert all(r["source_ids"] == [f"s{i}" for i in r["items"]] and r["titles"] == [f"Item {i}" for i in r["items"]]
               for r in named)

    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text('{"history": ["s1"]}\n{"history": ["s2", "nope"]}\n')
    out = tmp_path / "c.parquet"
    result = runner.invoke(app, args + ["--input", str(unknown), "--out", str(out), "--data", str(tiny_dir)])
    assert result.exit_code == 2 and "'nope'" in result.output and "history" in result.output and "[1]" in result.output
    assert not out.exists()
    other = runner.invoke(app, args + ["--input", str(by_source), "--out", str(out), "--data", str(demo_dir)])
    assert other.exit_code == 2 and "n_items" in other.output and not out.exists()  # another catalogue


def test_train_rejects_bad_config(tiny_dir, tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"train": {"lr": -1}}))
    result = runner.invoke(app, ["train", "--data", str(tiny_dir), "--out", str(tmp_path / "o"), "--config", str(config)])
    assert result.exit_code == 2 and "lr" in result.output
    result = runner.invoke(app, ["train", "--data", str(tiny_dir), "--out", str(tmp_path / "o"), "--model", "bert"])
    assert result.exit_code == 2


def test_default_config_round_trips(tmp_path):
    result = runner.invoke(app, ["default-config"])
    from student.config import StudentConfig

    assert StudentConfig.model_validate_json(result.output) == StudentConfig()
