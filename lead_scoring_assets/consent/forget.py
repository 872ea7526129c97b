"""The right to be forgotten (ARCO cancellation, LFPDPPP): one person's rows removed from the
database in one transaction, the number suppressed for good, the export files that still hold
it listed for the operator.

The tables are found, not listed: every table with a ``contact_id`` column loses the rows of
the person's contacts, every table with a ``validation_id`` column (and none of
``contact_id``) the rows of their validations, every table with a ``phone_e164`` column the
rows of the number (``suppressions`` excepted: it keeps the evidence). Partitions are reached
through their parent; staged (``_next``) tables of a run not yet published are tables like the
others. A contact's number may be stored in another form than E.164: a row matches when its
digits, separators dropped, end with the 10 national digits and it normalises to the number.
"""

import csv
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import sqlalchemy as sa

from lead_scoring_assets.campaigns.segment_export import export_dir
from lead_scoring_assets.contacts.phones import PhoneRejected, mask_phone, normalize_phone
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.score_swap import scoring_lock

CONTACTS = "contacts"
QUEUE = "scoring_queue"
KEPT = frozenset({"suppressions"})
"""Tables with a phone column whose rows of the number stay: the suppressions are the proof
that the number may not be messaged."""
PHONE = "phone_e164"
LEASE_SECONDS = 60
"""The lease of the scoring lock forget holds (on every contact bucket) while it deletes."""
WAIT_SECONDS = 60
"""How long forget waits for incremental scoring runs to let go of the scoring lock."""
SEPARATORS = r"[ .()\-]"


class ForgetBusy(RuntimeError):
    """A writer that may still hold the person's rows (a full rescoring, a staging of the ML
    tables) is running: nothing was deleted, ask again when it is done."""


