"""Who may not be messaged, as of one snapshot of the database.

A number is suppressed while a ``suppressions`` row of it is in force (``expires_at`` NULL or
later than the snapshot's time), and by the SMS replies not yet processed
(``processed_at IS NULL``): a number whose latest such keyword reply opts out is suppressed
(reason ``opt_out``) even before the replies asset has run, and one whose latest is an opt-in
("ALTA") lifts an ``opt_out`` row recorded before it (never another reason). Read inside
``Database.snapshot``, so the whole list leaving the product sees one state.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa

from lead_scoring_assets.consent.keywords import OPT_IN, OPT_OUT, classify_reply
from lead_scoring_assets.consent.suppressions import as_utc
from lead_scoring_assets.contacts.phones import PhoneRejected, normalize_phone
from lead_scoring_assets.db.database import Database

"""The reasons of ``suppressions.reason`` (migration 0015)."""
CONSENT_TABLES = ("suppressions", "sms_replies")
"""What deciding who is suppressed reads: a snapshot that lists contacts locks them too."""
CANONICAL = {
    "postgresql": r"{column} ~ '^\+52[0-9]{{10}}$'",
    "sqlite": "{column} GLOB '+52" + "[0-9]" * 10 + "'",
}
"""A number already in the form ``normalize_phone`` writes (``+52`` and 10 digits)."""
_NUMBER_MAPS = {
    "postgresql": "SELECT e.value->>0 AS raw, e.value->>1 AS phone "
    "FROM json_array_elements(CAST(:{name} AS json)) AS e(value)",
    "sqlite": "SELECT json_extract(value, '$[0]') AS raw, json_extract(value, '$[1]') AS phone "
    "FROM json_each(:{name})",
}
_JSON_TEXTS = {
    "postgresql": "SELECT value FROM json_array_elements_text(CAST(:{name} AS json))",
    "sqlite": "SELECT value FROM json_each(:{name})",
}
_JSON_ROWS = {
    "postgresql": "json_agg(json_build_array({columns}))",
    "sqlite": "json_group_array(json_array({columns}))",
}
_MAY_READ_AS = {
    "postgresql": r"right(regexp_replace({reply}, '[^0-9]', '', 'g'), 10) = right({phone}, 10)",
    "sqlite": "({reply} = {phone} OR NOT {canonical})",
}
"""SQL: whether the reply's number as written (``reply``) may read as the canonical number
``phone``: every reading is ``+52`` and the written number's last 10 digits. SQLite has no
``regexp_replace``: there, those written as it and every one in another form."""
_NO_TIME = datetime.min.replace(tzinfo=UTC)


def canonical(dialect: str, column: str) -> str:
    """SQL: whether ``column`` holds a canonical number."""
    return CANONICAL[dialect].format(column=column)


def json_texts(dialect: str, name: str) -> str:
    """SQL: the strings of the JSON list bound to ``:name``, as a one-column (``value``) query
    (one parameter whatever the list's length)."""
    return _JSON_TEXTS[dialect].format(name=name)


def json_rows(dialect: str, columns: str) -> str:
    """SQL: an aggregate, the rows' ``columns`` (comma-separated) as a JSON list of lists (NULL
    for no row on PostgreSQL, ``[]`` on SQLite)."""
    return _JSON_ROWS[dialect].format(columns=columns)


def number_map(dialect: str, name: str) -> str:
    """SQL: the ``[raw, phone]`` pairs of the JSON list bound to ``:name`` as a query of
    ``(raw, phone)``."""
    return _NUMBER_MAPS[dialect].format(name=name)


@dataclass(frozen=True)
class InForce:
    """The snapshot's time (and PostgreSQL snapshot, ``pg_current_snapshot()``), the numbers
    opted out by unprocessed replies, and those whose ``opt_out`` row an unprocessed opt-in
    lifts (a reply from an unreadable number applies to none)."""

    at: datetime
    snapshot: str | None
    reply_opt_outs: frozenset[str] = field(default_factory=frozenset)
    lifted: frozenset[str] = field(default_factory=frozenset)

    def params(self, database: Database) -> dict:
        """The bound values of the SQL below."""
        return {
            "in_force_at": database.bind_timestamp(self.at),
            "reply_opt_outs": json.dumps(sorted(self.reply_opt_outs)),
            "lifted_opt_outs": json.dumps(sorted(self.lifted)),
        }

    @staticmethod
    def applies(dialect: str, row: str) -> str:
        """SQL: whether the ``suppressions`` row aliased ``row`` is in force."""
        return (
            f"({row}.expires_at IS NULL OR {row}.expires_at > :in_force_at) "
            f"AND NOT ({row}.reason = 'opt_out' AND {row}.phone_e164 IN "
            f"({json_texts(dialect, 'lifted_opt_outs')}))"
        )

    @staticmethod
    def replied_out(dialect: str, phone: str) -> str:
        """SQL: whether the number ``phone`` (an expression) opted out by an unprocessed reply."""
        return f"{phone} IN ({json_texts(dialect, 'reply_opt_outs')})"

    @staticmethod
    def contactable(dialect: str, phone: str) -> str:
        """SQL: whether the number ``phone`` (an expression) is not suppressed: an anti join
        on the primary key of ``suppressions`` and the replies' short list."""
        return (
            f"NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.phone_e164 = {phone} "
            f"AND {InForce.applies(dialect, 'x')}) "
            f"AND NOT {InForce.replied_out(dialect, phone)}"
        )


def read_in_force(connection: sa.Connection, database: Database) -> InForce:
    """What is in force in the connection's snapshot; call it first in ``Database.snapshot``
    (its first query takes the snapshot, and its time is the snapshot's)."""
    if database.dialect == "postgresql":
        at, snapshot = connection.execute(
            sa.text("SELECT statement_timestamp(), CAST(pg_current_snapshot() AS text)")
        ).one()
    else:
        at, snapshot = datetime.now(UTC), None
    latest = latest_replies(
        (r.id, normalized_or_none(r.phone_e164), r.body, r.received_at)
        for r in connection.execute(
            sa.text(
                "SELECT id, phone_e164, body, received_at FROM sms_replies "
                "WHERE processed_at IS NULL"
            )
        )
    )
    opt_ins = {phone: at_ for phone, (kind, at_) in latest.items() if kind == OPT_IN}
    lifted = set()
    if opt_ins:
        rows = connection.execute(
            sa.text(
                "SELECT phone_e164, recorded_at FROM suppressions WHERE reason = 'opt_out' "
                f"AND phone_e164 IN ({json_texts(database.dialect, 'phones')})"
            ),
            {"phones": json.dumps(sorted(opt_ins))},
        )
        lifted = {phone for phone, recorded in rows if as_utc(recorded) < opt_ins[phone]}
    return InForce(
        at=as_utc(at),
        snapshot=snapshot,
        reply_opt_outs=frozenset(p for p, (k, _) in latest.items() if k == OPT_OUT),
        lifted=frozenset(lifted),
    )


def latest_replies(replies: Iterable[tuple]) -> dict[str, tuple[str, datetime | None]]:
    """Each number's latest keyword reply, ``(kind, received_at)``, of ``replies`` (id,
    canonical number or None, body, received_at): oldest first, an opt-out of unknown time last
    (no opt-in can be shown to follow it); a reply from an unreadable number, of no keyword,
    or an opt-in of unknown time counts for none."""
    read = [
        (as_utc(received_at), reply_id, phone, classify_reply(body))
        for reply_id, phone, body, received_at in replies
    ]
    latest = {}
    for received_at, _, phone, kind in sorted(
        read, key=lambda r: (r[0] is None, r[0] or _NO_TIME, r[1])
    ):
        if phone is None or kind is None or (kind == OPT_IN and received_at is None):
            continue
        latest[phone] = (kind, received_at)
    return latest


def own_rows(dialect: str, phone: str) -> str:
    """SQL: two columns of JSON lists, what decides whether the canonical number ``phone`` (an
    expression) is suppressed at ``:in_force_at``: ``own_suppressions``, its rows [reason,
    recorded_at, in force], and ``own_replies``, the unprocessed replies whose number may read
    as it [id, number as written, body, received_at]. ``number_reasons`` reads them."""
    rows = json_rows(
        dialect, "x.reason, x.recorded_at, x.expires_at IS NULL OR x.expires_at > :in_force_at"
    )
    replies = json_rows(dialect, "r.id, r.phone_e164, r.body, r.received_at")
    may_read_as = _MAY_READ_AS[dialect].format(
        reply="r.phone_e164", phone=phone, canonical=canonical(dialect, "r.phone_e164")
    )
    return (
        f"(SELECT {rows} FROM suppressions x WHERE x.phone_e164 = {phone}) AS own_suppressions, "
        f"(SELECT {replies} FROM sms_replies r WHERE r.processed_at IS NULL AND {may_read_as}) "
        "AS own_replies"
    )


def number_reasons(phone: str, suppressions: list, replies: list) -> list[str]:
    """The reasons in force for the canonical number ``phone``, from ``own_rows``' lists: what
    ``suppression_reasons`` answers after ``read_in_force``, for this number alone."""
    kind, received_at = latest_replies(
        (reply_id, normalized_or_none(number), body, at) for reply_id, number, body, at in replies
    ).get(phone, (None, None))
    lifted = kind == OPT_IN and any(
        reason == OPT_OUT and as_utc(recorded_at) < received_at
        for reason, recorded_at, _ in suppressions
    )
    reasons = {
        reason
        for reason, _, in_force in suppressions
        if in_force and not (lifted and reason == OPT_OUT)
    }
    if kind == OPT_OUT:
        reasons.add(OPT_OUT)
    return sorted(reasons)


def suppression_reasons(
    connection: sa.Connection, database: Database, in_force: InForce, phones: list[str]
) -> dict[str, list[str]]:
    """The reasons in force for each of ``phones`` (canonical numbers) that is suppressed."""
    if not phones:
        return {}
    dialect = database.dialect
    wanted = f"({json_texts(dialect, 'phones')})"
    rows = connection.execute(
        sa.text(
            f"SELECT x.phone_e164, x.reason FROM suppressions x WHERE x.phone_e164 IN {wanted} "
            f"AND {InForce.applies(dialect, 'x')} UNION SELECT value, 'opt_out' FROM {wanted} w "
            f"WHERE {InForce.replied_out(dialect, 'value')} ORDER BY 1, 2"
        ),
        {**in_force.params(database), "phones": json.dumps(sorted(set(phones)))},
    )
    found: dict[str, list[str]] = {}
    for phone, reason in rows:
        found.setdefault(phone, []).append(reason)
    return found


def normalized_or_none(text: str | None) -> str | None:
    """The canonical number, or None for text that is no readable Mexican number."""
    try:
        return normalize_phone(text or "")
    except PhoneRejected:
        return None
