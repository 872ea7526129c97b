"""What the API reads and writes, through ``Database``'s pooled SQLAlchemy engine.

One short query per request part (no pandas, no per-request connection set-up): the API answers
one contact or one page at a time. Phone numbers always come from ``contacts``.
"""

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from lead_scoring_assets.analytics.figures import TOP_TIERS
from lead_scoring_assets.analytics.proof import score_proof
from lead_scoring_assets.campaigns.results import campaign_results
from lead_scoring_assets.consent.in_force import (
    InForce,
    json_rows,
    normalized_or_none,
    number_reasons,
    own_rows,
    read_in_force,
    suppression_reasons,
)
from lead_scoring_assets.contacts.phones import PhoneRejected, mask_phone, normalize_phone
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.geography.states import normalize_state
from lead_scoring_assets.ml.conversion_features import decoded_reasons
from lead_scoring_assets.scoring.breakdown import BREAKDOWN_COLUMNS, read_breakdown
from lead_scoring_assets.scoring.config import DEFAULT_CONFIG, PLATFORMS, config_for

SCORE_FIELDS = (
    *(f"{p}_score" for p in PLATFORMS),
    "total_score",
    "quality_tier",
    "confidence_level",
    "platform_count",
    "business_account_count",
    "premium_account_count",
    "calculation_method",
    "calculation_version",
    "last_calculated_at",
)
CARD_PROFILE_FIELDS = ("state_name", "municipality", "lada", "operator")
ML_FIELDS = (
    "predicted_score",
    "predicted_tier",
    "confidence",
    "model_version",
    "method",
    "calculated_at",
)
HISTORY_LIMIT = 10
HISTORY_FIELDS = (
    "changed_at",
    "old_total_score",
    "new_total_score",
    "old_quality_tier",
    "new_quality_tier",
    "calculation_version",
)
TREND_WINDOW = timedelta(days=30)
ANALYTICS_HISTORY_LIMIT = 90
STATE_CACHE_SECONDS = 300
RESCORE_PRIORITY = 10
STALLED_AFTER = timedelta(minutes=5)
"""The queue counts as not processed when the next entry to claim has waited this long."""
NO_VALUE = -2
"""The sort key of a contact without a probability (or uplift): below every value, so it
comes after those with one."""
UNREADABLE_PHONE = "unreadable_phone"
"""The reason shown for a contact whose stored number no reading makes a Mexican number."""
TIER_RANGES = {
    name: (low, (DEFAULT_CONFIG.tiers[i - 1][1] - 1) if i else DEFAULT_CONFIG.total_cap)
    for i, (name, low) in enumerate(DEFAULT_CONFIG.tiers)
}
"""Each tier's score range: a tier filter is its range (a tier is a function of the total,
SCORING_SPEC §7, which the blocking check on ``lead_scores`` holds), so it walks the rank
index; a ``quality_tier`` predicate would lead the planner to the tier index and a sort."""


class DriverStatement:
    """A text statement with named result columns, run on the driver's own cursor: one row as
    a dict. SQLAlchemy's result set-up reads the cursor's description, which psycopg builds
    anew on every call (an object per column: 77 for a card); this reads the row by position,
    the names given once. Errors are SQLAlchemy's, parameters hidden as the engine hides them
    (a connection the server closed is discarded by the pool when it comes back)."""

    def __init__(self, statement: sa.TextualSelect, dialect: sa.Dialect):
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.positions = compiled.positiontup
        """The parameters' names in the order of a positional style (SQLite's ``?``)."""
        self.names = [column.name for column in statement.selected_columns]

    def first(self, connection: sa.Connection, parameters: dict) -> dict | None:
        cursor = connection.connection.cursor()
        try:
            cursor.execute(
                self.sql,
                [parameters[name] for name in self.positions] if self.positions else parameters,
            )
            row = cursor.fetchone()
        except connection.dialect.loaded_dbapi.Error as error:
            raise sa.exc.DBAPIError.instance(
                self.sql,
                parameters,
                error,
                connection.dialect.loaded_dbapi.Error,
                hide_parameters=connection.engine.hide_parameters,
                dialect=connection.dialect,
            ) from error
        finally:
            cursor.close()
        return None if row is None else dict(zip(self.names, row, strict=True))


