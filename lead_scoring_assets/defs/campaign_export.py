"""``campaign_export_job``: write a campaign segment (best leads first) to CSV or Parquet."""

from typing import Literal

import dagster as dg
from pydantic import Field

from lead_scoring_assets.campaigns.results import (
    DEFAULT_COST_PER_MESSAGE,
    DEFAULT_VALUE_PER_CONVERSION,
)
from lead_scoring_assets.campaigns.segment_export import (
    EXPORT_DIR_ENV,
    Segment,
    export_segment,
)
from lead_scoring_assets.campaigns.send_record import (
    DEFAULT_CONTROL_SHARE,
    CampaignPlan,
    CampaignRecording,
)
from lead_scoring_assets.defs.resources import DatabaseResource


class CampaignExportConfig(dg.Config):
    min_tier: str | None = Field(default=None, description="PREMIUM, HIGH, MEDIUM, LOW or POOR.")
    min_score: int | None = Field(default=None, ge=0, le=100)
    min_confidence: float = Field(default=0.0, ge=0, le=1)
    states: list[str] = Field(default_factory=list, description="Any spelling: 'CDMX', 'Jal.'.")
    limit: int | None = Field(default=None, gt=0)
    rank_by: Literal["total_score", "conversion_probability", "uplift"] = Field(
        default="total_score",
        description="Best first by the rule score, by the conversion "
        "model's probability (decile, then probability; the rule score's decile where "
        "conversion_scores holds the rule_rank fallback), or by uplift_scores.uplift (only "
        "contacts with an uplift score; none: the run fails).",
    )
    select: Literal["all", "max_profit"] = Field(
        default="all",
        description="all: every contact of the segment; max_profit (rank_by "
        "uplift, with campaign_name): those whose uplift × value_per_conversion exceeds "
        "cost_per_message, best first, within budget and limit.",
    )
    budget: float | None = Field(
        default=None,
        ge=0,
        description="max_profit: pesos for the messages (target arm × cost_per_message ≤ budget).",
    )
    min_probability: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Only contacts with at least this conversion probability.",
    )
    min_decile: int | None = Field(
        default=None,
        ge=1,
        le=10,
        description="Only contacts in this probability decile or above (10 = most likely).",
    )
    output_path: str = Field(
        description=f"File name relative to the export folder (${EXPORT_DIR_ENV}, default "
        "data/exports); '..', absolute paths and symbolic links out of it are refused."
    )
    format: Literal["csv", "parquet"] = "csv"
    overwrite: bool = Field(default=False, description="Replace an existing file of that name.")
    campaign_name: str | None = Field(
        default=None,
        description="Record the send as this campaign (campaigns, "
        "campaign_recipients, their features), with a control group; unset: nothing recorded.",
    )
    campaign_id: int | None = Field(
        default=None, gt=0, description="The campaign's id; unset: the next one."
    )
    sent_at: str | None = Field(
        default=None, description="Planned send time (ISO 8601); unset: the export's time."
    )
    cost_per_message: float | None = Field(
        default=None,
        ge=0,
        description="Pesos per message; rank_by uplift: default "
        f"{DEFAULT_COST_PER_MESSAGE}, recorded.",
    )
    value_per_conversion: float | None = Field(
        default=None,
        ge=0,
        description="Pesos per conversion; rank_by uplift: default "
        f"{DEFAULT_VALUE_PER_CONVERSION}, recorded.",
    )
    control_share: float = Field(
        default=DEFAULT_CONTROL_SHARE,
        ge=0,
        lt=1,
        description="Share of the selected "
        "contacts withheld from the file as the control group, drawn per decile.",
    )
    control_seed: int = Field(default=0, description="Seed of the control group's draw.")


