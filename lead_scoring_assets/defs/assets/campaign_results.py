"""The ``campaign_results`` asset: each campaign's conversions per arm and its measured
effect against the control group (``campaigns/results.py``)."""

import dagster as dg
from pydantic import Field

from lead_scoring_assets.analytics.charts import interval_chart_markdown
from lead_scoring_assets.campaigns import results as campaign_figures
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.ml.conversion_features import DEFAULT_ATTRIBUTION_DAYS


class CampaignResultsConfig(dg.Config):
    default_cost_per_message: float = Field(
        default=campaign_figures.DEFAULT_COST_PER_MESSAGE,
        ge=0,
        description="Pesos per SMS sent, for a campaign without its own cost_per_message.",
    )
    default_value_per_conversion: float = Field(
        default=campaign_figures.DEFAULT_VALUE_PER_CONVERSION,
        ge=0,
        description="Pesos per conversion, for a campaign without its own value_per_conversion.",
    )
    attribution_days: int = Field(
        default=DEFAULT_ATTRIBUTION_DAYS,
        gt=0,
        description="A conversion counts within this many days of the campaign's sent_at.",
    )


@dg.asset(deps=["campaign_outcomes"], group_name="campaigns", kinds={"sql"}, owners=["team:data"])
def campaign_results(
    config: CampaignResultsConfig, database: DatabaseResource
) -> dg.MaterializeResult:
    """Per campaign with outcomes and per arm: recipients, delivered, conversions, rate; the
    incremental conversions, rate and profit against the control group with 95 % intervals
    (Newcombe), per campaign and per probability decile; for a campaign planned with an
    expectation (rank_by uplift), predicted vs measured. The API computes the same on
    request (``/api/v1/lead-scoring/campaigns``)."""
    with database.open() as db:
        results = campaign_figures.campaign_results(
            db,
            None,
            config.default_cost_per_message,
            config.default_value_per_conversion,
            config.attribution_days,
        )
    if not results:
        return dg.MaterializeResult(
            metadata={"campaigns": 0, "note": "no campaign has outcome rows yet"}
        )
    measured = [r for r in results if r.effect is not None]
    metadata = {
        "campaigns": len(results),
        "campaigns_with_control": sum(r.has_control for r in results),
        "arms": dg.MetadataValue.md(campaign_figures.arms_table(results).to_markdown(index=False)),
        "effects": dg.MetadataValue.md(
            campaign_figures.effects_table(results).to_markdown(index=False)
        ),
    }
    predicted = campaign_figures.predicted_table(results)
    if not predicted.empty:
        metadata["campaigns_with_expectation"] = len(predicted)
        metadata["predicted_vs_measured"] = dg.MetadataValue.md(predicted.to_markdown(index=False))
    if measured:
        deciles = campaign_figures.deciles_table(results)
        if not deciles.empty:
            metadata["deciles"] = dg.MetadataValue.md(deciles.to_markdown(index=False))
        metadata["chart"] = dg.MetadataValue.md(
            interval_chart_markdown(
                {
                    str(r.campaign_id): (
                        r.effect.incremental_profit,
                        r.effect.incremental_profit_low,
                        r.effect.incremental_profit_high,
                    )
                    for r in reversed(measured)
                },
                "Incremental profit per campaign, pesos (95 % interval)",
            )
        )
    return dg.MaterializeResult(metadata=metadata)
