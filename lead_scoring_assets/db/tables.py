"""Names of the operational tables' columns, as SCORING_SPEC.md §1 and §8 give them."""

from lead_scoring_assets.scoring.config import PLATFORMS, PROFILE_FIELDS

CONTACT_COLUMNS = ("id", "phone_e164", *PROFILE_FIELDS, "created_at", "last_platform_validation")
VALIDATION_COLUMNS = (
    "id", "contact_id", "platform", "is_valid", "is_business", "is_premium",
    "confidence_score", "validation_method", "response_time_ms", "validated_at",
)
SCORING_VALIDATION_COLUMNS = tuple(
    c for c in VALIDATION_COLUMNS if c not in ("validation_method", "response_time_ms")
)
"""What the scorer reads of a validation row."""
SCORE_COLUMNS = (
    "contact_id", *(f"{p}_score" for p in PLATFORMS), "total_score",
    "quality_tier", "confidence_level", "platform_count", "business_account_count",
    "premium_account_count", "score_breakdown", "calculation_method", "calculation_version",
    "last_calculated_at",
)
ML_SCORE_COLUMNS = (
    "contact_id", "predicted_score", "predicted_tier", "confidence", "model_version", "method",
    "calculated_at",
)
