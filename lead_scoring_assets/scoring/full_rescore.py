"""Full rescoring: every contact of the chosen contact buckets (all by default) scored for one
``as_of``, staged, audited, then published bucket by bucket (write, audit, publish)."""

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from lead_scoring_assets.db.audit import AuditFailed
from lead_scoring_assets.db.bucket_inputs import iter_bucket_inputs
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.errors import TRANSIENT_ERRORS
from lead_scoring_assets.db.overlapped import run_overlapped
from lead_scoring_assets.db.score_swap import (
    FULL_RESCORE_LEASE_SECONDS,
    HANDOVER_LEASE_SECONDS,
    ScoreSwap,
)
from lead_scoring_assets.db.scoring_queue import ScoringQueue
from lead_scoring_assets.db.staged_table import StagedBuildMissing
from lead_scoring_assets.db.writer_lock import LockLost
from lead_scoring_assets.scoring.checks import ScoreViolations, staged_score_violations
from lead_scoring_assets.scoring.config import DEFAULT_CONFIG, ScoringConfig
from lead_scoring_assets.scoring.engine import LadaReference, score_chunk, utc_timestamp


@dataclass
class RescoreReport:
    """What a full rescoring did, and where its time went.

    Reading the next chunk, scoring this one and writing the last one overlap, so the three
    stage times add up to more than ``seconds_total``.
    """

    as_of: pd.Timestamp
    buckets: list[int] = field(default_factory=list)
    contacts_scored: int = 0
    score_sum: int = 0
    tier_counts: Counter = field(default_factory=Counter)
    malformed_by_reason: Counter = field(default_factory=Counter)
    last_validation_updates: int = 0
    rows_after_as_of: int = 0
    contacts_due_later: int = 0
    """Contacts with rows dated after ``as_of`` but not malformed: they stay queued."""
    history_rows: int = 0
    kept_newer_scores: int = 0
    """Stored scores computed at a later ``as_of``, kept by the publish."""
    seconds_read: float = 0.0
    seconds_score: float = 0.0
    seconds_write: float = 0.0
    seconds_audit: float = 0.0
    seconds_swap: float = 0.0
    seconds_locked: float = 0.0
    """Of the swap, the longest time one bucket's swap locked ``lead_scores`` exclusively
    (PostgreSQL)."""
    seconds_waited: float = 0.0
    """Of the swap, the time spent waiting for long readers of ``lead_scores`` (PostgreSQL)."""
    seconds_total: float = 0.0

    @property
    def mean_score(self) -> float:
        return self.score_sum / self.contacts_scored if self.contacts_scored else 0.0


def read_lada_reference(database: Database) -> LadaReference:
    return LadaReference.from_frame(
        database.read_frame("SELECT lada, state_name FROM ladas_reference")
    )


def last_validation_changes(contacts: pd.DataFrame, latest: pd.Series) -> pd.DataFrame:
    """Contacts whose stored ``last_platform_validation`` differs from the validation rows."""
    stored = pd.to_datetime(
        contacts.set_index("id")["last_platform_validation"], utc=True, format="ISO8601"
    ).reindex(latest.index)
    changed = (stored != latest) & ~(stored.isna() & latest.isna())
    return pd.DataFrame(
        {"contact_id": latest.index[changed], "last_platform_validation": latest[changed].values}
    )


