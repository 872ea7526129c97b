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


DO_NOT_CONTACT = Field(
    description="Whether the number may not be messaged now: suppressed "
    "(suppressions in force, or an opt-out reply not yet processed) or "
    "unreadable."
)
CONTACT_ID_STR = Field(
    description="contact_id as a decimal string: JavaScript reads a JSON "
    "number above 2^53 inexactly, so the dashboard uses this one."
)
CAMPAIGN_ID_STR = Field(
    description="campaign_id as a decimal string: JavaScript reads a JSON "
    "number above 2^53 inexactly, so the dashboard uses this one."
)
SUPPRESSION_REASONS = Field(
    description="Why: opt_out, repus, hard_bounce, arco, manual, or "
    "unreadable_phone; empty when it may be messaged."
)


class ScoreCard(BaseModel):
    """The stored score (columns named as in ``lead_scores``), the contact's profile with its
    phone masked, the breakdown, the ML and conversion scores where they exist, the last
    changes (newest first) and the trend over the last 30 days. A score stored by another
    ``calculation_version`` than the current one is shown as stored, marked by
    ``is_current_version`` false and ``version_note``; the next rescoring rewrites it."""

    contact_id: int
    contact_id_str: str = CONTACT_ID_STR
    phone: str | None
    do_not_contact: bool = DO_NOT_CONTACT
    suppression_reasons: list[str] = SUPPRESSION_REASONS
    profile: dict[str, str | None] = Field(
        description="state_name (as stored), state (its canonical name), municipality, lada, "
        "operator."
    )
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
    current_calculation_version: str = Field(description="The version the scorer writes now.")
    is_current_version: bool = Field(
        description="Whether calculation_version is the current version."
    )
    version_note: str | None = Field(
        description="For a score of another version: which, how its breakdown was read (or "
        "that only its stored values are known) and that the next rescoring recomputes it; "
        "null for a current score."
    )
    last_calculated_at: datetime
    display_weights: dict[str, int]
    score_breakdown: dict[str, Any] | None = Field(
        description="As of, points before quality, quality factors, multiplier, adjusted "
        "scores, bonus parts, total (SCORING_SPEC.md §8), with the configuration of "
        "calculation_version; null when that version's configuration is not known here."
    )
    ml_score: MlScore | None
    conversion_score: dict[str, Any] | None
    uplift_score: dict[str, Any] | None = Field(
        description="The lead_uplift champion's uplift (change in the probability of "
        "converting when messaged, e.g. 0.02 = +2 points), uplift_decile (10 = highest), "
        "model_version, method, calculated_at and reasons (effects in uplift); null when "
        "there is no uplift champion (uplift_scores is then empty: no guess)."
    )
    history: list[HistoryEntry]
    trend: Literal["improving", "steady", "declining"]


class ContactSummary(BaseModel):
    contact_id: int
    contact_id_str: str = CONTACT_ID_STR
    phone: str | None
    do_not_contact: bool = DO_NOT_CONTACT
    suppression_reasons: list[str] = SUPPRESSION_REASONS
    state_name: str | None = Field(description="As stored, in any spelling.")
    state: str | None = Field(
        description="The canonical name of state_name's federal entity "
        "(geography/states.py), null when it names none."
    )
    total_score: int
    quality_tier: str
    confidence_level: float
    platform_count: int
    conversion_probability: float | None = Field(
        description="conversion_scores' probability, null without one."
    )
    uplift: float | None = Field(description="uplift_scores' uplift, null without one.")
    last_calculated_at: datetime


class ContactPage(BaseModel):
    items: list[ContactSummary]
    next_cursor: str | None
    total: int | None = Field(
        description="How many contacts match the filters, on the first page (no cursor); "
        "null on the next pages and with total=false. With contactable=true, a suppressed "
        "number stored in another form than +52 and 10 digits is still counted."
    )


class ContactTotal(BaseModel):
    total: int = Field(
        description="How many contacts match the filters, as a first page's total counts them"
    )


class AnalyticsPoint(BaseModel):
    computed_at: datetime
    contacts: int
    premium_leads: int
    top_leads: int = Field(description="PREMIUM and HIGH contacts: the sum of by_state's top_leads")
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
    contact_id_str: str = CONTACT_ID_STR
    priority: int
    version: int
    created_at: datetime
    updated_at: datetime


class RescoreStatus(BaseModel):
    """Whether the contact still waits for its rescoring, and whether the queue moves."""

    contact_id: int
    contact_id_str: str = CONTACT_ID_STR
    queued: bool = Field(description="false once the entry was scored (or never queued)")
    priority: int | None
    queued_at: datetime | None = Field(description="when the entry was last queued or bumped")
    next_entry_waiting_since: datetime | None = Field(
        description="since when the next entry to claim has waited; null for an empty queue"
    )
    stalled: bool = Field(
        description="the next entry to claim has waited more than 5 "
        "minutes: no scoring run is processing the queue"
    )


class KeyRole(BaseModel):
    role: Literal["admin", "read"] = Field(description="admin: may also rescore and export")


