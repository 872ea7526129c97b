"""Point-in-time training: contacts as they were at each campaign's ``sent_at``
(``contact_changes``, migration 0016), the feature log used as logged, and the training set's
SHA-256 in the conversion model's MLflow runs; SQLite and PostgreSQL."""

import subprocess
import sys

import pandas as pd
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from benchmarks.full_rescore import database_exists
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.demo.generator import generate_demo_data
from lead_scoring_assets.demo.loader import load_demo_data
from lead_scoring_assets.ml.conversion_features import (
    CONVERSION_FEATURE_SET,
    FEATURE_DTYPES,
    HASHED_COLUMNS,
    REASON_FEATURES,
    build_training_set,
)
from lead_scoring_assets.ml.conversion_tracking import conversion_target, train_conversion_model
from lead_scoring_assets.ml.point_in_time import training_set_sha256
from lead_scoring_assets.ml.tracking import MlflowTarget

from .conftest import AS_OF

CONTACTS = 3_000
NEW_PROFILE = {
    "full_name": "Nombre Cambiado",
    "address": "Av. Nueva 1",
    "state_name": "Jalisco",
    "municipality": "Guadalajara",
    "lada": "33",
    "operator": "AT&T",
}


@pytest.fixture
def outcomes_database(database: Database) -> Database:
    load_demo_data(database, CONTACTS, seed=11, as_of=AS_OF, batch_size=1_000)
    return database


def _execute(database: Database, sql: str, params: dict | None = None) -> None:
    with database.engine.begin() as connection:
        connection.execute(sa.text(sql), params or {})


def _rows(training, campaign_id: int, contact_id: int) -> pd.DataFrame:
    rows = training.rows
    return rows[(rows["campaign_id"] == campaign_id) & (rows["contact_id"] == contact_id)]


def _change_every_profile(database: Database) -> None:
    """The review's change: every contact's profile, carrier and state, after the campaigns."""
    _execute(
        database,
        "UPDATE contacts SET " + ", ".join(f"{c} = :{c}" for c in NEW_PROFILE),
        NEW_PROFILE,
    )


def _conversion_run_hashes(database: Database, tracking_uri: str) -> set[str]:
    report = train_conversion_model(
        database,
        conversion_target(MlflowTarget(tracking_uri)),
        ["logistic_regression"],
        attribution_days=30,
        as_of=AS_OF,
    )
    client = MlflowClient(tracking_uri, tracking_uri)
    return {
        client.get_run(run_id).data.params["training_set_sha256"]
        for run_id in (report.rule_run_id, report.best.run_id)
    }


def test_changing_every_profile_after_the_campaigns_changes_no_training_row(
    outcomes_database, tmp_path
):
    """The review's scenario: rows, hash and the MLflow runs' ``training_set_sha256``."""
    database = outcomes_database
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    before = build_training_set(database, as_of=AS_OF)
    logged_before = _conversion_run_hashes(database, tracking_uri)
    _change_every_profile(database)
    assert (
        database.read_frame(
            "SELECT count(*) AS n FROM contacts WHERE operator = 'AT&T' AND state_name = 'Jalisco'"
        )["n"].iloc[0]
        == CONTACTS
    )
    after = build_training_set(database, as_of=AS_OF)
    pd.testing.assert_frame_equal(before.rows, after.rows)
    assert after.sha256 == before.sha256
    assert _conversion_run_hashes(database, tracking_uri) == logged_before == {before.sha256}


def test_the_hash_covers_order_free_rows_and_every_value(outcomes_database):
    rows = build_training_set(outcomes_database, as_of=AS_OF).rows
    digest = training_set_sha256(rows, HASHED_COLUMNS)
    assert training_set_sha256(rows.sample(frac=1, random_state=1), HASHED_COLUMNS) == digest
    widened = rows.astype(
        {"total_score": "int64", "has_apple": "Int64", "profile_completeness": "float32"}
    )
    narrowed = rows.astype({"profile_completeness": "float32"})
    assert training_set_sha256(widened, HASHED_COLUMNS) == training_set_sha256(
        narrowed, HASHED_COLUMNS
    )
    texts = rows.astype(object)
    texts.loc[texts.index[0], "carrier"] = None
    categories = texts.astype({c: "category" for c in ("state", "carrier", "lada_status")})
    assert categories["carrier"].isna().sum() == 1
    assert training_set_sha256(categories, HASHED_COLUMNS) == training_set_sha256(
        texts, HASHED_COLUMNS
    )
    for column, value in (
        ("carrier", "OTRO"),
        ("converted", True),
        ("profile_completeness", 0.123),
    ):
        changed = rows.copy()
        changed.loc[changed.index[-1], column] = value
        assert training_set_sha256(changed, HASHED_COLUMNS) != digest, column
    assert training_set_sha256(rows.iloc[:-1], HASHED_COLUMNS) != digest


