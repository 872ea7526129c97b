"""The Alembic schema on both dialects: tables, columns, indexes, malformed rows accepted."""

import json

import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lead_scoring_assets.cli import main
from lead_scoring_assets.consent.in_force import canonical
from lead_scoring_assets.db.database import Database, head_revision
from lead_scoring_assets.db.scoring_queue import ScoringQueue
from lead_scoring_assets.db.tables import (
    CONTACT_COLUMNS,
    ML_SCORE_COLUMNS,
    SCORE_COLUMNS,
    VALIDATION_COLUMNS,
)
from lead_scoring_assets.ml.features import FEATURE_COLUMNS
from lead_scoring_assets.scoring.breakdown import breakdown_of
from lead_scoring_assets.scoring.full_rescore import rescore_all

from .api_data import LATER, READ_KEY, app_for
from .conftest import AS_OF


def test_upgrade_creates_the_spec_tables(database_url):
    database = Database(database_url)
    assert database.current_revision() is None
    database.upgrade()
    inspector = sa.inspect(database.engine)
    columns = {
        t: [c["name"] for c in inspector.get_columns(t)] for t in inspector.get_table_names()
    }
    assert columns["contacts"] == list(CONTACT_COLUMNS)
    assert columns["platform_validations"] == list(VALIDATION_COLUMNS)
    assert columns["ladas_reference"] == ["lada", "state_name"]
    assert columns["lead_scores"] == list(SCORE_COLUMNS)
    assert "reason" in columns["malformed_validations"]
    assert columns["contact_features"] == [
        "contact_id",
        *FEATURE_COLUMNS,
        "feature_set_version",
        "as_of",
    ]
    assert columns["ml_lead_scores"] == list(ML_SCORE_COLUMNS)
    assert columns["writer_locks"] == ["resource", "holder", "mode", "acquired_at", "expires_at"]
    assert columns["staged_builds"] == ["table_name", "run_id", "as_of", "staged_at"]
    assert any(
        ix["column_names"][:2] == ["contact_id", "platform"]
        for ix in inspector.get_indexes("platform_validations")
    )
    database.dispose()


def test_downgrade_and_upgrade_again(database_url):
    database = Database(database_url)
    database.upgrade()
    database.downgrade("base")
    assert "contacts" not in sa.inspect(database.engine).get_table_names()
    database.upgrade()
    assert database.current_revision() == head_revision()
    database.dispose()


def test_platform_tables_accept_explicit_ids_and_malformed_rows(database_url):
    database = Database(database_url)
    database.upgrade()
    database.append_frame(
        "contacts",
        pd.DataFrame(
            {
                "id": [900_001],
                "phone_e164": ["+523312345678"],
                "full_name": [None],
                "address": [None],
                "state_name": ["  "],
                "municipality": [None],
                "lada": ["33"],
                "operator": [None],
                "created_at": pd.Series([pd.NaT], dtype="datetime64[us, UTC]"),
                "last_platform_validation": pd.Series([pd.NaT], dtype="datetime64[us, UTC]"),
            }
        ),
    )
    database.append_frame(
        "platform_validations",
        pd.DataFrame(
            {
                "id": [5, 6, 7],
                "contact_id": pd.array([900_001, 424242, None], dtype="Int64"),
                "platform": ["tiktok", "whatsapp", None],
                "is_valid": pd.array([None, True, False], dtype="boolean"),
                "is_business": pd.array([None, None, None], dtype="boolean"),
                "is_premium": pd.array([None, None, None], dtype="boolean"),
                "confidence_score": [1.7, None, -3.0],
                "validation_method": [None, "api", None],
                "response_time_ms": pd.array([None, 5, None], dtype="Int32"),
                "validated_at": pd.to_datetime([None, "2026-01-01", None], utc=True).as_unit("us"),
            }
        ),
    )
    assert database.count("platform_validations") == 3
    assert database.read_frame("SELECT id FROM contacts")["id"].tolist() == [900_001]
    database.dispose()


def test_cli_db_upgrade(sqlite_url, capsys):
    assert main(["db", "upgrade", "--url", sqlite_url]) == 0
    assert f"revision {head_revision()}" in capsys.readouterr().out
    assert main(["db", "current", "--url", sqlite_url]) == 0
    assert capsys.readouterr().out.strip() == head_revision()


