"""``conversion_scores``: every contact's conversion probability as of ``as_of``, its decile
over all contacts and its reasons (``top_reasons``: concept codes and log-odds effects, the
rest in the first free slot), staged aside, audited and swapped in.

Features come from the scoring engine at ``as_of`` chunk by chunk (bounded memory); the
chunks wait in a Parquet file until every probability is known, since a decile needs them
all. Without a champion the rule score's rank stands in: decile of ``total_score``, no
probability, ``method`` ``rule_rank``.
"""

import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from lead_scoring_assets.db.audit import Violations
from lead_scoring_assets.db.bucket_inputs import iter_all_inputs
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.overlapped import StageSeconds, run_overlapped
from lead_scoring_assets.db.staged_table import StagedTable
from lead_scoring_assets.ml.conversion import (
    MIN_EFFECT,
    SHORT_NAMES,
    Explainer,
    features_of,
    top_reasons,
)
from lead_scoring_assets.ml.conversion_features import conversion_features
from lead_scoring_assets.ml.conversion_tracking import ConversionChampion
from lead_scoring_assets.scoring.checks import contact_coverage, count_rows
from lead_scoring_assets.scoring.config import DEFAULT_CONFIG
from lead_scoring_assets.scoring.engine import score_chunk, utc_timestamp
from lead_scoring_assets.scoring.full_rescore import read_lada_reference

CONVERSION_SCORES = "conversion_scores"
FALLBACK_METHOD = "rule_rank"
REASONS = 3
REASON_COLUMNS = tuple(
    f"{side}_{kind}_{i}"
    for side in ("up", "down")
    for kind in ("feature", "effect")
    for i in range(1, REASONS + 1)
)
COLUMNS = (
    "contact_id",
    "conversion_probability",
    "probability_decile",
    "model_version",
    "method",
    "calculated_at",
    *REASON_COLUMNS,
)


def deciles(values: np.ndarray, cutoffs: np.ndarray) -> np.ndarray:
    """1–10 from the nine cut points of all contacts' values (10 = highest)."""
    return (1 + np.searchsorted(cutoffs, values, side="left")).astype("int16")


@dataclass
class ConversionScoreReport:
    as_of: pd.Timestamp
    contacts: int = 0
    by_method: Counter = field(default_factory=Counter)
    probability_sum: float = 0.0
    stages: StageSeconds = field(default_factory=StageSeconds)
    seconds_total: float = 0.0
    violations: Violations | None = None

    @property
    def mean_probability(self) -> float | None:
        modelled = self.contacts - self.by_method.get(FALLBACK_METHOD, 0)
        return self.probability_sum / modelled if modelled else None


def score_contacts(
    contacts,
    validations,
    ladas,
    as_of,
    champion: ConversionChampion | None,
    explainer: Explainer | None,
) -> pd.DataFrame:
    """``conversion_scores`` rows of one chunk without the decile; ``rank_value`` is what the
    decile is taken over (the probability, or ``total_score`` for the fallback)."""
    scored = score_chunk(contacts, validations, ladas, as_of, DEFAULT_CONFIG)
    frame = pd.DataFrame({"contact_id": scored.parts.contact_ids})
    if champion is None:
        frame["conversion_probability"] = pd.array([pd.NA] * len(frame), dtype="Float32")
        frame["rank_value"] = scored.scores["total_score"].to_numpy(dtype="float64")
        frame["model_version"] = None
        frame["method"] = FALLBACK_METHOD
        for column in REASON_COLUMNS:
            frame[column] = pd.array(
                [pd.NA] * len(frame), dtype="Int16" if "feature" in column else "Float32"
            )
    else:
        x = features_of(conversion_features(scored.parts, contacts, ladas))
        contributions = explainer.explain(x)
        probability = contributions.probability
        frame["conversion_probability"] = probability.astype("float32")
        frame["rank_value"] = probability
        frame["model_version"] = champion.version
        frame["method"] = SHORT_NAMES.get(champion.candidate, champion.candidate)[:16]
        add_reasons(frame, contributions.values)
    frame["calculated_at"] = utc_timestamp(as_of)
    return frame


def add_reasons(
    frame: pd.DataFrame, contributions: np.ndarray, min_effect: float = MIN_EFFECT
) -> None:
    """The ``REASON_COLUMNS`` of ``frame`` from each row's feature contributions (codes and
    effects; NULL where a row has fewer reasons); see ``top_reasons``."""
    reasons = top_reasons(contributions, REASONS, min_effect)
    for side in ("up", "down"):
        codes, effects = reasons[f"{side}_feature"], reasons[f"{side}_effect"]
        for i in range(REASONS):
            present = codes[:, i] > 0
            frame[f"{side}_feature_{i + 1}"] = pd.Series(codes[:, i], dtype="Int16").where(present)
            frame[f"{side}_effect_{i + 1}"] = pd.Series(effects[:, i], dtype="Float32").where(
                present
            )


