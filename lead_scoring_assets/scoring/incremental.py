"""Incremental scoring: score the contacts waiting in ``scoring_queue`` with the full engine."""

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
import sqlalchemy as sa

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.errors import describe_error
from lead_scoring_assets.db.scoring_queue import SCORING_LOCK, ScoringQueue
from lead_scoring_assets.scoring.config import DEFAULT_CONFIG, ScoringConfig
from lead_scoring_assets.scoring.engine import (
    LadaReference,
    ScoredChunk,
    score_chunk,
    utc_timestamp,
)
from lead_scoring_assets.scoring.full_rescore import last_validation_changes, read_lada_reference


@dataclass
class IncrementalReport:
    as_of: pd.Timestamp
    claimed: int = 0
    scored: int = 0
    removed: int = 0
    history_rows: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    batch_error: str | None = None
    dead_lettered: int = 0
    skipped_reason: str | None = None
    seconds_total: float = 0.0


@contextmanager
def shared_scoring_lock(database: Database):
    """Hold the scoring lock shared (PostgreSQL): yields False while a full rescoring runs."""
    if database.dialect != "postgresql":
        yield True
        return
    with database.engine.connect() as connection:
        got = connection.execute(
            sa.text("SELECT pg_try_advisory_xact_lock_shared(:key)"), {"key": SCORING_LOCK}
        ).scalar()
        try:
            yield bool(got)
        finally:
            connection.rollback()


def _score_isolating_failures(
    contacts: pd.DataFrame, validations: pd.DataFrame, ladas: LadaReference, as_of,
    config: ScoringConfig,
) -> tuple[list[ScoredChunk], dict[int, str], str | None]:
    """Score the batch at once; if that raises, contact by contact, so that only the contacts
    that fail are held back. Returns the scored chunks, each failing contact's error and the
    batch's error (None if the batch scored at once)."""
    try:
        return [score_chunk(contacts, validations, ladas, as_of, config)], {}, None
    except Exception as error:  # noqa: BLE001 - reported, then isolated contact by contact
        batch_error = describe_error(error)
    scored, errors = [], {}
    for contact_id in contacts["id"]:
        one = contacts[contacts["id"] == contact_id]
        try:
            scored.append(score_chunk(one, validations[validations["contact_id"] == contact_id],
                                      ladas, as_of, config))
        except Exception as error:  # noqa: BLE001 - recorded in scoring_queue / dead letters
            errors[int(contact_id)] = describe_error(error)
    return scored, errors, batch_error


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def score_queued(
    database: Database,
    as_of: datetime | str | pd.Timestamp,
    owner: str,
    batch_size: int = 50_000,
    lease_seconds: int = 300,
    config: ScoringConfig = DEFAULT_CONFIG,
) -> IncrementalReport:
    """Claim one batch of the queue as ``owner`` (the run id), score it and settle it.

    Scores, malformed rows and ``last_platform_validation`` of the batch are written and its
    entries removed in one transaction; until then the previous scores stand and the entries
    stay leased, claimable again once the lease lapses.
    """
    started = time.perf_counter()
    report = IncrementalReport(as_of=utc_timestamp(as_of))
    queue = ScoringQueue(database)
    with shared_scoring_lock(database) as allowed:
        if not allowed:
            report.skipped_reason = "a full rescoring is running; the queue waits for it"
            return report
        claimed = queue.claim(owner, batch_size, lease_seconds)
        report.claimed = len(claimed)
        if claimed.empty:
            report.seconds_total = time.perf_counter() - started
            return report
        contacts, validations = queue.read_batch(owner)
        ladas = read_lada_reference(database)
        chunks, report.failed, report.batch_error = _score_isolating_failures(
            contacts, validations, ladas, report.as_of, config)
        scores = _concat([c.scores for c in chunks])
        malformed = _concat([c.malformed for c in chunks])
        last = _concat([last_validation_changes(contacts, c.last_validated_at) for c in chunks])
        if report.failed:
            report.dead_lettered = queue.fail(owner, report.failed)
        succeeded = claimed[~claimed["contact_id"].isin(list(report.failed))]
        report.removed, report.history_rows = queue.complete(
            owner, succeeded, scores, malformed, last, report.as_of)
        report.scored = len(scores)
    report.seconds_total = time.perf_counter() - started
    return report
