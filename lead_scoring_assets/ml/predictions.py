"""``ml_lead_scores``: every contact scored by the champion model, or by the rule-based score.

A contact with current features gets the champion's prediction, clipped to 0–100, with a
confidence from the spread of the forest's trees: ``max(0.5, 1 − std / 50)``. Models without
trees use their holdout RMSE in the predicted tier as the spread. Without a usable champion,
or for a contact without features, the rule-based score stands in with confidence 0.7 and
``method`` ``rule_based_fallback``.
"""

import os
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from lead_scoring_assets.db.audit import Violations
from lead_scoring_assets.db.buckets import BUCKET_COUNT, partition_name
from lead_scoring_assets.db.database import FIRST_ID, Database, arrow_frame
from lead_scoring_assets.db.overlapped import StageSeconds, run_overlapped
from lead_scoring_assets.db.staged_table import StagedTable
from lead_scoring_assets.db.tables import ML_SCORE_COLUMNS
from lead_scoring_assets.ml.features import FEATURE_COLUMNS, FEATURE_SET_VERSION
from lead_scoring_assets.ml.training import clip_scores, predicted_tier

ML_SCORES = "ml_lead_scores"
FALLBACK_METHOD = "rule_based_fallback"
FALLBACK_CONFIDENCE = 0.7
MINIMUM_CONFIDENCE = 0.5
SPREAD_SCALE = 50.0


@dataclass(frozen=True)
class ChampionModel:
    """The registered model that scores contacts, and what its predictions are tagged with."""

    model: Pipeline
    version: str
    candidate: str
    rmse_by_tier: dict[str, float]

    @property
    def method(self) -> str:
        return f"ml_{self.candidate}"


@dataclass
class PredictionReport:
    """What a scoring run wrote; the comparison with the rule-based score covers the contacts
    the model scored that also have one."""

    contacts: int = 0
    by_method: Counter = field(default_factory=Counter)
    contacts_without_any_score: int = 0
    confidence_sum: float = 0.0
    compared: int = 0
    absolute_difference_sum: float = 0.0
    same_tier: int = 0
    stages: StageSeconds = field(default_factory=StageSeconds)
    seconds_total: float = 0.0
    violations: Violations | None = None

    @property
    def mean_confidence(self) -> float:
        return self.confidence_sum / self.contacts if self.contacts else 0.0

    @property
    def mean_absolute_difference_from_rule(self) -> float | None:
        return self.absolute_difference_sum / self.compared if self.compared else None

    @property
    def tier_agreement_with_rule(self) -> float | None:
        return self.same_tier / self.compared if self.compared else None

    def add(self, chunk: pd.DataFrame, frame: pd.DataFrame) -> None:
        self.contacts += len(frame)
        self.contacts_without_any_score += len(chunk) - len(frame)
        self.by_method.update(frame["method"].value_counts().to_dict())
        self.confidence_sum += float(frame["confidence"].sum())
        rule = chunk.set_index("contact_id")[["total_score", "quality_tier"]]
        modelled = frame[frame["method"] != FALLBACK_METHOD].join(rule, on="contact_id")
        modelled = modelled[modelled["total_score"].notna()]
        self.compared += len(modelled)
        self.absolute_difference_sum += float(
            (modelled["predicted_score"] - modelled["total_score"].astype(float)).abs().sum()
        )
        self.same_tier += int((modelled["predicted_tier"] == modelled["quality_tier"]).sum())


