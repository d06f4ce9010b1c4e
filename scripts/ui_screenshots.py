"""Screenshots of the Prefect UI for the README (headless Debian `chromium`).

Takes PNGs from a running Prefect server: the pipeline deployment page and its run form
(pydantic parameters as a form), the redistill deployment (cron schedule + refresh trigger),
a finished pipeline run, the artifacts list, and the run's markdown report.

    # against `make serve` after a pipeline run finished:
    .venv/bin/python scripts/ui_screenshots.py --url http://127.0.0.1:4200 \
        --deployment <pipeline deployment id> --run <flow run id> --out docs/img

The slow test `tests/test_prefect_server.py::test_ui_screenshots` calls `take_screenshots`
on its own server (and writes to docs/img when DLLM2REC_UPDATE_SCREENSHOTS=1).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--hide-scrollbars", "--no-first-run", "--disable-dev-shm-usage",
         "--run-all-compositor-stages-before-draw"]


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(url: str, out: Path, size: tuple[int, int] = (1440, 1000), budget_ms: int = 20000, timeout: float = 120) -> Path:
    """Render `url` after `budget_ms` of virtual time (the UI fetches its data meanwhile) and save a PNG."""
    binary = chromium_binary()
    if binary is None:
        raise FileNotFoundError("chromium not found (Debian: apt-get install chromium)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        cmd = [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
               f"--virtual-time-budget={budget_ms}", f"--screenshot={out}", url]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"chromium failed on {url} ({proc.returncode}): {proc.stderr[-2000:]}")
    return out


def report_artifact_id(api_url: str, flow_run_id: str, key_prefix: str = "report-") -> str | None:
    """The id of the run's markdown report artifact (for its own page)."""
    import json
    import urllib.request

    body = json.dumps({"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}).encode()
    req = urllib.request.Request(f"{api_url}/artifacts/filter", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        found = json.loads(resp.read())
    return next((a["id"] for a in found if (a.get("key") or "").startswith(key_prefix)), None)


def take_screenshots(ui_url: str, deployments: dict[str, str], flow_run_id: str, out_dir: str | Path) -> list[Path]:
    """PNGs of: the pipeline deployment, its run form, the redistill deployment (cron + trigger),
    a finished run (graph), the artifacts list and the run's markdown report.

    `deployments` maps "flow/name" to deployment ids (what `flows.deploy.register` returns).
    """
    out_dir = Path(out_dir)
    pipeline = deployments["pipeline/pipeline"]
    pages = [
        (f"/deployments/deployment/{pipeline}", "ui-pipeline-deployment.png", 1000),
        (f"/deployments/deployment/{pipeline}/run", "ui-pipeline-run-form.png", 1400),
        (f"/runs/flow-run/{flow_run_id}", "ui-pipeline-run.png", 1000),
        ("/artifacts", "ui-artifacts.png", 800),
    ]
    if "pipeline/redistill" in deployments:
        pages.insert(2, (f"/deployments/deployment/{deployments['pipeline/redistill']}", "ui-redistill-deployment.png", 900))
    artifact = report_artifact_id(f"{ui_url}/api", flow_run_id)
    if artifact:
        pages.append((f"/artifacts/artifact/{artifact}", "ui-run-report.png", 2000))
    return [screenshot(ui_url + page, out_dir / name, size=(1440, height)) for page, name, height in pages]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:4200", help="Prefect UI/server URL.")
    parser.add_argument("--deployment", required=True, help="Id of the pipeline/pipeline deployment.")
    parser.add_argument("--redistill", default=None, help="Id of the pipeline/redistill deployment (optional).")
    parser.add_argument("--run", required=True, help="Id of a finished pipeline flow run.")
    parser.add_argument("--out", default="docs/img", help="Output folder.")
    args = parser.parse_args()
    deployments = {"pipeline/pipeline": args.deployment}
    if args.redistill:
        deployments["pipeline/redistill"] = args.redistill
    for path in take_screenshots(args.url, deployments, args.run, args.out):
        print(path)


if __name__ == "__main__":
    main()
