"""Benchmark: the nightly pipeline end to end at full scale on PostgreSQL.

    python -m benchmarks.full_scale --contacts 31800000

Loads N demo contacts (3-4 validation rows each) into a scratch database with the validation
rows stored in arrival order (by ``validated_at``, ids following it, as the platform writes
them) unless ``--reuse``; then times, each in a fresh process with its peak RSS: the full
rescoring (first after the load, then warm), the analytics, ``contact_features``, the
retraining on a sample, ``ml_lead_scores``, an incremental batch and the campaign export of
the top contacts. For every step: contacts/s, the WAL it wrote (``pg_current_wal_lsn``
difference: cluster-wide, so other sessions' writes count too), the bytes of the relations it
rewrote, the database's peak size during it, the machine's load average. Then the bytes per
row of every table with its indexes, the raw COPY baseline measured in the same run (``full_rescore.copy_baseline``:
the contact and validation rows the rescoring reads, COPY out, plus its ``lead_scores`` rows,
COPY in), the targets met or missed and the server settings. Results go to
``full_scale_<N>.json`` and ``.md``; ``--compare`` another run's JSON (e.g. at 1M) gives each
step's cost per contact against it (``--report`` re-renders a saved JSON that way). The
database is kept for ``--reuse`` unless ``--drop``.
"""

import argparse
import json
import os
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import sqlalchemy as sa

from benchmarks.export import timed_export
from benchmarks.fresh_process import run_in_fresh_process
from benchmarks.full_rescore import (
    AS_OF,
    copy_baseline,
    drop_database,
    recreate_database,
    timed_rescore,
)
from benchmarks.incremental import dirty_random_contacts
from benchmarks.ml import timed_stage
from lead_scoring_assets.db.database import Database, redact
from lead_scoring_assets.db.tables import VALIDATION_COLUMNS
from lead_scoring_assets.demo.generator import generate_demo_data
from lead_scoring_assets.demo.loader import MARKER_TABLE
from lead_scoring_assets.geography.ladas import build_lada_reference

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/lead_scoring_full_scale"
FULL_SIZE = 31_800_000
ARRIVALS = "full_scale_arrivals"
"""Unlogged staging table of the generated validation rows, before they are sorted."""
PLATFORM_TABLES = ("contacts", "platform_validations")
"""Written by the platform; every other table is the project's (200 bytes/contact target)."""
NIGHTLY = ("rescore_warm", "analytics", "contact_features", "retraining", "ml_lead_scores")
SETTINGS = (
    "server_version",
    "shared_buffers",
    "effective_cache_size",
    "work_mem",
    "maintenance_work_mem",
    "max_wal_size",
    "min_wal_size",
    "checkpoint_timeout",
    "checkpoint_completion_target",
    "wal_level",
    "wal_compression",
    "full_page_writes",
    "synchronous_commit",
    "max_parallel_workers_per_gather",
    "max_worker_processes",
    "random_page_cost",
    "autovacuum",
)
LOAD_SORT_WORK_MEM = "256MB"
"""Session ``work_mem`` of the query that sorts the validation rows into arrival order, and
``maintenance_work_mem`` of the index builds after it."""
TARGETS = {
    "rescore_rate": 106_000,
    "rescore_vs_copy": 2.0,
    "nightly_seconds_at_full": 1200,
    "peak_rss_mb": 2048,
    "bytes_per_contact": 200,
    "wal_vs_rewritten": 2.0,
    "first_vs_warm": 2.0,
    "cost_vs_compare": 1.2,
}


