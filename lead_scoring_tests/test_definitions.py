"""The Dagster definitions: they load, and the assets and jobs run against real databases."""

import re
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.definitions import defs
from lead_scoring_assets.defs.assets.ladas_reference import (
    ladas_reference,
    staged_ladas_reference,
)
from lead_scoring_assets.defs.assets.lead_scores import (
    LeadScoresConfig,
    lead_scores,
    staged_lead_scores,
)
from lead_scoring_assets.defs.partitions import ALL_BUCKETS
from lead_scoring_assets.defs.resources import DatabaseResource, MlflowResource
from lead_scoring_assets.demo_definitions import DemoDataConfig, demo_data_job
from lead_scoring_assets.demo_definitions import defs as demo_defs
from lead_scoring_assets.scoring.incremental import score_queued

from .conftest import AS_OF

REPOSITORY = Path(__file__).resolve().parents[1]
SCORING = [staged_ladas_reference, ladas_reference, staged_lead_scores, lead_scores]


def test_definitions_load(definitions):
    keys = {key.to_user_string() for key in definitions.resolve_asset_graph().get_all_asset_keys()}
    assert {"contacts", "platform_validations", "ladas_reference", "lead_scores"} <= keys
    assert definitions.resolve_job_def("full_rescore_job") is not None
    assert "demo_data_job" not in {job.name for job in definitions.resolve_all_job_defs()}
    assert isinstance(definitions.resources["database"], DatabaseResource)
    assert isinstance(definitions.resources["mlflow"], MlflowResource)


def test_demo_definitions_add_only_the_demo_job(definitions):
    with dg.instance_for_test():
        demo = demo_defs()
    production = {job.name for job in definitions.resolve_all_job_defs()}
    assert {job.name for job in demo.resolve_all_job_defs()} == production | {"demo_data_job"}
    assert isinstance(demo.resources["database"], DatabaseResource)


def test_ml_lineage(definitions):
    graph = definitions.resolve_asset_graph()

    def parents(name: str) -> set[str]:
        return {key.to_user_string() for key in graph.get(dg.AssetKey(name)).parent_keys}

    assert {"contacts", "platform_validations"} <= parents("contact_features")
    assert parents("lead_scoring_model") == {"contact_features", "lead_scores"}
    assert "lead_scoring_model" in parents("ml_lead_scores")
    assert {"contacts", "platform_validations"} <= parents("staged_lead_scores")
    assert parents("lead_scores") == {"staged_lead_scores"}
    assert parents("ladas_reference") == {"staged_ladas_reference"}


def _run_demo_job(url: str, contacts: int = 2_000, instance=None, replace: bool = False) -> None:
    result = demo_data_job.execute_in_process(
        run_config=dg.RunConfig(
            {
                "generate_demo_data_op": DemoDataConfig(
                    contacts=contacts, seed=3, replace_existing=replace
                )
            }
        ),
        resources={"database": DatabaseResource(url=url)},
        instance=instance,
    )
    assert result.success


def test_materialize_lead_scores(database_url):
    Database(database_url).upgrade()
    _run_demo_job(database_url)
    result = dg.materialize(
        SCORING,
        resources={"database": DatabaseResource(url=database_url)},
        tags=ALL_BUCKETS,
        run_config=dg.RunConfig({"staged_lead_scores": LeadScoresConfig(as_of=AS_OF.isoformat())}),
    )
    assert result.success
    published = result.asset_materializations_for_node("lead_scores")[0].metadata
    assert published["dagster/row_count"].value == 2_000
    assert published["as_of"].value == AS_OF.isoformat()
    assert published["score_changes_recorded"].value == 2_000
    metadata = result.asset_materializations_for_node("staged_lead_scores")[0].metadata
    assert sum(metadata["tier_counts"].value.values()) == 2_000
    assert sum(metadata["malformed_rows_by_reason"].value.values()) > 0
    assert metadata["as_of"].value == AS_OF.isoformat()
    stored = Database(database_url).read_frame("SELECT last_calculated_at FROM lead_scores")
    assert (pd.to_datetime(stored["last_calculated_at"], utc=True, format="ISO8601") == AS_OF).all()
    ladas = result.asset_materializations_for_node("staged_ladas_reference")[0].metadata
    assert ladas["states"].value == 32
    assert (published["kept_newer_scores"].value, published["queued_due_later"].value) == (0, 0)

    database = Database(database_url)
    with database.engine.begin() as connection:  # a row an hour after as_of, scored later
        connection.execute(
            sa.text(
                "INSERT INTO platform_validations (id, contact_id, platform, is_valid, "
                "confidence_score, validated_at) VALUES (:id, 1, 'apple', :yes, 0.9, :at)"
            ),
            {
                "id": 10**9,
                "yes": True,
                "at": database.bind_timestamp(AS_OF + pd.Timedelta(hours=1)),
            },
        )
    assert score_queued(database, AS_OF + pd.Timedelta(hours=2), owner="incremental").scored
    database.dispose()
    again = dg.materialize(
        SCORING[2:],
        resources={"database": DatabaseResource(url=database_url)},
        tags=ALL_BUCKETS,
        run_config=dg.RunConfig({"staged_lead_scores": LeadScoresConfig(as_of=AS_OF.isoformat())}),
    )
    published = again.asset_materializations_for_node("lead_scores")[0].metadata
    assert (published["kept_newer_scores"].value, published["queued_due_later"].value) == (1, 1)
    staged = again.asset_materializations_for_node("staged_lead_scores")[0].metadata
    assert staged["contacts_due_later"].value == 1