def test_0007_moves_the_phone_to_contacts_and_back(demo_database):
    """Scores survive the migration both ways; downgraded, lead_scores holds the contacts'
    phones again."""
    rescore_all(demo_database, AS_OF)
    scores = demo_database.read_frame(
        f"SELECT {', '.join(SCORE_COLUMNS)} FROM lead_scores ORDER BY contact_id"
    )
    demo_database.downgrade("0006")
    phones = demo_database.read_frame(
        "SELECT s.phone_e164 AS kept, c.phone_e164 AS phone FROM lead_scores s "
        "JOIN contacts c ON c.id = s.contact_id"
    )
    assert len(phones) == len(scores) and (phones["kept"] == phones["phone"]).all()
    assert "demo_data_marker" not in sa.inspect(demo_database.engine).get_table_names()
    demo_database.upgrade()
    columns = [c["name"] for c in sa.inspect(demo_database.engine).get_columns("lead_scores")]
    assert columns == list(SCORE_COLUMNS)
    assert {ix["name"] for ix in sa.inspect(demo_database.engine).get_indexes("lead_scores")} >= {
        "ix_lead_scores_rank",
        "ix_lead_scores_quality_tier",
    }
    pd.testing.assert_frame_equal(
        scores,
        demo_database.read_frame(
            f"SELECT {', '.join(SCORE_COLUMNS)} FROM lead_scores ORDER BY contact_id"
        ),
    )


def test_0008_per_state_analytics_column_and_rank_index(database_url):
    database = Database(database_url)
    database.upgrade()

    def schema() -> tuple[list[str], dict[str, list[str]]]:
        inspector = sa.inspect(database.engine)
        columns = [c["name"] for c in inspector.get_columns("lead_scoring_analytics_history")]
        return columns, {
            ix["name"]: ix["column_names"] for ix in inspector.get_indexes("lead_scores")
        }

    columns, indexes = schema()
    assert columns[-1] == "by_state"
    assert indexes["ix_lead_scores_rank"] == ["total_score", "contact_id"]
    assert "ix_lead_scores_total_score" not in indexes
    database.downgrade("0007")
    columns, indexes = schema()
    assert "by_state" not in columns and indexes["ix_lead_scores_total_score"] == ["total_score"]
    database.upgrade()
    assert schema()[1]["ix_lead_scores_rank"] == ["total_score", "contact_id"]
    database.dispose()


def test_0010_keeps_the_breakdown_both_ways(demo_database):
    """Downgraded, lead_scores holds the breakdown as JSON again, equal to what the typed
    columns read back as; upgraded again, the typed columns are as they were."""
    rescore_all(demo_database, AS_OF)
    scores = demo_database.read_frame(
        f"SELECT {', '.join(SCORE_COLUMNS)} FROM lead_scores ORDER BY contact_id"
    )
    demo_database.downgrade("0008")
    old = demo_database.read_frame(
        "SELECT contact_id, score_breakdown, total_score FROM lead_scores ORDER BY contact_id"
    )
    assert old["contact_id"].tolist() == scores["contact_id"].tolist()
    for row, stored in zip(scores.to_dict("records"), old["score_breakdown"]):
        assert (json.loads(stored) if isinstance(stored, str) else stored) == breakdown_of(row)
    assert {ix["name"] for ix in sa.inspect(demo_database.engine).get_indexes("lead_scores")} >= {
        "ix_lead_scores_rank",
        "ix_lead_scores_quality_tier",
    }
    demo_database.upgrade()
    pd.testing.assert_frame_equal(
        scores,
        demo_database.read_frame(
            f"SELECT {', '.join(SCORE_COLUMNS)} FROM lead_scores ORDER BY contact_id"
        ),
        check_dtype=False,
    )


