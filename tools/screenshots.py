"""Screenshots of the Dagster UI on demo data, for the README (headless Chromium).

    python -m tools.screenshots [--out docs/screenshots]

Runs the demo in a scratch data folder, starts ``dagster-webserver`` and the MLflow UI on it,
and saves PNGs of the analytics asset, the ``lead_scores`` checks, the lineage, the ML assets,
and the MLflow run comparison and registry. Needs Debian's ``chromium``
(``apt-get install chromium``).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

PORT = 3333
MLFLOW_PORT = 5055
PAGES = {
    "analytics_asset.png": "/assets/lead_scoring_analytics",
    "lead_scores_checks.png": "/assets/staged_lead_scores?view=checks",
    "lineage.png": "/asset-groups",
    "ml_lineage.png": "/locations/lead_scoring_assets.definitions/asset-groups/ml/lineage",
    "lead_scoring_model_asset.png": "/assets/lead_scoring_model",
    "ml_lead_scores_asset.png": "/assets/ml_lead_scores",
}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1440,1600",
    "--virtual-time-budget=20000",
]


def _wait_for(url: str, seconds: int = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {seconds}s")


def take_screenshots(out: Path, contacts: int = 20_000) -> list[Path]:
    chromium = shutil.which("chromium")
    if chromium is None:
        raise RuntimeError("Chromium is missing: apt-get install chromium")
    scratch = Path(tempfile.mkdtemp(prefix="lead_scoring_screens_"))
    env = {
        **os.environ,
        "LEAD_SCORING_DATA_DIR": str(scratch),
        "DAGSTER_HOME": str(scratch / "dagster_home"),
    }
    env.pop("LEAD_SCORING_DATABASE_URL", None)
    (scratch / "dagster_home").mkdir(parents=True)
    (scratch / "dagster_home" / "dagster.yaml").write_text(
        "nux:\n  enabled: false\ntelemetry:\n  enabled: false\n"
    )
    binaries = Path(sys.executable).parent
    repository = Path(__file__).resolve().parents[1]
    subprocess.run(
        [str(binaries / "lead-scoring"), "demo", "--contacts", str(contacts)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    out.mkdir(parents=True, exist_ok=True)
    shoot = _Shooter(chromium, scratch / "chrome", out)
    try:
        with _serving(
            [
                str(binaries / "dagster-webserver"),
                "-h",
                "127.0.0.1",
                "-p",
                str(PORT),
                "-w",
                str(repository / "workspace.yaml"),
            ],
            env,
            repository,
            f"http://127.0.0.1:{PORT}/server_info",
        ):
            for name, page in PAGES.items():
                shoot(name, f"http://127.0.0.1:{PORT}{page}")
        with _serving(
            [
                str(binaries / "mlflow"),
                "ui",
                "--backend-store-uri",
                f"sqlite:///{scratch / 'mlflow.db'}",
                "--host",
                "127.0.0.1",
                "--port",
                str(MLFLOW_PORT),
            ],
            env,
            scratch,
            f"http://127.0.0.1:{MLFLOW_PORT}/health",
        ):
            for name, page in _mlflow_pages(f"sqlite:///{scratch / 'mlflow.db'}").items():
                shoot(name, f"http://127.0.0.1:{MLFLOW_PORT}/{page}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return shoot.saved


class _Shooter:
    def __init__(self, chromium: str, profile: Path, out: Path):
        self.chromium, self.profile, self.out = chromium, profile, out
        self.saved: list[Path] = []

    def __call__(self, name: str, url: str) -> None:
        target = self.out / name
        subprocess.run(
            [
                self.chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={self.profile}",
                f"--screenshot={target}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.saved.append(target)


@contextmanager
def _serving(command: list[str], env: dict, cwd: Path, health_url: str):
    server = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_for(health_url)
        yield
    finally:
        server.terminate()
        server.wait(timeout=30)


def _mlflow_pages(tracking_uri: str) -> dict[str, str]:
    """The experiment's runs compared side by side, and the registered model."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri, tracking_uri)
    experiment = client.get_experiment_by_name("lead_scoring")
    runs = [r.info.run_id for r in client.search_runs([experiment.experiment_id])]
    compare = (
        f"#/compare-runs?runs={json.dumps(runs)}"
        f"&experiments={json.dumps([experiment.experiment_id])}"
    )
    return {
        "mlflow_compare_runs.png": compare.replace(" ", ""),
        "mlflow_registered_model.png": "#/models/lead_scoring",
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.screenshots", description=__doc__)
    parser.add_argument("--out", default="docs/screenshots")
    parser.add_argument("--contacts", type=int, default=20_000)
    args = parser.parse_args()
    for path in take_screenshots(Path(args.out), contacts=args.contacts):
        print(f"saved {path}")


if __name__ == "__main__":
    main()