def test_as_of_defaults_to_the_run_start(sqlite_url):
    Database(sqlite_url).upgrade()
    _run_demo_job(sqlite_url, contacts=50)
    before = pd.Timestamp.now(tz="UTC").floor("s")
    result = dg.materialize(
        SCORING, resources={"database": DatabaseResource(url=sqlite_url)}, tags=ALL_BUCKETS
    )
    as_of = pd.Timestamp(
        result.asset_materializations_for_node("staged_lead_scores")[0].metadata["as_of"].value
    )
    assert before - pd.Timedelta(seconds=5) <= as_of <= pd.Timestamp.now(tz="UTC")


def test_missing_schema_fails_clearly(sqlite_url):
    with pytest.raises(RuntimeError, match="lead-scoring db upgrade"):
        dg.materialize(
            [staged_lead_scores],
            tags=ALL_BUCKETS,
            resources={"database": DatabaseResource(url=sqlite_url)},
        )


def test_demo_job_refuses_to_overwrite_contacts(sqlite_url):
    Database(sqlite_url).upgrade()
    _run_demo_job(sqlite_url, contacts=10)
    with pytest.raises(RuntimeError, match="replace_existing"):
        _run_demo_job(sqlite_url, contacts=10)
    _run_demo_job(sqlite_url, contacts=12, replace=True)
    assert Database(sqlite_url).count("contacts") == 12


def test_demo_job_never_empties_the_platforms_tables(database_url):
    """`replace_existing: true` on a database whose contacts the demo did not load (the
    production case) fails clearly and deletes nothing."""
    database = Database(database_url)
    database.upgrade()
    with database.engine.begin() as connection:
        connection.execute(
            sa.text("INSERT INTO contacts (id, phone_e164) VALUES (7, '+523312345678')")
        )
    with pytest.raises(RuntimeError, match="demo loader did not write"):
        _run_demo_job(database_url, contacts=10, replace=True)
    assert database.read_frame("SELECT id FROM contacts")["id"].tolist() == [7]
    database.dispose()


def test_production_instance_from_dagster_yaml(postgres_url, tmp_path, monkeypatch):
    """The repository's dagster.yaml, on the real PostgreSQL server, runs the main job."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPOSITORY / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", postgres_url.replace("+psycopg", "+psycopg2"))
    Database(postgres_url).upgrade()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        _run_demo_job(postgres_url, contacts=300, instance=instance)
        job = defs().resolve_job_def("full_rescore_job")
        result = job.execute_in_process(
            instance=instance,
            resources={"database": DatabaseResource(url=postgres_url)},
            run_config={"ops": {"staged_lead_scores": {"config": {"as_of": AS_OF.isoformat()}}}},
        )
        assert result.success
        assert instance.get_run_by_id(result.run_id).is_success
        records = instance.fetch_materializations(dg.AssetKey("lead_scores"), limit=1).records
        assert records[0].asset_materialization.metadata["dagster/row_count"].value == 300


def test_dagster_cli_validates_the_code_location(tmp_path):
    """`dagster definitions validate` on the workspace, with the embedded default instance."""
    import os
    import subprocess
    import sys

    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", str(REPOSITORY / "workspace.yaml")],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        timeout=120,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "All code locations passed validation" in result.stderr + result.stdout


def test_the_demo_prints_a_summary_not_the_frameworks_log(tmp_path):
    """`lead-scoring demo` in a fresh data folder, without the project's, Dagster's or MLflow's
    variables (``mlflow.set_tracking_uri`` exports ``MLFLOW_TRACKING_URI``: an earlier test in
    the same process lent the demo its store and its uplift champion). Each job's steps with
    their times, its outcome and the summary (the malformed rows as a small table by reason) on
    the console; no Dagster debug stream or warnings, no MLflow INFO lines, progress bars or
    registry messages, no framework warnings (the full log stays in the Dagster instance)."""
    import os
    import subprocess
    import sys

    command = Path(sys.executable).with_name("lead-scoring")
    result = subprocess.run(
        [str(command), "demo", "--contacts", "3000"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        check=False,
        env={
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("DAGSTER_", "MLFLOW_", "LEAD_SCORING_"))
            },
            "LEAD_SCORING_DATA_DIR": str(tmp_path / "data"),
        },
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert re.search(r"^nightly_retrain_job succeeded in \d+\.\d s", result.stdout, re.MULTILINE)
    assert re.search(r"^  staged_lead_scores: \d+\.\d s$", result.stdout, re.MULTILINE)
    assert "Open the Dagster UI" in result.stdout
    assert "conversion_scores (the lead_conversion champion" in result.stdout
    uplift = result.stdout.partition(
        "uplift_scores (the lead_uplift champion; no rows without one):\n"
    )[2]
    assert uplift.startswith("no rows: no uplift champion"), result.stdout[-3000:]
    table = result.stdout.split("malformed validation rows kept in malformed_validations:\n")[1]
    header, *rows = table.split("\n\n")[0].splitlines()
    assert header.split() == ["reason", "rows"]
    assert {row.split()[0] for row in rows} >= {"unknown_platform", "missing_is_valid"}
    assert result.stderr == "", result.stderr[-3000:]
    for noise in (
        " - DEBUG - ",
        " - WARNING - ",
        " INFO ",
        "Downloading artifacts",
        "Warning:",
        "Telemetry",
        "Successfully registered model",
        "already exists. Creating a new version",
        "Created version",
    ):
        assert noise not in output, f"{noise!r} in the demo's output"
    with dg.DagsterInstance.from_config(str(tmp_path / "data" / "dagster_home")) as instance:
        runs = instance.get_run_records()
        assert {r.dagster_run.job_name for r in runs} == {"demo_data_job", "nightly_retrain_job"}
        logged = instance.all_logs(runs[0].dagster_run.run_id)
        assert any(
            e.dagster_event and e.dagster_event.event_type_value == "STEP_START" for e in logged
        )
