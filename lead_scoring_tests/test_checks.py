"""Write, audit, publish: the blocking audits read the staged rows, and a failed audit
publishes nothing."""

from types import SimpleNamespace

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from lead_scoring_assets.db.buckets import BUCKET_COUNT, bucket_sql
from lead_scoring_assets.db.score_swap import ScoreSwap, staged_scores
from lead_scoring_assets.db.staged_table import StagedBuildMissing, StagedTable
from lead_scoring_assets.db.writer_lock import LockLost
from lead_scoring_assets.defs.assets.ladas_reference import (
    ladas_reference,
    staged_ladas_reference,
)
from lead_scoring_assets.defs.assets.lead_scores import (
    LeadScoresConfig,
    lead_scores,
    staged_lead_scores,
)
from lead_scoring_assets.defs.checks import (
    staged_audit,
    staged_ladas_reference_covers_mexico,
    staged_lead_scores_pass_audit,
)
from lead_scoring_assets.defs.partitions import ALL_BUCKETS
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.scoring import full_rescore
from lead_scoring_assets.scoring.checks import staged_score_violations
from lead_scoring_assets.scoring.full_rescore import (
    publish_rescore,
    rescore_all,
    stage_rescore,
)

from .conftest import AS_OF

LIVE = {
    "lead_scores": "SELECT * FROM lead_scores ORDER BY contact_id",
    "malformed_validations": "SELECT * FROM malformed_validations ORDER BY validation_id",
    "lead_score_history": "SELECT * FROM lead_score_history ORDER BY id",
    "contacts": "SELECT id, last_platform_validation FROM contacts ORDER BY id",
    "ladas_reference": "SELECT * FROM ladas_reference ORDER BY lada, state_name",
}


def _execute(database, sql: str) -> None:
    with database.engine.begin() as connection:
        connection.execute(sa.text(sql))


def _live(database) -> dict[str, pd.DataFrame]:
    return {name: database.read_frame(sql) for name, sql in LIVE.items()}


def test_audits_are_blocking_and_read_the_staged_assets():
    for check, asset in (
        (staged_lead_scores_pass_audit, "staged_lead_scores"),
        (staged_ladas_reference_covers_mexico, "staged_ladas_reference"),
    ):
        (spec,) = check.check_specs
        assert spec.blocking and spec.asset_key.to_user_string() == asset


@pytest.mark.parametrize(
    ("breakage", "rule"),
    [
        ("UPDATE {staged} SET total_score = 101 WHERE contact_id = 1", "total_out_of_range"),
        ("UPDATE {staged} SET apple_score = 21 WHERE contact_id = 1", "platform_over_cap"),
        ("UPDATE {staged} SET quality_tier = 'PREMIUM' WHERE total_score < 90", "tier_mismatch"),
        (
            "UPDATE {staged} SET confidence_level = 1.5 WHERE contact_id = 1",
            "confidence_out_of_range",
        ),
        ("DELETE FROM {staged} WHERE contact_id = 1", "contacts_without_score"),
        (
            "UPDATE {staged} SET contact_id = {stranger} WHERE contact_id = 1",
            "scores_without_contact",
        ),
    ],
)
def test_each_rule_catches_its_breakage_in_the_staged_scores(demo_database, breakage, rule):
    stage_rescore(demo_database, AS_OF, run_id="audited")
    assert not staged_score_violations(demo_database, "audited").failed
    bucket = _bucket_of(demo_database, 1)
    stranger = next(i for i in range(10**9, 10**9 + 1000) if _bucket_of(demo_database, i) == bucket)
    _execute(demo_database, breakage.format(staged=staged_scores(bucket), stranger=stranger))
    violations = staged_score_violations(demo_database, "audited")
    assert getattr(violations, rule) >= 1
    assert rule in violations.describe()


