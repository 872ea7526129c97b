"""``uplift_scores``: every contact's uplift as of ``as_of`` from the ``lead_uplift``
champion, its decile over all contacts (10 = highest uplift, as ``probability_decile``) and
the three features raising and lowering it most, staged aside, audited and swapped in.

Without a champion the table is emptied: no rows, never a guess (the asset says why).
Features come from the scoring engine at ``as_of`` chunk by chunk, as ``conversion_scores``'.
"""

import time
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd
import sqlalchemy as sa

from lead_scoring_assets.db.audit import Violations
from lead_scoring_assets.db.bucket_inputs import iter_all_inputs
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.overlapped import StageSeconds
from lead_scoring_assets.ml.conversion import features_of
from lead_scoring_assets.ml.conversion_features import conversion_features
from lead_scoring_assets.ml.conversion_scores import REASON_COLUMNS, add_reasons, write_ranked
from lead_scoring_assets.ml.conversion_tracking import ConversionChampion
from lead_scoring_assets.ml.uplift import UpliftExplainer
from lead_scoring_assets.scoring.checks import contact_coverage, count_rows
from lead_scoring_assets.scoring.config import DEFAULT_CONFIG
from lead_scoring_assets.scoring.engine import score_chunk, utc_timestamp
from lead_scoring_assets.scoring.full_rescore import read_lada_reference

UPLIFT_SCORES = "uplift_scores"
COLUMNS = (
    "contact_id",
    "uplift",
    "uplift_decile",
    "model_version",
    "method",
    "calculated_at",
    *REASON_COLUMNS,
)


@dataclass
class UpliftScoreReport:
    as_of: pd.Timestamp
    contacts: int = 0
    by_method: Counter = field(default_factory=Counter)
    uplift_sum: float = 0.0
    negative: int = 0
    stages: StageSeconds = field(default_factory=StageSeconds)
    seconds_total: float = 0.0
    violations: Violations | None = None

    @property
    def mean_uplift(self) -> float | None:
        return self.uplift_sum / self.contacts if self.contacts else None


MIN_UPLIFT_EFFECT = 0.001
"""A concept moving a contact's uplift by less (a tenth of a percentage point) stays in the
rest."""


def score_uplift(
    contacts, validations, ladas, as_of, champion: ConversionChampion, explainer: UpliftExplainer
) -> pd.DataFrame:
    """``uplift_scores`` rows of one chunk without the decile (``rank_value``: the uplift)."""
    scored = score_chunk(contacts, validations, ladas, as_of, DEFAULT_CONFIG)
    contributions = explainer.explain(
        features_of(conversion_features(scored.parts, contacts, ladas))
    )
    frame = pd.DataFrame(
        {
            "contact_id": scored.parts.contact_ids,
            "uplift": contributions.uplift.astype("float32"),
            "rank_value": contributions.uplift,
            "model_version": champion.version,
            "method": champion.candidate[:32],
        }
    )
    add_reasons(frame, contributions.values, MIN_UPLIFT_EFFECT)
    frame["calculated_at"] = utc_timestamp(as_of)
    return frame


def write_uplift_scores(
    database: Database,
    champion: ConversionChampion | None,
    as_of,
    chunk_size: int = 100_000,
    audit=None,
) -> UpliftScoreReport:
    """Score every contact at ``as_of`` with ``champion`` (None: no rows), stage the rows,
    run ``audit`` and swap them into ``uplift_scores``; a failure or a failed audit leaves the
    previous rows."""
    started = time.perf_counter()
    report = UpliftScoreReport(as_of=utc_timestamp(as_of))
    ladas = read_lada_reference(database)
    explainer = UpliftExplainer(champion.model) if champion is not None else None

    def score(inputs) -> pd.DataFrame:
        contacts, validations = inputs
        return score_uplift(contacts, validations, ladas, report.as_of, champion, explainer)

    def count(frame: pd.DataFrame) -> None:
        report.contacts += len(frame)
        report.by_method.update(frame["method"].value_counts().to_dict())
        report.uplift_sum += float(frame["rank_value"].sum())
        report.negative += int((frame["rank_value"] < 0).sum())

    inputs = iter_all_inputs(database, chunk_size) if champion is not None else iter(())
    report.stages, report.violations = write_ranked(
        database,
        UPLIFT_SCORES,
        inputs,
        score,
        count,
        "uplift_decile",
        COLUMNS,
        report.as_of,
        chunk_size,
        audit,
    )
    report.seconds_total = time.perf_counter() - started
    return report


@dataclass(frozen=True)
class UpliftScoreViolations(Violations):
    """Rows of ``uplift_scores`` breaking each rule (all zero when the table is sound)."""

    uplift_out_of_range: int
    decile_out_of_range: int
    duplicate_contacts: int
    contacts_without_score: int
    scores_without_contact: int


def uplift_score_violations(
    database: Database, table: str = UPLIFT_SCORES
) -> UpliftScoreViolations:
    """The rules on the uplift scores ``table`` (the live one or the staged one): uplift in
    [-1, 1], deciles 1–10, one row per contact, and, when there are rows, every contact
    scored (an empty table is sound: no champion)."""
    with database.engine.connect() as connection:
        rules = connection.execute(
            sa.text(
                f"SELECT {count_rows('uplift IS NULL OR uplift < -1 OR uplift > 1')}, "
                f"{count_rows('uplift_decile IS NULL OR uplift_decile < 1 OR uplift_decile > 10')}, "
                f"count(*) - count(DISTINCT contact_id), count(*) FROM {table}"
            )
        ).one()
        coverage = (
            contact_coverage(connection, table, leave_out_queued=True) if rules[3] else (0, 0)
        )
    return UpliftScoreViolations(*(int(v or 0) for v in (*rules[:3], *coverage)))
