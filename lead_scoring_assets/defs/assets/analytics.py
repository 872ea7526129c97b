"""The ``lead_scoring_analytics`` asset: the dashboard the data team reads in the UI."""

from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from lead_scoring_assets.analytics.charts import bar_chart_markdown
from lead_scoring_assets.analytics.figures import compute_figures, tier_drift
from lead_scoring_assets.analytics.history import append_figures, previous_tier_distribution
from lead_scoring_assets.defs.resources import DatabaseResource


class AnalyticsConfig(dg.Config):
    drift_threshold: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Warn when a tier's share moves more than this since the previous run.",
    )


@dg.asset(
    deps=["lead_scores"],
    group_name="analytics",
    kinds={"sql", "pandas"},
    owners=["team:data"],
    pool="lead_scoring_postgres",
)
def lead_scoring_analytics(
    context: dg.AssetExecutionContext, config: AnalyticsConfig, database: DatabaseResource
) -> dg.MaterializeResult:
    """Premium leads, average score, validated and multi-platform contacts, score and tier
    distributions, validation success per platform and per state, with charts; each run's
    figures are appended to ``lead_scoring_analytics_history``."""
    with database.open() as db:
        figures = compute_figures(db)
        previous = previous_tier_distribution(db)
        append_figures(db, figures, context.run_id, datetime.now(UTC))
    drift = {}
    if previous:
        total = sum(previous.values()) or 1
        drift = tier_drift(figures.tier_shares(), {t: n / total for t, n in previous.items()})
    drifted = {t: d for t, d in drift.items() if abs(d) > config.drift_threshold}
    if drifted:
        context.log.warning(
            f"tier distribution drifted more than {config.drift_threshold:.0%} "
            f"since the previous run: {drifted}"
        )
    charts = "\n\n".join(
        [
            bar_chart_markdown(figures.score_distribution, "Score distribution"),
            bar_chart_markdown(figures.tier_distribution, "Tier distribution", "#6a9f58"),
            bar_chart_markdown(figures.success_rates(), "Validation success rate", "#c07a2c"),
        ]
    )
    return dg.MaterializeResult(
        metadata={
            "contacts": figures.contacts,
            "premium_leads": figures.premium_leads,
            "top_leads": figures.top_leads,
            "average_score": figures.average_score,
            "validated_contacts": figures.validated_contacts,
            "multi_platform_contacts": figures.multi_platform_contacts,
            "score_distribution": dg.MetadataValue.json(figures.score_distribution),
            "tier_distribution": dg.MetadataValue.json(figures.tier_distribution),
            "platform_success": dg.MetadataValue.md(
                figures.platform_success.to_markdown(index=False)
            ),
            "by_state": dg.MetadataValue.md(figures.by_state.to_markdown(index=False)),
            "charts": dg.MetadataValue.md(charts),
            "tier_drift": dg.MetadataValue.json(drift),
            "tier_drift_warning": bool(drifted),
        }
    )
