"""The ``contact_features`` table: every contact's features for one ``as_of``, built in
chunks and swapped in at once."""

import time
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from lead_scoring_assets.db.audit import Violations
from lead_scoring_assets.db.bucket_inputs import iter_all_inputs
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.overlapped import StageSeconds, run_overlapped
from lead_scoring_assets.db.staged_table import StagedTable
from lead_scoring_assets.ml.features import FEATURE_COLUMNS, FEATURE_SET_VERSION, contact_features
from lead_scoring_assets.scoring.config import DEFAULT_CONFIG
from lead_scoring_assets.scoring.engine import score_chunk, utc_timestamp
from lead_scoring_assets.scoring.full_rescore import read_lada_reference

FEATURES = "contact_features"


@dataclass
class FeatureReport:
    """What a features build wrote, and the mean of each feature (to compare runs)."""

    as_of: pd.Timestamp
    contacts: int = 0
    feature_sums: dict[str, float] = field(default_factory=dict)
    stages: StageSeconds = field(default_factory=StageSeconds)
    seconds_total: float = 0.0
    violations: Violations | None = None

    @property
    def feature_means(self) -> dict[str, float]:
        return {
            name: (total / self.contacts if self.contacts else 0.0)
            for name, total in self.feature_sums.items()
        }


class AsOfMismatch(ValueError):
    """The features do not describe the moment of the published ``lead_scores``."""


def published_scores_as_of(database: Database) -> pd.Timestamp | None:
    """The ``as_of`` of the last published full rescoring: the earliest ``last_calculated_at``
    of ``lead_scores``. The full rescoring writes every row with its ``as_of`` and incremental
    runs only move single rows forward, so unlike the latest, the earliest does not move
    during the day."""
    value = database.read_frame("SELECT min(last_calculated_at) AS as_of FROM lead_scores")[
        "as_of"
    ].iloc[0]
    return None if value is None or pd.isna(value) else utc_timestamp(value)


def scoring_as_of(database: Database, requested: str | None = None) -> pd.Timestamp:
    """The moment a scoring asset scores at: ``requested`` (ISO 8601) if given, else the
    published ``lead_scores``' ``as_of``, else now."""
    if requested:
        return utc_timestamp(requested)
    published = published_scores_as_of(database)
    return published if published is not None else utc_timestamp(pd.Timestamp.now(tz="UTC"))


def require_features_as_of(database: Database) -> pd.Timestamp:
    """The one ``as_of`` that ``contact_features`` and the published ``lead_scores`` share;
    ``AsOfMismatch`` (with both moments) when they differ."""
    scores_as_of = published_scores_as_of(database)
    stamps = database.read_frame(f"SELECT DISTINCT as_of FROM {FEATURES}")["as_of"]
    features_as_of = sorted({utc_timestamp(v) for v in stamps})
    if scores_as_of is None or features_as_of != [scores_as_of]:
        raise AsOfMismatch(
            f"contact_features describe {[t.isoformat() for t in features_as_of]}, the "
            f"published lead_scores {scores_as_of.isoformat() if scores_as_of else 'nothing'}: "
            "materialise contact_features after lead_scores (nightly_retrain_job does both)"
        )
    return scores_as_of


def build_contact_features(
    database: Database,
    as_of: datetime | str | pd.Timestamp,
    chunk_size: int = 100_000,
    audit=None,
) -> FeatureReport:
    """Compute ``features_v1`` for every contact at ``as_of``, stage them, run ``audit`` on
    the staged rows (see ``StagedTable.audit_then_publish``) and swap them into
    ``contact_features``; a failure or a failed audit leaves the previous features in place."""
    started = time.perf_counter()
    report = FeatureReport(as_of=utc_timestamp(as_of))
    ladas = read_lada_reference(database)

    def features(chunk_inputs) -> pd.DataFrame:
        contacts, validations = chunk_inputs
        parts = score_chunk(contacts, validations, ladas, report.as_of, DEFAULT_CONFIG).parts
        frame = contact_features(parts)
        report.contacts += len(frame)
        for name, total in frame[list(FEATURE_COLUMNS)].sum().items():
            report.feature_sums[name] = report.feature_sums.get(name, 0.0) + float(total)
        return frame.assign(feature_set_version=FEATURE_SET_VERSION, as_of=report.as_of)

    staged = StagedTable(database, FEATURES, as_of=report.as_of, audit=audit)
    try:
        with staged:
            report.stages = run_overlapped(
                iter_all_inputs(database, chunk_size), features, staged.append
            )
    finally:
        report.violations = staged.violations
    report.seconds_total = time.perf_counter() - started
    return report
