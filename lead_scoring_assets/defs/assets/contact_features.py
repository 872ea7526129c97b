"""The ``contact_features`` asset: feature set features_v1 for every contact."""

import dagster as dg
from pydantic import Field

from lead_scoring_assets.defs.checks import staged_audit
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.defs.retries import retry_on_transient_database_errors
from lead_scoring_assets.ml.checks import feature_violations
from lead_scoring_assets.ml.feature_table import build_contact_features, published_scores_as_of
from lead_scoring_assets.ml.features import FEATURE_SET_VERSION

AUDIT = "contact_features_are_valid"


class ContactFeaturesConfig(dg.Config):
    chunk_size: int = Field(default=100_000, gt=0, description="Contacts held per chunk.")


@dg.asset(
    deps=["contacts", "platform_validations", "ladas_reference", "lead_scores"],
    group_name="ml",
    kinds={"pandas", "sql"},
    owners=["team:data"],
    pool="lead_scoring_postgres",
    tags={"feature_set_version": FEATURE_SET_VERSION},
    check_specs=[
        dg.AssetCheckSpec(
            AUDIT,
            asset="contact_features",
            blocking=True,
            description="On the staged features, before they are published: flags 0/1, platform "
            "scores within their cap, counts 0–5, ratios in [0, 1], geography 0.3/0.5/1.0, days "
            "in range, the current feature set, one row per contact.",
        )
    ],
)
def contact_features(
    context: dg.AssetExecutionContext, config: ContactFeaturesConfig, database: DatabaseResource
):
    """One row of features_v1 per contact (24 numeric features, no phone number or name),
    computed in chunks from the scorer's own intermediates, audited while staged and swapped
    in at once, at the ``as_of`` of the published full rescoring, so features and labels
    describe one moment."""
    with retry_on_transient_database_errors(context), database.open() as db:
        as_of = published_scores_as_of(db)
        if as_of is None:
            raise dg.Failure(
                "lead_scores is empty: features take the as_of of the "
                "published full rescoring, materialise lead_scores first"
            )
        context.log.info(f"contact features at as_of={as_of.isoformat()} (lead_scores)")
        report = yield from staged_audit(
            AUDIT,
            "contact_features",
            lambda: build_contact_features(
                db, as_of, chunk_size=config.chunk_size, audit=feature_violations
            ),
        )
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": report.contacts,
            "as_of": report.as_of.isoformat(),
            "feature_set_version": FEATURE_SET_VERSION,
            "feature_means": dg.MetadataValue.json(
                {name: round(mean, 4) for name, mean in report.feature_means.items()}
            ),
            "seconds_read": round(report.stages.read, 2),
            "seconds_compute": round(report.stages.compute, 2),
            "seconds_write": round(report.stages.write, 2),
            "duration_seconds": round(report.seconds_total, 2),
        }
    )
