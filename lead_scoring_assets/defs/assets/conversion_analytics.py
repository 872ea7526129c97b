"""The ``conversion_analytics`` asset: conversion rate per tier and per decile."""

import dagster as dg

from lead_scoring_assets.analytics.charts import bar_chart_markdown
from lead_scoring_assets.analytics.conversion import latest_conversion_rates
from lead_scoring_assets.defs.resources import DatabaseResource


@dg.asset(
    deps=["conversion_scores", "campaign_outcomes"],
    group_name="analytics",
    kinds={"sql", "pandas"},
    owners=["team:data"],
)
def conversion_analytics(database: DatabaseResource) -> dg.MaterializeResult:
    """The latest campaign's conversion rate per quality tier and per conversion-probability
    decile (the proof page's: scores recorded at the send, else today's), with charts."""
    with database.open() as db:
        rates = latest_conversion_rates(db)
    if rates.campaign is None:
        return dg.MaterializeResult(metadata={"campaign": "none: no campaigns yet"})
    charts = [
        bar_chart_markdown(
            dict(zip(rates.by_tier["quality_tier"], rates.by_tier["conversion_rate"] * 100)),
            "Conversion rate by tier, %",
        )
    ]
    if not rates.by_decile.empty:
        charts.append(
            bar_chart_markdown(
                {
                    int(d): r * 100
                    for d, r in zip(
                        rates.by_decile["probability_decile"], rates.by_decile["conversion_rate"]
                    )
                },
                "Conversion rate by probability decile, %",
                "#6a9f58",
            )
        )
    return dg.MaterializeResult(
        metadata={
            "campaign": rates.campaign,
            "basis": rates.basis,
            "by_tier": dg.MetadataValue.md(rates.by_tier.to_markdown(index=False)),
            "by_decile": dg.MetadataValue.md(
                rates.by_decile.to_markdown(index=False)
                if not rates.by_decile.empty
                else "no deciles yet"
            ),
            "charts": dg.MetadataValue.md("\n\n".join(charts)),
        }
    )
