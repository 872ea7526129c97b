"""Names of the operational tables' columns, as SCORING_SPEC.md §1 and §8 give them."""

from lead_scoring_assets.scoring.config import PLATFORMS, PROFILE_FIELDS

CONTACT_COLUMNS = ("id", "phone_e164", *PROFILE_FIELDS, "created_at", "last_platform_validation")
SCORING_CONTACT_COLUMNS = tuple(c for c in CONTACT_COLUMNS if c != "phone_e164")
"""What the scorer reads of a contact: never the phone number."""
VALIDATION_COLUMNS = (
    "id",
    "contact_id",
    "platform",
    "is_valid",
    "is_business",
    "is_premium",
    "confidence_score",
    "validation_method",
    "response_time_ms",
    "validated_at",
)
SCORING_VALIDATION_COLUMNS = tuple(
    c for c in VALIDATION_COLUMNS if c not in ("validation_method", "response_time_ms")
)
"""What the scorer reads of a validation row."""
SCORE_COLUMNS = (
    "contact_id",
    "last_calculated_at",
    "confidence_level",
    *(f"{p}_score" for p in PLATFORMS),
    "total_score",
    "platform_count",
    "business_account_count",
    "premium_account_count",
    *(f"{p}_points" for p in PLATFORMS),
    "profile_fields",
    "account_age_days",
    "validation_recency_days",
    "lada_state_match",
    "quality_tier",
    "calculation_method",
    "calculation_version",
)
"""``lead_scores``: the §8 columns, with the breakdown in typed columns (``<platform>_points``
to ``lada_state_match``, see ``scoring.breakdown``), ordered so that PostgreSQL packs each
row without alignment padding (8-byte, 2-byte, 1-byte, then text columns)."""
ML_SCORE_COLUMNS = (
    "contact_id",
    "predicted_score",
    "predicted_tier",
    "confidence",
    "model_version",
    "method",
    "calculated_at",
)
