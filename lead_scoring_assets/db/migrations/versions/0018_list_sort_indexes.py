"""Indexes for the contact list sorted by conversion probability or by uplift.

Revision ID: 0018
Revises: 0017

- ``conversion_scores (conversion_probability DESC, contact_id DESC)`` and
  ``uplift_scores (uplift DESC, contact_id DESC)``: the list (``GET /contacts?sort=conversion``
  or ``sort=uplift``) reads the contacts with a value down these, a keyset page at a time,
  then those without one down ``lead_scores``' primary key, instead of joining and sorting
  every scored contact for each page. On PostgreSQL both tables are hash-partitioned: the
  index is created on the parent (one per partition, read in order through a Merge Append)
  and the nightly publish builds it on the staged partitions as it does the primary key.
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_conversion_scores_rank", "conversion_scores", "conversion_probability"),
    ("ix_uplift_scores_rank", "uplift_scores", "uplift"),
)


def upgrade() -> None:
    for name, table, column in INDEXES:
        op.execute(f"CREATE INDEX {name} ON {table} ({column} DESC, contact_id DESC)")


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table)