def stage_rescore(
    database: Database,
    as_of: datetime | str | pd.Timestamp,
    chunk_size: int = 100_000,
    config: ScoringConfig = DEFAULT_CONFIG,
    run_id: str | None = None,
    lease_seconds: float = FULL_RESCORE_LEASE_SECONDS,
    buckets: list[int] | None = None,
    handover_seconds: float = HANDOVER_LEASE_SECONDS,
    is_holder_alive: Callable[[str], bool] | None = None,
) -> RescoreReport:
    """Score every contact of ``buckets`` (all by default) for ``as_of`` in chunks of
    ``chunk_size`` (I/O overlapped) into the staging tables of run ``run_id``, under the
    buckets' scoring lock, which stays held for the publish: its lease is ``lease_seconds``
    while staging (a heartbeat renews it), then ``handover_seconds`` for the next step.
    ``is_holder_alive`` lets it break the lock of a holder that no longer runs. Nothing live
    changes."""
    started = time.perf_counter()
    report = RescoreReport(as_of=utc_timestamp(as_of))
    ladas = read_lada_reference(database)
    swap = ScoreSwap(
        database,
        run_id=run_id,
        as_of=report.as_of,
        buckets=buckets,
        lease_seconds=lease_seconds,
        handover_seconds=handover_seconds,
        is_holder_alive=is_holder_alive,
    )
    report.buckets = swap.buckets

    def score(chunk_inputs):
        bucket, contacts, validations = chunk_inputs
        scored = score_chunk(contacts, validations, ladas, report.as_of, config)
        changes = last_validation_changes(contacts, scored.last_validated_at)
        report.contacts_scored += len(scored.scores)
        report.score_sum += int(scored.scores["total_score"].sum())
        report.tier_counts.update(scored.scores["quality_tier"].value_counts().to_dict())
        report.malformed_by_reason.update(scored.malformed["reason"].value_counts().to_dict())
        report.last_validation_updates += len(changes)
        report.rows_after_as_of += scored.rows_after_as_of
        report.contacts_due_later += len(scored.due_later)
        return (bucket, scored.scores, scored.malformed, changes, report.as_of, scored.due_later)

    with swap.stage():
        stages = run_overlapped(
            iter_bucket_inputs(database, swap.buckets, chunk_size),
            score,
            lambda staged: swap.add(*staged),
        )
    report.seconds_read, report.seconds_score, report.seconds_write = (
        stages.read,
        stages.compute,
        stages.write,
    )
    report.seconds_total = time.perf_counter() - started
    return report


def audit_rescore(
    database: Database,
    run_id: str,
    config: ScoringConfig = DEFAULT_CONFIG,
    lease_seconds: float = FULL_RESCORE_LEASE_SECONDS,
) -> ScoreViolations:
    """The audit of the buckets staged by run ``run_id`` (``staged_score_violations``), under
    the run's lease heartbeat; a failed audit discards them and releases their lock, a passed
    one hands the lease over to the publish."""
    swap = ScoreSwap(database, run_id=run_id, lease_seconds=lease_seconds)
    with swap.keep_alive():
        violations = staged_score_violations(database, run_id, config)
        if violations.failed:
            swap.discard()
    return violations


def publish_rescore(
    database: Database,
    run_id: str | None,
    retry_follows: bool = False,
    lease_seconds: float = FULL_RESCORE_LEASE_SECONDS,
) -> ScoreSwap:
    """Swap in the audited buckets staged by run ``run_id``, one transaction each (fenced:
    refused if the run no longer holds a bucket's lock, or if the staged rows are another
    run's; a stored score of a later ``as_of`` is kept, the contacts with rows due later stay
    queued), under the run's lease heartbeat, then give back the files of the queue it emptied.
    If a bucket's swap fails, the buckets not yet published are discarded and their lock
    released, unless the error is transient and ``retry_follows``: then both are kept for the
    retry, with the hand-over lease."""
    swap = ScoreSwap(database, run_id=run_id, lease_seconds=lease_seconds)
    try:
        with swap.keep_alive():
            swap.publish()
    except (LockLost, StagedBuildMissing):
        raise
    except TRANSIENT_ERRORS:
        if retry_follows:
            swap.lock.hand_over(swap.handover_seconds)
        else:
            swap.discard()
        raise
    except Exception:
        swap.discard()
        raise
    ScoringQueue(database).reclaim()
    return swap


def rescore_all(
    database: Database,
    as_of: datetime | str | pd.Timestamp,
    chunk_size: int = 100_000,
    config: ScoringConfig = DEFAULT_CONFIG,
    run_id: str | None = None,
    lease_seconds: float = FULL_RESCORE_LEASE_SECONDS,
    buckets: list[int] | None = None,
) -> RescoreReport:
    """Stage, audit and publish in one call (the Dagster job does it in three steps). A failed
    audit discards the staged rows and raises ``AuditFailed`` with each rule's count."""
    started = time.perf_counter()
    swap = ScoreSwap(database, run_id=run_id)
    report = stage_rescore(database, as_of, chunk_size, config, swap.run_id, lease_seconds, buckets)
    audit_started = time.perf_counter()
    violations = audit_rescore(database, swap.run_id, config, lease_seconds)
    report.seconds_audit = time.perf_counter() - audit_started
    if violations.failed:
        raise AuditFailed(violations)
    swap_started = time.perf_counter()
    swap = publish_rescore(database, swap.run_id, lease_seconds=lease_seconds)
    report.seconds_swap = time.perf_counter() - swap_started
    report.history_rows = swap.history_rows
    report.kept_newer_scores = swap.kept_newer_scores
    report.seconds_locked = swap.seconds_locked
    report.seconds_waited = swap.seconds_waited
    report.seconds_total = time.perf_counter() - started
    return report
