"""One retraining: sample, measure drift against the champion, fit every candidate, log each
to MLflow, register the best, and append the champion's metrics to its monitoring line."""

import time
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.ml.drift import population_stability, training_distribution
from lead_scoring_assets.ml.tracking import (
    CHAMPION,
    MONITORING_METRICS,
    SELECTION_METRIC,
    ChampionLookup,
    LoggedCandidate,
    MlflowTarget,
    RegistryDecision,
    RunContext,
    log_candidate,
    log_monitoring,
    register_best,
    resolve_champion,
)
from lead_scoring_assets.ml.training import TrainingData, load_training_data, train_candidate


@dataclass
class RetrainReport:
    data: TrainingData
    logged: list[LoggedCandidate]
    best: LoggedCandidate
    champion: ChampionLookup
    decision: RegistryDecision
    psi: dict[str, float]
    """Per feature, the PSI between the previous champion's training sample and today's
    sampled contacts; empty when there is no champion with a stored distribution."""
    champion_metrics: dict[str, float]
    """The holdout metrics of the model that is champion after this retraining (empty when
    the previous champion could not be evaluated)."""
    seconds_load: float
    seconds_champion: float
    """Looking up and loading the champion, and measuring the drift against it."""
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
    champion_started = time.perf_counter()
    champion = resolve_champion(client, target)
    today = pd.concat([data.x_train, data.x_test])
    psi = population_stability(champion.distribution, today) if champion.distribution else {}
    seconds_champion = time.perf_counter() - champion_started
    context = RunContext(
        dagster_run_id=dagster_run_id,
        sample_size=sample_size,
        seed=seed,
        data=data,
        distribution=training_distribution(data.x_train),
    )
    logged = [log_candidate(train_candidate(name, data, seed), context) for name in candidates]
    best = min(logged, key=lambda c: getattr(c.candidate.evaluation, SELECTION_METRIC))
    decision = register_best(client, target, best, data, dagster_run_id, champion)
    champion_metrics = (
        decision.candidate_metrics if decision.alias == CHAMPION else decision.champion_metrics
    )
    monitored = {f"champion_{k}": v for k, v in champion_metrics.items() if k in MONITORING_METRICS}
    monitored |= {f"psi_{name}": value for name, value in psi.items()}
    if psi:
        monitored["psi_max"] = max(psi.values())
    if monitored:
        log_monitoring(client, target, data.as_of, monitored)
    return RetrainReport(
        data=data,
        logged=logged,
        best=best,
        champion=champion,
        decision=decision,
        psi=psi,
        champion_metrics=champion_metrics,
        seconds_load=seconds_load,
        seconds_champion=seconds_champion,
        seconds_total=time.perf_counter() - started,
    )
