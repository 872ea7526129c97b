"""Campaign segments: the targeted contacts, best first, streamed to CSV or Parquet.

A segment is read in one snapshot (scores changing meanwhile never duplicate or drop a
contact), without the suppressed numbers of that snapshot (``consent/in_force.py``), one row
per phone number, and written batch by batch (memory bounded by the batch size) to a
temporary file in the export folder, renamed when complete.
"""

import hashlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import sqlalchemy as sa

from lead_scoring_assets.campaigns.profit import messages_within, selection_for
from lead_scoring_assets.consent.in_force import (
    CONSENT_TABLES,
    InForce,
    canonical,
    json_texts,
    normalized_or_none,
    number_map,
    read_in_force,
)
from lead_scoring_assets.consent.suppressions import REASONS
from lead_scoring_assets.db.database import Database, data_dir
from lead_scoring_assets.db.scoring_queue import join_by_index
from lead_scoring_assets.geography.states import normalize_state
from lead_scoring_assets.scoring.config import DEFAULT_CONFIG, PLATFORMS

EXPORT_DIR_ENV = "LEAD_SCORING_EXPORT_DIR"
BATCH_SIZE = 50_000
CONTACT_FIELDS = ("phone_e164", "full_name", "state_name", "municipality")
CONVERSION_FIELDS = ("conversion_probability", "probability_decile")
RANKINGS = {
    "total_score": "total_score DESC, confidence_level DESC",
    "conversion_probability": "probability_decile DESC NULLS LAST, "
    "conversion_probability DESC NULLS LAST, total_score DESC",
    "uplift": "uplift DESC",
}
"""What ``rank_by`` orders by (then the contact id); without a conversion champion
``conversion_scores`` holds the rule's deciles (no probability), so the ranking falls back to
the rule within a decile. ``uplift`` takes only contacts with an ``uplift_scores`` row."""
PHONE_RANKINGS = {
    "total_score": "total_score DESC",
    "conversion_probability": RANKINGS["conversion_probability"],
    "uplift": "u.uplift DESC",
}
"""Which contact keeps a phone number shared by several (then the latest created)."""
EXPORT_SCHEMA = pa.schema(
    [
        ("contact_id", pa.int64()),
        ("phone_e164", pa.string()),
        ("full_name", pa.string()),
        ("state_name", pa.string()),
        ("municipality", pa.string()),
        ("total_score", pa.int32()),
        ("quality_tier", pa.string()),
        ("confidence_level", pa.float64()),
        *((f"{p}_score", pa.int32()) for p in PLATFORMS),
        ("conversion_probability", pa.float64()),
        ("probability_decile", pa.int16()),
    ]
)
EXPORT_COLUMNS = tuple(EXPORT_SCHEMA.names)
UPLIFT_SCHEMA = pa.schema([("uplift", pa.float64()), ("uplift_decile", pa.int16())])
"""The file's two more columns when ranked by uplift."""
SEGMENT_TABLES = ("lead_scores", "conversion_scores", "contacts", *CONSENT_TABLES)
"""What a segment reads, locked before its snapshot is taken (``Database.snapshot``), with
``uplift_scores`` when ranked by uplift."""
SELECT_RULES = ("all", "max_profit")
FORMATS = ("csv", "parquet")
UNREADABLE = 2 ** len(REASONS)
"""The count query's mark of contacts whose number is unreadable (left out)."""
MAX_SCORE = DEFAULT_CONFIG.total_cap
FLOOR_MARGIN = 1.25
"""A limited export's first pass reads the contacts scored at or above the score where the
statistics put this many times the rows it wants (``SegmentReader._walk_down``)."""