def test_0011_partitions_the_history_by_month_and_counts_the_queue(demo_database):
    """On a database with data: the history keeps its rows and ids both ways (PostgreSQL:
    one partition per month, then a plain table again), the queue's size is counted."""
    demo_database.downgrade("0008")
    with demo_database.engine.begin() as connection:
        for contact_id, at in (
            (1, "2025-03-31T23:59:59Z"),
            (2, "2026-11-01T00:00:00Z"),
            (1, "2026-11-24T10:00:00Z"),
        ):
            connection.execute(
                sa.text(
                    "INSERT INTO lead_score_history (contact_id, old_total_score, new_total_score, "
                    "old_quality_tier, new_quality_tier, calculation_version, run_id, changed_at) "
                    "VALUES (:id, NULL, 40, NULL, 'MEDIUM', 'advanced_v1.1', 'old', :at)"
                ),
                {"id": contact_id, "at": demo_database.bind_timestamp(pd.Timestamp(at))},
            )
    history_sql = "SELECT * FROM lead_score_history ORDER BY id"
    before = demo_database.read_frame(history_sql)
    queued = demo_database.count("scoring_queue")
    assert queued > 0

    def kind() -> str:
        return demo_database.read_frame(
            "SELECT relkind FROM pg_class WHERE oid = 'lead_score_history'::regclass"
        )["relkind"][0]

    demo_database.upgrade()
    pd.testing.assert_frame_equal(before, demo_database.read_frame(history_sql))
    assert ScoringQueue(demo_database).depth().claimable == queued
    if demo_database.dialect == "postgresql":
        assert kind() == "p"
        parts = set(
            demo_database.read_frame(
                "SELECT tableoid::regclass::text AS part FROM lead_score_history"
            )["part"]
        )
        assert parts == {"lead_score_history_2025_03", "lead_score_history_2026_11"}
    rescore_all(demo_database, AS_OF, run_id="after")
    after = demo_database.read_frame(history_sql)
    assert after["id"].min() == before["id"].min()
    assert (after.loc[after["run_id"] == "after", "id"] > before["id"].max()).all()
    demo_database.downgrade("0008")
    pd.testing.assert_frame_equal(after, demo_database.read_frame(history_sql))
    if demo_database.dialect == "postgresql":
        assert kind() == "r"
    demo_database.upgrade()
    pd.testing.assert_frame_equal(after, demo_database.read_frame(history_sql))


def test_scores_of_advanced_v1_0_read_through_the_api_across_0010_and_the_first_rescoring(
    demo_database,
):
    """Rows advanced_v1.0 wrote before 0010 (JSON breakdowns) are read through the API after
    the upgrade, before any rescoring: their stored values and breakdown (v1.0's
    configuration), marked as of that version; after the first rescoring, as advanced_v1.1.
    Never a 500. Downgraded again before the rescoring, they get back their JSON."""
    rescore_all(demo_database, AS_OF, run_id="v1.0")
    demo_database.downgrade("0009")
    with demo_database.engine.begin() as connection:
        for table in ("lead_scores", "lead_score_history"):
            connection.execute(sa.text(f"UPDATE {table} SET calculation_version = 'advanced_v1.0'"))
    old = demo_database.read_frame(
        "SELECT contact_id, total_score, quality_tier, score_breakdown FROM lead_scores "
        "WHERE platform_count >= 2 ORDER BY total_score DESC, contact_id LIMIT 1"
    ).iloc[0]
    contact = int(old["contact_id"])
    breakdown = old["score_breakdown"]
    breakdown = json.loads(breakdown) if isinstance(breakdown, str) else breakdown
    demo_database.upgrade()
    path = f"/api/v1/lead-scoring/contacts/{contact}"
    headers = {"X-API-Key": READ_KEY}
    with TestClient(app_for(demo_database), raise_server_exceptions=False) as client:
        before = client.get(path, headers=headers)
    demo_database.downgrade("0009")
    again = demo_database.read_frame(
        "SELECT score_breakdown FROM lead_scores WHERE contact_id = :id", {"id": contact}
    ).iloc[0, 0]
    assert (json.loads(again) if isinstance(again, str) else again) == breakdown
    demo_database.upgrade()
    rescore_all(demo_database, LATER, run_id="v1.1")
    with TestClient(app_for(demo_database), raise_server_exceptions=False) as client:
        after = client.get(path, headers=headers)
    assert before.status_code == 200, before.text
    card = before.json()
    assert (
        card["calculation_version"],
        card["current_calculation_version"],
        card["is_current_version"],
    ) == ("advanced_v1.0", "advanced_v1.1", False)
    assert "computed by advanced_v1.0" in card["version_note"]
    assert "next rescoring" in card["version_note"]
    assert (card["total_score"], card["quality_tier"]) == (old["total_score"], old["quality_tier"])
    assert card["score_breakdown"] == breakdown
    assert after.status_code == 200, after.text
    card = after.json()
    assert (card["calculation_version"], card["is_current_version"], card["version_note"]) == (
        "advanced_v1.1",
        True,
        None,
    )
    assert card["score_breakdown"]["as_of"] == LATER.isoformat()


