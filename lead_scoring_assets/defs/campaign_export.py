"""``campaign_export_job``: write a campaign segment (best leads first) to CSV or Parquet."""

from typing import Literal

import dagster as dg
from pydantic import Field

from lead_scoring_assets.campaigns.segment_export import Segment, export_segment
from lead_scoring_assets.defs.resources import DatabaseResource


class CampaignExportConfig(dg.Config):
    min_tier: str | None = Field(default=None, description="PREMIUM, HIGH, MEDIUM, LOW or POOR.")
    min_score: int | None = Field(default=None, ge=0, le=100)
    min_confidence: float = Field(default=0.0, ge=0, le=1)
    states: list[str] = Field(default_factory=list, description="Any spelling: 'CDMX', 'Jal.'.")
    limit: int | None = Field(default=None, gt=0)
    output_path: str = Field(description="File to write (its folder is created).")
    format: Literal["csv", "parquet"] = "csv"


@dg.op
def export_campaign_segment(
    context: dg.OpExecutionContext, config: CampaignExportConfig, database: DatabaseResource
) -> dg.Output[int]:
    """Select the segment from lead_scores and write it, ordered by score."""
    segment = Segment(min_tier=config.min_tier, min_score=config.min_score,
                      min_confidence=config.min_confidence, states=tuple(config.states),
                      limit=config.limit)
    with database.open() as db:
        count = export_segment(db, segment, config.output_path, config.format)
    context.log.info(f"{count} contacts written to {config.output_path}")
    return dg.Output(count, metadata={"contacts": count, "path": config.output_path,
                                      "format": config.format,
                                      "minimum_total_score": segment.min_total()})


@dg.job(description="Export the targeted contacts of a campaign segment, best first.")
def campaign_export_job() -> None:
    export_campaign_segment()
