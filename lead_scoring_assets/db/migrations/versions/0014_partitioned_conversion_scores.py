"""``conversion_scores`` hash-partitioned by contact id (PostgreSQL).

Revision ID: 0014
Revises: 0013

Like ``ml_lead_scores`` (migration ``0010``): 16 partitions ``conversion_scores_p00`` … by
``HASH (contact_id)`` (``db/buckets.py``), primary key ``contact_id``, so that its publish
swaps partitions under a parent that stays, with its grants, comments and views, instead of
dropping the table. The rows are copied over; the table's grants and comment are carried over
to the rebuilt table. A view cannot follow a table that is rebuilt: while one depends on
``conversion_scores`` the migration stops and names it (drop it, upgrade, create it again;
from then on the swaps keep it). The downgrade makes it a single table again, the same way.
SQLite keeps one table.
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TABLE = "conversion_scores"
BUCKETS = 16
ASIDE = f"{TABLE}_{revision}"
VIEWS = sa.text(
    "SELECT DISTINCT CAST(CAST(v.oid AS regclass) AS text) FROM pg_depend d "
    "JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class "
    "WHERE d.classid = CAST('pg_rewrite' AS regclass) AND d.refobjid = CAST(:table AS regclass) "
    "AND v.oid <> d.refobjid ORDER BY 1"
)
"""The views that read ``:table``."""
GRANTS = sa.text(
    "SELECT format('GRANT %s ON %I TO %s%s', a.privilege_type, CAST(:table AS text), "
    "CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END, "
    "CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) "
    "FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a "
    "LEFT JOIN pg_roles r ON r.oid = a.grantee WHERE c.oid = CAST(:aside AS regclass)"
)
"""The statements granting on ``:table`` what ``:aside`` grants."""
COMMENT = sa.text(
    "SELECT format('COMMENT ON TABLE %I IS %L', CAST(:table AS text), "
    "obj_description(CAST(:aside AS regclass), 'pg_class')) "
    "WHERE obj_description(CAST(:aside AS regclass), 'pg_class') IS NOT NULL"
)
"""The statement giving ``:table`` the comment of ``:aside``."""


def _rebuild(partitioned: bool) -> None:
    """``conversion_scores`` rebuilt with the same columns and rows, hash-partitioned or
    single, with its grants and comment."""
    connection = op.get_bind()
    views = connection.execute(VIEWS, {"table": TABLE}).scalars().all()
    if views:
        raise RuntimeError(
            f"views read {TABLE}, which this migration rebuilds: {', '.join(views)}. Drop "
            "them, run the upgrade, then create them again (the publish keeps them from then on)"
        )
    op.rename_table(TABLE, ASIDE)
    op.execute(f"ALTER INDEX {TABLE}_pkey RENAME TO {ASIDE}_pkey")
    partition_by = " PARTITION BY HASH (contact_id)" if partitioned else ""
    op.execute(f"CREATE TABLE {TABLE} (LIKE {ASIDE} INCLUDING DEFAULTS){partition_by}")
    if partitioned:
        for bucket in range(BUCKETS):
            op.execute(
                f"CREATE TABLE {TABLE}_p{bucket:02d} PARTITION OF {TABLE} "
                f"FOR VALUES WITH (MODULUS {BUCKETS}, REMAINDER {bucket})"
            )
    op.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (contact_id)")
    op.execute(f"INSERT INTO {TABLE} SELECT * FROM {ASIDE}")
    names = {"table": TABLE, "aside": ASIDE}
    carried = [
        *connection.execute(GRANTS, names).scalars(),
        *connection.execute(COMMENT, names).scalars(),
    ]
    verbatim = connection.execution_options(no_parameters=True)
    for statement in carried:
        verbatim.exec_driver_sql(statement)
    op.drop_table(ASIDE)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rebuild(partitioned=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rebuild(partitioned=False)