def test_0013_new_work_wakes_waiting_entries_and_back(database):
    """From 0013 a new validation or a profile change (the phone included) wakes an entry
    waiting for a row due later; downgraded to 0012 the entry keeps waiting, as before."""
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO contacts (id, phone_e164, full_name) VALUES (1, '+523300000001', 'A')"
            )
        )
    ahead = database.bind_timestamp(pd.Timestamp.now(tz="UTC") + pd.Timedelta(hours=20))
    queue = ScoringQueue(database)

    def wait_then(change: str) -> bool:
        """``change`` applied to a waiting entry of contact 1: is it claimable at once?"""
        with database.engine.begin() as connection:
            connection.execute(
                sa.text("UPDATE scoring_queue SET leased_by = NULL, leased_until = :ahead"),
                {"ahead": ahead},
            )
        assert queue.depth().claimable == 0
        with database.engine.begin() as connection:
            connection.execute(sa.text(change), {"at": database.bind_timestamp(AS_OF)})
        return queue.depth().claimable == 1

    changes = [
        (
            "INSERT INTO platform_validations (id, contact_id, platform, is_valid, "
            "confidence_score, validated_at) VALUES ((SELECT coalesce(max(id), 0) + 1 FROM "
            "platform_validations), 1, 'apple', true, 0.9, :at)"
        ),
        "UPDATE platform_validations SET confidence_score = 0.8 WHERE contact_id = 1",
        "UPDATE contacts SET full_name = full_name || 'x' WHERE id = 1",
        (
            "UPDATE contacts SET phone_e164 = CASE WHEN phone_e164 = '+523300000001' "
            "THEN '+523300000002' ELSE '+523300000001' END WHERE id = 1"
        ),
        "DELETE FROM platform_validations WHERE contact_id = 1",
    ]
    assert [wait_then(change) for change in changes] == [True] * len(changes)
    database.downgrade("0012")
    assert [wait_then(change) for change in changes] == [False] * len(changes)
    database.upgrade()
    assert [wait_then(change) for change in changes] == [True] * len(changes)


def test_0015_consent_and_send_record_tables_and_back(database):
    """0015: suppressions keep one row per E.164 number and reason (any other reason or form
    refused); a control recipient's conversion without delivery is no longer rejected, and
    downgraded to 0014 it is again; the platform's own campaign rows still insert."""
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO contacts (id, phone_e164, full_name) VALUES (1, '+523300000001', 'A'), "
                "(2, '+523300000002', 'B')"
            )
        )
        connection.execute(
            sa.text("INSERT INTO campaigns (id, name, sent_at) VALUES (7, 'platform', :at)"),
            {"at": database.bind_timestamp(AS_OF)},
        )
        connection.execute(
            sa.text(
                "INSERT INTO campaign_recipients (campaign_id, contact_id, arm) VALUES (7, 1, "
                "'control')"
            )
        )
        connection.execute(
            sa.text("INSERT INTO campaign_recipients (campaign_id, contact_id) VALUES (7, 2)")
        )
        connection.execute(
            sa.text(
                "INSERT INTO campaign_outcomes (campaign_id, contact_id, delivered, converted) "
                "VALUES (7, 1, false, true), (7, 2, false, true)"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO suppressions (phone_e164, reason, source, recorded_at) VALUES "
                "('+523300000001', 'opt_out', 'reply 1', :at), "
                "('+523300000001', 'repus', 'repus.csv', :at)"
            ),
            {"at": database.bind_timestamp(AS_OF)},
        )
    refused = [
        "('+523300000001', 'opt_out', 'again', :at)",
        "('+523300000001', 'spam', 'x', :at)",
        "('3300000001', 'manual', 'x', :at)",
        "('+5233000000011', 'manual', 'x', :at)",
    ]
    for values in refused:
        with pytest.raises(sa.exc.IntegrityError), database.engine.begin() as connection:
            connection.execute(
                sa.text(
                    f"INSERT INTO suppressions (phone_e164, reason, source, recorded_at) VALUES "
                    f"{values}"
                ),
                {"at": database.bind_timestamp(AS_OF)},
            )

    def rejected() -> list:
        with database.engine.connect() as connection:
            return connection.execute(
                sa.text(
                    "SELECT contact_id, reason FROM rejected_campaign_outcomes ORDER BY contact_id"
                )
            ).all()

    assert rejected() == [(2, "converted_without_delivery")]
    assert database.read_frame("SELECT arm FROM campaign_recipients ORDER BY contact_id")[
        "arm"
    ].tolist() == ["control", "target"]
    database.downgrade("0014")
    assert rejected() == [(1, "converted_without_delivery"), (2, "converted_without_delivery")]
    assert "suppressions" not in sa.inspect(database.engine).get_table_names()
    database.upgrade()
    assert "campaign_recipient_features" in sa.inspect(database.engine).get_table_names()