class ExportRequest(BaseModel):
    """The contact list's filters, for ``campaign_export_job``."""

    tier: Tier | None = Field(
        default=None, description="exported as the minimum tier: this tier and the ones above"
    )
    state: str | None = Field(default=None, min_length=1, max_length=60, description="any spelling")
    min_score: int | None = Field(default=None, ge=0, le=100)
    sort: Literal["score", "conversion"] = Field(
        default="score", description="rank by score or by conversion probability"
    )


class ExportRun(BaseModel):
    run_id: str
    status: str = Field(
        description="Dagster's run status: QUEUED, STARTING, STARTED, SUCCESS, "
        "FAILURE, CANCELING, CANCELED …"
    )
    dagster_url: str = Field(description="the run in the Dagster UI")


class ForgetRequest(BaseModel):
    phone: str = Field(
        min_length=1,
        max_length=40,
        pattern=r"^[0-9+() .\-]+$",
        description="the number, in any Mexican format",
    )


class ForgetResult(BaseModel):
    """What an ARCO cancellation did; the number appears only masked."""

    masked_phone: str
    contacts: int = Field(description="contacts deleted")
    deleted: dict[str, int] = Field(description="rows deleted per table")
    suppression_added: bool = Field(description="false: an arco suppression already existed")
    campaigns_counted: list[int] = Field(
        description="campaigns whose target/control counts were filled before deleting"
    )
    files: list[str] = Field(
        description="export files (relative to the export folder) that "
        "still hold the number: edit or delete them"
    )


class CampaignArm(BaseModel):
    recipients: int
    delivered: int
    conversions: int = Field(description="conversions within the attribution window")
    conversion_rate: float | None = Field(description="conversions / recipients")


class CampaignEffect(BaseModel):
    """The target arm against the control arm; each figure with its 95 % interval (Newcombe's
    hybrid score interval of the difference of the two rates); money in pesos."""

    incremental_conversions: float = Field(
        description="target conversions − control rate × target recipients"
    )
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
    return_per_peso: float | None = Field(
        description="incremental profit / cost; null when the cost is 0"
    )
    return_per_peso_low: float | None
    return_per_peso_high: float | None


class CampaignDecile(BaseModel):
    decile: int = Field(description="the recipients' probability decile as recorded at the send")
    target: CampaignArm
    control: CampaignArm
    effect: CampaignEffect | None


class CampaignPrediction(BaseModel):
    """What a campaign planned by uplift was expected to bring, against what was measured
    (null: nothing measured yet, or no control group); 95 % intervals, money in pesos."""

    uplift_model_version: str | None
    select_rule: str | None = Field(description="all or max_profit")
    expected_incremental_conversions: float
    expected_incremental_low: float
    expected_incremental_high: float
    measured_incremental_conversions: float | None
    measured_incremental_low: float | None
    measured_incremental_high: float | None
    conversions_inside: bool | None = Field(
        description="the measured incremental conversions are within the expected interval"
    )
    expected_profit: float
    expected_profit_low: float
    expected_profit_high: float
    measured_profit: float | None
    measured_profit_low: float | None
    measured_profit_high: float | None
    profit_inside: bool | None = Field(
        description="the measured profit is within the expected interval"
    )


class CampaignSummary(BaseModel):
    """A campaign with outcome rows: both arms and, with a control group, its effect."""

    campaign_id: int
    campaign_id_str: str = CAMPAIGN_ID_STR
    name: str | None
    sent_at: datetime
    window_closed: bool = Field(
        description="whether the attribution window has closed (false: the figures may still grow)"
    )
    has_control: bool
    note: str | None = Field(description="why there are no incremental figures, if so")
    cost_per_message: float
    value_per_conversion: float
    costs_from: Literal["campaign", "default"] = Field(
        description="campaign: its own costs; default: at least one from the defaults"
    )
    arms: dict[Literal["target", "control"], CampaignArm]
    effect: CampaignEffect | None
    predicted: CampaignPrediction | None = Field(
        description="predicted vs measured, for a campaign planned with an expectation"
    )


class CampaignList(BaseModel):
    items: list[CampaignSummary]
    """Newest first."""


class CampaignDetail(CampaignSummary):
    deciles: list[CampaignDecile] = Field(
        description="per recorded probability decile, highest first"
    )


class Rate(BaseModel):
    """Messages (target recipients), conversions within the attribution window, the rate with
    its 95 % Wilson interval, and its lift over the campaign's rate."""

    messages: int
    conversions: int
    conversion_rate: float
    rate_low: float
    rate_high: float
    lift: float | None


class TierRate(Rate):
    tier: str


class DecileRate(Rate):
    decile: int


class CampaignProof(BaseModel):
    """A campaign's conversion rate per tier and per decile (highest first) and its results
    against control (null without a control group)."""

    campaign_id: int
    campaign_id_str: str = CAMPAIGN_ID_STR
    name: str | None
    sent_at: datetime
    window_closed: bool
    basis: Literal["at_send", "current"] = Field(
        description="at_send: the tier and decile recorded when the campaign was sent; "
        "current: today's scores (in hindsight), for a campaign that recorded none"
    )
    messages: int
    conversions: int
    conversion_rate: float | None
    by_tier: list[TierRate]
    by_decile: list[DecileRate]
    against_control: CampaignSummary | None


class ProofList(BaseModel):
    items: list[CampaignProof]
    """Latest campaign first."""
