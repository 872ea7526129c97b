"""``lead_score_history``: a row whenever a contact's total score or tier changes, kept for a
number of months.

On PostgreSQL the table is range-partitioned by UTC month of ``changed_at`` (migration
``0011``), one partition ``lead_score_history_YYYY_MM`` per month: the writer creates the
month's partition when it is missing, so a write never fails for want of one, and retention
drops whole months. On SQLite it is one table and retention deletes rows.
"""

import os
import re
from dataclasses import dataclass, field

import pandas as pd
import sqlalchemy as sa

from lead_scoring_assets.db.database import Database

HISTORY = "lead_score_history"
RETENTION_MONTHS_ENV = "LEAD_SCORING_HISTORY_RETENTION_MONTHS"
DEFAULT_RETENTION_MONTHS = 13
PARTITION = re.compile(rf"^{HISTORY}_(\d{{4}})_(\d{{2}})$")


def _utc(moment) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def month_start(moment) -> pd.Timestamp:
    """The start of the UTC month of ``moment`` (naive: UTC)."""
    return _utc(moment).normalize().replace(day=1)


def partition_name(month: pd.Timestamp) -> str:
    return f"{HISTORY}_{month:%Y_%m}"


def ensure_month_partition(connection, moment) -> str | None:
    """Create the partition of the month of ``moment`` if it does not exist yet, in the
    caller's transaction (PostgreSQL only); returns its name if it was created.

    Created as a table and attached, which locks the history only against other creators
    (``SHARE UPDATE EXCLUSIVE``): readers and writers of the other months go on. Taking that
    lock also makes this transaction see a partition another writer created meanwhile."""
    month = month_start(moment)
    name = partition_name(month)
    exists = sa.text("SELECT to_regclass(:name) IS NOT NULL")
    if connection.execute(exists, {"name": name}).scalar_one():
        return None
    connection.execute(sa.text(f"LOCK TABLE {HISTORY} IN SHARE UPDATE EXCLUSIVE MODE"))
    if connection.execute(exists, {"name": name}).scalar_one():
        return None
    end = month + pd.DateOffset(months=1)
    connection.execute(sa.text(f"CREATE TABLE {name} (LIKE {HISTORY})"))
    connection.execute(
        sa.text(
            f"ALTER TABLE {HISTORY} ATTACH PARTITION {name} FOR VALUES "
            f"FROM ('{month:%Y-%m-%d} 00:00:00+00') TO ('{end:%Y-%m-%d} 00:00:00+00')"
        )
    )
    return name


def record_changes(
    connection, new_scores: str, run_id: str | None, changed_at, live: str = "lead_scores"
) -> int:
    """One row per contact of the table ``new_scores`` whose total or tier differs from
    ``live`` (``lead_scores`` or the one partition that holds them), or that has no score
    yet, in the caller's transaction; set-based. On PostgreSQL the partition of
    ``changed_at``'s month is created first if missing."""
    if connection.dialect.name == "postgresql" and changed_at is not None:
        ensure_month_partition(connection, changed_at)
    return connection.execute(
        sa.text(
            f"INSERT INTO {HISTORY} (contact_id, old_total_score, new_total_score, "
            "old_quality_tier, new_quality_tier, calculation_version, run_id, changed_at) "
            "SELECT n.contact_id, o.total_score, n.total_score, o.quality_tier, n.quality_tier, "
            f"n.calculation_version, :run_id, :changed_at FROM {new_scores} n "
            f"LEFT JOIN {live} o ON o.contact_id = n.contact_id "
            "WHERE o.contact_id IS NULL OR o.total_score <> n.total_score "
            "OR o.quality_tier <> n.quality_tier"
        ),
        {"run_id": run_id, "changed_at": changed_at},
    ).rowcount


def retention_months_from_environment() -> int:
    """``LEAD_SCORING_HISTORY_RETENTION_MONTHS`` (default 13), a whole number ≥ 1."""
    raw = os.environ.get(RETENTION_MONTHS_ENV, str(DEFAULT_RETENTION_MONTHS))
    if not raw.strip().isdigit() or int(raw) < 1:
        raise ValueError(
            f"{RETENTION_MONTHS_ENV} must be a whole number of months, at least 1 (got {raw!r})"
        )
    return int(raw)


@dataclass
class RetentionReport:
    """What retention did: rows before ``kept_from`` (the first month kept) are gone, by
    month; the partitions it created ahead (PostgreSQL)."""

    kept_from: pd.Timestamp
    rows_by_month: dict[str, int] = field(default_factory=dict)
    partitions_created: list[str] = field(default_factory=list)

    @property
    def rows_dropped(self) -> int:
        return sum(self.rows_by_month.values())


def apply_retention(database: Database, months: int, now) -> RetentionReport:
    """Keep ``months`` months of history before ``now``, whole UTC months: a month goes once
    all of it is older than that. PostgreSQL drops those months' partitions and creates the
    partitions of this month and the next; SQLite deletes their rows."""
    if months < 1:
        raise ValueError(f"history retention must keep at least 1 month (got {months})")
    current = month_start(now)
    report = RetentionReport(kept_from=month_start(_utc(now) - pd.DateOffset(months=months)))
    with database.engine.begin() as connection:
        if database.dialect != "postgresql":
            cutoff = database.bind_timestamp(report.kept_from)
            rows = connection.execute(
                sa.text(
                    f"SELECT substr(changed_at, 1, 7) AS month, count(*) FROM {HISTORY} "
                    "WHERE changed_at < :cutoff GROUP BY 1 ORDER BY 1"
                ),
                {"cutoff": cutoff},
            ).all()
            report.rows_by_month = {month: count for month, count in rows}
            connection.execute(
                sa.text(f"DELETE FROM {HISTORY} WHERE changed_at < :cutoff"), {"cutoff": cutoff}
            )
            return report
        for month in (current, current + pd.DateOffset(months=1)):
            created = ensure_month_partition(connection, month)
            if created:
                report.partitions_created.append(created)
        for name in _partitions(connection):
            year, month = (int(part) for part in PARTITION.match(name).groups())
            if pd.Timestamp(year=year, month=month, day=1, tz="UTC") < report.kept_from:
                report.rows_by_month[f"{year:04d}-{month:02d}"] = connection.execute(
                    sa.text(f"SELECT count(*) FROM {name}")
                ).scalar_one()
                connection.execute(sa.text(f"DROP TABLE {name}"))
    return report


def _partitions(connection) -> list[str]:
    """The monthly partitions of the history, oldest first."""
    names = (
        connection.execute(
            sa.text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = to_regclass(:parent) ORDER BY c.relname"
            ),
            {"parent": HISTORY},
        )
        .scalars()
        .all()
    )
    return [name for name in names if PARTITION.match(name)]
