"""The phone belongs to contacts: lead_scores loses phone_e164, a phone change enqueues the
contact, and the demo loader gets its own marker.

Revision ID: 0007
Revises: 0006

- ``lead_scores.phone_e164`` is dropped (SCORING_SPEC.md §8, v1.1): the score card and the
  campaign export join ``contacts``, so a changed number is never read stale.
- The contacts UPDATE trigger counts ``phone_e164`` among the profile columns, so a phone
  change enqueues the contact like any profile change.
- ``demo_data_marker``: one row written by the demo loader; it deletes rows only from a
  database that holds it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

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
"""The profile columns of migration 0002's trigger; this migration adds ``phone_e164``."""

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


def _changed(columns: tuple[str, ...], new: str, old: str) -> str:
    return " OR ".join(f"{new}.{c} IS DISTINCT FROM {old}.{c}" for c in columns)


def _contacts_update_trigger(columns: tuple[str, ...]) -> None:
    """(Re)create the trigger that enqueues a contact when one of ``columns`` changes."""
    if op.get_bind().dialect.name == "postgresql":
        rows = (
            "SELECT n.id AS contact_id FROM new_rows n JOIN old_rows o ON o.id = n.id "
            f"WHERE {_changed(columns, 'n', 'o')}"
        )
        op.execute(
            "CREATE OR REPLACE FUNCTION enqueue_contacts_update() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            f"{PG_ENQUEUE.format(priority=CONTACT_PRIORITY, rows=rows)} RETURN NULL; END $$"
        )
        return
    op.execute("DROP TRIGGER IF EXISTS enqueue_contacts_update")
    rows = "SELECT NEW.id AS contact_id UNION SELECT OLD.id"
    op.execute(
        "CREATE TRIGGER enqueue_contacts_update AFTER UPDATE ON contacts "
        f"WHEN {_changed(columns, 'NEW', 'OLD')} "
        f"BEGIN {SQLITE_ENQUEUE.format(priority=CONTACT_PRIORITY, rows=rows)} END"
    )


def upgrade() -> None:
    with op.batch_alter_table("lead_scores") as batch:
        batch.drop_column("phone_e164")
    _contacts_update_trigger(("phone_e164", *PROFILE_COLUMNS))
    op.create_table(
        "demo_data_marker",
        sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("contacts", sa.BigInteger, nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_demo_data_marker_one_row"),
    )


def downgrade() -> None:
    op.drop_table("demo_data_marker")
    _contacts_update_trigger(PROFILE_COLUMNS)
    with op.batch_alter_table("lead_scores") as batch:
        batch.add_column(sa.Column("phone_e164", sa.String(20)))
    op.execute(
        "UPDATE lead_scores SET phone_e164 = (SELECT c.phone_e164 FROM contacts c "
        "WHERE c.id = lead_scores.contact_id)"
    )