def predict_with_spread(
    model: Pipeline, features: pd.DataFrame, rmse_by_tier: dict[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and their per-contact spread: the standard deviation of the trees'
    predictions for a forest; for any other model, its holdout RMSE in the predicted tier
    (``SPREAD_SCALE`` when unknown, which gives the minimum confidence)."""
    estimator = model.steps[-1][1]
    trees = getattr(estimator, "estimators_", None)
    if trees is None:
        predictions = model.predict(features)
        tiers = predicted_tier(clip_scores(predictions))
        return predictions, np.array([rmse_by_tier.get(t, SPREAD_SCALE) for t in tiers])
    x = features
    for _, step in model.steps[:-1]:
        x = step.transform(x)
    x = np.ascontiguousarray(x, dtype=np.float32)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        per_tree = np.stack(list(pool.map(lambda tree: tree.predict(x, check_input=False), trees)))
    return per_tree.mean(axis=0), per_tree.std(axis=0)


def confidence_from_spread(std: np.ndarray) -> np.ndarray:
    return np.clip(1.0 - std / SPREAD_SCALE, MINIMUM_CONFIDENCE, 1.0)


def _read_chunks(database: Database, chunk_size: int) -> Iterator[pd.DataFrame]:
    """Every contact with its features (if current) and its rule-based score."""
    if database.dialect == "postgresql":
        yield from _read_partitions(database, chunk_size)
        return
    features = ", ".join(f"f.{c}" for c in FEATURE_COLUMNS)
    after = FIRST_ID
    while True:
        chunk = database.read_frame(
            f"SELECT c.id AS contact_id, f.feature_set_version, f.as_of, {features}, "
            "s.total_score, s.quality_tier, s.last_calculated_at FROM contacts AS c "
            "LEFT JOIN contact_features AS f ON f.contact_id = c.id "
            "LEFT JOIN lead_scores AS s ON s.contact_id = c.id "
            "WHERE c.id > :after ORDER BY c.id LIMIT :limit",
            {"after": after, "limit": chunk_size},
        )
        if chunk.empty:
            return
        yield chunk
        after = int(chunk["contact_id"].iloc[-1])


def _read_partitions(database: Database, chunk_size: int) -> Iterator[pd.DataFrame]:
    """PostgreSQL: bucket by bucket, the ``contact_features`` and ``lead_scores`` partitions
    joined on the contact id, kept for the contacts that exist, whose ids are read once; then
    the contacts found in neither (ids only). Each table is read once, in its stored order:
    joining per id range would look every contact up in 16 partitions of each table."""
    ids = np.sort(database.read_arrow("SELECT id FROM contacts").column("id").to_numpy())
    if not len(ids):
        return
    seen = np.zeros(len(ids), dtype=bool)
    features = ", ".join(f"f.{c}" for c in FEATURE_COLUMNS)
    for bucket in range(BUCKET_COUNT):
        sql = (
            f"SELECT coalesce(f.contact_id, s.contact_id) AS contact_id, "
            f"f.feature_set_version, f.as_of, {features}, s.total_score, s.quality_tier, "
            f"s.last_calculated_at FROM {partition_name('contact_features', bucket)} AS f "
            f"FULL JOIN {partition_name('lead_scores', bucket)} AS s "
            "ON s.contact_id = f.contact_id"
        )
        for table in database.iter_arrow(sql, chunk_size):
            chunk = arrow_frame(table)
            contact_ids = chunk["contact_id"].to_numpy()
            position = np.searchsorted(ids, contact_ids).clip(max=len(ids) - 1)
            exists = ids[position] == contact_ids
            seen[position[exists]] = True
            yield chunk[exists].reset_index(drop=True)
    if not seen.all():
        yield pd.DataFrame({"contact_id": ids[~seen]}).reindex(
            columns=[
                "contact_id",
                "feature_set_version",
                "as_of",
                *FEATURE_COLUMNS,
                "total_score",
                "quality_tier",
                "last_calculated_at",
            ]
        )


def _utc(stamps: pd.Series) -> pd.api.extensions.ExtensionArray:
    """Timestamps (or SQLite's text) as a UTC datetime array, without a per-value loop."""
    return pd.to_datetime(stamps, utc=True, format="ISO8601").array


def score_chunk_with_model(chunk: pd.DataFrame, champion: ChampionModel | None) -> pd.DataFrame:
    """``ml_lead_scores`` rows for one chunk; contacts with neither features nor a rule-based
    score are left out."""
    use_model = (
        np.zeros(len(chunk), dtype=bool)
        if champion is None
        else (chunk["feature_set_version"] == FEATURE_SET_VERSION).fillna(False).to_numpy(bool)
    )
    fallback = ~use_model & chunk["total_score"].notna().to_numpy()
    parts = []
    if use_model.any():
        rows = chunk[use_model]
        predictions, spread = predict_with_spread(
            champion.model, rows[list(FEATURE_COLUMNS)].astype("float64"), champion.rmse_by_tier
        )
        predicted = np.round(clip_scores(predictions), 2)
        parts.append(
            pd.DataFrame(
                {
                    "contact_id": rows["contact_id"].to_numpy(),
                    "predicted_score": predicted,
                    "predicted_tier": predicted_tier(predicted),
                    "confidence": np.round(confidence_from_spread(spread), 4),
                    "model_version": champion.version,
                    "method": champion.method,
                    "calculated_at": _utc(rows["as_of"]),
                }
            )
        )
    if fallback.any():
        rows = chunk[fallback]
        parts.append(
            pd.DataFrame(
                {
                    "contact_id": rows["contact_id"].to_numpy(),
                    "predicted_score": rows["total_score"].astype("float64").to_numpy(),
                    "predicted_tier": rows["quality_tier"].to_numpy(),
                    "confidence": FALLBACK_CONFIDENCE,
                    "model_version": None,
                    "method": FALLBACK_METHOD,
                    "calculated_at": _utc(rows["last_calculated_at"]),
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=list(ML_SCORE_COLUMNS))
    frame = pd.concat(parts, ignore_index=True)
    return frame.sort_values("contact_id", ignore_index=True)[list(ML_SCORE_COLUMNS)]


def write_ml_scores(
    database: Database, champion: ChampionModel | None, chunk_size: int = 100_000, audit=None
) -> PredictionReport:
    """Score every contact, stage the rows, run ``audit`` on them (see
    ``StagedTable.audit_then_publish``) and swap them into ``ml_lead_scores``; a failure or a
    failed audit leaves the previous rows in place."""
    started = time.perf_counter()
    report = PredictionReport()

    def score(chunk: pd.DataFrame) -> pd.DataFrame:
        frame = score_chunk_with_model(chunk, champion)
        report.add(chunk, frame)
        return frame

    staged = StagedTable(database, ML_SCORES, audit=audit)
    try:
        with staged:
            report.stages = run_overlapped(_read_chunks(database, chunk_size), score, staged.append)
    finally:
        report.violations = staged.violations
    report.seconds_total = time.perf_counter() - started
    return report
