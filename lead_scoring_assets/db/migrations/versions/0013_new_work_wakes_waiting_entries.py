"""New work wakes a queue entry waiting for a row due later.

Revision ID: 0013
Revises: 0012

An entry whose contact has validation rows dated after the run's ``as_of`` (within the 24
hours that are not yet malformed) waits: ``leased_until`` is set to when the last of them is
due (``not_before``), ``leased_by`` NULL. Until now the triggers of migrations ``0002`` and
``0007`` kept ``leased_until`` when they enqueued such a contact again, so a new validation
dated now or a profile change waited up to 24 hours. From here an enqueue of a waiting entry
also clears ``leased_until``: the contact is claimable at once, and the next run waits again
only for rows still ahead. An entry leased by a run (``leased_by`` set) keeps its lease; its
``version`` bump already makes that run leave it queued.

Same priorities as before: a validation change enqueues at 5, a contact change (its profile
columns or its phone) at 3; a contact already queued keeps one row, priority raised by one
(at most 10, never below the new one), ``updated_at`` bumped, ``version`` incremented.
PostgreSQL: the trigger functions are replaced (the statement triggers stay); SQLite: the
row triggers are recreated.
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

VALIDATION_PRIORITY = 5
CONTACT_PRIORITY = 3
PROFILE_COLUMNS = (
    "phone_e164",
    "full_name",
    "address",
    "state_name",
    "municipality",
    "lada",
    "operator",
    "created_at",
)
"""The contact columns whose change enqueues the contact (migrations 0002 and 0007)."""
WAKE = (
    "leased_until = CASE WHEN scoring_queue.leased_by IS NULL THEN NULL "
    "ELSE scoring_queue.leased_until END,"
)

PG_ENQUEUE = """
INSERT INTO scoring_queue (contact_id, priority, created_at, updated_at)
SELECT contact_id, {priority}, clock_timestamp(), clock_timestamp()
FROM (SELECT DISTINCT contact_id FROM ({rows}) AS c WHERE contact_id IS NOT NULL) AS d
ON CONFLICT (contact_id) DO UPDATE SET
    priority = LEAST(10, GREATEST(scoring_queue.priority + 1, EXCLUDED.priority)),
    updated_at = EXCLUDED.updated_at, {wake}
    version = scoring_queue.version + 1;
"""
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
SQLITE_ENQUEUE = f"""
INSERT INTO scoring_queue (contact_id, priority, created_at, updated_at)
SELECT contact_id, {{priority}}, {SQLITE_NOW}, {SQLITE_NOW} FROM ({{rows}})
WHERE contact_id IS NOT NULL
ON CONFLICT (contact_id) DO UPDATE SET
    priority = MIN(10, MAX(scoring_queue.priority + 1, excluded.priority)),
    updated_at = excluded.updated_at, {{wake}}
    version = scoring_queue.version + 1;
"""
EVENTS = ("insert", "update", "delete")


def _profile_changed(new: str, old: str) -> str:
    return " OR ".join(f"{new}.{c} IS DISTINCT FROM {old}.{c}" for c in PROFILE_COLUMNS)


def _postgresql_functions(wake: str) -> None:
    rows_by_table = {
        "platform_validations": {
            "insert": "SELECT contact_id FROM new_rows",
            "delete": "SELECT contact_id FROM old_rows",
            "update": "SELECT contact_id FROM new_rows UNION SELECT contact_id FROM old_rows",
        },
        "contacts": {
            "insert": "SELECT id AS contact_id FROM new_rows",
            "delete": "SELECT id AS contact_id FROM old_rows",
            "update": "SELECT n.id AS contact_id FROM new_rows n JOIN old_rows o ON o.id = n.id "
            f"WHERE {_profile_changed('n', 'o')}",
        },
    }
    for table, priority in (
        ("platform_validations", VALIDATION_PRIORITY),
        ("contacts", CONTACT_PRIORITY),
    ):
        for event in EVENTS:
            enqueue = PG_ENQUEUE.format(
                priority=priority, rows=rows_by_table[table][event], wake=wake
            )
            op.execute(
                f"CREATE OR REPLACE FUNCTION enqueue_{table}_{event}() RETURNS trigger "
                f"LANGUAGE plpgsql AS $$ BEGIN {enqueue} RETURN NULL; END $$"
            )


def _sqlite_triggers(wake: str) -> None:
    for table, key, priority, when in (
        ("platform_validations", "contact_id", VALIDATION_PRIORITY, ""),
        ("contacts", "id", CONTACT_PRIORITY, f"WHEN {_profile_changed('NEW', 'OLD')}"),
    ):
        for event, rows in (
            ("insert", f"SELECT NEW.{key} AS contact_id"),
            ("delete", f"SELECT OLD.{key} AS contact_id"),
            ("update", f"SELECT NEW.{key} AS contact_id UNION SELECT OLD.{key}"),
        ):
            name = f"enqueue_{table}_{event}"
            condition = when if event == "update" else ""
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event.upper()} ON {table} {condition} "
                f"BEGIN {SQLITE_ENQUEUE.format(priority=priority, rows=rows, wake=wake)} END"
            )


def _enqueue_triggers(wake: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_functions(wake)
    else:
        _sqlite_triggers(wake)


def upgrade() -> None:
    _enqueue_triggers(WAKE)


def downgrade() -> None:
    _enqueue_triggers("")
