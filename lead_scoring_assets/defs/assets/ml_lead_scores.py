"""The ``ml_lead_scores`` asset: every contact scored by the champion model."""

import dagster as dg
from pydantic import Field

from lead_scoring_assets.defs.checks import staged_audit
from lead_scoring_assets.defs.resources import DatabaseResource, MlflowResource
from lead_scoring_assets.defs.retries import retry_on_transient_database_errors
from lead_scoring_assets.ml.checks import ml_score_violations
from lead_scoring_assets.ml.feature_table import AsOfMismatch, require_features_as_of
from lead_scoring_assets.ml.predictions import FALLBACK_METHOD, write_ml_scores
from lead_scoring_assets.ml.tracking import ChampionUnavailable, load_champion


def _rounded(value: float | None) -> dg.MetadataValue:
    return (
        dg.MetadataValue.text("n/a") if value is None else dg.MetadataValue.float(round(value, 4))
    )


AUDIT = "ml_lead_scores_are_consistent"


class MlLeadScoresConfig(dg.Config):
    chunk_size: int = Field(default=100_000, gt=0, description="Contacts scored per chunk.")


@dg.asset(
    deps=["lead_scoring_model", "contact_features", "lead_scores"],
    group_name="ml",
    kinds={"scikitlearn", "sql"},
    owners=["team:data"],
    pool="lead_scoring_postgres",
    check_specs=[
        dg.AssetCheckSpec(
            AUDIT,
            asset="ml_lead_scores",
            blocking=True,
            description="On the staged ML scores, before they are published: predicted scores in "
            "0–100 with their tier, model confidence in [0.5, 1], fallback rows at confidence 0.7 "
            "without a model version, one row per contact.",
        )
    ],
)
def ml_lead_scores(
    context: dg.AssetExecutionContext,
    config: MlLeadScoresConfig,
    database: DatabaseResource,
    mlflow: MlflowResource,
):
    """The ``champion`` model's predicted score (0–100), its tier and a confidence from the
    spread of the trees, per contact, at the ``as_of`` of the features and the published
    ``lead_scores`` (which must agree). Without a usable champion, or for a contact without
    features, the rule-based score stands in with confidence 0.7 (``rule_based_fallback``).
    A champion that cannot be reached fails the run and leaves the previous rows."""
    target = mlflow.target()
    try:
        champion, reason = load_champion(target.activate(), target)
    except ChampionUnavailable as error:
        raise dg.Failure(description=f"{error}; the previous ml_lead_scores stand") from error
    if champion is None:
        context.log.warning(
            f"no usable champion model ({reason}): every contact gets the "
            "rule-based score with confidence 0.7"
        )
    with retry_on_transient_database_errors(context), database.open() as db:
        try:
            as_of = require_features_as_of(db)
        except AsOfMismatch as error:
            raise dg.Failure(description=str(error)) from error
        report = yield from staged_audit(
            AUDIT,
            "ml_lead_scores",
            lambda: write_ml_scores(
                db, champion, chunk_size=config.chunk_size, audit=ml_score_violations
            ),
        )
    if champion is not None and report.by_method.get(FALLBACK_METHOD):
        context.log.warning(
            f"{report.by_method[FALLBACK_METHOD]} contacts have no current "
            "features and got the rule-based score: rematerialise "
            "contact_features"
        )
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": report.contacts,
            "as_of": as_of.isoformat(),
            "model": reason,
            "model_version": champion.version if champion else "none",
            "rows_by_method": dg.MetadataValue.json(dict(report.by_method)),
            "contacts_without_any_score": report.contacts_without_any_score,
            "mean_confidence": round(report.mean_confidence, 4),
            "mean_absolute_difference_from_rule": _rounded(
                report.mean_absolute_difference_from_rule
            ),
            "tier_agreement_with_rule": _rounded(report.tier_agreement_with_rule),
            "seconds_read": round(report.stages.read, 2),
            "seconds_predict": round(report.stages.compute, 2),
            "seconds_write": round(report.stages.write, 2),
            "duration_seconds": round(report.seconds_total, 2),
        }
    )