def test_a_contact_created_after_a_campaign_is_not_in_it(outcomes_database):
    database = outcomes_database
    campaigns = build_training_set(database, as_of=AS_OF).campaigns
    first, second = campaigns.iloc[0], campaigns.iloc[1]
    created = first["sent_at"] + pd.Timedelta(days=1)
    database.append_frame(
        "contacts",
        pd.DataFrame(
            {
                "id": [CONTACTS + 1],
                "phone_e164": ["+525500000001"],
                "full_name": ["Nueva"],
                "created_at": pd.Series([created], dtype="datetime64[us, UTC]"),
            }
        ),
    )
    database.append_frame(
        "campaign_outcomes",
        pd.DataFrame(
            {
                "campaign_id": [first["id"], second["id"]],
                "contact_id": [CONTACTS + 1] * 2,
                "delivered": [True, True],
                "converted": [False, False],
            }
        ),
    )
    rows = build_training_set(database, as_of=AS_OF).rows
    assert rows.loc[rows["contact_id"] == CONTACTS + 1, "campaign_id"].tolist() == [second["id"]]
    # a created_at moved after the campaign later on does not remove it: it existed then
    _execute(
        database,
        "UPDATE contacts SET created_at = :t WHERE id = :id",
        {"t": database.bind_timestamp(AS_OF), "id": CONTACTS + 1},
    )
    moved = build_training_set(database, as_of=AS_OF).rows
    assert moved.loc[moved["contact_id"] == CONTACTS + 1, "campaign_id"].tolist() == [second["id"]]


def test_a_deleted_contact_stays_in_its_campaigns_rows(outcomes_database):
    database = outcomes_database
    before = build_training_set(database, as_of=AS_OF)
    contact = int(before.rows["contact_id"].value_counts().index[0])
    theirs = before.rows[before.rows["contact_id"] == contact].reset_index(drop=True)
    _execute(database, "UPDATE contacts SET operator = 'AT&T' WHERE id = :id", {"id": contact})
    _execute(database, "DELETE FROM contacts WHERE id = :id", {"id": contact})
    after = build_training_set(database, as_of=AS_OF)
    kept = after.rows[after.rows["contact_id"] == contact].reset_index(drop=True)
    pd.testing.assert_frame_equal(theirs, kept)
    assert after.sha256 == before.sha256
    assert after.rejected == before.rejected
    # without its validation rows it is scored as a contact without validations
    _execute(database, "DELETE FROM platform_validations WHERE contact_id = :id", {"id": contact})
    bare = build_training_set(database, as_of=AS_OF).rows
    bare = bare[bare["contact_id"] == contact]
    assert len(bare) == len(theirs) and (bare["validation_count"] == 0).all()


def test_a_logged_feature_vector_is_used_as_logged(outcomes_database):
    database = outcomes_database
    before = build_training_set(database, as_of=AS_OF)
    row = before.rows.iloc[0]
    campaign, contact = int(row["campaign_id"]), int(row["contact_id"])
    logged = {name: 1 for name in FEATURE_DTYPES} | {
        "whatsapp_score": 7,
        "avg_confidence_score": 0.25,
        "profile_completeness": 0.5,
        "geographic_consistency": 1.0,
        "account_age_days": 1234,
        "validation_recency_days": 5,
        "state": "OAXACA",
        "carrier": "MOVISTAR",
        "lada_status": "known",
    }
    database.append_frame(
        "campaign_recipients",
        pd.DataFrame(
            {
                "campaign_id": [campaign],
                "contact_id": [contact],
                "arm": ["target"],
                "total_score": [42],
            }
        ),
    )
    database.append_frame(
        "campaign_recipient_features",
        pd.DataFrame(
            {
                "campaign_id": [campaign],
                "contact_id": [contact],
                "feature_set": [CONVERSION_FEATURE_SET],
                **{k: [v] for k, v in logged.items()},
            }
        ),
    )
    _change_every_profile(database)
    _execute(database, "DELETE FROM platform_validations WHERE contact_id = :id", {"id": contact})
    after = build_training_set(database, as_of=AS_OF)
    used = _rows(after, campaign, contact).iloc[0]
    assert {name: used[name] for name in REASON_FEATURES} == logged
    assert used["total_score"] == 42 and used["converted"] == row["converted"]
    pd.testing.assert_series_equal(after.rows.dtypes, before.rows.dtypes)
    assert len(after.rows) == len(before.rows)


