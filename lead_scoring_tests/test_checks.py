"""Asset checks on lead_scores and ladas_reference: passing and failing input."""

import pytest
import sqlalchemy as sa

from lead_scoring_assets.defs.checks import (
    ladas_reference_covers_mexico,
    lead_scores_are_consistent,
)
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.scoring.full_rescore import rescore_all

from .conftest import AS_OF


def _run(check, database_url):
    return check(database=DatabaseResource(url=database_url))


def _execute(database, sql: str) -> None:
    with database.engine.begin() as connection:
        connection.execute(sa.text(sql))


def test_checks_are_blocking():
    for check in (lead_scores_are_consistent, ladas_reference_covers_mexico):
        assert all(spec.blocking for spec in check.check_specs)


def test_sound_scores_pass(demo_database, database_url):
    rescore_all(demo_database, AS_OF)
    result = _run(lead_scores_are_consistent, database_url)
    assert result.passed, result.description
    assert result.metadata["tier_mismatch"].value == 0


@pytest.mark.parametrize(
    ("breakage", "rule"),
    [
        ("UPDATE lead_scores SET total_score = 101 WHERE contact_id = 1", "total_out_of_range"),
        ("UPDATE lead_scores SET apple_score = 21 WHERE contact_id = 2", "platform_over_cap"),
        ("UPDATE lead_scores SET quality_tier = 'PREMIUM' WHERE total_score < 90",
         "tier_mismatch"),
        ("UPDATE lead_scores SET confidence_level = 1.5 WHERE contact_id = 3",
         "confidence_out_of_range"),
        ("DELETE FROM lead_scores WHERE contact_id = 4", "contacts_without_score"),
        ("UPDATE lead_scores SET contact_id = 999999999 WHERE contact_id = 5",
         "scores_without_contact"),
    ],
)
def test_broken_scores_fail(demo_database, database_url, breakage, rule):
    rescore_all(demo_database, AS_OF)
    _execute(demo_database, breakage)
    result = _run(lead_scores_are_consistent, database_url)
    assert not result.passed
    assert result.metadata[rule].value >= 1
    assert rule in result.description


def test_lada_reference_passes_and_fails(database, database_url):
    assert _run(ladas_reference_covers_mexico, database_url).passed
    _execute(database, "DELETE FROM ladas_reference WHERE state_name = 'COLIMA'")
    result = _run(ladas_reference_covers_mexico, database_url)
    assert not result.passed
    assert result.metadata["missing_states"].value == ["COLIMA"]
    _execute(database, "DELETE FROM ladas_reference WHERE lada > '5'")
    assert _run(ladas_reference_covers_mexico, database_url).metadata["ladas"].value < 350
