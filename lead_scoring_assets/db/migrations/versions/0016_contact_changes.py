"""Contact changes: the old values of a contact's mutable columns, for point-in-time training.

Revision ID: 0016
Revises: 0015

- ``contact_changes(id, contact_id, changed_at, change, <old values>)``: an UPDATE that
  changes one of ``CHANGED_COLUMNS`` (``IS DISTINCT FROM``) records the row's old values with
  ``change = 'update'``; a DELETE records the last state with ``change = 'delete'``.
  ``changed_at`` is the clock time of the change (PostgreSQL ``clock_timestamp()``; SQLite
  ``now`` in SQLAlchemy's text format, so it compares with bound timestamps). An UPDATE of
  other columns (``last_platform_validation``) records nothing; an UPDATE of ``id`` is not
  followed. PostgreSQL: statement-level triggers with transition tables (one INSERT per
  statement); SQLite: row triggers. Indexed by ``(contact_id, changed_at)``.
- ``rejected_campaign_outcomes``: a contact with no ``contacts`` row is ``unknown_contact``
  only when nothing else is known of it either (no change recorded, no logged features): a
  contact deleted since is kept in training through its last known state.
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

CHANGED_COLUMNS = (
    "phone_e164",
    "full_name",
    "address",
    "state_name",
    "municipality",
    "lada",
    "operator",
    "created_at",
)
INSERT = (
    f"INSERT INTO contact_changes (contact_id, changed_at, change, {', '.join(CHANGED_COLUMNS)}) "
)
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'"
REJECTED_OUTCOMES = """
CREATE VIEW rejected_campaign_outcomes AS
SELECT o.campaign_id, o.contact_id,
       CASE WHEN NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.id = o.campaign_id)
                THEN 'unknown_campaign'
            WHEN {unknown} THEN 'unknown_contact'
            WHEN o.delivered IS NULL THEN 'missing_delivered'
            WHEN o.converted AND NOT o.delivered {control}
                THEN 'converted_without_delivery'
       END AS reason
FROM campaign_outcomes o
WHERE NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.id = o.campaign_id)
   OR {unknown}
   OR o.delivered IS NULL
   OR (o.converted AND NOT o.delivered {control})
"""
CONTROL = (
    "AND NOT EXISTS (SELECT 1 FROM campaign_recipients r WHERE r.campaign_id = "
    "o.campaign_id AND r.contact_id = o.contact_id AND r.arm = 'control')"
)
NO_CONTACT = "NOT EXISTS (SELECT 1 FROM contacts k WHERE k.id = o.contact_id)"
NOTHING_KNOWN = (
    f"({NO_CONTACT} "
    "AND NOT EXISTS (SELECT 1 FROM contact_changes h WHERE h.contact_id = o.contact_id) "
    "AND NOT EXISTS (SELECT 1 FROM campaign_recipient_features f "
    "WHERE f.campaign_id = o.campaign_id AND f.contact_id = o.contact_id))"
)


def _changed(new: str, old: str) -> str:
    return " OR ".join(f"{new}.{c} IS DISTINCT FROM {old}.{c}" for c in CHANGED_COLUMNS)


def _old_values(old: str) -> str:
    return ", ".join(f"{old}.{c}" for c in CHANGED_COLUMNS)


def _postgresql_triggers() -> None:
    for event, transition, rows in (
        (
            "update",
            "OLD TABLE AS old_rows NEW TABLE AS new_rows",
            f"FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE {_changed('n', 'o')}",
        ),
        ("delete", "OLD TABLE AS old_rows", "FROM old_rows o"),
    ):
        name = f"record_contact_{event}"
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"{INSERT}SELECT o.id, clock_timestamp(), '{event}', {_old_values('o')} {rows}; "
            "RETURN NULL; END $$"
        )
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event.upper()} ON contacts REFERENCING "
            f"{transition} FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
        )


def _sqlite_triggers() -> None:
    for event, when in (("update", f"WHEN {_changed('NEW', 'OLD')}"), ("delete", "")):
        op.execute(
            f"CREATE TRIGGER record_contact_{event} AFTER {event.upper()} ON contacts {when} "
            f"BEGIN {INSERT}VALUES (OLD.id, {SQLITE_NOW}, '{event}', {_old_values('OLD')}); END"
        )


def upgrade() -> None:
    op.create_table(
        "contact_changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            sa.Identity(always=False),
            primary_key=True,
        ),
        sa.Column("contact_id", sa.BigInteger, nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("change", sa.String(8), nullable=False),
        sa.Column("phone_e164", sa.String(20)),
        sa.Column("full_name", sa.Text),
        sa.Column("address", sa.Text),
        sa.Column("state_name", sa.Text),
        sa.Column("municipality", sa.Text),
        sa.Column("lada", sa.String(10)),
        sa.Column("operator", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("change IN ('update', 'delete')", name="contact_changes_change"),
    )
    op.create_index("contact_changes_by_contact", "contact_changes", ["contact_id", "changed_at"])
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_triggers()
    else:
        _sqlite_triggers()
    op.execute("DROP VIEW rejected_campaign_outcomes")
    op.execute(REJECTED_OUTCOMES.format(unknown=NOTHING_KNOWN, control=CONTROL))


def downgrade() -> None:
    op.execute("DROP VIEW rejected_campaign_outcomes")
    op.execute(REJECTED_OUTCOMES.format(unknown=NO_CONTACT, control=CONTROL))
    postgresql = op.get_bind().dialect.name == "postgresql"
    for event in ("update", "delete"):
        name = f"record_contact_{event}"
        op.execute(f"DROP TRIGGER {name} ON contacts" if postgresql else f"DROP TRIGGER {name}")
        if postgresql:
            op.execute(f"DROP FUNCTION {name}()")
    op.drop_table("contact_changes")