def test_0016_records_contact_changes_and_back(database):
    """0016: an UPDATE that changes a profile column, the phone or created_at records the old
    values (one row per contact, whatever the statement's size); one that changes nothing of
    them records nothing; a DELETE records the last state, and forgetting deletes those rows
    in the same transaction. A deleted contact with recorded changes is not an unknown contact
    to ``rejected_campaign_outcomes``; downgraded to 0015 it is, and nothing is recorded."""
    clock = pd.Timestamp.now(tz="UTC").floor("ms")
    assert {"contact_changes_by_contact": ["contact_id", "changed_at"]} == {
        i["name"]: i["column_names"]
        for i in sa.inspect(database.engine).get_indexes("contact_changes")
    }
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO contacts (id, phone_e164, full_name, operator) VALUES "
                "(1, '+523300000001', 'A', 'TELCEL'), (2, '+523300000002', 'B', 'TELCEL'), "
                "(3, '+523300000003', 'C', 'AT&T'), (4, '+523300000004', NULL, 'AT&T')"
            )
        )
        connection.execute(
            sa.text("INSERT INTO campaigns (id, name, sent_at) VALUES (7, 'platform', :at)"),
            {"at": database.bind_timestamp(AS_OF)},
        )
        connection.execute(
            sa.text(
                "INSERT INTO campaign_outcomes (campaign_id, contact_id, delivered, converted) "
                "VALUES (7, 2, true, false), (7, 9, true, false)"
            )
        )
    with database.engine.begin() as connection:
        connection.execute(sa.text("UPDATE contacts SET operator = 'AT&T'"))
        connection.execute(
            sa.text("UPDATE contacts SET last_platform_validation = :at, full_name = full_name"),
            {"at": database.bind_timestamp(AS_OF)},
        )
        connection.execute(sa.text("UPDATE contacts SET full_name = 'D' WHERE id = 4"))
        connection.execute(sa.text("DELETE FROM contacts WHERE id = 2"))
    changes = database.read_frame(
        "SELECT contact_id, change, phone_e164, full_name, operator, "
        "changed_at FROM contact_changes ORDER BY id"
    )
    assert changes.drop(columns="changed_at").fillna("-").values.tolist() == [
        [1, "update", "+523300000001", "A", "TELCEL"],
        [2, "update", "+523300000002", "B", "TELCEL"],
        [4, "update", "+523300000004", "-", "AT&T"],
        [2, "delete", "+523300000002", "B", "AT&T"],
    ]
    changed_at = pd.to_datetime(changes["changed_at"], utc=True, format="ISO8601")
    assert changed_at.between(clock, pd.Timestamp.now(tz="UTC")).all()
    assert changed_at.is_monotonic_increasing

    def rejected() -> list:
        with database.engine.connect() as connection:
            return connection.execute(
                sa.text(
                    "SELECT contact_id, reason FROM rejected_campaign_outcomes ORDER BY contact_id"
                )
            ).all()

    assert rejected() == [(9, "unknown_contact")]
    with database.engine.begin() as connection:  # forget's order: contacts, then the changes
        connection.execute(sa.text("DELETE FROM contacts WHERE id = 1"))
        connection.execute(sa.text("DELETE FROM contact_changes WHERE contact_id = 1"))
    assert (
        1
        not in database.read_frame("SELECT contact_id FROM contact_changes")["contact_id"].tolist()
    )
    database.downgrade("0015")
    assert "contact_changes" not in sa.inspect(database.engine).get_table_names()
    assert rejected() == [(2, "unknown_contact"), (9, "unknown_contact")]
    with database.engine.begin() as connection:
        connection.execute(sa.text("UPDATE contacts SET operator = 'MOVISTAR'"))
        connection.execute(sa.text("DELETE FROM contacts WHERE id = 3"))
    database.upgrade()
    assert database.read_frame("SELECT count(*) AS n FROM contact_changes")["n"].iloc[0] == 0
    with database.engine.begin() as connection:
        connection.execute(sa.text("UPDATE contacts SET operator = 'TELCEL'"))
    assert database.read_frame("SELECT count(*) AS n FROM contact_changes")["n"].iloc[0] == 1


