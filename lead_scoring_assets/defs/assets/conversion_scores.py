"""The ``conversion_scores`` asset: every contact's conversion probability, decile and top
reasons from the ``lead_conversion`` champion (or the rule score's rank without one)."""

import dagster as dg
from pydantic import Field

from lead_scoring_assets.defs.checks import staged_audit
from lead_scoring_assets.defs.resources import DatabaseResource, MlflowResource
from lead_scoring_assets.defs.retries import retry_on_transient_database_errors
from lead_scoring_assets.ml.conversion_scores import (
    CONVERSION_SCORES,
    FALLBACK_METHOD,
    conversion_score_violations,
    write_conversion_scores,
)
from lead_scoring_assets.ml.conversion_tracking import (
    conversion_target,
    load_conversion_champion,
)
from lead_scoring_assets.ml.feature_table import scoring_as_of
from lead_scoring_assets.ml.tracking import ChampionUnavailable

AUDIT = "conversion_scores_are_consistent"


class ConversionScoresConfig(dg.Config):
    as_of: str | None = Field(
        default=None,
        description="ISO-8601 time the contacts are scored at (default: the "
        "as_of of the published lead_scores, else now).",
    )
    chunk_size: int = Field(default=100_000, gt=0, description="Contacts scored per chunk.")


@dg.asset(
    deps=["conversion_model", "lead_scores"],
    group_name="ml",
    kinds={"scikitlearn", "sql"},
    owners=["team:data"],
    check_specs=[
        dg.AssetCheckSpec(
            AUDIT,
            asset=CONVERSION_SCORES,
            blocking=True,
            description="On the staged rows, before they are published: probabilities in [0, 1] "
            "(none for the rule_rank fallback), deciles 1–10, one row per contact.",
        )
    ],
)
def conversion_scores(
    context: dg.AssetExecutionContext,
    config: ConversionScoresConfig,
    database: DatabaseResource,
    mlflow: MlflowResource,
):
    """Each contact's ``conversion_probability`` as of ``as_of`` from the champion of
    ``lead_conversion``, its ``probability_decile`` over all contacts (10 = most likely) and
    its reasons: the concepts raising and lowering it most and the rest, log-odds effects
    that add up to its log-odds minus the average contact's (docs/ml/explanations.md). Without a champion: the decile of the rule's ``total_score``,
    ``method`` ``rule_rank``. A champion that cannot be reached fails the run and leaves the
    previous rows."""
    target = conversion_target(mlflow.target())
    try:
        champion, reason = load_conversion_champion(target.activate(), target)
    except ChampionUnavailable as error:
        raise dg.Failure(description=f"{error}; the previous conversion_scores stand") from error
    if champion is None:
        context.log.warning(
            f"no conversion champion ({reason}): every contact gets the rule "
            "score's decile (method rule_rank)"
        )
    with retry_on_transient_database_errors(context), database.open() as db:
        as_of = scoring_as_of(db, config.as_of)
        report = yield from staged_audit(
            AUDIT,
            CONVERSION_SCORES,
            lambda: write_conversion_scores(
                db, champion, as_of, config.chunk_size, audit=conversion_score_violations
            ),
        )
    mean = report.mean_probability
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": report.contacts,
            "as_of": report.as_of.isoformat(),
            "model": reason,
            "model_version": champion.version if champion else "none",
            "rows_by_method": dg.MetadataValue.json(dict(report.by_method)),
            "fallback": bool(report.by_method.get(FALLBACK_METHOD)),
            "mean_probability": dg.MetadataValue.text("n/a")
            if mean is None
            else dg.MetadataValue.float(round(mean, 5)),
            "seconds_read": round(report.stages.read, 2),
            "seconds_score": round(report.stages.compute, 2),
            "duration_seconds": round(report.seconds_total, 2),
        }
    )
