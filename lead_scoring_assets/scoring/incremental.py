"""Incremental scoring: score the contacts waiting in ``scoring_queue`` with the full engine."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.errors import describe_error
from lead_scoring_assets.db.score_swap import scoring_lock
from lead_scoring_assets.db.scoring_queue import ScoringQueue
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
    skipped_lost_lease: int = 0
    skipped_newer_score: int = 0
    rows_after_as_of: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    batch_error: str | None = None
    dead_lettered: int = 0
    skipped_reason: str | None = None
    broken_locks_of: list[str] = field(default_factory=list)
    """Holders whose scoring lock this run broke because they no longer run."""
    seconds_total: float = 0.0


def _score_isolating_failures(
    contacts: pd.DataFrame,
    validations: pd.DataFrame,
    ladas: LadaReference,
    as_of,
    config: ScoringConfig,
) -> tuple[list[ScoredChunk], dict[int, str], str | None]:
    """Score the batch at once; if that raises, split it in halves until the failing contacts
    are alone, so only they are held back (a few bad contacts cost a few times the batch, not
    one engine call per contact). Returns the scored chunks, each failing contact's error and
    the batch's error (None if the batch scored at once)."""
    try:
        return [score_chunk(contacts, validations, ladas, as_of, config)], {}, None
    except Exception as error:  # noqa: BLE001 - reported, then isolated by halving
        batch_error = describe_error(error)
    rows_by_contact = validations.groupby("contact_id", dropna=True).indices
    scored, errors = [], {}

    def rows_of(part: pd.DataFrame) -> pd.DataFrame:
        positions = [rows_by_contact[i] for i in part["id"].tolist() if i in rows_by_contact]
        return validations.iloc[np.concatenate(positions) if positions else []]

    def attempt(part: pd.DataFrame) -> None:
        try:
            scored.append(score_chunk(part, rows_of(part), ladas, as_of, config))
        except Exception as error:  # noqa: BLE001 - recorded in scoring_queue / dead letters
            if len(part) == 1:
                errors[int(part["id"].iloc[0])] = describe_error(error)
                return
            middle = len(part) // 2
            attempt(part.iloc[:middle])
            attempt(part.iloc[middle:])

    attempt(contacts)
    known = set(contacts["id"].tolist())
    orphans = validations[~validations["contact_id"].isin(known)]
    if not orphans.empty:
        scored.append(score_chunk(contacts.iloc[:0], orphans, ladas, as_of, config))
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
    is_holder_alive: Callable[[str], bool] | None = None,
) -> IncrementalReport:
    """Claim one batch of the queue as ``owner`` (the run id), score it and settle it.

    The run holds the scoring lock shared (it skips while a full rescoring holds it) and its
    entries as a lease of ``lease_seconds``; the settlement is fenced by both, so a run that
    outlived its lease writes nothing a later run stored. Scores, malformed rows and
    ``last_platform_validation`` of the batch are written and its entries removed in one
    transaction; until then the previous scores stand. With ``is_holder_alive``, the lock of
    a holder that no longer runs is broken first (``broken_locks_of``).
    """
    started = time.perf_counter()
    report = IncrementalReport(as_of=utc_timestamp(as_of))
    queue = ScoringQueue(database)
    lock = scoring_lock(database, owner, lease_seconds, is_holder_alive=is_holder_alive)
    acquired = lock.acquire_shared()
    report.broken_locks_of = list(lock.broken)
    if not acquired:
        report.skipped_reason = "a full rescoring is running; the queue waits for it"
        return report
    try:
        claimed = queue.claim(owner, batch_size, lease_seconds)
        report.claimed = len(claimed)
        if claimed.empty:
            report.seconds_total = time.perf_counter() - started
            return report
        contacts, validations = queue.read_batch(owner)
        ladas = read_lada_reference(database)
        chunks, report.failed, report.batch_error = _score_isolating_failures(
            contacts, validations, ladas, report.as_of, config
        )
        scores = _concat([c.scores for c in chunks])
        malformed = _concat([c.malformed for c in chunks])
        last = _concat([last_validation_changes(contacts, c.last_validated_at) for c in chunks])
        report.rows_after_as_of = sum(c.rows_after_as_of for c in chunks)
        if report.failed:
            report.dead_lettered = queue.fail(owner, report.failed)
        succeeded = claimed[~claimed["contact_id"].isin(list(report.failed))]
        settlement = queue.complete(
            owner,
            succeeded,
            scores,
            malformed,
            last,
            report.as_of,
            lock=lock,
            waiting=_concat([c.due_later for c in chunks]),
        )
        report.scored, report.removed = settlement.scored, settlement.removed
        report.history_rows = settlement.history_rows
        report.skipped_lost_lease = settlement.skipped_lost_lease
        report.skipped_newer_score = settlement.skipped_newer_score
    finally:
        lock.release()
    report.seconds_total = time.perf_counter() - started
    return report
