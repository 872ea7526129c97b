"""A partial index of the contacts' numbers not in canonical form.

Revision ID: 0019
Revises: 0018

``ix_contacts_noncanonical_phone``: ``contacts (phone_e164)`` for the rows whose number is
not ``+52`` and 10 digits (the form ``normalize_phone`` writes). A campaign export looks these
numbers up first (to write them canonical and match their suppressions); it read every
contact for them, it now reads this index, as small as the numbers to rewrite.
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

CANONICAL = {
    "postgresql": r"phone_e164 ~ '^\+52[0-9]{10}$'",
    "sqlite": "phone_e164 GLOB '+52" + "[0-9]" * 10 + "'",
}
"""``consent/in_force.canonical`` of ``phone_e164`` when written: the export's query repeats
this predicate, which is what lets it read the index."""


def upgrade() -> None:
    predicate = CANONICAL[op.get_bind().dialect.name]
    op.execute(
        "CREATE INDEX ix_contacts_noncanonical_phone ON contacts (phone_e164) "
        f"WHERE NOT ({predicate})"
    )


def downgrade() -> None:
    op.drop_index("ix_contacts_noncanonical_phone", "contacts")
