"""The contact bucket of an id, as PostgreSQL's hash partitioning computes it.

Revision ID: 0012
Revises: 0011

PostgreSQL: ``lead_scoring_bucket(bigint)`` gives the remainder of the hash partition (modulus
16, migration ``0010``) that holds a contact id, so a query selects the contacts and the
validation rows of one bucket without touching the partitions: the partition key's
``hashint8extended`` with PostgreSQL's partition seed, combined as
``compute_partition_hash_value`` does, modulo 16 (a NULL id is bucket 0, where hash
partitioning routes it). ``test_buckets`` checks it against where the rows land. SQLite keeps
single tables and needs no function (``db/buckets.py`` uses the id modulo 16 there).
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

PARTITION_SEED = 8816678312871386365
"""``HASH_PARTITION_SEED`` of PostgreSQL's partbounds.c (0x7A5B22367996DCFD)."""
HASH_COMBINE_LOW_BITS = 3
"""The low four bits of the constant ``hash_combine64`` adds (0x49a0f4dd15e5a8e3)."""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE FUNCTION lead_scoring_bucket(id bigint) RETURNS integer "
        "LANGUAGE sql IMMUTABLE PARALLEL SAFE AS "
        f"$$ SELECT coalesce((((hashint8extended(id, {PARTITION_SEED}) & 15) "
        f"+ {HASH_COMBINE_LOW_BITS}) & 15)::integer, 0) $$"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION lead_scoring_bucket(bigint)")
