"""One retraining: sample, fit every candidate, log each to MLflow, register the best."""

import time
from collections.abc import Sequence
from dataclasses import dataclass

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.ml.tracking import (
    SELECTION_METRIC,
    LoggedCandidate,
    MlflowTarget,
    RegistryDecision,
    RunContext,
    log_candidate,
    register_best,
)
from lead_scoring_assets.ml.training import TrainingData, load_training_data, train_candidate


@dataclass
class RetrainReport:
    data: TrainingData
    logged: list[LoggedCandidate]
    best: LoggedCandidate
    decision: RegistryDecision
    seconds_load: float
    seconds_total: float


def retrain(
    database: Database,
    target: MlflowTarget,
    candidates: Sequence[str],
    sample_size: int,
    seed: int = 42,
    dagster_run_id: str | None = None,
) -> RetrainReport:
    """Train ``candidates`` on one reproducible sample; the lowest holdout RMSE is registered
    and compared with the champion on that same holdout."""
    if not candidates:
        raise ValueError("no candidates to train")
    started = time.perf_counter()
    data = load_training_data(database, sample_size, seed)
    seconds_load = time.perf_counter() - started
    client = target.activate()
    context = RunContext(dagster_run_id=dagster_run_id, sample_size=sample_size, seed=seed,
                         data=data)
    logged = [log_candidate(train_candidate(name, data, seed), context) for name in candidates]
    best = min(logged, key=lambda c: getattr(c.candidate.evaluation, SELECTION_METRIC))
    decision = register_best(client, target, best, data, dagster_run_id)
    return RetrainReport(data=data, logged=logged, best=best, decision=decision,
                         seconds_load=seconds_load,
                         seconds_total=time.perf_counter() - started)