@dataclass(frozen=True)
class Segment:
    """Who to target. Unset bounds do not filter; ``states`` match after normalisation."""

    min_tier: str | None = None
    min_score: int | None = None
    min_confidence: float = 0.0
    states: tuple[str, ...] = field(default_factory=tuple)
    limit: int | None = None
    rank_by: str = "total_score"
    min_probability: float | None = None
    min_decile: int | None = None
    select: str = "all"
    """``all``: every contact of the segment; ``max_profit``: those whose uplift ×
    ``value_per_conversion`` exceeds ``cost_per_message`` (``campaigns/profit.py``)."""
    cost_per_message: float | None = None
    value_per_conversion: float | None = None
    budget: float | None = None
    """Pesos: at most ``floor(budget / cost_per_message)`` messages (``max_profit``)."""

    @property
    def by_uplift(self) -> bool:
        return self.rank_by == "uplift"

    def schema(self) -> pa.Schema:
        """The file's columns."""
        return (
            pa.unify_schemas([EXPORT_SCHEMA, UPLIFT_SCHEMA]) if self.by_uplift else (EXPORT_SCHEMA)
        )

    def row_limit(self, control_share: float = 0.0) -> int | None:
        """The most rows to select: ``limit``, and what ``budget`` pays for once
        ``control_share`` of the selection is withheld."""
        limits = [self.limit] if self.limit is not None else []
        if self.budget is not None:
            messages = messages_within(self.budget, self.cost_per_message)
            if messages is not None:
                limits.append(selection_for(messages, control_share))
        return min(limits) if limits else None

    def min_total(self) -> int:
        if self.rank_by not in RANKINGS:
            raise ValueError(f"unknown rank_by {self.rank_by!r}; one of {', '.join(RANKINGS)}")
        if self.select not in SELECT_RULES:
            raise ValueError(f"unknown select {self.select!r}; one of {', '.join(SELECT_RULES)}")
        if self.select == "max_profit" and not self.by_uplift:
            raise ValueError(
                "select max_profit needs rank_by uplift: a message's expected "
                "incremental value is its uplift × value_per_conversion; a "
                "conversion probability or a score is no effect"
            )
        if self.select == "max_profit" and None in (
            self.cost_per_message,
            self.value_per_conversion,
        ):
            raise ValueError("select max_profit needs cost_per_message and value_per_conversion")
        if self.budget is not None and self.select != "max_profit":
            raise ValueError("budget needs select max_profit")
        tiers = dict(DEFAULT_CONFIG.tiers)
        if self.min_tier is not None and self.min_tier.upper() not in tiers:
            raise ValueError(f"unknown tier {self.min_tier!r}; one of {', '.join(tiers)}")
        tier_floor = tiers[self.min_tier.upper()] if self.min_tier else 0
        return max(tier_floor, self.min_score or 0)


class NoUpliftChampion(ValueError):
    """``rank_by: uplift`` without uplift scores."""


class NothingProfitable(ValueError):
    """``select: max_profit`` found no contact worth a message."""


class ForgottenDuringExport(RuntimeError):
    """A person in the file exercised their ARCO right after the export's snapshot: the file
    is not kept."""


FORGET_MARGIN = pd.Timedelta(hours=1)
"""How far before the snapshot an ``arco`` row may be dated and still be checked: ``forget``
dates it when its transaction starts, which may be before the snapshot it commits after."""


def _forgotten_in(database: Database, path: Path, file_format: str, since: datetime) -> int:
    """How many numbers of the file were forgotten (``arco``) since ``since``: none read unless
    such a suppression exists."""
    with database.engine.connect() as connection:
        numbers = [
            row[0]
            for row in connection.execute(
                sa.text(
                    "SELECT phone_e164 FROM suppressions WHERE reason = 'arco' AND recorded_at > :since"
                ),
                {"since": database.bind_timestamp(since)},
            )
        ]
    if not numbers:
        return 0
    if file_format == "csv":
        phones = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                include_columns=["phone_e164"], column_types={"phone_e164": pa.string()}
            ),
        )
    else:
        phones = pq.read_table(path, columns=["phone_e164"])
    return len(set(phones.column("phone_e164").to_pylist()) & set(numbers))


