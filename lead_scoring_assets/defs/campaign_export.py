"""``campaign_export_job``: write a campaign segment (best leads first) to CSV or Parquet."""

from typing import Literal

import dagster as dg
from pydantic import Field

from lead_scoring_assets.campaigns.segment_export import (
    EXPORT_DIR_ENV,
    Segment,
    export_segment,
)
from lead_scoring_assets.defs.resources import DatabaseResource


class CampaignExportConfig(dg.Config):
    min_tier: str | None = Field(default=None, description="PREMIUM, HIGH, MEDIUM, LOW or POOR.")
    min_score: int | None = Field(default=None, ge=0, le=100)
    min_confidence: float = Field(default=0.0, ge=0, le=1)
    states: list[str] = Field(default_factory=list, description="Any spelling: 'CDMX', 'Jal.'.")
    limit: int | None = Field(default=None, gt=0)
    rank_by: Literal["total_score", "conversion_probability"] = Field(
        default="total_score", description="Best first by the rule score, or by the conversion "
        "model's probability (decile, then probability; the rule score's decile where "
        "conversion_scores holds the rule_rank fallback).")
    min_probability: float | None = Field(
        default=None, ge=0, le=1, description="Only contacts with at least this conversion "
        "probability.")
    min_decile: int | None = Field(default=None, ge=1, le=10,
                                   description="Only contacts in this probability decile or "
                                   "above (10 = most likely).")
    output_path: str = Field(
        description=f"File name relative to the export folder (${EXPORT_DIR_ENV}, default "
        "data/exports); '..', absolute paths and symbolic links out of it are refused.")
    format: Literal["csv", "parquet"] = "csv"
    overwrite: bool = Field(default=False, description="Replace an existing file of that name.")


@dg.op
def export_campaign_segment(
    context: dg.OpExecutionContext, config: CampaignExportConfig, database: DatabaseResource
) -> dg.Output[int]:
    """Stream the segment from one snapshot of lead_scores and contacts, without the numbers
    suppressed in that snapshot, one row per phone number, best first, into the export
    folder."""
    segment = Segment(min_tier=config.min_tier, min_score=config.min_score,
                      min_confidence=config.min_confidence, states=tuple(config.states),
                      limit=config.limit, rank_by=config.rank_by,
                      min_probability=config.min_probability, min_decile=config.min_decile)
    with database.open() as db:
        report = export_segment(db, segment, config.output_path, config.format,
                                overwrite=config.overwrite)
    context.log.info(f"{report.rows} contacts written to {report.file} "
                     f"({report.duplicates_dropped} duplicate phone numbers, "
                     f"{report.left_out['suppressed_contacts']} suppressed contacts left out)")
    return dg.Output(report.rows, metadata={
        "file": report.file,
        "dagster/row_count": report.rows,
        "sha256": report.sha256,
        "bytes": report.bytes,
        "duplicate_phones_dropped": report.duplicates_dropped,
        "format": config.format,
        "minimum_total_score": segment.min_total(),
        "rank_by": config.rank_by,
        **report.left_out,
        "suppression_snapshot_at": report.snapshot_at.isoformat(),
        **({"suppression_snapshot": report.snapshot} if report.snapshot else {}),
    })


@dg.job(description="Export the targeted contacts of a campaign segment, best first.")
def campaign_export_job() -> None:
    export_campaign_segment()