def dsn(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# loading in arrival order


def load_in_arrival_order(
    url: str, contacts: int, batch_size: int = 100_000, rows_per_commit: int = 1_000_000
) -> dict:
    """A fresh database with ``contacts`` demo contacts, their validations in arrival order.

    Contacts go in as generated (ascending ids, as they are created); the validation rows go
    to an unlogged staging table, then PostgreSQL sorts them by ``validated_at`` (rows without
    one last) and they are copied into ``platform_validations`` with new ids in that order,
    ``rows_per_commit`` rows per transaction, its indexes built afterwards (inserting rows in
    random contact order into them costs an hour at 10M), then vacuumed as a table the platform
    wrote long ago would be (frozen, its visibility map set). Every contact is queued, as after
    any load (the contacts' insert trigger; the validations' one is off during the copy, it
    would only queue the same contacts again), and the first full rescoring settles the queue.
    """
    recreate_database(sa.make_url(url))
    database = Database(url)
    database.upgrade()
    database.replace_rows("ladas_reference", build_lada_reference())
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                f"INSERT INTO {MARKER_TABLE} (id, seed, contacts, loaded_at) "
                "VALUES (1, 1, :contacts, now())"
            ),
            {"contacts": contacts},
        )
        connection.execute(sa.text(f"CREATE UNLOGGED TABLE {ARRIVALS} (LIKE platform_validations)"))
    started = time.perf_counter()
    loaded = {"contacts": 0, "validations": 0}
    for batch in generate_demo_data(contacts, seed=1, as_of=AS_OF, batch_size=batch_size):
        database.append_frame("contacts", batch.contacts)
        database.append_frame(ARRIVALS, batch.validations)
        loaded["contacts"] += len(batch.contacts)
        loaded["validations"] += len(batch.validations)
        if loaded["contacts"] % (10 * batch_size) == 0 or loaded["contacts"] == contacts:
            print(
                f"  generated {loaded['contacts']:,} contacts, {loaded['validations']:,} "
                f"validation rows ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    loaded["seconds_generate"] = time.perf_counter() - started
    started = time.perf_counter()
    with database.engine.begin() as connection:
        rebuild = _drop_indexes(connection, "platform_validations")
        connection.execute(sa.text("ALTER TABLE platform_validations DISABLE TRIGGER USER"))
    _copy_in_arrival_order(url, loaded["validations"], rows_per_commit)
    loaded["seconds_sort_copy"] = time.perf_counter() - started
    started = time.perf_counter()
    with database.engine.begin() as connection:
        connection.execute(sa.text(f"SET maintenance_work_mem = '{LOAD_SORT_WORK_MEM}'"))
        for statement in rebuild:
            connection.execute(sa.text(statement))
        connection.execute(sa.text("ALTER TABLE platform_validations ENABLE TRIGGER USER"))
    loaded["seconds_index"] = time.perf_counter() - started
    started = time.perf_counter()
    with database.engine.begin() as connection:
        connection.execute(sa.text(f"DROP TABLE {ARRIVALS}"))
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in PLATFORM_TABLES:
            connection.execute(sa.text(f"VACUUM (FREEZE, ANALYZE) {table}"))
    loaded["seconds_vacuum"] = time.perf_counter() - started
    database.dispose()
    return loaded


def _drop_indexes(connection: sa.Connection, table: str) -> list[str]:
    """Drop the indexes and unique constraints of ``table``; return the statements that
    recreate them."""
    constraints = connection.execute(
        sa.text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = "
            "CAST(:table AS regclass) AND contype IN ('p', 'u')"
        ),
        {"table": table},
    ).all()
    indexes = connection.execute(
        sa.text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND "
            "tablename = :table"
        ),
        {"table": table},
    ).all()
    owned = {name for name, _ in constraints}
    for name, _ in constraints:
        connection.execute(sa.text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
    for name, _ in indexes:
        if name not in owned:
            connection.execute(sa.text(f'DROP INDEX "{name}"'))
    return [
        *(
            f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'
            for name, definition in constraints
        ),
        *(definition for name, definition in indexes if name not in owned),
    ]


def _copy_in_arrival_order(url: str, total: int, rows_per_commit: int) -> None:
    """Stream the staged rows, sorted by arrival and renumbered, into ``platform_validations``,
    ``rows_per_commit`` rows per COPY and transaction."""
    columns = [c for c in VALIDATION_COLUMNS if c != "id"]
    order = "validated_at NULLS LAST, id"
    select = (
        f"SELECT row_number() OVER (ORDER BY {order}), {', '.join(columns)} "
        f"FROM {ARRIVALS} ORDER BY {order}"
    )
    into = f"COPY platform_validations (id, {', '.join(columns)}) FROM STDIN"
    started = time.perf_counter()
    copied = 0
    with (
        psycopg.connect(dsn(url), options=f"-c work_mem={LOAD_SORT_WORK_MEM}") as source,
        psycopg.connect(dsn(url)) as target,
        source.cursor().copy(f"COPY ({select}) TO STDOUT") as reader,
    ):
        for rows, piece in row_groups(reader, rows_per_commit):
            with target.cursor().copy(into) as writer:
                writer.write(piece)
            target.commit()
            copied += rows
            print(
                f"  validations in arrival order: {copied:,} of {total:,} "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )


def row_groups(blocks, rows: int):
    """A COPY text stream (blocks cut anywhere) as (count, bytes) pieces of ``rows`` whole rows,
    the last one shorter: in COPY text every row ends in the one unescaped newline."""
    pending = bytearray()
    count = 0
    for block in blocks:
        start = len(pending)
        pending += block
        count += pending.count(b"\n", start)
        while count >= rows:
            cut = -1
            for _ in range(rows):
                cut = pending.index(b"\n", cut + 1)
            yield rows, bytes(pending[: cut + 1])
            del pending[: cut + 1]
            count -= rows
    if pending:
        yield count, bytes(pending)


# the steps, each in a fresh process


def timed_analytics(url: str) -> dict:
    """The analytics asset's work: the figures, the previous run's tiers, the history row."""
    from lead_scoring_assets.analytics.figures import compute_figures
    from lead_scoring_assets.analytics.history import append_figures, previous_tier_distribution

    database = Database(url)
    started = time.perf_counter()
    figures = compute_figures(database)
    previous_tier_distribution(database)
    append_figures(database, figures, "full-scale-benchmark", datetime.now(UTC))
    database.dispose()
    return {"contacts": figures.contacts, "total": time.perf_counter() - started}


def timed_incremental(url: str, batch_size: int) -> dict:
    """One incremental batch of the queue (``score_queued``)."""
    from lead_scoring_assets.scoring.incremental import score_queued

    database = Database(url)
    started = time.perf_counter()
    report = score_queued(database, AS_OF, owner="full-scale-benchmark", batch_size=batch_size)
    database.dispose()
    return {
        "contacts": report.scored,
        "claimed": report.claimed,
        "total": time.perf_counter() - started,
    }


class Server:
    """Read-only probes of the benchmark database: WAL position, sizes, relation files."""

    def __init__(self, url: str):
        self.url = url
        self.connection = psycopg.connect(dsn(url), autocommit=True)

    def value(self, sql: str, params=None):
        return self.connection.execute(sql, params).fetchone()[0]

    def wal_lsn(self) -> str:
        return str(self.value("SELECT pg_current_wal_lsn()"))

    def wal_since(self, lsn: str) -> int:
        return int(self.value("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (lsn,)))

    def database_size(self) -> int:
        return int(self.value("SELECT pg_database_size(current_database())"))

    def relation_files(self) -> dict[int, int]:
        """Size of every logged relation file (tables, indexes, TOAST) by file node."""
        rows = self.connection.execute(
            "SELECT pg_relation_filenode(c.oid), pg_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'i', 't', "
            "'m') AND c.relpersistence = 'p' AND n.nspname NOT IN ('pg_catalog', "
            "'information_schema')"
        ).fetchall()
        return {node: size for node, size in rows if node}

    def table_sizes(self) -> list[dict]:
        """Rows and bytes (with indexes and TOAST, partitions summed) of every table."""
        tables = self.connection.execute(
            "SELECT c.relname, CASE WHEN c.relkind = 'p' THEN (SELECT coalesce(sum("
            "pg_total_relation_size(relid)), 0) FROM pg_partition_tree(c.oid)) ELSE "
            "pg_total_relation_size(c.oid) END FROM pg_class c JOIN pg_namespace n ON n.oid = "
            "c.relnamespace WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') "
            "AND NOT c.relispartition ORDER BY c.relname"
        ).fetchall()
        sizes = []
        for name, total in tables:
            rows = self.value(f'SELECT count(*) FROM "{name}"')
            sizes.append({"table": name, "rows": int(rows), "bytes": int(total)})
        return sizes

    def settings(self) -> dict[str, str]:
        return {name: str(self.value("SELECT current_setting(%s)", (name,))) for name in SETTINGS}

    def close(self) -> None:
        self.connection.close()


def rewritten_bytes(before: dict[int, int], after: dict[int, int]) -> int:
    """Bytes of relation files created during a step plus the growth of the others."""
    return sum(
        size if node not in before else max(0, size - before[node]) for node, size in after.items()
    )


def measure(server: Server, step: str, function, *args) -> dict:
    """``function(*args)`` in a fresh process, with its wall time, WAL, rewritten bytes and
    the database's size before and at its peak (sampled every second)."""
    files, lsn, size = server.relation_files(), server.wal_lsn(), server.database_size()
    peak = [size]
    loads = [os.getloadavg()[0]]
    done = threading.Event()
    sampler_server = Server(server.url)

    def sample() -> None:
        while not done.wait(1.0):
            peak[0] = max(peak[0], sampler_server.database_size())
            loads.append(os.getloadavg()[0])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        result = run_in_fresh_process(function, *args)
    finally:
        done.set()
        sampler.join()
        sampler_server.close()
    result["seconds"] = time.perf_counter() - started
    result.update(
        step=step,
        wal_bytes=server.wal_since(lsn),
        size_before=size,
        load_average=sum(loads) / len(loads),
        size_peak=max(peak[0], server.database_size()),
        rewritten_bytes=rewritten_bytes(files, server.relation_files()),
    )
    print(
        f"{step}: {result['seconds']:.1f} s, peak RSS {result['peak_rss_mb']:,.0f} MB, WAL "
        f"{result['wal_bytes'] / 2**20:,.0f} MiB, rewrote {result['rewritten_bytes'] / 2**20:,.0f}"
        f" MiB, database peak +{(result['size_peak'] - size) / 2**20:,.0f} MiB, load average "
        f"{result['load_average']:.1f}",
        flush=True,
    )
    return result


def run_steps(url: str, results: dict, options: argparse.Namespace, save) -> None:
    """Every step in turn into ``results``, calling ``save()`` after each (a run cut short
    still leaves its figures); the raw COPY baseline right after the warm rescoring."""
    server = Server(url)
    steps = results["steps"]

    def step(name: str, function, *args) -> None:
        steps.append(measure(server, name, function, *args))
        save()

    step("rescore_first", timed_rescore, url, options.chunk_size)
    step("rescore_warm", timed_rescore, url, options.chunk_size)
    step("rescore_one_bucket", timed_rescore, url, options.chunk_size, [0])
    results["partition_bytes"] = int(
        server.value("SELECT pg_total_relation_size('lead_scores_p00')")
    )
    print("raw COPY baseline ...", flush=True)
    results["copy_baseline"] = copy_baseline(sa.make_url(url))
    step("analytics", timed_analytics, url)
    with tempfile.TemporaryDirectory() as folder:
        tracking = f"sqlite:///{folder}/mlflow.db"
        for name, stage in (
            ("contact_features", "features"),
            ("retraining", "training"),
            ("ml_lead_scores", "predictions"),
        ):
            step(name, timed_stage, stage, url, tracking, options.sample_size)
        database = Database(url)
        dirty_random_contacts(database, options.incremental, seed=1)
        database.dispose()
        step("incremental", timed_incremental, url, options.incremental)
        export = min(options.export, results["contacts"])
        step("export", timed_export, url, folder, f"top_{export}.csv", "csv", export)
    print("table sizes ...", flush=True)
    results["tables"] = server.table_sizes()
    results["database_size"] = server.database_size()
    server.close()


# the report


def _rows(step: dict) -> int:
    return int(step.get("contacts") or step.get("rows") or 0)


def evaluate(results: dict, compare: dict | None) -> list[dict]:
    """Each target of issue 13 at this size that the figures so far allow: the figure, the
    bound, met or missed."""
    steps = {s["step"]: s for s in results["steps"]}
    contacts = results["contacts"]
    checks = []
    warm, first = steps.get("rescore_warm"), steps.get("rescore_first")
    if warm:
        checks += [
            (
                "warm full rescoring, contacts/s",
                contacts / warm["seconds"],
                "≥",
                TARGETS["rescore_rate"],
            ),
            (
                "WAL of the warm rescoring / bytes it rewrote",
                warm["wal_bytes"] / max(warm["rewritten_bytes"], 1),
                "≤",
                TARGETS["wal_vs_rewritten"],
            ),
            (
                "first rescoring / warm rescoring",
                first["seconds"] / warm["seconds"],
                "≤",
                TARGETS["first_vs_warm"],
            ),
        ]
    if warm and "copy_baseline" in results:
        checks.append(
            (
                "warm full rescoring / raw COPY baseline",
                warm["seconds"] / results["copy_baseline"]["total"],
                "≤",
                TARGETS["rescore_vs_copy"],
            )
        )
    bucket = steps.get("rescore_one_bucket")
    if bucket and "partition_bytes" in results:
        for name, measured in (("all buckets in one run", warm), ("one bucket per run", bucket)):
            if measured:
                extra = max(
                    measured["size_peak"] - measured["size_before"], measured["rewritten_bytes"]
                )
                target = (
                    f"extra disk of a rescoring ({name}) / one partition of "
                    "lead_scores (peak growth or bytes written, the larger)"
                )
                checks.append((target, extra / results["partition_bytes"], "≤", 1.0))
    if all(name in steps for name in NIGHTLY):
        nightly = sum(steps[name]["seconds"] for name in NIGHTLY)
        checks.append(
            (
                f"nightly ({', '.join(NIGHTLY)}) scaled to {FULL_SIZE:,} contacts, s",
                nightly * FULL_SIZE / contacts,
                "≤",
                TARGETS["nightly_seconds_at_full"],
            )
        )
    if steps:
        checks.append(
            (
                "largest peak RSS of a step, MB",
                max(s["peak_rss_mb"] for s in steps.values()),
                "≤",
                TARGETS["peak_rss_mb"],
            )
        )
    if "tables" in results:
        checks.append(
            (
                "largest project table, bytes per contact",
                max(
                    t["bytes"] / contacts
                    for t in results["tables"]
                    if t["table"] not in PLATFORM_TABLES
                ),
                "≤",
                TARGETS["bytes_per_contact"],
            )
        )
    if compare:
        before = {s["step"]: s for s in compare["steps"]}
        for name in ("rescore_first", *NIGHTLY):
            if name in steps and name in before:
                cost = steps[name]["seconds"] / contacts
                then = before[name]["seconds"] / compare["contacts"]
                checks.append(
                    (
                        f"{name}: cost per contact / at {compare['contacts']:,}",
                        cost / then,
                        "≤",
                        TARGETS["cost_vs_compare"],
                    )
                )
    return [
        {
            "target": name,
            "value": value,
            "bound": f"{op} {bound:,}",
            "met": value >= bound if op == "≥" else value <= bound,
        }
        for name, value, op, bound in checks
    ]


def markdown(results: dict) -> str:
    contacts = results["contacts"]
    mib = 2**20
    lines = [
        (
            f"Measured {results['date']} on {results['code']}, {contacts:,} contacts, "
            f"{results['validations']:,} validation rows in arrival order: "
            f"`{results['command']}`"
        ),
        "",
    ]
    if results.get("load"):
        load = results["load"]
        index = f", indexed in {load['seconds_index']:.0f} s" if "seconds_index" in load else ""
        lines += [
            (
                f"Load: generated and staged in {load['seconds_generate']:.0f} s, sorted into "
                f"arrival order and copied in {load['seconds_sort_copy']:.0f} s{index}, "
                f"vacuumed and analysed in {load.get('seconds_vacuum', 0):.0f} s."
            ),
            "",
        ]
    lines += [
        (
            "| step | s | contacts/s | peak RSS MB | WAL MiB | rewritten MiB | "
            "database peak +MiB | load average |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for step in results["steps"]:
        rows = _rows(step)
        rate = f"{rows / step['seconds']:,.0f}" if rows else "–"
        lines.append(
            f"| {step['step']} | {step['seconds']:,.1f} | {rate} | {step['peak_rss_mb']:,.0f} | "
            f"{step['wal_bytes'] / mib:,.0f} | {step['rewritten_bytes'] / mib:,.0f} | "
            f"{(step['size_peak'] - step['size_before']) / mib:,.0f} | "
            f"{step.get('load_average', float('nan')):.1f} |"
        )
    steps = {step["step"]: step for step in results["steps"]}
    growth = ", ".join(
        f"{name} +{(steps[name]['size_peak'] - steps[name]['size_before']) / mib:,.0f} MiB"
        for name in ("rescore_first", "rescore_warm")
        if name in steps
    )
    if growth:
        lines += [
            "",
            (
                f"Peak extra disk during the rescoring (database size; WAL and temporary "
                f"files not counted): {growth}."
            ),
        ]
    copy = results.get("copy_baseline", {"read": 0.0, "write": 0.0, "total": 0.0})
    lines += [
        "",
        (
            f"Raw COPY baseline (contacts + validations out, lead_scores in): "
            f"{copy['read']:.1f} + {copy['write']:.1f} = {copy['total']:.1f} s. "
            f"Database: {results['size_before_steps'] / mib:,.0f} MiB after the load, "
            f"{results.get('database_size', 0) / mib:,.0f} MiB at the end."
        ),
        "",
        "| table | rows | MiB | bytes/row | bytes/contact |",
        "|---|---:|---:|---:|---:|",
    ]
    for table in results.get("tables", []):
        per_row = table["bytes"] / table["rows"] if table["rows"] else 0
        lines.append(
            f"| {table['table']} | {table['rows']:,} | {table['bytes'] / mib:,.1f} | "
            f"{per_row:,.0f} | {table['bytes'] / contacts:,.1f} |"
        )
    lines += ["", "| target | value | bound | |", "|---|---:|---:|---|"]
    for check in results["targets"]:
        lines.append(
            f"| {check['target']} | {check['value']:,.2f} | {check['bound']} | "
            f"{'met' if check['met'] else '**missed**'} |"
        )
    lines += [
        "",
        "Server settings: "
        + ", ".join(f"{name} {value}" for name, value in results["settings"].items()),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--reuse", action="store_true", help="keep the loaded data of a past run")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    parser.add_argument(
        "--load-only",
        action="store_true",
        help="load the data and stop (the steps later with --reuse)",
    )
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--sample-size", type=int, default=200_000)
    parser.add_argument("--incremental", type=int, default=50_000)
    parser.add_argument("--export", type=int, default=1_000_000)
    parser.add_argument("--compare", type=Path, help="JSON of another run (e.g. at 1M)")
    parser.add_argument("--output", type=Path, default=Path("."))
    parser.add_argument(
        "--code", default="this checkout", help="the code measured, for the report (e.g. a commit)"
    )
    parser.add_argument(
        "--report",
        type=Path,
        help="only print the report of a saved JSON (with --compare: against another run)",
    )
    args = parser.parse_args()
    compare = json.loads(args.compare.read_text()) if args.compare else None
    if args.report:
        results = json.loads(args.report.read_text())
        results["targets"] = evaluate(results, compare)
        print(markdown(results))
        return
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    print(f"database {redact(args.url)}, {args.contacts:,} contacts", flush=True)
    args.output.mkdir(parents=True, exist_ok=True)
    load_file = args.output / f"full_scale_{args.contacts}_load.json"
    load = None
    if not args.reuse:
        load = load_in_arrival_order(args.url, args.contacts)
        load_file.write_text(json.dumps(load, indent=1))
        print(f"loaded: {json.dumps(load)}", flush=True)
    elif load_file.exists():
        load = json.loads(load_file.read_text())
    if args.load_only:
        return
    Database(args.url).upgrade()
    server = Server(args.url)
    contacts = int(server.value("SELECT count(*) FROM contacts"))
    results = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "code": args.code,
        "command": f"python -m benchmarks.full_scale --contacts {args.contacts}",
        "contacts": contacts,
        "validations": int(server.value("SELECT count(*) FROM platform_validations")),
        "load": load,
        "size_before_steps": server.database_size(),
        "settings": server.settings(),
        "steps": [],
    }
    server.close()
    stem = args.output / f"full_scale_{contacts}"

    def save() -> str:
        results["targets"] = evaluate(results, compare)
        report = markdown(results)
        stem.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
        stem.with_suffix(".md").write_text(report)
        return report

    try:
        run_steps(args.url, results, args, save)
    finally:
        if args.drop:
            drop_database(sa.make_url(args.url))
    print("\n" + save())
    print(
        f"results: {stem}.json, {stem}.md; database "
        f"{'dropped' if args.drop else f'{sa.make_url(args.url).database} kept (--reuse)'}"
    )


if __name__ == "__main__":
    main()