class UnsafeExportPath(ValueError):
    """A path that is not a file name inside its folder (the export or the import folder)."""


@dataclass(frozen=True)
class ExportReport:
    """What was written: the file (relative to the export folder), rows, SHA-256, size, how
    many contacts were left out because another contact had the same phone number, those left
    out as suppressed (``left_out``, see ``SegmentReader``), the snapshot read and the uplift
    scores' model version (ranked by uplift)."""

    file: str
    path: Path
    rows: int
    sha256: str
    bytes: int
    duplicates_dropped: int
    left_out: dict[str, int]
    snapshot_at: datetime
    snapshot: str | None
    uplift_model_version: str | None = None


def export_dir() -> Path:
    """``LEAD_SCORING_EXPORT_DIR``, or ``exports`` in the data folder."""
    return Path(os.environ.get(EXPORT_DIR_ENV) or data_dir() / "exports")


@dataclass(frozen=True)
class SegmentQueries:
    """The statements reading one segment, and their parameters."""

    rows: sa.TextClause
    """The segment without suppressed numbers, one row per number (best score, then latest
    ``created_at``, then highest contact id), best first, up to ``:limit`` when limited, with
    ``phone_contacts`` counting the unsuppressed contacts of each number."""
    floored_rows: sa.TextClause
    """``rows`` of the numbers whose best score lies in ``[:floor, :ceiling)``, at most
    ``:limit``, reading only the contacts scored ``:floor`` or more: ``phone_contacts`` counts
    those, ``number_contacts`` every contact holding the number as written (ranked by score)."""
    numbers: sa.TextClause
    """The count of the segment's contacts whose number is written as one of ``:spellings``."""
    left_out: sa.TextClause
    """The count of the segment's suppressed contacts per combination of reasons (a bit per
    reason, in the order of ``REASONS``)."""
    uplift_left_out: sa.TextClause | None
    """Ranked by uplift: the count of its contacts without an uplift score and
    (``max_profit``) below break-even."""
    params: dict


