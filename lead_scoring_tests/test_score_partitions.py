"""PostgreSQL: the per-contact tables are hash-partitioned by contact_id, a publish swaps the
partitions under the parent, which keeps its views, grants and comments, and readers of
lead_scores wait only for the swap itself."""

import threading
import time
import uuid

import pandas as pd
import sqlalchemy as sa

from lead_scoring_assets.db.score_swap import last_validations
from lead_scoring_assets.ml.feature_table import build_contact_features
from lead_scoring_assets.scoring.full_rescore import publish_rescore, rescore_all, stage_rescore

from .conftest import AS_OF

PARTITIONED = ("lead_scores", "contact_features", "ml_lead_scores")


def _partitions(connection, table: str) -> list[str]:
    return (
        connection.execute(
            sa.text(
                "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = CAST(:t AS regclass) "
                "ORDER BY 1"
            ),
            {"t": table},
        )
        .scalars()
        .all()
    )


def test_per_contact_tables_have_sixteen_hash_partitions(postgres_demo):
    with postgres_demo.engine.connect() as connection:
        for table in PARTITIONED:
            bounds = _partitions(connection, table)
            assert len(bounds) == 16, table
            assert {b.split("remainder ")[1].rstrip(")") for b in bounds} == {
                str(i) for i in range(16)
            }


def test_view_grant_and_comment_survive_two_full_rescorings(postgres_demo):
    role = f"lead_scoring_reader_{uuid.uuid4().hex[:8]}"
    engine = postgres_demo.engine
    with engine.begin() as connection:
        connection.execute(sa.text(f"CREATE ROLE {role}"))
    try:
        rescore_all(postgres_demo, AS_OF)
        build_contact_features(postgres_demo, AS_OF)
        with engine.begin() as connection:
            for table in ("lead_scores", "contact_features"):
                connection.execute(sa.text(f"GRANT SELECT ON {table} TO {role}"))
                connection.execute(sa.text(f"COMMENT ON TABLE {table} IS 'kept by the swap'"))
            connection.execute(
                sa.text(
                    "CREATE VIEW good_leads AS SELECT s.contact_id, s.total_score, f.platform_count "
                    "FROM lead_scores s JOIN contact_features f USING (contact_id) "
                    "WHERE s.total_score >= 50"
                )
            )
            oids = {
                t: connection.execute(sa.text(f"SELECT CAST('{t}' AS regclass)::oid")).scalar()
                for t in ("lead_scores", "contact_features")
            }
        for days in (30, 60):
            rescore_all(postgres_demo, AS_OF + pd.Timedelta(days=days))
            build_contact_features(postgres_demo, AS_OF + pd.Timedelta(days=days))
        with engine.connect() as connection:
            for table, oid in oids.items():
                assert (
                    connection.execute(sa.text(f"SELECT CAST('{table}' AS regclass)::oid")).scalar()
                    == oid
                )
                assert connection.execute(
                    sa.text(f"SELECT has_table_privilege('{role}', '{table}', 'SELECT')")
                ).scalar()
                assert (
                    connection.execute(
                        sa.text(f"SELECT obj_description(CAST('{table}' AS regclass), 'pg_class')")
                    ).scalar()
                    == "kept by the swap"
                )
                assert len(_partitions(connection, table)) == 16
            viewed = connection.execute(sa.text("SELECT count(*) FROM good_leads")).scalar()
            direct = connection.execute(
                sa.text("SELECT count(*) FROM lead_scores WHERE total_score >= 50")
            ).scalar()
            as_of = (
                connection.execute(sa.text("SELECT DISTINCT last_calculated_at FROM lead_scores"))
                .scalars()
                .all()
            )
        assert viewed == direct > 0
        assert [pd.Timestamp(t) for t in as_of] == [AS_OF + pd.Timedelta(days=60)]
        assert postgres_demo.count("lead_scores") == postgres_demo.count("contacts")
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text("DROP VIEW IF EXISTS good_leads"))
            connection.execute(sa.text(f"DROP OWNED BY {role}"))
            connection.execute(sa.text(f"DROP ROLE {role}"))


def test_readers_are_not_held_while_the_publish_updates_contacts(postgres_demo):
    """A contact row locked elsewhere holds the publish of the first bucket at its
    ``last_platform_validation`` update; meanwhile ``lead_scores`` stays readable (the
    bucket's exclusive lock comes later)."""
    stage_rescore(postgres_demo, AS_OF, run_id="held")
    engine = postgres_demo.engine
    with engine.connect() as blocker:
        contact_id = blocker.execute(
            sa.text(f"SELECT min(contact_id) FROM {last_validations(0)}")
        ).scalar_one()
        assert contact_id is not None
        blocker.execute(
            sa.text("SELECT 1 FROM contacts WHERE id = :id FOR UPDATE"), {"id": contact_id}
        )
        publisher = threading.Thread(target=publish_rescore, args=(postgres_demo, "held"))
        publisher.start()
        deadline = time.monotonic() + 30
        with engine.connect() as watcher:
            while time.monotonic() < deadline:
                waiting = watcher.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query LIKE 'UPDATE contacts%'"
                    )
                ).scalar_one()
                watcher.rollback()
                if waiting:
                    break
                time.sleep(0.05)
        assert waiting, "the publish never reached the contacts update"
        with engine.connect() as reader:
            reader.execute(sa.text("SET lock_timeout = '2s'"))
            assert reader.execute(sa.text("SELECT count(*) FROM lead_scores")).scalar_one() == 0
        blocker.rollback()
    publisher.join(timeout=60)
    assert postgres_demo.count("lead_scores") == postgres_demo.count("contacts")
