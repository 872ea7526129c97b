"""The API's response bodies, as its OpenAPI schema shows them."""

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from lead_scoring_assets.scoring.config import DEFAULT_CONFIG

Tier = StrEnum("Tier", [(name, name) for name, _ in DEFAULT_CONFIG.tiers])


class Error(BaseModel):
    detail: str


class HistoryEntry(BaseModel):
    changed_at: datetime
    old_total_score: int | None
    new_total_score: int
    old_quality_tier: str | None
    new_quality_tier: str
    calculation_version: str


class MlScore(BaseModel):
    predicted_score: float
    predicted_tier: str
    confidence: float
    model_version: str | None
    method: str
    calculated_at: datetime | None


DO_NOT_CONTACT = Field(description="Whether the number may not be messaged now: suppressed "
                      "(suppressions in force, or an opt-out reply not yet processed) or "
                      "unreadable.")
SUPPRESSION_REASONS = Field(description="Why: opt_out, repus, hard_bounce, arco, manual, or "
                           "unreadable_phone; empty when it may be messaged.")


class ScoreCard(BaseModel):
    """The stored score (columns named as in ``lead_scores``), the contact's profile with its
    phone masked, the breakdown, the ML and conversion scores where they exist, the last
    changes (newest first) and the trend over the last 30 days. A score stored by another
    ``calculation_version`` than the current one is shown as stored, marked by
    ``is_current_version`` false and ``version_note``; the next rescoring rewrites it."""

    contact_id: int
    phone: str | None
    do_not_contact: bool = DO_NOT_CONTACT
    suppression_reasons: list[str] = SUPPRESSION_REASONS
    profile: dict[str, str | None]
    whatsapp_score: int
    instagram_score: int
    facebook_score: int
    google_score: int
    apple_score: int
    total_score: int
    quality_tier: str
    confidence_level: float
    platform_count: int
    business_account_count: int
    premium_account_count: int
    calculation_method: str
    calculation_version: str = Field(description="The version that computed this score.")
    current_calculation_version: str = Field(
        description="The version the scorer writes now.")
    is_current_version: bool = Field(
        description="Whether calculation_version is the current version.")
    version_note: str | None = Field(
        description="For a score of another version: which, how its breakdown was read (or "
        "that only its stored values are known) and that the next rescoring recomputes it; "
        "null for a current score.")
    last_calculated_at: datetime
    display_weights: dict[str, int]
    score_breakdown: dict[str, Any] | None = Field(
        description="As of, points before quality, quality factors, multiplier, adjusted "
        "scores, bonus parts, total (SCORING_SPEC.md §8), with the configuration of "
        "calculation_version; null when that version's configuration is not known here.")
    ml_score: MlScore | None
    conversion_score: dict[str, Any] | None
    uplift_score: dict[str, Any] | None = Field(
        description="The lead_uplift champion's uplift (change in the probability of "
        "converting when messaged, e.g. 0.02 = +2 points), uplift_decile (10 = highest), "
        "model_version, method, calculated_at and reasons (effects in uplift); null when "
        "there is no uplift champion (uplift_scores is then empty: no guess).")
    history: list[HistoryEntry]
    trend: Literal["improving", "steady", "declining"]


class ContactSummary(BaseModel):
    contact_id: int
    phone: str | None
    do_not_contact: bool = DO_NOT_CONTACT
    suppression_reasons: list[str] = SUPPRESSION_REASONS
    state_name: str | None
    total_score: int
    quality_tier: str
    confidence_level: float
    platform_count: int
    last_calculated_at: datetime


class ContactPage(BaseModel):
    items: list[ContactSummary]
    next_cursor: str | None


class AnalyticsPoint(BaseModel):
    computed_at: datetime
    contacts: int
    premium_leads: int
    average_score: float
    validated_contacts: int
    multi_platform_contacts: int
    tier_distribution: dict[str, int]


class AnalyticsRun(AnalyticsPoint):
    run_id: str | None
    score_distribution: dict[str, int]
    platform_success: dict[str, float]
    by_state: list[dict[str, Any]] | None


class Analytics(BaseModel):
    latest: AnalyticsRun
    history: list[AnalyticsPoint]
    """Oldest first, up to the last 90 runs."""


class QueueEntry(BaseModel):
    contact_id: int
    priority: int
    version: int
    created_at: datetime
    updated_at: datetime


class ForgetRequest(BaseModel):
    phone: str = Field(min_length=1, max_length=40, pattern=r"^[0-9+() .\-]+$",
                       description="the number, in any Mexican format")


class ForgetResult(BaseModel):
    """What an ARCO cancellation did; the number appears only masked."""

    masked_phone: str
    contacts: int = Field(description="contacts deleted")
    deleted: dict[str, int] = Field(description="rows deleted per table")
    suppression_added: bool = Field(description="false: an arco suppression already existed")
    campaigns_counted: list[int] = Field(
        description="campaigns whose target/control counts were filled before deleting")
    files: list[str] = Field(description="export files (relative to the export folder) that "
                                         "still hold the number: edit or delete them")


class CampaignArm(BaseModel):
    recipients: int
    delivered: int
    conversions: int = Field(description="conversions within the attribution window")
    conversion_rate: float | None = Field(description="conversions / recipients")


class CampaignEffect(BaseModel):
    """The target arm against the control arm; each figure with its 95 % interval (Newcombe's
    hybrid score interval of the difference of the two rates); money in pesos."""

    incremental_conversions: float = Field(
        description="target conversions − control rate × target recipients")
    incremental_conversions_low: float
    incremental_conversions_high: float
    incremental_rate: float = Field(description="target rate − control rate")
    incremental_rate_low: float
    incremental_rate_high: float
    cost: float = Field(description="cost_per_message × messages sent (target recipients)")
    incremental_revenue: float
    incremental_revenue_low: float
    incremental_revenue_high: float
    incremental_profit: float = Field(description="incremental revenue − cost")
    incremental_profit_low: float
    incremental_profit_high: float
    return_per_peso: float | None = Field(description="incremental profit / cost; null when "
                                                      "the cost is 0")
    return_per_peso_low: float | None
    return_per_peso_high: float | None


class CampaignDecile(BaseModel):
    decile: int = Field(description="the recipients' probability decile as recorded at the send")
    target: CampaignArm
    control: CampaignArm
    effect: CampaignEffect | None


class CampaignSummary(BaseModel):
    """A campaign with outcome rows: both arms and, with a control group, its effect."""

    campaign_id: int
    name: str | None
    sent_at: datetime
    window_closed: bool = Field(description="whether the attribution window has closed "
                                            "(false: the figures may still grow)")
    has_control: bool
    note: str | None = Field(description="why there are no incremental figures, if so")
    cost_per_message: float
    value_per_conversion: float
    costs_from: Literal["campaign", "default"] = Field(
        description="campaign: its own costs; default: at least one from the defaults")
    arms: dict[Literal["target", "control"], CampaignArm]
    effect: CampaignEffect | None


class CampaignList(BaseModel):
    items: list[CampaignSummary]
    """Newest first."""


class CampaignDetail(CampaignSummary):
    deciles: list[CampaignDecile] = Field(description="per recorded probability decile, "
                                                      "highest first")