def _segment_query(
    database: Database,
    segment: Segment,
    states: list[str] | None,
    in_force: InForce,
    renamed: dict[str, str | None],
    control_share: float = 0.0,
) -> SegmentQueries:
    """The segment's statements (``SegmentQueries``).

    ``renamed`` maps the non-canonical numbers of ``contacts`` to their canonical form (None:
    unreadable, left out); the file holds the canonical form. ``control_share``: the share of
    the selection withheld as control (sizes a budget)."""
    dialect = database.dialect
    phone = (
        "CASE WHEN n.raw IS NULL THEN c.phone_e164 ELSE n.phone END"
        if renamed
        else ("c.phone_e164")
    )
    names = segment.schema().names
    columns = ", ".join(
        f"{phone} AS phone_e164"
        if c == "phone_e164"
        else f"c.{c}"
        if c in CONTACT_FIELDS
        else f"p.{c}"
        if c in CONVERSION_FIELDS
        else f"u.{c}"
        if c in UPLIFT_SCHEMA.names
        else f"s.{c}"
        for c in names
    )
    where = "s.total_score >= :min_total AND s.confidence_level >= :min_confidence"
    params: dict = {
        "min_total": segment.min_total(),
        "min_confidence": segment.min_confidence,
        "renamed": json.dumps(sorted(renamed.items())),
        **in_force.params(database),
    }
    if segment.min_probability is not None:
        where += " AND p.conversion_probability >= :min_probability"
        params["min_probability"] = segment.min_probability
    if segment.min_decile is not None:
        where += " AND p.probability_decile >= :min_decile"
        params["min_decile"] = segment.min_decile
    if states is not None:
        where += " AND c.state_name IN :states"
        params["states"] = states
    pairs = number_map(dialect, "renamed")
    scores = (
        "JOIN lead_scores s ON s.contact_id = c.id "
        "LEFT JOIN conversion_scores p ON p.contact_id = s.contact_id"
    )
    canonical_of = f" LEFT JOIN ({pairs}) n ON n.raw = c.phone_e164" if renamed else ""
    uplift_left_out = None
    if segment.by_uplift:
        profitable = "u.uplift * :value_per_conversion > :cost_per_message"
        below = (
            f"sum(CASE WHEN NOT ({profitable}) THEN 1 ELSE 0 END)"
            if segment.select == "max_profit"
            else "0"
        )
        uplift_left_out = sa.text(
            f"SELECT count(*) - count(u.contact_id) AS no_uplift_score, {below} AS "
            f"below_break_even FROM contacts c {scores}{canonical_of} LEFT JOIN uplift_scores u ON "
            f"u.contact_id = s.contact_id WHERE {where}"
        )
        scores += " JOIN uplift_scores u ON u.contact_id = s.contact_id"
        if segment.select == "max_profit":
            where += f" AND {profitable}"
            params["value_per_conversion"] = segment.value_per_conversion
            params["cost_per_message"] = segment.cost_per_message
    source = f"FROM contacts c {scores}{canonical_of} WHERE {where}"
    limit = ""
    row_limit = segment.row_limit(control_share)
    if row_limit is not None:
        limit = " LIMIT :limit"
        params["limit"] = row_limit
    winners = (
        f"(SELECT {columns}, row_number() OVER (PARTITION BY {phone} ORDER BY "
        f"{PHONE_RANKINGS[segment.rank_by]}, c.created_at DESC NULLS LAST, s.contact_id DESC) "
        f"AS phone_rank, count(*) OVER (PARTITION BY {phone}) AS phone_contacts {source} "
        f"AND {phone} IS NOT NULL AND {InForce.contactable(dialect, phone)}{{floor}}) ranked "
        f"WHERE phone_rank = 1{{ceiling}} ORDER BY {RANKINGS[segment.rank_by]}, contact_id"
    )
    rows = sa.text(
        f"SELECT {', '.join(names)}, phone_contacts FROM "
        + winners.format(floor="", ceiling="")
        + limit
    )
    floored_rows = sa.text(
        f"SELECT {', '.join(names)}, phone_contacts, (SELECT count(*) FROM contacts x WHERE "
        "x.phone_e164 = ranked.phone_e164) AS number_contacts FROM "
        + winners.format(
            floor=" AND s.total_score >= :floor", ceiling=" AND total_score < :ceiling"
        )
        + " LIMIT :limit"
    )
    numbers = sa.text(f"SELECT count(*) {source} AND c.phone_e164 IN :spellings").bindparams(
        sa.bindparam("spellings", expanding=True)
    )
    bits = " ".join(f"WHEN '{reason}' THEN {2**i}" for i, reason in enumerate(REASONS))
    scored = f"{scores} WHERE {where}"
    replied = json_texts(dialect, "reply_opt_outs")
    suppressed = (
        f"SELECT s.contact_id, CASE x.reason {bits} END AS bit FROM suppressions x JOIN "
        f"contacts c ON c.phone_e164 = x.phone_e164 {scored} AND "
        f"{canonical(dialect, 'c.phone_e164')} AND {InForce.applies(dialect, 'x')}"
        + (
            f" UNION ALL SELECT s.contact_id, CASE x.reason {bits} END AS bit FROM ({pairs}) n "
            "JOIN suppressions x ON x.phone_e164 = n.phone JOIN contacts c ON c.phone_e164 = "
            f"n.raw {scored} AND {InForce.applies(dialect, 'x')}"
            if renamed
            else ""
        )
    )
    replied_raw = f" UNION ALL SELECT n.raw FROM ({pairs}) n WHERE n.phone IN ({replied})"
    left_out = sa.text(
        "SELECT reasons, count(*) FROM (SELECT contact_id, sum(DISTINCT bit) AS reasons FROM ("
        f"{suppressed} UNION ALL SELECT s.contact_id, {2 ** REASONS.index('opt_out')} AS bit "
        f"FROM contacts c {scored} AND c.phone_e164 IN ({replied}"
        f"{replied_raw if renamed else ''})) b GROUP BY contact_id) m GROUP BY reasons"
        + (
            f" UNION ALL SELECT {UNREADABLE}, count(*) FROM contacts c {scored} AND c.phone_e164 "
            f"IN (SELECT n.raw FROM ({pairs}) n WHERE n.phone IS NULL)"
            if None in renamed.values()
            else ""
        )
    )
    queries = SegmentQueries(rows, floored_rows, numbers, left_out, uplift_left_out, params)
    if states is None:
        return queries
    return replace(
        queries,
        **{
            name: query.bindparams(sa.bindparam("states", expanding=True))
            for name, query in vars(queries).items()
            if isinstance(query, sa.TextClause)
        },
    )