_ID_BY_PHONE = sa.text("SELECT min(id) AS id FROM contacts WHERE phone_e164 = :phone").columns(
    sa.column("id")
)


class NotFound(LookupError):
    """The contact, or its score, is not there; the message says which."""


BadPhone = PhoneRejected
"""The API's name for a refused phone number: answered with 400 and the reason."""


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def _utc(value) -> datetime | None:
    """A timestamp as an aware UTC datetime (SQLite hands back naive UTC text or datetimes)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def do_not_contact(
    connection: sa.Connection, database: Database, in_force: InForce, phones: list[str]
) -> dict[str, list[str]]:
    """The reasons in force for each stored number of ``phones`` that may not be messaged
    (read by its normalised form; an unreadable number is ``unreadable_phone``)."""
    readable = {raw: normalized_or_none(raw) for raw in phones}
    found = suppression_reasons(connection, database, in_force, [p for p in readable.values() if p])
    return {
        raw: found[phone] if phone else [UNREADABLE_PHONE]
        for raw, phone in readable.items()
        if phone is None or phone in found
    }


def trend(history: list[dict], last_calculated_at: datetime | None) -> str:
    """``improving``, ``declining`` or ``steady``: the total now against the total before the
    changes of the last 30 days up to the latest calculation (a first score alone is steady)."""
    if not history or last_calculated_at is None:
        return "steady"
    since = last_calculated_at - TREND_WINDOW
    recent = [h for h in history if h["changed_at"] >= since]
    if not recent:
        return "steady"
    before = recent[-1]["old_total_score"]
    delta = history[0]["new_total_score"] - (
        recent[-1]["new_total_score"] if before is None else before
    )
    return "improving" if delta > 0 else "declining" if delta < 0 else "steady"


@dataclass
class Page:
    rows: list[dict]
    last_key: tuple[float, int] | None
    """(sort key, contact_id) of the last row when another page may follow."""
    total: int | None = None
    """How many contacts match the filters (counted for a first page only)."""


class ScoreReader:
    """The API's reads (score cards, pages, analytics) and its one write (the rescore queue)."""

    def __init__(self, database: Database):
        self.database = database
        self.engine = database.engine
        inspector = sa.inspect(self.engine)
        tables = set(inspector.get_table_names())
        self.has_conversion_scores = "conversion_scores" in tables
        self.has_uplift_scores = "uplift_scores" in tables
        self._card_joins = {
            alias: (
                table,
                [c["name"] for c in inspector.get_columns(table) if c["name"] != "contact_id"],
            )
            for alias, table in (("conv", "conversion_scores"), ("upl", "uplift_scores"))
            if table in tables
        }
        """The model-score tables read with the card's row, by alias: (table, its columns)."""
        self._card_query = DriverStatement(
            self._card_statement(database.dialect), self.engine.dialect
        )
        self._id_by_phone = DriverStatement(_ID_BY_PHONE, self.engine.dialect)
        self._states: dict[str, list[str]] = {}
        self._states_read_at = float("-inf")
        self._analytics: tuple[int, dict] | None = None

    def _card_statement(self, dialect: str) -> sa.TextualSelect:
        """SQL: a card's one statement, keyed by id (``:key``): the contact's row with its
        scores, last changes and what decides its suppression reasons. Every partitioned table
        is joined on ``:key`` itself rather than on ``c.id``: PostgreSQL plans it in 0.26 ms
        against 0.36 (at 10M contacts). Its columns are named: ``DriverStatement`` reads the
        row by position under these names."""
        selected = [
            ("c.id", "id"),
            *((f"s.{c}", c) for c in (*SCORE_FIELDS, *BREAKDOWN_COLUMNS)),
            ("c.phone_e164", "phone_e164"),
            *((f"c.{c}", c) for c in CARD_PROFILE_FIELDS),
            ("s.contact_id", "scored"),
            *((f"m.{c}", f"ml_{c}") for c in ML_FIELDS),
            *((f"{alias}.contact_id", f"{alias}__found") for alias in self._card_joins),
            *(
                (f"{alias}.{c}", f"{alias}__{c}")
                for alias, (_, names) in self._card_joins.items()
                for c in names
            ),
            (_history(dialect), "history"),
        ]
        columns = ", ".join(f"{expression} AS {name}" for expression, name in selected)
        joins = "".join(
            f" LEFT JOIN {table} {alias} ON {alias}.contact_id = :key"
            for alias, (table, _) in self._card_joins.items()
        )
        names = [name for _, name in selected] + ["own_suppressions", "own_replies"]
        return sa.text(
            f"SELECT {columns}, {own_rows(dialect, 'c.phone_e164')} FROM contacts c "
            "LEFT JOIN lead_scores s ON s.contact_id = :key "
            f"LEFT JOIN ml_lead_scores m ON m.contact_id = :key{joins} "
            "WHERE c.id = :key ORDER BY c.id LIMIT 1"
        ).columns(*(sa.column(name) for name in names))

    def score_card_by_phone(self, text: str) -> dict:
        """The score card of the contact with this phone (the lowest id if several share it);
        ``BadPhone`` when the text is no Mexican phone number. The id first, then the card by
        id: keyed by phone, the card's statement is planned over every partition of its five
        partitioned tables on each call (9 ms at 10M contacts against 0.4 ms by id)."""
        unknown = "no contact has this phone number"
        with self.engine.connect() as connection:
            phone = normalize_phone(text)
            contact_id = self._id_by_phone.first(connection, {"phone": phone})["id"]  # min(): a row
            if contact_id is None:
                raise NotFound(unknown)
            return self._score_card(connection, contact_id, unknown)

    def score_card(self, contact_id: int) -> dict:
        """The stored score with the contact's profile, breakdown, ML (and conversion) scores,
        last changes and trend. A score of another ``calculation_version`` is marked as such
        (its breakdown null when that version's configuration is not known)."""
        with self.engine.connect() as connection:
            return self._score_card(connection, contact_id, "no contact with this id")

    def _score_card(self, connection: sa.Connection, key: int, unknown: str) -> dict:
        row = self._card_query.first(
            connection,
            {
                "key": key,
                "limit": HISTORY_LIMIT,
                "in_force_at": self.database.bind_timestamp(datetime.now(UTC)),
            },
        )
        if row is None:
            raise NotFound(unknown)
        contact_id = int(row["id"])
        if row["scored"] is None:
            raise NotFound("this contact exists but has not been scored yet")
        phone = row["phone_e164"]
        if phone is not None and normalized_or_none(phone) == phone:
            reasons = number_reasons(
                phone, _json(row["own_suppressions"]) or [], _json(row["own_replies"]) or []
            )
        else:  # stored in another form, or unreadable: read as the list reads it
            reasons = do_not_contact(
                connection, self.database, read_in_force(connection, self.database), [phone]
            ).get(phone, [])
        changes = [(_utc(h[1]), h[0], h[1:]) for h in _json(row["history"]) or []]
        history = [
            {**dict(zip(HISTORY_FIELDS, values, strict=True)), "changed_at": changed_at}
            for changed_at, _, values in sorted(changes, reverse=True)
        ]
        conversion, uplift = (
            {c: row[f"{alias}__{c}"] for c in self._card_joins[alias][1]}
            if alias in self._card_joins and row[f"{alias}__found"] is not None
            else None
            for alias in ("conv", "upl")
        )
        ml = None
        if row["ml_method"] is not None:
            ml = {c: row[f"ml_{c}"] for c in ML_FIELDS}
            ml["calculated_at"] = _utc(ml["calculated_at"])
        card = {c: row[c] for c in SCORE_FIELDS}
        card["last_calculated_at"] = _utc(row["last_calculated_at"])
        card["confidence_level"] = float(row["confidence_level"])
        stored = read_breakdown({**row, "contact_id": contact_id})
        config = config_for(stored.calculation_version) or DEFAULT_CONFIG
        card.update(
            contact_id=contact_id,
            contact_id_str=str(contact_id),
            phone=mask_phone(row["phone_e164"]),
            do_not_contact=bool(reasons),
            suppression_reasons=reasons,
            profile={
                **{c: row[c] for c in CARD_PROFILE_FIELDS},
                "state": normalize_state(row["state_name"]),
            },
            current_calculation_version=stored.current_version,
            is_current_version=stored.is_current,
            version_note=stored.note,
            display_weights=dict(config.display_weights),
            score_breakdown=stored.breakdown,
            ml_score=ml,
            conversion_score=None if conversion is None else _conversion(conversion, row),
            uplift_score=None if uplift is None else _conversion(uplift, row),
            history=history,
            trend=trend(history, card["last_calculated_at"]),
        )
        return card

    def _state_spellings(self, state: str) -> list[str]:
        """The raw ``contacts.state_name`` values that normalise to ``state`` (the distinct
        spellings are read at most every five minutes)."""
        if time.monotonic() - self._states_read_at > STATE_CACHE_SECONDS:
            with self.engine.connect() as connection:
                names = (
                    connection.execute(
                        sa.text(
                            "SELECT DISTINCT state_name FROM contacts WHERE state_name IS NOT NULL"
                        )
                    )
                    .scalars()
                    .all()
                )
            spellings: dict[str, list[str]] = {}
            for name in names:
                spellings.setdefault(normalize_state(name) or "", []).append(name)
            self._states, self._states_read_at = spellings, time.monotonic()
        return self._states.get(normalize_state(state) or "", [])

    def _filters(
        self, tier: str | None, state: str | None, min_score: int | None
    ) -> tuple[list[str], dict] | None:
        """The list's filters as SQL terms on ``lead_scores s`` joined to ``contacts c``, with
        their parameters; None when no contact can match (a state nobody has)."""
        low, high = TIER_RANGES[tier] if tier else (0, DEFAULT_CONFIG.total_cap)
        if min_score is not None:
            low = max(low, min_score)
        where, params = ["s.total_score BETWEEN :low AND :high"], {"low": low, "high": high}
        if state:
            spellings = self._state_spellings(state)
            if not spellings:
                return None
            where.append("c.state_name IN :states")
            params["states"] = spellings
        return where, params

    def _only_contactable(self, in_force: InForce, where: list[str], params: dict) -> None:
        """Adds the ``contactable`` filter to ``_filters``' terms: the page's and the total's."""
        where.append(InForce.contactable(self.database.dialect, "c.phone_e164"))
        params.update(in_force.params(self.database))

    @staticmethod
    def _count(connection: sa.Connection, where: list[str], params: dict) -> int:
        count = sa.text(
            "SELECT count(*) FROM lead_scores s JOIN contacts c ON c.id = s.contact_id "
            f"WHERE {' AND '.join(where)}"
        )
        if "states" in params:
            count = count.bindparams(sa.bindparam("states", expanding=True))
        return int(connection.execute(count, params).scalar())

    def total(
        self, tier: str | None, state: str | None, min_score: int | None, contactable: bool
    ) -> int:
        """How many scored contacts match the list's filters: a first page's ``total``, on its
        own (it reads every matching contact: seconds at 10M, where a page takes
        milliseconds)."""
        filters = self._filters(tier, state, min_score)
        if filters is None:
            return 0
        where, params = filters
        with self.engine.connect() as connection:
            if contactable:
                self._only_contactable(read_in_force(connection, self.database), where, params)
            return self._count(connection, where, params)

    def page(
        self,
        tier: str | None,
        state: str | None,
        min_score: int | None,
        after: tuple[float, int] | None,
        limit: int,
        contactable: bool = False,
        sort: str = "score",
        count: bool = True,
    ) -> Page:
        """Scored contacts best first by ``sort`` (``score``, ``conversion`` probability or
        ``uplift``), then contact id, both descending, ``limit`` after the key ``after``: a
        keyset walk, never OFFSET (by score down the ``(total_score, contact_id)`` index). Each
        is marked ``do_not_contact`` with its suppression reasons; ``contactable`` leaves those
        out (canonical numbers in SQL, the few stored in another form after reading them, so
        such a page may hold fewer than ``limit``). A first page (``after`` None) counts the
        contacts matching the filters in SQL, unless ``count`` is false."""
        filters = self._filters(tier, state, min_score)
        if filters is None:
            return Page([], None, 0 if after is None and count else None)
        where, params = filters
        params["limit"] = limit + 1
        joins = ["JOIN contacts c ON c.id = s.contact_id"]
        probability = uplift = "NULL"
        if self.has_conversion_scores:
            joins.append("LEFT JOIN conversion_scores cs ON cs.contact_id = s.contact_id")
            probability = "cs.conversion_probability"
        if self.has_uplift_scores:
            joins.append("LEFT JOIN uplift_scores u ON u.contact_id = s.contact_id")
            uplift = "u.uplift"
        value = {"conversion": probability, "uplift": uplift}.get(sort)
        columns = (
            "s.contact_id, c.phone_e164, c.state_name, s.total_score, s.quality_tier, "
            "s.confidence_level, s.platform_count, s.last_calculated_at, "
            f"{probability} AS conversion_probability, {uplift} AS uplift"
        )

        def select(extra: list[str], key: str, order: str) -> sa.TextClause:
            sql = sa.text(
                f"SELECT {columns}, {key} AS sort_key FROM lead_scores s {' '.join(joins)} "
                f"WHERE {' AND '.join(where + extra)} ORDER BY {order} LIMIT :limit"
            )
            return sql.bindparams(sa.bindparam("states", expanding=True)) if state else sql

        with self.engine.connect() as connection:
            in_force = read_in_force(connection, self.database)
            if contactable:
                self._only_contactable(in_force, where, params)
            total = self._count(connection, where, params) if after is None and count else None
            if value is None:
                # by score, down the (total_score, contact_id) index
                extra = ["(s.total_score, s.contact_id) < (:after_key, :after_id)"]
                order = "s.total_score DESC, s.contact_id DESC"
                statement = select(extra if after else [], "s.total_score", order)
                rows = connection.execute(statement, {**params, **_after(after)}).mappings().all()
            elif value == "NULL":
                rows = self._without_value(connection, select, params, after)
            else:
                # those with a value down its (value, contact_id) index, then those without
                # (NO_VALUE); a double: PostgreSQL sends a REAL as rounded text, which would
                # not find its row again
                rows, scored_id = [], f"{value.split('.')[0]}.contact_id"
                if after is None or after[0] > NO_VALUE:
                    extra = [f"{value} IS NOT NULL"]
                    if after:
                        extra.append(f"({value}, {scored_id}) < (:after_key, :after_id)")
                    statement = select(
                        extra,
                        f"CAST({value} AS DOUBLE PRECISION)",
                        f"{value} DESC, {scored_id} DESC",
                    )
                    rows = connection.execute(statement, {**params, **_after(after)})
                    rows = rows.mappings().all()
                    after = None
                if len(rows) <= limit:
                    rows += self._without_value(
                        connection,
                        select,
                        {**params, "limit": limit + 1 - len(rows)},
                        after,
                        f"{value} IS NULL",
                    )
            more, rows = len(rows) > limit, rows[:limit]
            reasons = do_not_contact(
                connection, self.database, in_force, [r["phone_e164"] for r in rows]
            )
        last = (_number(rows[-1]["sort_key"]), int(rows[-1]["contact_id"])) if more else None
        if contactable:
            rows = [r for r in rows if r["phone_e164"] not in reasons]
        items = [
            {
                "contact_id": int(r["contact_id"]),
                "contact_id_str": str(r["contact_id"]),
                "phone": mask_phone(r["phone_e164"]),
                "do_not_contact": r["phone_e164"] in reasons,
                "suppression_reasons": reasons.get(r["phone_e164"], []),
                "state_name": r["state_name"],
                "state": normalize_state(r["state_name"]),
                "total_score": int(r["total_score"]),
                "quality_tier": r["quality_tier"],
                "confidence_level": float(r["confidence_level"]),
                "platform_count": int(r["platform_count"]),
                "conversion_probability": _number(r["conversion_probability"]),
                "uplift": _number(r["uplift"]),
                "last_calculated_at": _utc(r["last_calculated_at"]),
            }
            for r in rows
        ]
        return Page(items, last, total)

    @staticmethod
    def _without_value(
        connection, select, params: dict, after: tuple[float, int] | None, *extra: str
    ) -> list:
        """The contacts without the sorted value (key ``NO_VALUE``), by contact id down the
        primary key, after ``after``'s contact id."""
        if after:
            extra = (*extra, "s.contact_id < :after_id")
        statement = select(list(extra), str(NO_VALUE), "s.contact_id DESC")
        return list(connection.execute(statement, {**params, **_after(after)}).mappings())

    def analytics(self) -> dict | None:
        """The latest analytics run's figures and the history of the headline numbers, read
        from ``lead_scoring_analytics_history`` only (kept until a newer run is appended);
        None before the first run."""
        with self.engine.connect() as connection:
            newest = connection.execute(
                sa.text("SELECT max(id) FROM lead_scoring_analytics_history")
            ).scalar()
            if newest is None:
                return None
            if self._analytics is not None and self._analytics[0] == newest:
                return self._analytics[1]
            latest = (
                connection.execute(
                    sa.text(
                        "SELECT run_id, computed_at, contacts, premium_leads, average_score, "
                        "validated_contacts, multi_platform_contacts, tier_distribution, "
                        "score_distribution, platform_success, by_state "
                        "FROM lead_scoring_analytics_history WHERE id = :id"
                    ),
                    {"id": newest},
                )
                .mappings()
                .one()
            )
            history = (
                connection.execute(
                    sa.text(
                        "SELECT computed_at, contacts, premium_leads, average_score, "
                        "validated_contacts, multi_platform_contacts, tier_distribution "
                        "FROM lead_scoring_analytics_history ORDER BY id DESC LIMIT :limit"
                    ),
                    {"limit": ANALYTICS_HISTORY_LIMIT},
                )
                .mappings()
                .all()
            )
        figures = {
            "latest": _with_top_leads(
                {
                    **latest,
                    "computed_at": _utc(latest["computed_at"]),
                    "average_score": float(latest["average_score"]),
                    **{
                        k: _json(latest[k])
                        for k in (
                            "tier_distribution",
                            "score_distribution",
                            "platform_success",
                            "by_state",
                        )
                    },
                }
            ),
            "history": [
                _with_top_leads(
                    {
                        **h,
                        "computed_at": _utc(h["computed_at"]),
                        "average_score": float(h["average_score"]),
                        "tier_distribution": _json(h["tier_distribution"]),
                    }
                )
                for h in reversed(history)
            ],
        }
        self._analytics = (newest, figures)
        return figures

    def campaigns(
        self, campaign_id: int | None, cost_per_message: float, value_per_conversion: float
    ) -> list[dict]:
        """``campaigns/results.py``'s results of every campaign with outcome rows (or of
        ``campaign_id``), computed on request; the costs are the defaults of campaigns
        without their own."""
        return [
            _with_id_str(r.as_dict())
            for r in campaign_results(
                self.database, campaign_id, cost_per_message, value_per_conversion
            )
        ]

    def proof(self) -> list[dict]:
        """``analytics/proof.py``'s conversion rates per tier and decile of every campaign
        with outcome rows, computed on request."""
        return [
            {
                **_with_id_str(c),
                "against_control": c["against_control"] and _with_id_str(c["against_control"]),
            }
            for c in score_proof(self.database)
        ]

    def enqueue(self, contact_id: int) -> dict:
        """Queue the contact at top priority, as the triggers do (one row per contact; a queued
        contact gets priority 10, ``updated_at`` bumped and ``version`` incremented, so a run
        in flight leaves it queued for the next). An entry waiting for a row due later (no run
        holds it) is claimable at once; a run's lease stays. One statement: nothing for an
        unknown id."""
        now = self.database.bind_timestamp(datetime.now(UTC))
        with self.engine.connect() as connection:
            entry = (
                connection.execute(
                    sa.text(
                        "INSERT INTO scoring_queue (contact_id, priority, created_at, updated_at) "
                        "SELECT id, :priority, :now, :now FROM contacts WHERE id = :id "
                        "ON CONFLICT (contact_id) DO UPDATE SET priority = :priority, "
                        "updated_at = :now, version = scoring_queue.version + 1, "
                        "leased_until = CASE WHEN scoring_queue.leased_by IS NULL THEN NULL "
                        "ELSE scoring_queue.leased_until END "
                        "RETURNING contact_id, priority, version, created_at, updated_at"
                    ),
                    {"id": contact_id, "priority": RESCORE_PRIORITY, "now": now},
                )
                .mappings()
                .first()
            )
        if entry is None:
            raise NotFound("no contact with this id")
        return {
            **entry,
            "contact_id_str": str(entry["contact_id"]),
            "created_at": _utc(entry["created_at"]),
            "updated_at": _utc(entry["updated_at"]),
        }

    def rescore_status(self, contact_id: int) -> dict:
        """Whether the contact waits in the queue (and since when), and whether the queue is
        being processed: ``stalled`` when the next entry to claim (the head of the claim
        order, read from its index) has waited longer than ``STALLED_AFTER``."""
        with self.engine.connect() as connection:
            if (
                connection.execute(
                    sa.text("SELECT 1 FROM contacts WHERE id = :id"), {"id": contact_id}
                ).first()
                is None
            ):
                raise NotFound("no contact with this id")
            entry = (
                connection.execute(
                    sa.text(
                        "SELECT priority, created_at, updated_at FROM scoring_queue "
                        "WHERE contact_id = :id"
                    ),
                    {"id": contact_id},
                )
                .mappings()
                .first()
            )
            head = connection.execute(
                sa.text(
                    "SELECT updated_at FROM scoring_queue WHERE leased_until IS NULL "
                    "ORDER BY priority DESC, updated_at, contact_id LIMIT 1"
                )
            ).scalar()
        waiting_since = _utc(head)
        return {
            "contact_id": contact_id,
            "contact_id_str": str(contact_id),
            "queued": entry is not None,
            "priority": entry["priority"] if entry else None,
            "queued_at": _utc(entry["updated_at"]) if entry else None,
            "next_entry_waiting_since": waiting_since,
            "stalled": waiting_since is not None
            and datetime.now(UTC) - waiting_since > STALLED_AFTER,
        }


