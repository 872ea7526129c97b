"""Writer locks and staged builds: one scoring writer at a time on both dialects, and which
run's staged rows wait for their audit.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "writer_locks",
        sa.Column("resource", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(64), primary_key=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("acquired_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("mode IN ('exclusive', 'shared')", name="ck_writer_locks_mode"),
    )
    op.create_table(
        "staged_builds",
        sa.Column("table_name", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("as_of", TIMESTAMP),
        sa.Column("staged_at", TIMESTAMP, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("staged_builds")
    op.drop_table("writer_locks")