class SegmentReader:
    """Iterates over a segment as Arrow record batches of at most ``batch_size`` rows, from one
    snapshot of the database (``Database.snapshot``, its tables locked first) through a
    server-side cursor on PostgreSQL. ``after_batch(rows_so_far)`` runs after each batch is fetched.

    Once iterated: ``duplicates_dropped`` counts the contacts left out because another
    contact with the same phone number was kept; ``left_out`` the segment's contacts (before
    ``limit``) left out as suppressed, per reason (``suppressed_opt_out``, …; a contact
    suppressed for two reasons counts in each), in all (``suppressed_contacts``) and for an
    unreadable number (``unreadable_phone``); ranked by uplift, the segment's contacts
    without an uplift score (``no_uplift_score``) and, with ``max_profit``, those whose
    message is not worth its cost (``below_break_even``), both before suppressions and
    duplicates; ``in_force`` is what the snapshot held in force, with its time;
    ``uplift_model_version`` the uplift scores' model version.

    ``control_share``: the share of the selection the caller withholds as control (a budget
    pays for the rest)."""

    def __init__(
        self,
        database: Database,
        segment: Segment,
        batch_size: int = BATCH_SIZE,
        after_batch: Callable[[int], None] | None = None,
        control_share: float = 0.0,
    ):
        segment.min_total()
        self.database = database
        self.segment = segment
        self.schema = segment.schema()
        self.batch_size = batch_size
        self.after_batch = after_batch
        self.control_share = control_share
        self.rows = 0
        self.duplicates_dropped = 0
        self.left_out = dict.fromkeys(
            (
                *(f"suppressed_{r}" for r in REASONS),
                "suppressed_contacts",
                "unreadable_phone",
                *(("no_uplift_score",) if segment.by_uplift else ()),
                *(("below_break_even",) if segment.select == "max_profit" else ()),
            ),
            0,
        )
        self.in_force: InForce | None = None
        self.uplift_model_version: str | None = None
        self._spelled: Counter = Counter()

    def _states(self, connection: sa.Connection) -> list[str] | None:
        """The stored spellings of the wanted states (state names are normalised in Python, so
        the filter is the list of raw values that normalise to one of them)."""
        if not self.segment.states:
            return None
        wanted = {normalize_state(s) for s in self.segment.states}
        stored = connection.execute(
            sa.text("SELECT DISTINCT state_name FROM contacts WHERE state_name IS NOT NULL")
        ).scalars()
        return [name for name in stored if normalize_state(name) in wanted]

    def _renamed(self, connection: sa.Connection) -> dict[str, str | None]:
        """The non-canonical numbers of ``contacts`` and their canonical form (None when
        unreadable), read down their partial index (migration 0019), not from every contact;
        ``self._spelled`` counts the contacts holding each canonical number in other
        spellings."""
        raw = connection.execute(
            sa.text(
                "SELECT phone_e164, count(*) FROM contacts "
                f"WHERE NOT ({canonical(self.database.dialect, 'phone_e164')}) "
                "GROUP BY phone_e164"
            )
        ).all()
        renamed = {text: normalized_or_none(text) for text, _ in raw}
        self._spelled = Counter()
        for text, contacts in raw:
            if renamed[text] is not None:
                self._spelled[renamed[text]] += contacts
        return renamed

    def _floor(self, connection: sa.Connection, rows: int, min_total: int) -> int | None:
        """PostgreSQL: the highest score at or above which the planner's statistics put at
        least ``rows`` scores (a binary search over ``EXPLAIN``'s estimates, no row read);
        None when only ``min_total`` reaches it, or when ``rows`` is more than half of the
        scores from ``min_total`` up (ranking them all by hash joins is then cheaper than
        looking each contact up)."""

        def estimate(floor: int) -> float:
            plan = connection.execute(
                sa.text(
                    "EXPLAIN (FORMAT JSON) SELECT 1 FROM lead_scores "
                    f"WHERE total_score >= {int(floor)}"
                )
            ).scalar_one()
            return plan[0]["Plan"]["Plan Rows"]

        low, high = min_total + 1, MAX_SCORE
        if low > high or estimate(low) < rows or 2 * rows > estimate(min_total):
            return None
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if estimate(middle) >= rows else (low, middle - 1)
        return low

    def _count_left_out(
        self, connection: sa.Connection, query: sa.TextClause, params: dict
    ) -> None:
        for reasons, contacts in connection.execute(query, params):
            if reasons == UNREADABLE:
                self.left_out["unreadable_phone"] += contacts
                continue
            self.left_out["suppressed_contacts"] += contacts
            for i, reason in enumerate(REASONS):
                if reasons & 2**i:
                    self.left_out[f"suppressed_{reason}"] += contacts

    def _uplift_model_version(self, connection: sa.Connection) -> str:
        """The uplift scores' model version; ``NoUpliftChampion`` without scores."""
        version = connection.execute(
            sa.text("SELECT model_version FROM uplift_scores LIMIT 1")
        ).scalar()
        if version is None:
            raise NoUpliftChampion(
                "no uplift champion: run uplift_scores (uplift_scores is "
                "empty; rank_by uplift needs it)"
            )
        return version

    def _batches(
        self,
        connection: sa.Connection,
        query: sa.TextClause,
        params: dict,
        shared: dict[str, int] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """The query's rows as record batches, counted. Its first columns are the file's, then
        ``phone_contacts`` and, with ``shared``, ``number_contacts``: the numbers held by
        more contacts than the query counted go into ``shared`` with its count."""
        result = connection.execute(
            query.execution_options(stream_results=True, yield_per=self.batch_size), params
        )
        width = len(self.schema)
        phone = self.schema.get_field_index("phone_e164")
        for rows in result.partitions(self.batch_size):
            columns = list(zip(*rows))
            counted = np.array(columns[width], dtype=np.int64)
            self.duplicates_dropped += int(counted.sum()) - len(rows)
            if shared is not None:
                holders = np.array(columns[width + 1], dtype=np.int64)
                if self._spelled:
                    holders += [self._spelled.get(number, 0) for number in columns[phone]]
                for i in np.flatnonzero(holders > counted):
                    shared[columns[phone][i]] = int(counted[i])
            self.rows += len(rows)
            batch = pa.RecordBatch.from_arrays(
                [
                    pa.array(values, type=column.type)
                    for values, column in zip(columns, self.schema)
                ],
                schema=self.schema,
            )
            if self.after_batch is not None:
                self.after_batch(self.rows)
            yield batch

    def _walk_down(
        self,
        connection: sa.Connection,
        queries: SegmentQueries,
        limit: int,
        renamed: dict[str, str | None],
    ) -> Iterator[pa.RecordBatch]:
        """A limited segment ranked by score, read down the scores in passes instead of
        ranking every contact (PostgreSQL): each pass reads only the contacts scored at least
        its floor, where the statistics put ``FLOOR_MARGIN`` times the rows still wanted
        (then four times more each pass), joined by index (``join_by_index``: the hash joins
        would read every contact) and without JIT (seconds of compiling for a query of
        seconds), and writes the numbers whose best score is below the previous pass's floor
        (a number's best contact is among those it read); the last pass has no floor and is
        planned as the planner likes. The numbers written that other contacts hold, possibly
        scored below the floor, are counted again in the whole segment for
        ``duplicates_dropped``."""
        min_total = queries.params["min_total"]
        ceiling, wanted = MAX_SCORE + 1, limit * FLOOR_MARGIN
        shared: dict[str, int] = {}
        while self.rows < limit and ceiling > min_total:
            floor = self._floor(connection, wanted, min_total)
            join_by_index(connection, floor is not None)
            jit = "off" if floor is not None else "DEFAULT"
            connection.execute(sa.text(f"SET LOCAL jit TO {jit}"))
            params = {
                **queries.params,
                "floor": min_total if floor is None else floor,
                "ceiling": ceiling,
                "limit": limit - self.rows,
            }
            yield from self._batches(connection, queries.floored_rows, params, shared)
            if floor is None:
                break
            ceiling, wanted = floor, wanted * 4
        if shared:
            spellings = [*shared, *(raw for raw, number in renamed.items() if number in shared)]
            holders = connection.execute(
                queries.numbers, {**queries.params, "spellings": spellings}
            ).scalar_one()
            self.duplicates_dropped += holders - sum(shared.values())

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        tables = (*SEGMENT_TABLES, "uplift_scores") if self.segment.by_uplift else (SEGMENT_TABLES)
        with self.database.snapshot(tables) as connection:
            self.in_force = read_in_force(connection, self.database)
            if self.segment.by_uplift:
                self.uplift_model_version = self._uplift_model_version(connection)
            states = self._states(connection)
            if states == []:
                return
            renamed = self._renamed(connection)
            queries = _segment_query(
                self.database, self.segment, states, self.in_force, renamed, self.control_share
            )
            params = queries.params
            self._count_left_out(connection, queries.left_out, params)
            if queries.uplift_left_out is not None:
                counts = connection.execute(queries.uplift_left_out, params).one()._asdict()
                self.left_out.update(
                    {k: int(v or 0) for k, v in counts.items() if k in self.left_out}
                )
            limit = self.segment.row_limit(self.control_share)
            if (
                limit is None
                or self.database.dialect != "postgresql"
                or self.segment.rank_by != "total_score"
            ):
                yield from self._batches(connection, queries.rows, params)
            else:
                yield from self._walk_down(connection, queries, limit, renamed)
            if self.segment.select == "max_profit" and not self.rows:
                raise NothingProfitable(
                    "select max_profit: no contact of the segment is worth a message (uplift "
                    f"× {self.segment.value_per_conversion} never exceeds "
                    f"{self.segment.cost_per_message}, or every such contact is suppressed): "
                    "nothing was written"
                )


def select_segment(
    database: Database, segment: Segment, batch_size: int = BATCH_SIZE
) -> pd.DataFrame:
    """The whole segment as a DataFrame (for small segments; exports stream instead)."""
    batches = list(SegmentReader(database, segment, batch_size))
    return pa.Table.from_batches(batches, schema=segment.schema()).to_pandas()


def export_path(
    output_path: str,
    folder: Path | None = None,
    *,
    field: str = "output_path",
    label: str = "export",
    env: str = EXPORT_DIR_ENV,
) -> Path:
    """``output_path`` inside the export folder (or ``folder``, named ``label`` in errors);
    ``UnsafeExportPath`` if it is absolute, has ``..``, or resolves outside the folder (a
    symlink)."""
    root = (folder or export_dir()).resolve()
    relative = Path(output_path)
    if (
        not output_path
        or relative.is_absolute()
        or ".." in relative.parts
        or (relative.name in ("", "."))
    ):
        raise UnsafeExportPath(
            f"{field} must be a file name inside the {label} folder {root} "
            f"(set {env} to move it), without '..': got {output_path!r}"
        )
    target = root / relative
    if target.is_symlink() or not target.resolve().is_relative_to(root):
        raise UnsafeExportPath(
            f"{field} {output_path!r} resolves outside the {label} folder {root} "
            "(through a symbolic link): refused"
        )
    return target


def _write(
    batches: Iterable[pa.RecordBatch], sink: pa.NativeFile, file_format: str, schema: pa.Schema
) -> int:
    """Write the batches; returns the rows written."""
    rows = 0
    with (
        pacsv.CSVWriter(sink, schema) if file_format == "csv" else pq.ParquetWriter(sink, schema)
    ) as writer:
        for batch in batches:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


def export_segment(
    database: Database,
    segment: Segment,
    output_path: str,
    file_format: str = "csv",
    *,
    overwrite: bool = False,
    folder: Path | None = None,
    batch_size: int = BATCH_SIZE,
    after_batch: Callable[[int], None] | None = None,
    select: Callable[[SegmentReader, Path], Iterable[pa.RecordBatch]] | None = None,
    record: Callable[[Path, str], AbstractContextManager] | None = None,
    control_share: float = 0.0,
) -> ExportReport:
    """Stream the segment to ``output_path`` (relative to the export folder) as ``csv`` or
    ``parquet``: written to a temporary file (mode 0600) in the same folder, synced, then
    renamed; an existing file is kept unless ``overwrite``. A number forgotten (ARCO) after
    the snapshot and present in the file refuses it (``ForgottenDuringExport``), checked just
    before the rename: a ``forget`` committing later lists the file instead.

    ``select(reader, folder)``: the batches to write (default all; ``folder`` is for its
    temporary files). ``record(target, sha256)``: a context manager the complete file is
    renamed within (a campaign's record, committed only if the rename succeeds).
    ``control_share``: the share of the selection ``select`` withholds (sizes a budget)."""
    if file_format not in FORMATS:
        raise ValueError(f"format must be csv or parquet, not {file_format!r}")
    target = export_path(output_path, folder)
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"{output_path!r} already exists in the export folder; set overwrite to replace it"
        )
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    reader = SegmentReader(database, segment, batch_size, after_batch, control_share)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".part", dir=target.parent
    )
    os.close(handle)
    try:
        with pa.OSFile(temporary, "wb") as sink:
            rows = _write(
                select(reader, target.parent) if select else reader,
                sink,
                file_format,
                reader.schema,
            )
        with open(temporary, "rb") as written:
            digest = hashlib.file_digest(written, "sha256").hexdigest()
            os.fsync(written.fileno())
        with record(target, digest) if record else nullcontext():
            forgotten = _forgotten_in(
                database, Path(temporary), file_format, reader.in_force.at - FORGET_MARGIN
            )
            if forgotten:
                raise ForgottenDuringExport(
                    f"{forgotten} person(s) of this segment were forgotten (ARCO) while the "
                    "export ran: the file was not kept; run the export again"
                )
            if overwrite:
                os.replace(temporary, target)
            else:
                os.link(temporary, target)
                os.unlink(temporary)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return ExportReport(
        file=output_path,
        path=target,
        rows=rows,
        sha256=digest,
        bytes=target.stat().st_size,
        duplicates_dropped=reader.duplicates_dropped,
        left_out=dict(reader.left_out),
        snapshot_at=reader.in_force.at,
        snapshot=reader.in_force.snapshot,
        uplift_model_version=reader.uplift_model_version,
    )
