"""Full rescoring: every contact of the database scored for one ``as_of``, swapped in at once."""

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.overlapped import run_overlapped
from lead_scoring_assets.db.score_swap import ScoreSwap
from lead_scoring_assets.scoring.config import DEFAULT_CONFIG, ScoringConfig
from lead_scoring_assets.scoring.engine import LadaReference, score_chunk, utc_timestamp


@dataclass
class RescoreReport:
    """What a full rescoring did, and where its time went.

    Reading the next chunk, scoring this one and writing the last one overlap, so the three
    stage times add up to more than ``seconds_total``.
    """

    as_of: pd.Timestamp
    contacts_scored: int = 0
    score_sum: int = 0
    tier_counts: Counter = field(default_factory=Counter)
    malformed_by_reason: Counter = field(default_factory=Counter)
    last_validation_updates: int = 0
    history_rows: int = 0
    seconds_read: float = 0.0
    seconds_score: float = 0.0
    seconds_write: float = 0.0
    seconds_swap: float = 0.0
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


def rescore_all(
    database: Database,
    as_of: datetime | str | pd.Timestamp,
    chunk_size: int = 100_000,
    config: ScoringConfig = DEFAULT_CONFIG,
    run_id: str | None = None,
) -> RescoreReport:
    """Score every contact for ``as_of`` in chunks of ``chunk_size`` (I/O overlapped) and
    swap the result in; ``run_id`` is written with the score history rows."""
    started = time.perf_counter()
    report = RescoreReport(as_of=utc_timestamp(as_of))
    ladas = read_lada_reference(database)
    swap = ScoreSwap(database, run_id=run_id, as_of=report.as_of)

    def score(chunk_inputs):
        contacts, validations = chunk_inputs
        scored = score_chunk(contacts, validations, ladas, report.as_of, config)
        changes = last_validation_changes(contacts, scored.last_validated_at)
        report.contacts_scored += len(scored.scores)
        report.score_sum += int(scored.scores["total_score"].sum())
        report.tier_counts.update(scored.scores["quality_tier"].value_counts().to_dict())
        report.malformed_by_reason.update(scored.malformed["reason"].value_counts().to_dict())
        report.last_validation_updates += len(changes)
        return scored.scores, scored.malformed, changes, report.as_of

    with swap:
        stages = run_overlapped(
            database.iter_scoring_inputs(chunk_size), score, lambda staged: swap.add(*staged)
        )
        swap_started = time.perf_counter()
    report.seconds_read, report.seconds_score, report.seconds_write = (
        stages.read, stages.compute, stages.write)
    report.seconds_swap = time.perf_counter() - swap_started
    report.history_rows = swap.history_rows
    report.seconds_total = time.perf_counter() - started
    return report
