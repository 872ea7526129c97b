"""Scoring queue: triggers enqueue contacts whose validations or profile change.

Revision ID: 0002
Revises: 0001

Priorities: a validation change enqueues at 5, a contact change at 3. A contact already
queued keeps its one row: priority raised by one (at most 10, never below the new
priority), ``updated_at`` bumped and ``version`` incremented, so a run that claimed the
older version leaves the entry for a later run.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
VALIDATION_PRIORITY = 5
CONTACT_PRIORITY = 3
PROFILE_COLUMNS = (
    "full_name",
    "address",
    "state_name",
    "municipality",
    "lada",
    "operator",
    "created_at",
)

PG_ENQUEUE = """
INSERT INTO scoring_queue (contact_id, priority, created_at, updated_at)
SELECT contact_id, {priority}, clock_timestamp(), clock_timestamp()
FROM (SELECT DISTINCT contact_id FROM ({rows}) AS c WHERE contact_id IS NOT NULL) AS d
ON CONFLICT (contact_id) DO UPDATE SET
    priority = LEAST(10, GREATEST(scoring_queue.priority + 1, EXCLUDED.priority)),
    updated_at = EXCLUDED.updated_at,
    version = scoring_queue.version + 1;
"""
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
SQLITE_ENQUEUE = f"""
INSERT INTO scoring_queue (contact_id, priority, created_at, updated_at)
SELECT contact_id, {{priority}}, {SQLITE_NOW}, {SQLITE_NOW} FROM ({{rows}})
WHERE contact_id IS NOT NULL
ON CONFLICT (contact_id) DO UPDATE SET
    priority = MIN(10, MAX(scoring_queue.priority + 1, excluded.priority)),
    updated_at = excluded.updated_at,
    version = scoring_queue.version + 1;
"""


def _profile_changed(new: str, old: str) -> str:
    return " OR ".join(f"{new}.{c} IS DISTINCT FROM {old}.{c}" for c in PROFILE_COLUMNS)


def _postgresql_triggers() -> None:
    validations = {
        "INSERT": "SELECT contact_id FROM new_rows",
        "DELETE": "SELECT contact_id FROM old_rows",
        "UPDATE": "SELECT contact_id FROM new_rows UNION SELECT contact_id FROM old_rows",
    }
    contacts = {
        "INSERT": "SELECT id AS contact_id FROM new_rows",
        "DELETE": "SELECT id AS contact_id FROM old_rows",
        "UPDATE": "SELECT n.id AS contact_id FROM new_rows n JOIN old_rows o ON o.id = n.id "
        f"WHERE {_profile_changed('n', 'o')}",
    }
    for table, rows_by_event, priority in (
        ("platform_validations", validations, VALIDATION_PRIORITY),
        ("contacts", contacts, CONTACT_PRIORITY),
    ):
        for event, rows in rows_by_event.items():
            name = f"enqueue_{table}_{event.lower()}"
            op.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"{PG_ENQUEUE.format(priority=priority, rows=rows)} RETURN NULL; END $$"
            )
            transition = {
                "INSERT": "NEW TABLE AS new_rows",
                "DELETE": "OLD TABLE AS old_rows",
                "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
            }[event]
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {transition} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
            )


def _sqlite_triggers() -> None:
    for table, key, priority, when in (
        ("platform_validations", "contact_id", VALIDATION_PRIORITY, ""),
        ("contacts", "id", CONTACT_PRIORITY, f"WHEN {_profile_changed('NEW', 'OLD')}"),
    ):
        for event, rows in (
            ("INSERT", f"SELECT NEW.{key} AS contact_id"),
            ("DELETE", f"SELECT OLD.{key} AS contact_id"),
            ("UPDATE", f"SELECT NEW.{key} AS contact_id UNION SELECT OLD.{key}"),
        ):
            condition = when if event == "UPDATE" else ""
            op.execute(
                f"CREATE TRIGGER enqueue_{table}_{event.lower()} AFTER {event} ON {table} "
                f"{condition} BEGIN {SQLITE_ENQUEUE.format(priority=priority, rows=rows)} END"
            )


def upgrade() -> None:
    op.create_table(
        "scoring_queue",
        sa.Column("contact_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("priority", sa.SmallInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_attempt_at", TIMESTAMP),
        sa.Column("last_error", sa.Text),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
        sa.Column("leased_until", TIMESTAMP),
        sa.Column("leased_by", sa.String(64)),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("priority BETWEEN 1 AND 10", name="ck_scoring_queue_priority"),
    )
    op.create_index("ix_scoring_queue_claim", "scoring_queue", ["priority", "updated_at"])
    op.create_index("ix_scoring_queue_leased_by", "scoring_queue", ["leased_by"])
    op.create_table(
        "scoring_dead_letters",
        sa.Column("contact_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("first_enqueued_at", TIMESTAMP, nullable=False),
        sa.Column("failed_at", TIMESTAMP, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_triggers()
    else:
        _sqlite_triggers()


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in ("platform_validations", "contacts"):
        for event in ("insert", "update", "delete"):
            name = f"enqueue_{table}_{event}"
            if dialect == "postgresql":
                op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
                op.execute(f"DROP FUNCTION IF EXISTS {name}()")
            else:
                op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("scoring_dead_letters")
    op.drop_table("scoring_queue")