@dg.op
def export_campaign_segment(
    context: dg.OpExecutionContext, config: CampaignExportConfig, database: DatabaseResource
) -> dg.Output[int]:
    """Stream the segment from one snapshot of lead_scores and contacts, without the numbers
    suppressed in that snapshot, one row per phone number, best first, into the export
    folder; ranked by uplift, with select max_profit only the messages worth their cost,
    within the budget, and the campaign's expected return recorded."""
    profit = config.select == "max_profit"
    if profit and config.campaign_name is None:
        raise ValueError(
            "select max_profit plans a campaign and records what it is expected "
            "to bring: set campaign_name"
        )
    segment = Segment(
        min_tier=config.min_tier,
        min_score=config.min_score,
        min_confidence=config.min_confidence,
        states=tuple(config.states),
        limit=config.limit,
        rank_by=config.rank_by,
        min_probability=config.min_probability,
        min_decile=config.min_decile,
        select=config.select,
        budget=config.budget,
        cost_per_message=_or(config.cost_per_message, DEFAULT_COST_PER_MESSAGE, profit),
        value_per_conversion=_or(config.value_per_conversion, DEFAULT_VALUE_PER_CONVERSION, profit),
    )
    segment.min_total()
    with database.open() as db:
        recording = None
        if config.campaign_name is not None:
            recording = CampaignRecording.plan_for(
                db,
                CampaignPlan(
                    config.campaign_name,
                    config.campaign_id,
                    config.sent_at,
                    config.cost_per_message,
                    config.value_per_conversion,
                    config.control_share,
                    config.control_seed,
                ),
                segment,
            )
        elif any(
            value is not None
            for value in (
                config.campaign_id,
                config.sent_at,
                config.cost_per_message,
                config.value_per_conversion,
            )
        ):
            raise ValueError(
                "campaign_id, sent_at, cost_per_message and value_per_conversion "
                "need a campaign_name"
            )
        report = export_segment(
            db,
            segment,
            config.output_path,
            config.format,
            overwrite=config.overwrite,
            select=recording.select if recording else None,
            record=recording.record if recording else None,
            control_share=recording.plan.control_share if recording else 0,
        )
    context.log.info(
        f"{report.rows} contacts written to {report.file} "
        f"({report.duplicates_dropped} duplicate phone numbers, "
        f"{report.left_out['suppressed_contacts']} suppressed contacts left out)"
    )
    campaign = (
        {}
        if recording is None
        else {
            "campaign_id": recording.campaign_id,
            "as_of": recording.as_of.isoformat(),
            "target_recipients": recording.target,
            "control_recipients": recording.control,
            "control_share": config.control_share,
            "recipients_by_decile": dg.MetadataValue.md(
                _by_decile(recording.by_decile, "uplift decile" if segment.by_uplift else "decile")
            ),
            **_expected(recording),
        }
    )
    return dg.Output(
        report.rows,
        metadata={
            **campaign,
            "file": report.file,
            "dagster/row_count": report.rows,
            "sha256": report.sha256,
            "bytes": report.bytes,
            "duplicate_phones_dropped": report.duplicates_dropped,
            "format": config.format,
            "minimum_total_score": segment.min_total(),
            "rank_by": config.rank_by,
            "select": config.select,
            **({"budget": config.budget} if config.budget is not None else {}),
            **(
                {"uplift_model_version": report.uplift_model_version}
                if report.uplift_model_version
                else {}
            ),
            **report.left_out,
            "suppression_snapshot_at": report.snapshot_at.isoformat(),
            **({"suppression_snapshot": report.snapshot} if report.snapshot else {}),
        },
    )


def _or(value: float | None, default: float, needed: bool) -> float | None:
    return default if value is None and needed else value


def _expected(recording: CampaignRecording) -> dict:
    """The cost of the messages and, ranked by uplift, what they are expected to bring."""
    plan = recording.plan
    if recording.expectation is None:
        return {}
    e = recording.expectation
    return {
        "cost_per_message": plan.cost_per_message,
        "value_per_conversion": plan.value_per_conversion,
        "messages_cost": recording.target * plan.cost_per_message,
        "expected_incremental_conversions": e.incremental_conversions,
        "expected_incremental_interval": f"[{e.incremental_low:.1f}, {e.incremental_high:.1f}]",
        "expected_profit": e.profit,
        "expected_profit_interval": f"[{e.profit_low:,.0f}, {e.profit_high:,.0f}]",
    }


def _by_decile(by_decile: dict[int, tuple[int, int]], name: str) -> str:
    """A Markdown table of target and control recipients per decile (0: no decile)."""
    rows = [f"| {d} | {t} | {c} |" for d, (t, c) in sorted(by_decile.items(), reverse=True)]
    return "\n".join([f"| {name} | target | control |", "|---|---|---|", *rows])


@dg.job(
    description="Export the targeted contacts of a campaign segment, best first (by "
    "score, conversion probability or uplift; or only those worth a message)."
)
def campaign_export_job() -> None:
    export_campaign_segment()
