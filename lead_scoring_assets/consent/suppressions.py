"""The suppression list: numbers that must not be messaged, one row per number and reason.

Every number goes through ``normalize_phone``, so a number suppressed in one form stays
suppressed in every other. A row is in force while ``expires_at`` is NULL or later than now.

Upsert rule (imports and ``add``): a number already suppressed for the reason keeps its row,
so ``recorded_at`` and ``source`` stay the earliest evidence; ``expires_at`` only grows (NULL,
never, wins), so a re-import never shortens a suppression. A row that has expired is replaced
as if new. A ``repus`` import replaces the previous REPUS snapshot: rows of reason ``repus``
whose number is not in the file are removed.
"""

import csv
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from lead_scoring_assets.contacts.phones import PhoneRejected, normalize_phone
from lead_scoring_assets.db.database import Database

REASONS = ("opt_out", "repus", "hard_bounce", "arco", "manual")
REPLACED_ON_IMPORT = "repus"
PHONE_HEADERS = frozenset({"phone", "phone_e164", "telefono", "numero"})
"""Header names of the phone column, compared without case or accents (``Teléfono``)."""
DELIMITERS = (",", ";", "\t")
STAGING = "suppression_import"


class ImportRefused(ValueError):
    """The whole file is refused (nothing changed); the message says why, never a number."""


@dataclass
class ImportReport:
    """What an import did: numbers added, removed (``repus``), kept, and the lines refused
    with their reasons (line numbers only)."""

    lines: int = 0
    numbers: int = 0
    duplicates: int = 0
    added: int = 0
    removed: int = 0
    kept: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)

    def refused_by_reason(self) -> dict[str, int]:
        return dict(Counter(reason for _, reason in self.refused).most_common())


@dataclass(frozen=True)
class Suppression:
    phone_e164: str
    reason: str
    source: str
    recorded_at: datetime
    expires_at: datetime | None


def check_reason(reason: str) -> str:
    if reason not in REASONS:
        raise ValueError(f"unknown reason {reason!r}: one of {', '.join(REASONS)}")
    return reason


def _header_name(cell: str) -> str:
    plain = unicodedata.normalize("NFKD", cell.strip().strip('"'))
    return "".join(c for c in plain if not unicodedata.combining(c)).lower()


