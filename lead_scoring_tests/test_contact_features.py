"""The contact_features table and asset on both dialects: values, as_of, swap, check."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from lead_scoring_assets.db.tables import CONTACT_COLUMNS, SCORING_VALIDATION_COLUMNS
from lead_scoring_assets.defs.assets.contact_features import contact_features
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.ml import feature_table
from lead_scoring_assets.ml.checks import feature_violations
from lead_scoring_assets.ml.feature_table import build_contact_features
from lead_scoring_assets.ml.features import FEATURE_COLUMNS, FEATURE_SET_VERSION
from lead_scoring_assets.ml.features import contact_features as features_of
from lead_scoring_assets.scoring.engine import score_chunk
from lead_scoring_assets.scoring.full_rescore import read_lada_reference, rescore_all

from .conftest import AS_OF


def _stored(database) -> pd.DataFrame:
    return database.read_frame("SELECT * FROM contact_features ORDER BY contact_id")


def test_table_holds_the_features_of_every_contact(demo_database):
    report = build_contact_features(demo_database, AS_OF, chunk_size=700)
    stored = _stored(demo_database)
    contacts = demo_database.read_frame(
        f"SELECT {', '.join(CONTACT_COLUMNS)} FROM contacts ORDER BY id"
    )
    validations = demo_database.read_frame(
        f"SELECT {', '.join(SCORING_VALIDATION_COLUMNS)} FROM platform_validations"
    )
    expected = features_of(
        score_chunk(contacts, validations, read_lada_reference(demo_database), AS_OF).parts
    )
    assert report.contacts == len(stored) == len(contacts) == 3_000
    assert stored["contact_id"].tolist() == expected["contact_id"].tolist()
    for column in FEATURE_COLUMNS:
        np.testing.assert_allclose(
            stored[column].to_numpy(float), expected[column].to_numpy(float), err_msg=column
        )
    assert set(stored["feature_set_version"]) == {FEATURE_SET_VERSION}
    assert (pd.to_datetime(stored["as_of"], utc=True, format="ISO8601") == AS_OF).all()
    assert report.feature_means["platform_count"] == pytest.approx(
        expected["platform_count"].mean()
    )
    assert not {"phone_e164", "full_name", "address"} & set(stored.columns)


def test_failed_build_leaves_the_previous_features(demo_database, monkeypatch):
    build_contact_features(demo_database, AS_OF)
    before = _stored(demo_database)
    calls = {"n": 0}
    real = feature_table.contact_features

    def failing(parts):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return real(parts)

    monkeypatch.setattr(feature_table, "contact_features", failing)
    with pytest.raises(RuntimeError, match="boom"):
        build_contact_features(demo_database, AS_OF + pd.Timedelta(days=30), chunk_size=1_000)
    pd.testing.assert_frame_equal(_stored(demo_database), before)
    assert "contact_features_next" not in sa.inspect(demo_database.engine).get_table_names()


def test_asset_uses_the_as_of_of_the_published_rescoring(demo_database, database_url):
    scores_as_of = AS_OF - pd.Timedelta(days=3)
    rescore_all(demo_database, scores_as_of)
    with demo_database.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE lead_scores SET last_calculated_at = :later WHERE contact_id <= 10"),
            {"later": demo_database.bind_timestamp(AS_OF)},
        )
    resources = {"database": DatabaseResource(url=database_url)}
    result = dg.materialize([contact_features], resources=resources)
    metadata = result.asset_materializations_for_node("contact_features")[0].metadata
    assert metadata["as_of"].value == scores_as_of.isoformat()
    assert metadata["dagster/row_count"].value == 3_000
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "contact_features_are_valid" and check.passed


def test_asset_fails_clearly_without_lead_scores(demo_database, database_url):
    with pytest.raises(dg.Failure, match="lead_scores is empty"):
        dg.materialize(
            [contact_features], resources={"database": DatabaseResource(url=database_url)}
        )


@pytest.mark.parametrize(
    ("breakage", "rule"),
    [
        ("UPDATE contact_features SET has_apple = 2 WHERE contact_id = 1", "flag_not_binary"),
        (
            "UPDATE contact_features SET google_score = 21 WHERE contact_id = 1",
            "platform_score_out_of_range",
        ),
        (
            "UPDATE contact_features SET validation_count = 6 WHERE contact_id = 1",
            "count_out_of_range",
        ),
        (
            "UPDATE contact_features SET geographic_consistency = 0.4 WHERE contact_id = 1",
            "ratio_out_of_range",
        ),
        (
            "UPDATE contact_features SET validation_recency_days = -1 WHERE contact_id = 1",
            "days_out_of_range",
        ),
        (
            "UPDATE contact_features SET feature_set_version = 'features_v0' WHERE contact_id = 1",
            "other_feature_set",
        ),
        ("DELETE FROM contact_features WHERE contact_id = 1", "contacts_without_features"),
    ],
)
def test_audit_fails_on_each_breakage(demo_database, breakage, rule):
    rescore_all(demo_database, AS_OF)
    build_contact_features(demo_database, AS_OF)
    assert not feature_violations(demo_database).failed
    with demo_database.engine.begin() as connection:
        connection.execute(sa.text(breakage))
    violations = feature_violations(demo_database)
    assert violations.failed and getattr(violations, rule) == 1


def test_a_contact_added_after_the_build_is_left_to_the_queue(demo_database):
    rescore_all(demo_database, AS_OF)
    build_contact_features(demo_database, AS_OF)
    with demo_database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO contacts (id, phone_e164, created_at) "
                "SELECT 5000, '+525512345678', created_at FROM contacts WHERE id = 1"
            )
        )
    assert not feature_violations(demo_database).failed
    with demo_database.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM scoring_queue WHERE contact_id = 5000"))
    assert feature_violations(demo_database).contacts_without_features == 1


def test_planted_violation_in_the_staged_features_publishes_nothing(
    demo_database, database_url, monkeypatch
):
    rescore_all(demo_database, AS_OF)
    resources = {"database": DatabaseResource(url=database_url)}
    assert dg.materialize([contact_features], resources=resources).success
    before = demo_database.read_frame("SELECT * FROM contact_features ORDER BY contact_id")
    real = feature_table.contact_features

    planted = []

    def planting(parts):
        frame = real(parts)
        if not planted and len(frame):
            frame.loc[frame.index[0], "has_apple"] = 2
            planted.append(True)
        return frame

    monkeypatch.setattr(feature_table, "contact_features", planting)
    result = dg.materialize([contact_features], resources=resources, raise_on_error=False)
    assert not result.success
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.metadata["flag_not_binary"].value == 1
    assert not result.asset_materializations_for_node("contact_features")
    pd.testing.assert_frame_equal(
        before, demo_database.read_frame("SELECT * FROM contact_features ORDER BY contact_id")
    )
    assert "contact_features_next" not in sa.inspect(demo_database.engine).get_table_names()