@dataclass
class ForgetReport:
    """What ``forget`` did: rows deleted per table, the export files that hold the number."""

    masked_phone: str
    contacts: int
    deleted: dict[str, int]
    suppression_added: bool
    campaigns_counted: list[int] = field(default_factory=list)
    """Campaigns whose target/control counts were filled before their rows went."""
    files: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary, without the number."""
        out = [
            (
                f"forgot {self.masked_phone}: {self.contacts} contact(s), "
                f"{sum(self.deleted.values())} row(s) deleted"
            )
        ]
        out += [f"  {table}: {rows}" for table, rows in sorted(self.deleted.items()) if rows]
        out.append(
            "  arco suppression " + ("recorded" if self.suppression_added else "already recorded")
        )
        if self.campaigns_counted:
            out.append(
                "  campaign counts filled before deleting: "
                + ", ".join(map(str, self.campaigns_counted))
            )
        out.append(f"export files holding the number (edit or delete them): {len(self.files)}")
        out += [f"  {path}" for path in self.files]
        return out


@dataclass(frozen=True)
class CoveredTables:
    by_contact: tuple[str, ...]
    by_validation: tuple[str, ...]
    by_phone: tuple[str, ...]


def covered_tables(connection: sa.Connection) -> CoveredTables:
    """Every table (partitions left to their parent) holding a person's rows, by the column
    that finds them; ``contacts`` first among those by contact and the queue last."""
    inspector = sa.inspect(connection)
    partitions = set()
    if connection.dialect.name == "postgresql":
        partitions = set(
            connection.execute(
                sa.text(
                    "SELECT relname FROM pg_class WHERE relispartition "
                    "AND relnamespace = CAST(current_schema() AS regnamespace)"
                )
            ).scalars()
        )
    by_contact, by_validation, by_phone = [], [], []
    for (_, table), described in inspector.get_multi_columns().items():
        if table in partitions:
            continue
        columns = {column["name"] for column in described}
        if "contact_id" in columns:
            by_contact.append(table)
        elif "validation_id" in columns:
            by_validation.append(table)
        if PHONE in columns and table != CONTACTS and table not in KEPT:
            by_phone.append(table)
    by_contact.sort(key=lambda t: (t != "platform_validations", t == QUEUE, t))
    return CoveredTables(tuple(by_contact), tuple(sorted(by_validation)), tuple(sorted(by_phone)))


def _quoted(connection: sa.Connection, table: str) -> str:
    return connection.dialect.identifier_preparer.quote(table)


def _stripped(column: str) -> str:
    """SQL: ``column`` without the separators a phone may be written with."""
    sql = column
    for separator in " -.()":
        sql = f"replace({sql}, '{separator}', '')"
    return sql


def _matching(connection: sa.Connection, table: str, key: str, phone: str) -> list:
    """The ``key`` of the rows of ``table`` whose phone is ``phone``, in any form: equal, or
    (only a value not shaped as ``+52`` and 10 characters can be another form) ending in its
    national digits once separators are dropped, and normalising to it."""
    rows = connection.execute(
        sa.text(
            f"SELECT {key}, {PHONE} FROM {_quoted(connection, table)} WHERE {PHONE} = :phone "
            f"OR ({PHONE} NOT LIKE :shape AND {_stripped(PHONE)} LIKE :tail)"
        ),
        {"phone": phone, "shape": "+52" + "_" * 10, "tail": f"%{phone[-10:]}"},
    ).all()
    return [row[0] for row in rows if _same(row[1], phone)]


def _same(stored: str | None, phone: str) -> bool:
    if stored == phone:
        return True
    try:
        return normalize_phone(stored or "") == phone
    except PhoneRejected:
        return False


def _delete(connection: sa.Connection, table: str, column: str, values: list) -> int:
    if not values:
        return 0
    return connection.execute(
        sa.text(f"DELETE FROM {_quoted(connection, table)} WHERE {column} IN :values").bindparams(
            sa.bindparam("values", expanding=True)
        ),
        {"values": values},
    ).rowcount


def _count_campaigns(
    connection: sa.Connection, contacts: list[int], tables: CoveredTables
) -> list[int]:
    """Fill ``target_recipients`` / ``control_recipients`` of the person's campaigns where
    they are NULL (a campaign the platform wrote): from its recipients rows, or, without any,
    its outcomes rows (all target arm); the counts then survive the deletion."""
    if not contacts or "campaign_recipients" not in tables.by_contact:
        return []
    ids = (
        connection.execute(
            sa.text(
                "SELECT id FROM campaigns WHERE target_recipients IS NULL AND id IN ("
                "SELECT campaign_id FROM campaign_recipients WHERE contact_id IN :ids UNION "
                "SELECT campaign_id FROM campaign_outcomes WHERE contact_id IN :ids)"
            ).bindparams(sa.bindparam("ids", expanding=True)),
            {"ids": contacts},
        )
        .scalars()
        .all()
    )
    for campaign in ids:
        target, control = connection.execute(
            sa.text(
                "SELECT count(*) FILTER (WHERE arm = 'target'), count(*) FILTER (WHERE arm = "
                "'control') FROM campaign_recipients WHERE campaign_id = :id"
            ),
            {"id": campaign},
        ).one()
        if target + control == 0:
            target = connection.execute(
                sa.text("SELECT count(*) FROM campaign_outcomes WHERE campaign_id = :id"),
                {"id": campaign},
            ).scalar_one()
        connection.execute(
            sa.text(
                "UPDATE campaigns SET target_recipients = :target, control_recipients = "
                "coalesce(control_recipients, :control) WHERE id = :id"
            ),
            {"target": target, "control": control, "id": campaign},
        )
    return sorted(ids)


def _take_staging_locks(connection: sa.Connection, tables: CoveredTables) -> None:
    """PostgreSQL: the advisory lock a staging of each table holds while it writes (see
    ``StagedTable``), for this transaction; ``ForgetBusy`` if one is being staged now, since
    it may have read the person before this transaction and write them after it."""
    if connection.dialect.name != "postgresql":
        return
    for table in tables.by_contact:
        if not connection.execute(
            sa.text("SELECT pg_try_advisory_xact_lock(hashtext(:key))"),
            {"key": f"lead_scoring:{table}"},
        ).scalar():
            raise ForgetBusy(
                f"{table} is being rebuilt by a run right now; nothing was "
                "deleted: forget again when that run has staged it"
            )


def _suppress(connection: sa.Connection, database: Database, phone: str, now: datetime) -> bool:
    """The ``arco`` suppression of ``phone``, never expiring; an existing one is kept."""
    return (
        connection.execute(
            sa.text(
                "INSERT INTO suppressions (phone_e164, reason, source, recorded_at, expires_at) "
                "VALUES (:phone, 'arco', :source, :now, NULL) "
                "ON CONFLICT (phone_e164, reason) DO NOTHING"
            ),
            {"phone": phone, "source": f"arco {now:%Y-%m-%d}", "now": database.bind_timestamp(now)},
        ).rowcount
        == 1
    )


def forget(
    database: Database,
    phone: str,
    folder: Path | None = None,
    now: datetime | None = None,
    wait_seconds: float = WAIT_SECONDS,
) -> ForgetReport:
    """Delete every row of the person with this number (any accepted form; ``PhoneRejected``
    otherwise) in one transaction, record its ``arco`` suppression, and list the files in
    ``folder`` (the export folder by default) that hold the number.

    The scoring lock is taken on every contact bucket (waiting up to ``wait_seconds`` for
    incremental runs; ``LockBusy`` at once while a full rescoring holds it), so no scoring run
    that read the person before can write them back after."""
    canonical = normalize_phone(phone)
    now = now or datetime.now(UTC)
    lock = scoring_lock(database, f"forget-{uuid.uuid4().hex[:12]}", LEASE_SECONDS)
    lock.acquire_exclusive(wait_seconds=wait_seconds)
    try:
        with database.engine.begin() as connection:
            lock.verify(connection)
            tables = covered_tables(connection)
            _take_staging_locks(connection, tables)
            contacts = _matching(connection, CONTACTS, "id", canonical)
            validations = (
                connection.execute(
                    sa.text(
                        "SELECT id FROM platform_validations WHERE contact_id IN :ids"
                    ).bindparams(sa.bindparam("ids", expanding=True)),
                    {"ids": contacts},
                )
                .scalars()
                .all()
                if contacts
                else []
            )
            counted = _count_campaigns(connection, contacts, tables)
            deleted = {CONTACTS: _delete(connection, CONTACTS, "id", contacts)}
            for table in tables.by_contact:
                deleted[table] = _delete(connection, table, "contact_id", contacts)
            for table in tables.by_validation:
                deleted[table] = _delete(connection, table, "validation_id", validations)
            for table in tables.by_phone:
                ids = _matching(connection, table, PHONE, canonical)
                deleted[table] = _delete(connection, table, PHONE, ids)
            added = _suppress(connection, database, canonical, now)
            lock.release(connection)
    except BaseException:
        lock.release()
        raise
    return ForgetReport(
        mask_phone(canonical),
        len(contacts),
        deleted,
        added,
        counted,
        files_holding(folder or export_dir(), canonical),
    )


def files_holding(folder: Path, phone: str) -> list[Path]:
    """The CSV and Parquet files under ``folder`` with the number (its 10 national digits,
    separators ignored) in any column, read batch by batch; a file that cannot be read is
    listed too, for the operator to look at. None is changed."""
    if not folder.is_dir():
        return []
    national = phone[-10:]
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in (".csv", ".parquet") or not path.is_file():
            continue
        try:
            if any(
                _column_holds(column, national)
                for batch in _batches(path)
                for column in batch.columns
            ):
                found.append(path)
        except (pa.ArrowException, OSError, csv.Error, UnicodeDecodeError):
            found.append(path)
    return found


def _batches(path: Path) -> Iterator[pa.RecordBatch]:
    """The file's rows in batches; every CSV column read as text."""
    if path.suffix.lower() == ".parquet":
        yield from pq.ParquetFile(path).iter_batches()
        return
    with path.open(newline="", encoding="utf-8") as file:
        names = next(csv.reader(file), [])
    if not names:
        return
    options = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in names}, strings_can_be_null=False
    )
    with pacsv.open_csv(path, convert_options=options) as reader:
        yield from reader


def _column_holds(column: pa.Array, national: str) -> bool:
    if pa.types.is_null(column.type):
        return False
    text = pc.replace_substring_regex(column.cast(pa.string()), SEPARATORS, "")
    return bool(pc.any(pc.match_substring(text, national)).as_py())