def _history(dialect: str) -> str:
    """SQL: the card's last changes as a JSON list of [id, *``HISTORY_FIELDS``] lists, in no
    order (the id orders changes made at the same time)."""
    rows = json_rows(dialect, ", ".join(f"h.{c}" for c in ("id", *HISTORY_FIELDS)))
    return (
        f"(SELECT {rows} FROM (SELECT id, {', '.join(HISTORY_FIELDS)} FROM lead_score_history "
        "WHERE contact_id = :key ORDER BY changed_at DESC, id DESC LIMIT :limit) h)"
    )


def _after(after: tuple[float, int] | None) -> dict:
    """The keyset cursor's bind parameters (none on a first page)."""
    return {"after_key": after[0], "after_id": after[1]} if after else {}


def _with_id_str(campaign: dict) -> dict:
    """``campaign`` with ``campaign_id_str``: the id as a decimal string, which the dashboard
    reads (a JSON number above 2^53 is inexact in JavaScript), as ``contact_id_str``."""
    return {**campaign, "campaign_id_str": str(campaign["campaign_id"])}


def _number(value) -> float | int | None:
    """A sort key or score as JSON can carry it: an int stays an int, a REAL a float."""
    if value is None or isinstance(value, int):
        return value
    return float(value)


def _with_top_leads(run: dict) -> dict:
    """A run's figures with ``top_leads``, its PREMIUM and HIGH contacts (the state table's
    column summed: both come from one query, ``analytics/figures.py``)."""
    return {**run, "top_leads": sum(run["tier_distribution"].get(t, 0) for t in TOP_TIERS)}


def _conversion(row, facts) -> dict:
    """A ``conversion_scores`` row for the card: its reason codes decoded and worded from the
    contact's ``facts`` (its score row and profile), when it has them."""
    values = {
        k: v for k, v in row.items() if k != "contact_id" and not k.startswith(("up_", "down_"))
    }
    if "calculated_at" in values:
        values["calculated_at"] = _utc(values["calculated_at"])
    if "up_feature_1" in row:
        values["reasons"] = decoded_reasons(dict(row), facts)
    return values