def test_0017_adds_uplift_scores_and_campaign_expectations_and_back(database):
    """0017: ``uplift_scores`` (hash-partitioned in 16 on PostgreSQL) and the campaign's
    selection and expected-return columns; the downgrade removes them and keeps the views."""
    inspector = sa.inspect(database.engine)
    assert "uplift_scores" in inspector.get_table_names()
    assert {"rank_by", "select_rule", "budget", "expected_profit_high"} <= {
        c["name"] for c in inspector.get_columns("campaigns")
    }
    if database.dialect == "postgresql":
        partitions = database.read_frame(
            "SELECT count(*) AS n FROM pg_inherits WHERE inhparent = 'uplift_scores'::regclass"
        )
        assert partitions["n"].iloc[0] == 16
    database.downgrade("0016")
    inspector = sa.inspect(database.engine)
    assert "uplift_scores" not in inspector.get_table_names()
    assert "rank_by" not in {c["name"] for c in inspector.get_columns("campaigns")}
    assert (
        database.read_frame("SELECT count(*) AS n FROM rejected_campaign_outcomes")["n"].iloc[0]
        == 0
    )
    database.upgrade()
    assert "uplift_scores" in sa.inspect(database.engine).get_table_names()


def test_0018_indexes_the_list_sorts_and_back(database):
    """0018: ``(conversion_probability, contact_id)`` and ``(uplift, contact_id)``, both
    descending (on PostgreSQL on the partitioned parents, so on all 16 partitions); the
    downgrade drops them."""

    def indexes() -> dict:
        inspector = sa.inspect(database.engine)
        return {
            ix["name"]: ix["column_names"]
            for table in ("conversion_scores", "uplift_scores")
            for ix in inspector.get_indexes(table)
        }

    assert indexes() == {
        "ix_conversion_scores_rank": ["conversion_probability", "contact_id"],
        "ix_uplift_scores_rank": ["uplift", "contact_id"],
    }
    if database.dialect == "postgresql":
        attached = database.read_frame(
            "SELECT count(*) AS n FROM pg_inherits WHERE inhparent IN "
            "(CAST('ix_conversion_scores_rank' AS regclass), "
            "CAST('ix_uplift_scores_rank' AS regclass))"
        )
        assert attached["n"].iloc[0] == 32
    database.downgrade("0017")
    assert indexes() == {}
    database.upgrade()
    assert set(indexes()) == {"ix_conversion_scores_rank", "ix_uplift_scores_rank"}


def test_0019_indexes_the_noncanonical_numbers_and_back(database):
    """0019: a partial index of the contacts' numbers not in canonical form, which the
    export's look-up of those numbers can read instead of every contact; the downgrade drops
    it."""
    query = (
        "SELECT DISTINCT phone_e164 FROM contacts "
        f"WHERE NOT ({canonical(database.dialect, 'phone_e164')})"
    )

    def plan() -> str:
        with database.engine.connect() as connection:
            if database.dialect == "postgresql":
                connection.execute(sa.text("SET enable_seqscan = off"))
                rows = connection.execute(sa.text(f"EXPLAIN {query}"))
            else:
                rows = connection.execute(sa.text(f"EXPLAIN QUERY PLAN {query}"))
            return " ".join(str(value) for row in rows for value in row)

    def indexes() -> set[str]:
        return {ix["name"] for ix in sa.inspect(database.engine).get_indexes("contacts")}

    assert "ix_contacts_noncanonical_phone" in plan()
    database.downgrade("0018")
    assert "ix_contacts_noncanonical_phone" not in indexes()
    database.upgrade()
    assert "ix_contacts_noncanonical_phone" in indexes()
