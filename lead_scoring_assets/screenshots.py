"""Screenshots of the Dagster UI on demo data, for the README (headless Chromium).

    lead-scoring screenshots [--out docs/screenshots]

Runs the demo in a scratch data folder, starts ``dagster-webserver`` on it, and saves PNGs of
the ``lead_scoring_analytics`` asset and of the ``lead_scores`` checks. Needs Debian's
``chromium`` (``apt-get install chromium``).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PORT = 3333
PAGES = {
    "analytics_asset.png": "/assets/lead_scoring_analytics",
    "lead_scores_checks.png": "/assets/lead_scores?view=checks",
    "lineage.png": "/asset-groups",
}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                  "--window-size=1440,1600", "--virtual-time-budget=20000"]


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
    env = {**os.environ, "LEAD_SCORING_DATA_DIR": str(scratch),
           "DAGSTER_HOME": str(scratch / "dagster_home")}
    env.pop("LEAD_SCORING_DATABASE_URL", None)
    (scratch / "dagster_home").mkdir(parents=True)
    (scratch / "dagster_home" / "dagster.yaml").write_text(
        "nux:\n  enabled: false\ntelemetry:\n  enabled: false\n")
    binaries = Path(sys.executable).parent
    repository = Path(__file__).resolve().parents[1]
    subprocess.run([str(binaries / "lead-scoring"), "demo", "--contacts", str(contacts)],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    server = subprocess.Popen(
        [str(binaries / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(PORT), "-w",
         str(repository / "workspace.yaml")],
        env=env, cwd=repository, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    try:
        _wait_for(f"http://127.0.0.1:{PORT}/server_info")
        for name, page in PAGES.items():
            target = out / name
            subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={scratch / 'chrome'}",
                            f"--screenshot={target}", f"http://127.0.0.1:{PORT}{page}"],
                           check=True, capture_output=True, timeout=120)
            saved.append(target)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)
    return saved