def test_control_recipients_are_never_training_rows(outcomes_database):
    database = outcomes_database
    before = build_training_set(database, as_of=AS_OF)
    first = before.rows.iloc[0]
    campaign = int(first["campaign_id"])
    control = before.rows[before.rows["campaign_id"] == campaign]["contact_id"].iloc[:2].tolist()
    database.append_frame(
        "campaign_recipients",
        pd.DataFrame(
            {"campaign_id": [campaign] * 2, "contact_id": control, "arm": ["control"] * 2}
        ),
    )
    # the platform's record: the first not delivered (a purchase without a message), the second
    # delivered by mistake; neither is a message
    _execute(
        database,
        "UPDATE campaign_outcomes SET delivered = :no, converted = :yes "
        "WHERE campaign_id = :c AND contact_id = :k",
        {"no": False, "yes": True, "c": campaign, "k": control[0]},
    )
    after = build_training_set(database, as_of=AS_OF)
    assert all(_rows(after, campaign, k).empty for k in control)
    assert len(after.rows) == len(before.rows) - 2
    assert after.rejected.get("converted_without_delivery") == before.rejected.get(
        "converted_without_delivery"
    )


def test_reloading_the_demo_forgets_the_previous_demos_contacts(database):
    """The demo loader empties contacts and rewrites the campaigns: the changes its DELETE
    records are of contacts that no longer had messages, and go with them."""
    load_demo_data(database, 1_000, seed=11, as_of=AS_OF, batch_size=1_000)
    _execute(
        database,
        "INSERT INTO campaign_recipients (campaign_id, contact_id) "
        "SELECT o.campaign_id, o.contact_id FROM campaign_outcomes o WHERE NOT "
        "EXISTS (SELECT 1 FROM campaign_recipients r WHERE r.campaign_id = "
        "o.campaign_id AND r.contact_id = o.contact_id)",
    )
    _execute(
        database,
        "INSERT INTO campaign_recipient_features (campaign_id, contact_id, "
        "feature_set, platform_count) SELECT campaign_id, contact_id, "
        "'conversion_v1', 9 FROM campaign_outcomes",
    )
    load_demo_data(database, 1_000, seed=12, as_of=AS_OF, batch_size=1_000, replace_existing=True)
    controls = pd.concat(
        b.recipients for b in generate_demo_data(1_000, seed=12, as_of=AS_OF, batch_size=1_000)
    )
    assert database.count("campaign_recipient_features") == 0
    assert database.read_frame(
        "SELECT arm, count(*) AS n FROM campaign_recipients GROUP BY arm"
    ).values.tolist() == [["control", len(controls)]]
    reloaded = build_training_set(database, as_of=AS_OF)
    _execute(database, "DELETE FROM contact_changes")
    assert build_training_set(database, as_of=AS_OF).sha256 == reloaded.sha256


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_cost_benchmark_runs_as_documented(dialect, request):
    """docs/point_in_time.md's benchmark (small: 2,000 contacts, once): both timings, every
    change recorded, its PostgreSQL database dropped."""
    where = (
        ["--sqlite"] if dialect == "sqlite" else ["--url", request.getfixturevalue("postgres_url")]
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.contact_changes",
            "--contacts",
            "2000",
            "--repeat",
            "1",
            *where,
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{dialect} " in result.stdout and "without contact_changes" in result.stdout
    assert "2,000 changes recorded" in result.stdout
    if dialect == "postgresql":
        assert not database_exists(where[1])
