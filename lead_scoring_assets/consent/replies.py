"""SMS replies turned into (or out of) ``opt_out`` suppressions.

Unprocessed replies (``processed_at IS NULL``) are applied in ``received_at``, ``id`` order, a
batch per transaction, and marked processed in the same transaction:

- the number goes through ``normalize_phone``; a refused number marks the reply processed and
  counts it as refused with the reason (the row stays in ``sms_replies``);
- an opt-out keyword suppresses the number: ``source = 'reply <id>'``, ``recorded_at`` = the
  reply's ``received_at`` (the processing time if the platform left it NULL), never expiring;
  a number already opted out for good keeps its row (the earliest evidence);
- an opt-in keyword lifts an ``opt_out`` row recorded before the reply was received, and
  nothing else (no other reason, no later opt-out);
- anything else is ignored.

Ordering rule: a reply only acts on the rows as they are when it is applied. An older opt-out
that reaches ``sms_replies`` after a newer opt-in was applied still suppresses the number (its
row is recorded at its own, earlier, ``received_at``); the person replies ALTA again to lift
it. The product never messages a number on an ordering it cannot verify.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa

from lead_scoring_assets.consent.keywords import OPT_IN, OPT_OUT, classify_reply
from lead_scoring_assets.consent.suppressions import as_utc
from lead_scoring_assets.contacts.phones import PhoneRejected, normalize_phone
from lead_scoring_assets.db.database import Database

BATCH_SIZE = 10_000
REPLIES_LOCK = "lead_scoring.sms_replies"
NO_TIME_OPT_IN = "opt-in without received_at: cannot tell whether it follows the opt-out"


@dataclass(frozen=True)
class Reply:
    """A reply with its number normalised (``phone``), or the reason it was refused."""

    id: int
    phone: str | None
    refused: str | None
    body: str | None
    received_at: datetime | None


def read_reply(
    reply_id: int, text: str | None, body: str | None, received_at: datetime | None
) -> Reply:
    try:
        return Reply(reply_id, normalize_phone(text), None, body, received_at)
    except PhoneRejected as error:
        return Reply(reply_id, None, str(error), body, received_at)


@dataclass(frozen=True)
class OptOut:
    source: str
    recorded_at: datetime
    expires_at: datetime | None


@dataclass
class RepliesReport:
    read: int = 0
    opt_outs_added: int = 0
    opt_outs_already_in_force: int = 0
    opt_ins_lifted: int = 0
    opt_ins_with_nothing_to_lift: int = 0
    ignored: int = 0
    refused: Counter = field(default_factory=Counter)

    def metadata(self) -> dict:
        return {
            "replies_read": self.read,
            "opt_outs_added": self.opt_outs_added,
            "opt_outs_already_in_force": self.opt_outs_already_in_force,
            "opt_ins_lifted": self.opt_ins_lifted,
            "opt_ins_with_nothing_to_lift": self.opt_ins_with_nothing_to_lift,
            "ignored": self.ignored,
            "refused": sum(self.refused.values()),
            "refused_by_reason": dict(self.refused),
        }


def plan(
    replies: list[Reply], opt_outs: dict[str, OptOut], now: datetime, report: RepliesReport
) -> dict[str, OptOut | None]:
    """The ``opt_out`` row of each number after the replies, in their order, on top of the
    rows ``opt_outs`` (number → row); counts go to the report."""
    state: dict[str, OptOut | None] = dict(opt_outs)
    for reply in replies:
        report.read += 1
        if reply.phone is None:
            report.refused[reply.refused] += 1
            continue
        phone = reply.phone
        kind = classify_reply(reply.body)
        current = state.get(phone)
        if kind == OPT_OUT:
            if current is not None and current.expires_at is None:
                report.opt_outs_already_in_force += 1
                continue
            state[phone] = OptOut(f"reply {reply.id}", reply.received_at or now, None)
            report.opt_outs_added += 1
        elif kind == OPT_IN:
            if reply.received_at is None:
                report.refused[NO_TIME_OPT_IN] += 1
            elif current is not None and current.recorded_at < reply.received_at:
                state[phone] = None
                report.opt_ins_lifted += 1
            else:
                report.opt_ins_with_nothing_to_lift += 1
        else:
            report.ignored += 1
    return state


def apply_replies(
    database: Database, now: datetime | None = None, batch_size: int = BATCH_SIZE
) -> RepliesReport:
    """Apply every unprocessed reply, ``batch_size`` per transaction (see the module)."""
    now = datetime.now(UTC) if now is None else as_utc(now)
    report = RepliesReport()
    while _apply_batch(database, now, batch_size, report):
        pass
    return report


def _apply_batch(database: Database, now: datetime, batch_size: int, report: RepliesReport) -> bool:
    with database.engine.begin() as connection:
        if database.dialect == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": REPLIES_LOCK}
            )
        else:  # take SQLite's write lock before reading: one applier at a time
            connection.execute(sa.text("UPDATE sms_replies SET id = id WHERE 1 = 0"))
        replies = [
            read_reply(int(r.id), r.phone_e164, r.body, as_utc(r.received_at))
            for r in connection.execute(
                sa.text(
                    "SELECT id, phone_e164, body, received_at FROM sms_replies "
                    "WHERE processed_at IS NULL ORDER BY received_at IS NULL, received_at, "
                    "id LIMIT :n"
                ),
                {"n": batch_size},
            )
        ]
        if not replies:
            return False
        stored = _opt_outs(connection, {r.phone for r in replies if r.phone is not None})
        existing = {
            p: row for p, row in stored.items() if row.expires_at is None or row.expires_at > now
        }
        final = plan(replies, existing, now, report)
        changed = [p for p, row in final.items() if row != existing.get(p)]
        drop = [{"phone": p} for p in changed if p in stored]
        add = [
            {
                "phone": p,
                "source": final[p].source,
                "recorded_at": database.bind_timestamp(final[p].recorded_at),
            }
            for p in changed
            if final[p] is not None
        ]
        if drop:
            connection.execute(
                sa.text(
                    "DELETE FROM suppressions WHERE phone_e164 = :phone AND reason = 'opt_out'"
                ),
                drop,
            )
        if add:
            connection.execute(
                sa.text(
                    "INSERT INTO suppressions (phone_e164, reason, source, recorded_at) "
                    "VALUES (:phone, 'opt_out', :source, :recorded_at)"
                ),
                add,
            )
        connection.execute(
            sa.text("UPDATE sms_replies SET processed_at = :now WHERE id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"now": database.bind_timestamp(now), "ids": [reply.id for reply in replies]},
        )
    return len(replies) == batch_size


def _opt_outs(connection: sa.Connection, phones: set[str]) -> dict[str, OptOut]:
    """The stored ``opt_out`` rows of the numbers, expired or not."""
    if not phones:
        return {}
    rows = connection.execute(
        sa.text(
            "SELECT phone_e164, source, recorded_at, expires_at FROM suppressions "
            "WHERE reason = 'opt_out' AND phone_e164 IN :phones"
        ).bindparams(sa.bindparam("phones", expanding=True)),
        {"phones": sorted(phones)},
    )
    return {
        r.phone_e164: OptOut(r.source, as_utc(r.recorded_at), as_utc(r.expires_at)) for r in rows
    }


def waiting(database: Database) -> tuple[int, int | None]:
    """How many replies wait to be applied, and the newest one's id."""
    with database.engine.connect() as connection:
        count, newest = connection.execute(
            sa.text("SELECT count(*), max(id) FROM sms_replies WHERE processed_at IS NULL")
        ).one()
    return int(count), None if newest is None else int(newest)