def read_phone_lines(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """``(line number, phone text)`` of a CSV with a phone column (header ``phone``,
    ``phone_e164``, ``telefono`` or ``número``; without a header, the first column) or of one
    number per line; blank lines are skipped. Raises ``ImportRefused`` for a header without a
    phone column."""
    lines = iter(lines)
    first = next(lines, None)
    if first is None:
        return
    delimiter = next((d for d in DELIMITERS if d in first), None)
    cells = next(csv.reader([first], delimiter=delimiter)) if delimiter else [first]
    names = [_header_name(cell) for cell in cells]
    column = 0
    rest = lines
    if any(name in PHONE_HEADERS for name in names):
        column = next(i for i, name in enumerate(names) if name in PHONE_HEADERS)
        start = 2
    elif not any(c.isdigit() for c in first):
        if first.strip():
            raise ImportRefused(
                f"line 1 looks like a header without a phone column: name it one of "
                f"{', '.join(sorted(PHONE_HEADERS))} (any case, accents allowed)"
            )
        start = 2
    else:
        rest = _chain(first, lines)
        start = 1
    if delimiter is None:
        for number, line in enumerate(rest, start):
            if line.strip():
                yield number, line.strip()
        return
    for number, row in enumerate(csv.reader(rest, delimiter=delimiter), start):
        if not row or not any(cell.strip() for cell in row):
            continue
        yield number, row[column] if column < len(row) else ""


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def normalized_numbers(lines: Iterable[tuple[int, str]], report: ImportReport) -> set[str]:
    """The distinct E.164 numbers of the lines; refused lines go to the report."""
    numbers: set[str] = set()
    for line, text in lines:
        report.lines += 1
        try:
            phone = normalize_phone(text)
        except PhoneRejected as error:
            report.refused.append((line, str(error)))
            continue
        if phone in numbers:
            report.duplicates += 1
        numbers.add(phone)
    report.numbers = len(numbers)
    return numbers


def import_file(
    database: Database,
    path: Path,
    reason: str,
    source: str | None = None,
    expires_at=None,
    now=None,
) -> ImportReport:
    """Import the numbers of a file (see ``read_phone_lines``) in one transaction."""
    check_reason(reason)
    report = ImportReport()
    try:
        with open(path, encoding="utf-8-sig", newline="") as file:
            numbers = normalized_numbers(read_phone_lines(file), report)
    except UnicodeDecodeError as error:
        raise ImportRefused(f"{path.name} is not UTF-8 text (byte {error.start})") from None
    if not numbers:
        raise ImportRefused(
            f"{path.name}: no number accepted ({report.lines} lines, "
            f"{len(report.refused)} refused); nothing changed"
        )
    store(database, numbers, reason, source or f"file {path.name}", report, expires_at, now)
    return report


def store(
    database: Database,
    numbers: set[str],
    reason: str,
    source: str,
    report: ImportReport,
    expires_at=None,
    now=None,
) -> ImportReport:
    """Upsert the E.164 ``numbers`` for ``reason`` (and, for ``repus``, remove the others)
    through a staging table, in one transaction; counts go to the report."""
    check_reason(reason)
    now = datetime.now(UTC) if now is None else now
    values = {
        "reason": reason,
        "source": source,
        "now": database.bind_timestamp(now),
        "expires": database.bind_timestamp(expires_at),
    }
    postgres = database.dialect == "postgresql"
    expires = "NULL" if expires_at is None else ":expires"  # an untyped NULL would be text
    with database.engine.begin() as connection:
        if not postgres:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{STAGING}")
        connection.exec_driver_sql(
            f"CREATE TEMP TABLE {STAGING} (phone_e164 TEXT PRIMARY KEY)"
            + (" ON COMMIT DROP" if postgres else "")
        )
        database.insert_rows(connection, STAGING, pd.DataFrame({"phone_e164": sorted(numbers)}))
        if postgres:
            connection.exec_driver_sql(f"ANALYZE {STAGING}")

        def run(sql: str) -> int:
            return connection.execute(sa.text(sql), values).rowcount

        if reason == REPLACED_ON_IMPORT:
            report.removed = run(
                f"DELETE FROM suppressions WHERE reason = :reason AND NOT EXISTS "
                f"(SELECT 1 FROM {STAGING} s WHERE s.phone_e164 = suppressions.phone_e164)"
            )
        in_file = f"EXISTS (SELECT 1 FROM {STAGING} s WHERE s.phone_e164 = suppressions.phone_e164)"
        renewed = run(
            "UPDATE suppressions SET source = :source, recorded_at = :now, expires_at = "
            f":expires WHERE reason = :reason AND expires_at <= :now AND {in_file}"
        )
        if expires_at is None:
            run(
                "UPDATE suppressions SET expires_at = NULL WHERE reason = :reason "
                f"AND expires_at IS NOT NULL AND {in_file}"
            )
        else:
            run(
                "UPDATE suppressions SET expires_at = :expires WHERE reason = :reason "
                f"AND expires_at < :expires AND {in_file}"
            )
        inserted = run(
            "INSERT INTO suppressions (phone_e164, reason, source, recorded_at, expires_at) "
            f"SELECT s.phone_e164, CAST(:reason AS TEXT), :source, :now, {expires} "
            f"FROM {STAGING} s "
            "WHERE NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.phone_e164 = s.phone_e164 "
            "AND x.reason = :reason)"
        )
        if not postgres:
            connection.exec_driver_sql(f"DROP TABLE temp.{STAGING}")
    report.added = renewed + inserted
    report.kept = len(numbers) - report.added
    return report


def add(
    database: Database, phone: str, reason: str, source: str, expires_at=None, now=None
) -> bool:
    """Suppress one number (any form) for ``reason``; True if added, False if already in
    force (kept, per the upsert rule)."""
    report = store(
        database, {normalize_phone(phone)}, reason, source, ImportReport(), expires_at, now
    )
    return report.added == 1


def remove(database: Database, phone: str, reason: str) -> bool:
    """Lift one number's suppression for ``reason``; False if there was none."""
    with database.engine.begin() as connection:
        return (
            connection.execute(
                sa.text("DELETE FROM suppressions WHERE phone_e164 = :phone AND reason = :reason"),
                {"phone": normalize_phone(phone), "reason": check_reason(reason)},
            ).rowcount
            == 1
        )


def in_force(database: Database, phone: str, at=None) -> list[Suppression]:
    """The suppressions of one number (any form) in force at ``at`` (default now)."""
    at = datetime.now(UTC) if at is None else at
    rows = database.read_frame(
        "SELECT phone_e164, reason, source, recorded_at, expires_at FROM suppressions "
        "WHERE phone_e164 = :phone AND (expires_at IS NULL OR expires_at > :at) "
        "ORDER BY recorded_at, reason",
        {"phone": normalize_phone(phone), "at": database.bind_timestamp(at)},
    )
    return [
        Suppression(r.phone_e164, r.reason, r.source, as_utc(r.recorded_at), as_utc(r.expires_at))
        for r in rows.itertuples()
    ]


def counts(database: Database, at=None) -> pd.DataFrame:
    """Per reason: rows in force and rows expired at ``at`` (default now)."""
    at = datetime.now(UTC) if at is None else at
    return database.read_frame(
        "SELECT reason, "
        "sum(CASE WHEN expires_at IS NULL OR expires_at > :at THEN 1 ELSE 0 END) AS in_force, "
        "sum(CASE WHEN expires_at <= :at THEN 1 ELSE 0 END) AS expired "
        "FROM suppressions GROUP BY reason ORDER BY reason",
        {"at": database.bind_timestamp(at)},
    )


def latest(database: Database, reason: str | None = None, limit: int = 20) -> list[Suppression]:
    """The most recently recorded rows (of one reason, or all)."""
    where = "WHERE reason = :reason " if reason else ""
    rows = database.read_frame(
        "SELECT phone_e164, reason, source, recorded_at, expires_at FROM suppressions "
        f"{where}ORDER BY recorded_at DESC, phone_e164 LIMIT :limit",
        {"limit": limit, **({"reason": check_reason(reason)} if reason else {})},
    )
    return [
        Suppression(r.phone_e164, r.reason, r.source, as_utc(r.recorded_at), as_utc(r.expires_at))
        for r in rows.itertuples()
    ]


def as_utc(value) -> datetime | None:
    """A stored timestamp (text on SQLite) as an aware UTC datetime."""
    if value is None or pd.isna(value):
        return None
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()