def test_contacts_inserted_or_deleted_while_the_run_reads_do_not_fail_the_audit(
    demo_database, monkeypatch
):
    """A second connection inserts a contact behind the run's walk and deletes one it already
    read: both are the queue's work, not a failure; the new contact stays queued."""
    real = full_rescore.score_chunk
    calls = {"n": 0}

    def platform_writes_meanwhile(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            _execute(
                demo_database, "INSERT INTO contacts (id, phone_e164) VALUES (0, '+523311111111')"
            )
            _execute(demo_database, "DELETE FROM contacts WHERE id = 1")
        return real(*args, **kwargs)

    monkeypatch.setattr(full_rescore, "score_chunk", platform_writes_meanwhile)
    report = rescore_all(demo_database, AS_OF, chunk_size=1_000)
    assert calls["n"] >= 3 and report.contacts_scored == 3_000
    queued = set(demo_database.read_frame("SELECT contact_id FROM scoring_queue")["contact_id"])
    assert {0, 1} <= queued
    unscored = demo_database.read_frame(
        "SELECT count(*) AS n FROM contacts c WHERE NOT EXISTS "
        "(SELECT 1 FROM lead_scores s WHERE s.contact_id = c.id)"
    )["n"][0]
    assert unscored == 1


def _bucket_of(database, contact_id: int) -> int:
    with database.engine.connect() as connection:
        return connection.execute(
            sa.text(f"SELECT {bucket_sql(database.dialect, ':id')}"), {"id": contact_id}
        ).scalar_one()


def _staged_tables(database) -> list[str]:
    names = sa.inspect(database.engine).get_table_names()
    return [staged_scores(b) for b in range(BUCKET_COUNT) if staged_scores(b) in names]


def _materialize(database_url, as_of, **kwargs):
    return dg.materialize(
        [
            staged_ladas_reference,
            ladas_reference,
            staged_lead_scores,
            lead_scores,
            staged_lead_scores_pass_audit,
            staged_ladas_reference_covers_mexico,
        ],
        resources={"database": DatabaseResource(url=database_url)},
        run_config=dg.RunConfig({"staged_lead_scores": LeadScoresConfig(as_of=as_of)}),
        tags=ALL_BUCKETS,
        **kwargs,
    )


def test_planted_violation_in_the_staged_scores_publishes_nothing(
    demo_database, database_url, monkeypatch
):
    assert _materialize(database_url, AS_OF.isoformat()).success
    _execute(
        demo_database,
        "INSERT INTO platform_validations (id, contact_id, platform, "
        "is_valid, confidence_score, validated_at) VALUES "
        "(10000000, 7, 'tiktok', true, 0.5, '2026-11-01 00:00:00')",
    )
    before = _live(demo_database)
    real = full_rescore.score_chunk

    planted = []

    def planting(*args, **kwargs):
        scored = real(*args, **kwargs)
        if not planted and len(scored.scores):
            scored.scores.loc[scored.scores.index[0], "total_score"] = 150
            planted.append(True)
        return scored

    monkeypatch.setattr(full_rescore, "score_chunk", planting)
    later = (AS_OF + pd.Timedelta(days=30)).isoformat()
    result = _materialize(database_url, later, raise_on_error=False)
    assert not result.success
    audit = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not audit["staged_lead_scores_pass_audit"].passed
    assert audit["staged_lead_scores_pass_audit"].metadata["total_out_of_range"].value == 1
    assert not result.asset_materializations_for_node("lead_scores")
    after = _live(demo_database)
    for name in LIVE:
        pd.testing.assert_frame_equal(before[name], after[name], obj=name)
    assert demo_database.count("writer_locks") == demo_database.count("staged_builds") == 0
    assert not _staged_tables(demo_database)
    monkeypatch.setattr(full_rescore, "score_chunk", real)
    assert _materialize(database_url, later).success


def test_failed_lada_audit_keeps_the_live_reference(demo_database, database_url, monkeypatch):
    from lead_scoring_assets.defs.assets import ladas_reference as module

    before = _live(demo_database)["ladas_reference"]
    real = module.build_lada_reference
    monkeypatch.setattr(
        module, "build_lada_reference", lambda: real().query("state_name != 'COLIMA'")
    )
    result = _materialize(database_url, AS_OF.isoformat(), raise_on_error=False)
    audit = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not audit["staged_ladas_reference_covers_mexico"].passed
    assert audit["staged_ladas_reference_covers_mexico"].metadata["missing_states"].value == [
        "COLIMA"
    ]
    assert not result.asset_materializations_for_node("ladas_reference")
    pd.testing.assert_frame_equal(before, _live(demo_database)["ladas_reference"])


def test_only_the_run_that_staged_may_publish_or_discard(demo_database):
    rescore_all(demo_database, AS_OF)
    before = _live(demo_database)["lead_scores"]
    stage_rescore(demo_database, AS_OF + pd.Timedelta(days=1), run_id="stager")
    with pytest.raises(StagedBuildMissing, match="staged by stager"):
        publish_rescore(demo_database, "intruder")
    with pytest.raises(LockLost):
        ScoreSwap(demo_database, run_id="intruder").discard()
    with pytest.raises(StagedBuildMissing):
        StagedTable(demo_database, "ladas_reference", run_id="intruder").publish()
    pd.testing.assert_frame_equal(before, _live(demo_database)["lead_scores"])
    assert sum(demo_database.count(t) for t in _staged_tables(demo_database)) == len(before)
    publish_rescore(demo_database, "stager")
    assert demo_database.count("writer_locks") == 0
    assert not _live(demo_database)["lead_scores"].equals(before)


def test_an_audit_that_did_not_run_is_a_failed_check():
    """A build that comes back without the audit's counts reports a failed check saying so
    (not a crash without a result, never a pass) and fails the step."""
    results = staged_audit(
        "features_are_valid", "contact_features", lambda: SimpleNamespace(violations=None)
    )
    result = next(results)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert result.check_name == "features_are_valid"
    assert result.metadata["evaluated"].value is False
    assert result.description.startswith("not evaluated")
    with pytest.raises(dg.Failure, match="not audited"):
        next(results)
