""" "Exportar segmento" in the dashboard: the API launches ``campaign_export_job`` through a
real Dagster webserver's GraphQL API (``dagster-webserver`` in a subprocess), on both
dialects; the page follows its run to the end and links to it in the Dagster UI; admin keys
only; 503 without Dagster."""

import csv
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from playwright.sync_api import expect, sync_playwright

from lead_scoring_assets.api.app import create_app
from lead_scoring_assets.api.dagster_runs import DagsterRuns
from lead_scoring_assets.api.queries import TIER_RANGES
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.demo.loader import load_demo_data
from lead_scoring_assets.geography.ladas import build_lada_reference
from lead_scoring_assets.scoring.full_rescore import rescore_all

from .api_data import ADMIN_KEY, CURSOR_SECRET, KEYS, READ_KEY
from .conftest import AS_OF, CHROMIUM_ARGS
from .test_dashboard_browser import serving

API = "/api/v1/lead-scoring"
ADMIN = {"X-API-Key": ADMIN_KEY}
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


@pytest.fixture
def scored(database_url) -> Database:
    database = Database(database_url)
    database.upgrade()
    database.replace_rows("ladas_reference", build_lada_reference())
    load_demo_data(database, 300, seed=4, as_of=AS_OF, batch_size=300)
    rescore_all(database, AS_OF)
    yield database
    database.dispose()


@pytest.fixture
def dagster_webserver(scored, tmp_path):
    """``dagster-webserver`` on the code location, with its own instance folder; runs start at
    once (``DefaultRunCoordinator``: no daemon to dequeue them)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nrun_coordinator:\n"
        "  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n"
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LEAD_SCORING_DATABASE_URL": scored.url.render_as_string(hide_password=False),
        "LEAD_SCORING_EXPORT_DIR": str(tmp_path / "exports"),
    }
    log = (tmp_path / "dagster.log").open("w")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-m",
            "lead_scoring_assets.definitions",
        ],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while True:
        try:
            urllib.request.urlopen(f"{base}/server_info", timeout=2).close()
            break
        except (urllib.error.URLError, ConnectionError):
            assert process.poll() is None, "dagster-webserver exited"
            assert time.monotonic() < deadline, "dagster-webserver did not answer within 240 s"
            time.sleep(1)
    yield base
    process.terminate()
    process.wait(timeout=60)
    log.close()


def _client(database: Database, dagster: DagsterRuns) -> TestClient:
    return TestClient(
        create_app(
            database.url.render_as_string(hide_password=False),
            keys=KEYS,
            cursor_secret=CURSOR_SECRET,
            dagster=dagster,
        ),
        raise_server_exceptions=False,
    )


def test_export_segment_launches_the_job_in_dagster_and_follows_its_run(
    chromium, scored, dagster_webserver, tmp_path
):
    """In the dashboard with an admin key: filter, press "Exportar segmento", see the run end
    and its link; the file holds the segment. The API refuses read keys and unknown runs."""
    ui = "https://dagster.example"
    with (
        serving(
            scored,
            tmp_path / "server.log",
            LEAD_SCORING_DAGSTER_URL=dagster_webserver,
            LEAD_SCORING_DAGSTER_UI_URL=ui,
        ) as server,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{server}/?tier=HIGH&min_score=40")
        page.fill("#api-key", ADMIN_KEY)
        page.click("#key-form button[type=submit]")
        expect(page.locator("body")).to_have_attribute("data-loaded", "true")
        page.click("#export")
        status = page.locator("#export-status")
        expect(status).to_have_attribute(
            "data-status", re.compile("|".join(FINISHED)), timeout=300_000
        )
        expect(status).to_contain_text("Exportación: terminada", timeout=1_000)
        link = status.locator("a").get_attribute("href")
        assert re.fullmatch(rf"{ui}/runs/[0-9a-f-]{{36}}", link), link
        browser.close()
    files = list((tmp_path / "exports" / "dashboard").glob("segment-*.csv"))
    assert len(files) == 1, (tmp_path / "dagster.log").read_text()[-3000:]
    with files[0].open() as handle:
        rows = list(csv.DictReader(handle))
    with scored.engine.connect() as connection:
        expected = connection.execute(
            sa.text(
                "SELECT count(DISTINCT c.phone_e164) FROM lead_scores s JOIN contacts c "
                "ON c.id = s.contact_id WHERE s.total_score >= :low"
            ),
            {"low": TIER_RANGES["HIGH"][0]},
        ).scalar()
    assert len(rows) == expected > 0
    assert all(row["quality_tier"] in ("PREMIUM", "HIGH") for row in rows)

    with _client(scored, DagsterRuns(dagster_webserver, ui)) as client:
        assert client.get(f"{API}/key", headers=ADMIN).json() == {"role": "admin"}
        assert client.get(f"{API}/key", headers={"X-API-Key": READ_KEY}).json() == {"role": "read"}
        refused = client.post(
            f"{API}/exports", json={"tier": "HIGH"}, headers={"X-API-Key": READ_KEY}
        )
        assert refused.status_code == 403
        run_id = link.rsplit("/", 1)[1]
        assert client.get(f"{API}/exports/{run_id}", headers=ADMIN).json() == {
            "run_id": run_id,
            "status": "SUCCESS",
            "dagster_url": link,
        }
        assert client.get(f"{API}/exports/{uuid.uuid4()}", headers=ADMIN).status_code == 404


def test_without_dagster_the_export_answers_503_and_names_the_setting(scored):
    with _client(scored, DagsterRuns("")) as client:
        response = client.post(f"{API}/exports", json={"state": "Jalisco"}, headers=ADMIN)
        assert response.status_code == 503
        assert "LEAD_SCORING_DAGSTER_URL" in response.json()["detail"]
        assert "Jalisco" not in response.text
    with _client(scored, DagsterRuns("http://127.0.0.1:9")) as client:
        response = client.get(f"{API}/exports/{uuid.uuid4()}", headers=ADMIN)
        assert response.status_code == 503
        assert "did not answer" in response.json()["detail"]
