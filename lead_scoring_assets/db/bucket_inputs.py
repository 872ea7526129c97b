"""The scoring inputs of contact buckets: ``(bucket, contacts, validations)`` chunks, bucket by
bucket, contacts by ascending id.

PostgreSQL: one sequential pass over ``contacts`` and one over ``platform_validations``, each
read in its stored order with every row's bucket computed in SQL and only the wanted buckets
kept, spilled to one LZ4-compressed Arrow file per bucket and table in a private temporary
folder (``LEAD_SCORING_SPILL_DIR``, default the system's); then each bucket is read back,
ordered by contact id and cut into chunks; the folder is deleted at the end, and one left by
a killed process is deleted by the next rescoring. The platform stores validation rows in arrival
order, so reading them by contact id range reads the heap at random, page after page, chunk
after chunk; the spill costs one compressed write and read of the rows instead. No phone
number is read. SQLite: each bucket's chunks by id range.

Each chunk carries every validation row whose ``contact_id`` falls in its id range; a bucket's
last chunk also carries its rows beyond its highest contact id and (bucket 0) the rows with no
``contact_id``, so every validation row of the buckets is seen once.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lead_scoring_assets.db.buckets import BUCKET_COUNT, bucket_sql
from lead_scoring_assets.db.database import FIRST_ID, Database, arrow_frame
from lead_scoring_assets.db.tables import SCORING_CONTACT_COLUMNS, SCORING_VALIDATION_COLUMNS

SPILL_DIR_ENV = "LEAD_SCORING_SPILL_DIR"
SPILL_PREFIX = "lead_scoring_spill_"
"""Spill folders are named ``lead_scoring_spill_<pid>_<random>``."""
BUCKET = "bucket"
Chunk = tuple[int, pd.DataFrame, pd.DataFrame]


def iter_bucket_inputs(database: Database, buckets: list[int], chunk_size: int) -> Iterator[Chunk]:
    """``(bucket, contacts, validations)`` for each of ``buckets`` in order, ``chunk_size``
    contacts at a time."""
    if database.dialect == "postgresql":
        yield from _spilled_inputs(database, buckets, chunk_size)
        return
    for bucket in buckets:
        yield from _ranged_inputs(database, bucket, chunk_size)


def iter_all_inputs(
    database: Database, chunk_size: int
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """``(contacts, validations)`` of every contact, bucket by bucket, ``chunk_size`` contacts
    at a time (for the other full passes: features, conversion scores)."""
    for _, contacts, validations in iter_bucket_inputs(
        database, list(range(BUCKET_COUNT)), chunk_size
    ):
        yield contacts, validations


def _ranged_inputs(database: Database, bucket: int, chunk_size: int) -> Iterator[Chunk]:
    contact_bucket = bucket_sql(database.dialect, "id")
    validation_bucket = bucket_sql(database.dialect, "contact_id")
    validations_sql = (
        f"SELECT {', '.join(SCORING_VALIDATION_COLUMNS)} FROM "
        f"platform_validations WHERE {validation_bucket} = :bucket AND "
    )
    after = FIRST_ID
    while True:
        contacts = database.read_frame(
            f"SELECT {', '.join(SCORING_CONTACT_COLUMNS)} FROM contacts "
            f"WHERE id > :after AND {contact_bucket} = :bucket ORDER BY id LIMIT :limit",
            {"after": after, "bucket": bucket, "limit": chunk_size},
        )
        if len(contacts) == chunk_size:
            upto = int(contacts["id"].iloc[-1])
            yield (
                bucket,
                contacts,
                database.read_frame(
                    validations_sql + "contact_id > :after AND contact_id <= :upto",
                    {"bucket": bucket, "after": after, "upto": upto},
                ),
            )
            after = upto
            continue
        yield (
            bucket,
            contacts,
            database.read_frame(
                validations_sql + "(contact_id > :after OR contact_id IS NULL)",
                {"bucket": bucket, "after": after},
            ),
        )
        return


def spill_root() -> Path:
    return Path(os.environ.get(SPILL_DIR_ENV) or tempfile.gettempdir())


def remove_abandoned_spills(root: Path) -> list[Path]:
    """Delete the spill folders of processes that no longer run (a killed rescoring cannot
    delete its own; they hold contacts' names and addresses). Returns what was removed."""
    removed = []
    for folder in root.glob(f"{SPILL_PREFIX}*"):
        pid = folder.name.removeprefix(SPILL_PREFIX).split("_", 1)[0]
        if not pid.isdigit() or _running(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _spilled_inputs(database: Database, buckets: list[int], chunk_size: int) -> Iterator[Chunk]:
    root = spill_root()
    remove_abandoned_spills(root)
    with tempfile.TemporaryDirectory(prefix=f"{SPILL_PREFIX}{os.getpid()}_", dir=root) as folder:
        spill = Path(folder)
        for table, columns, key in (
            ("contacts", SCORING_CONTACT_COLUMNS, "id"),
            ("platform_validations", SCORING_VALIDATION_COLUMNS, "contact_id"),
        ):
            bucket = bucket_sql(database.dialect, key)
            wanted = (
                ""
                if set(buckets) == set(range(BUCKET_COUNT))
                else f" WHERE {bucket} IN ({', '.join(str(b) for b in buckets)})"
            )
            _spill(
                database,
                spill,
                table,
                f"SELECT {', '.join(columns)}, {bucket} AS {BUCKET} FROM {table}{wanted}",
                buckets,
            )
        for bucket in buckets:
            yield from _bucket_chunks(spill, bucket, chunk_size)


def _spill(database: Database, folder: Path, table: str, sql: str, buckets: list[int]) -> None:
    """Stream the rows of ``sql`` into one Arrow file per bucket, ``<table>_<bucket>`` (an
    empty one for a bucket without rows)."""
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    with database.adbc_connection() as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        reader = cursor.fetch_record_batch()
        schema = reader.schema.remove(reader.schema.get_field_index(BUCKET))
        writers = {
            b: pa.ipc.new_stream(folder / f"{table}_{b}", schema, options=options) for b in buckets
        }
        try:
            for batch in reader:
                if not batch.num_rows:
                    continue
                batch = batch.take(pc.sort_indices(batch.column(BUCKET)))
                values = batch.column(BUCKET).to_numpy()
                starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
                rows = batch.drop_columns([BUCKET])
                for start, end in zip(starts, [*starts[1:], len(values)], strict=True):
                    writers[int(values[start])].write_batch(rows.slice(start, end - start))
        finally:
            for writer in writers.values():
                writer.close()


def _read(path: Path) -> pa.Table:
    with pa.ipc.open_stream(path) as reader:
        return reader.read_all()


def _bucket_chunks(folder: Path, bucket: int, chunk_size: int) -> Iterator[Chunk]:
    """The spilled rows of ``bucket``: contacts by ascending id, ``chunk_size`` at a time, each
    with the validation rows of its id range (the last one: every remaining row)."""
    contacts = _read(folder / f"contacts_{bucket}")
    ids = contacts.column("id")
    if len(ids) > 1 and not pc.all(pc.greater(ids[1:], ids[:-1])).as_py():
        contacts = contacts.take(pc.sort_indices(ids))
    validations = _read(folder / f"platform_validations_{bucket}")
    order = pc.sort_indices(validations, sort_keys=[("contact_id", "ascending", "at_end")])
    contact_ids = pc.fill_null(
        validations.column("contact_id").take(order), np.iinfo(np.int64).max
    ).to_numpy()
    first = 0
    for start in range(0, max(contacts.num_rows, 1), chunk_size):
        part = contacts.slice(start, chunk_size)
        if start + chunk_size >= contacts.num_rows:
            end = len(contact_ids)
        else:
            end = int(np.searchsorted(contact_ids, part.column("id")[-1].as_py(), side="right"))
        yield (
            bucket,
            arrow_frame(part),
            arrow_frame(validations.take(order.slice(first, end - first))),
        )
        first = end
