"""The ``uplift_scores`` asset: every contact's uplift, decile and top reasons from the
``lead_uplift`` champion; no rows without one."""

import dagster as dg
from pydantic import Field

from lead_scoring_assets.defs.checks import staged_audit
from lead_scoring_assets.defs.resources import DatabaseResource, MlflowResource
from lead_scoring_assets.defs.retries import retry_on_transient_database_errors
from lead_scoring_assets.ml.feature_table import scoring_as_of
from lead_scoring_assets.ml.tracking import ChampionUnavailable
from lead_scoring_assets.ml.uplift_scores import (
    UPLIFT_SCORES,
    uplift_score_violations,
    write_uplift_scores,
)
from lead_scoring_assets.ml.uplift_tracking import load_uplift_champion, uplift_target

AUDIT = "uplift_scores_are_consistent"


class UpliftScoresConfig(dg.Config):
    as_of: str | None = Field(
        default=None,
        description="ISO-8601 time the contacts are scored at (default: the "
        "as_of of the published lead_scores, else now).",
    )
    chunk_size: int = Field(default=100_000, gt=0, description="Contacts scored per chunk.")


@dg.asset(
    deps=["uplift_model", "lead_scores"],
    group_name="ml",
    kinds={"scikitlearn", "sql"},
    owners=["team:data"],
    check_specs=[
        dg.AssetCheckSpec(
            AUDIT,
            asset=UPLIFT_SCORES,
            blocking=True,
            description="On the staged rows, before they are published: uplift in [-1, 1], "
            "deciles 1–10, one row per contact, every contact scored (or no rows at all).",
        )
    ],
)
def uplift_scores(
    context: dg.AssetExecutionContext,
    config: UpliftScoresConfig,
    database: DatabaseResource,
    mlflow: MlflowResource,
):
    """Each contact's ``uplift`` as of ``as_of`` from the champion of ``lead_uplift``: the
    change in its probability of converting when messaged (0.02 = two more conversions per
    hundred messages), its ``uplift_decile`` over all contacts (10 = highest uplift) and the
    three features raising and lowering it most. Without a champion the table is left empty
    and ``model`` says why: no guess. A champion that cannot be reached fails the run and
    leaves the previous rows."""
    target = uplift_target(mlflow.target())
    try:
        champion, reason = load_uplift_champion(target.activate(), target)
    except ChampionUnavailable as error:
        raise dg.Failure(description=f"{error}; the previous uplift_scores stand") from error
    if champion is None:
        context.log.warning(f"no uplift champion ({reason}): uplift_scores is left empty")
    with retry_on_transient_database_errors(context), database.open() as db:
        as_of = scoring_as_of(db, config.as_of)
        report = yield from staged_audit(
            AUDIT,
            UPLIFT_SCORES,
            lambda: write_uplift_scores(
                db, champion, as_of, config.chunk_size, audit=uplift_score_violations
            ),
        )
    mean = report.mean_uplift
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": report.contacts,
            "as_of": report.as_of.isoformat(),
            "model": reason if champion else f"no uplift champion: {reason}; no rows",
            "model_version": champion.version if champion else "none",
            "rows_by_method": dg.MetadataValue.json(dict(report.by_method)),
            "mean_uplift": dg.MetadataValue.text("n/a")
            if mean is None
            else dg.MetadataValue.float(round(mean, 5)),
            "contacts_with_negative_uplift": report.negative,
            "seconds_read": round(report.stages.read, 2),
            "seconds_score": round(report.stages.compute, 2),
            "duration_seconds": round(report.seconds_total, 2),
        }
    )