def write_conversion_scores(
    database: Database,
    champion: ConversionChampion | None,
    as_of,
    chunk_size: int = 100_000,
    audit=None,
) -> ConversionScoreReport:
    """Score every contact at ``as_of``, stage the rows, run ``audit`` and swap them into
    ``conversion_scores``; a failure or a failed audit leaves the previous rows."""
    started = time.perf_counter()
    report = ConversionScoreReport(as_of=utc_timestamp(as_of))
    ladas = read_lada_reference(database)
    explainer = Explainer(champion.model) if champion is not None else None

    def score(inputs) -> pd.DataFrame:
        contacts, validations = inputs
        return score_contacts(contacts, validations, ladas, report.as_of, champion, explainer)

    def count(frame: pd.DataFrame) -> None:
        report.contacts += len(frame)
        report.by_method.update(frame["method"].value_counts().to_dict())
        report.probability_sum += float(frame["conversion_probability"].sum())

    report.stages, report.violations = write_ranked(
        database,
        CONVERSION_SCORES,
        iter_all_inputs(database, chunk_size),
        score,
        count,
        "probability_decile",
        COLUMNS,
        report.as_of,
        chunk_size,
        audit,
    )
    report.seconds_total = time.perf_counter() - started
    return report


def write_ranked(
    database: Database,
    table: str,
    inputs,
    score,
    count,
    decile_column: str,
    columns,
    as_of,
    chunk_size: int,
    audit,
) -> tuple[StageSeconds, Violations]:
    """Score ``inputs`` (``score``: a frame with ``rank_value``; ``count`` sees each frame),
    spill the frames to Parquet until every ``rank_value`` is known, then stage them with
    their decile over all rows in ``decile_column``, run ``audit`` and swap them into
    ``table``; a failure or a failed audit leaves the previous rows. The stage seconds and
    the audit's violations (None when it did not run)."""
    ranks: list[np.ndarray] = []
    with tempfile.TemporaryDirectory(prefix=f"{table}_") as folder:
        spill = Path(folder) / "scores.parquet"
        writer: list[pq.ParquetWriter] = []

        def keep(frame: pd.DataFrame) -> None:
            arrow = pa.Table.from_pandas(frame, preserve_index=False)
            if not writer:
                writer.append(pq.ParquetWriter(spill, arrow.schema))
            writer[0].write_table(arrow)
            ranks.append(frame["rank_value"].to_numpy(dtype="float64"))
            count(frame)

        stages = run_overlapped(inputs, score, keep)
        for open_writer in writer:
            open_writer.close()
        values = np.concatenate(ranks) if ranks else np.array([])
        cutoffs = np.quantile(values, np.arange(1, 10) / 10) if len(values) else np.array([])
        ranks.clear()
        del values
        staged = StagedTable(database, table, as_of=as_of, audit=audit)
        try:
            with staged:
                if writer:
                    for batch in pq.ParquetFile(spill).iter_batches(batch_size=chunk_size):
                        frame = batch.to_pandas()
                        frame[decile_column] = deciles(
                            frame["rank_value"].to_numpy(dtype="float64"), cutoffs
                        )
                        staged.append(frame[list(columns)])
        finally:
            violations = staged.violations
    return stages, violations


@dataclass(frozen=True)
class ConversionScoreViolations(Violations):
    """Rows of ``conversion_scores`` breaking each rule (all zero when the table is sound)."""

    probability_out_of_range: int
    decile_out_of_range: int
    fallback_inconsistent: int
    duplicate_contacts: int
    contacts_without_score: int
    scores_without_contact: int


def conversion_score_violations(
    database: Database, table: str = CONVERSION_SCORES
) -> ConversionScoreViolations:
    """The rules on the conversion scores ``table`` (the live one or the staged one)."""
    probability = (
        "method <> :fallback AND (conversion_probability IS NULL "
        "OR conversion_probability < 0 OR conversion_probability > 1)"
    )
    fallback = (
        "method = :fallback AND (conversion_probability IS NOT NULL OR model_version IS NOT NULL)"
    )
    with database.engine.connect() as connection:
        rules = connection.execute(
            sa.text(
                f"SELECT {count_rows(probability)}, "
                f"{count_rows('probability_decile IS NULL OR probability_decile < 1 OR probability_decile > 10')}, "
                f"{count_rows(fallback)}, count(*) - count(DISTINCT contact_id) FROM {table}"
            ),
            {"fallback": FALLBACK_METHOD},
        ).one()
        coverage = contact_coverage(connection, table, leave_out_queued=True)
    return ConversionScoreViolations(*(int(v or 0) for v in (*rules, *coverage)))
