"""Statements both score writers end with (the full rescoring's swap and the incremental
settlement): keeping malformed rows and updating ``last_platform_validation``."""

import sqlalchemy as sa

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.tables import VALIDATION_COLUMNS


def malformed_ids_columns(database: Database) -> str:
    """Column DDL of a table naming malformed validation rows."""
    return (
        f"validation_id BIGINT PRIMARY KEY, reason VARCHAR(64) NOT NULL, "
        f"detected_at {database.timestamp_ddl} NOT NULL"
    )


def last_validation_columns(database: Database) -> str:
    """Column DDL of a table of new ``last_platform_validation`` values."""
    return f"contact_id BIGINT PRIMARY KEY, last_platform_validation {database.timestamp_ddl}"


def copy_malformed_rows(connection: sa.Connection, ids_table: str) -> None:
    """Copy each validation row ``ids_table`` names into ``malformed_validations``, with its
    reason and detection time."""
    columns = VALIDATION_COLUMNS[1:]
    connection.execute(
        sa.text(
            f"INSERT INTO malformed_validations (validation_id, {', '.join(columns)}, reason, "
            f"detected_at) SELECT v.id, {', '.join('v.' + c for c in columns)}, n.reason, "
            f"n.detected_at FROM {ids_table} AS n "
            "JOIN platform_validations AS v ON v.id = n.validation_id"
        )
    )


def update_last_validation(connection: sa.Connection, table: str, by_id: bool = False) -> None:
    """Set ``contacts.last_platform_validation`` from ``table`` (contact_id, value). With
    ``by_id`` (a batch of contacts, PostgreSQL), the contacts are looked up by primary key for
    the ids of ``table`` as one array instead of joined, which may read every contact."""
    by_id = (
        f" AND contacts.id = ANY(ARRAY(SELECT contact_id FROM {table}))"
        if by_id and connection.dialect.name == "postgresql"
        else ""
    )
    connection.execute(
        sa.text(
            "UPDATE contacts SET last_platform_validation = n.last_platform_validation "
            f"FROM {table} AS n WHERE contacts.id = n.contact_id{by_id}"
        )
    )
