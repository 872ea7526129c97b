"""Contact features for the lead-scoring models: feature set ``features_v1``.

Derived from the scorer's own intermediate values (``ScoreParts``), so a feature and the
rule it mirrors can never disagree. No phone number, name or address is a feature.

| feature | definition |
|---|---|
| ``has_<platform>`` | 1 if the platform's current validation is valid, else 0 |
| ``<platform>_score`` | the adjusted platform score of ``lead_scores`` (0–20) |
| ``platform_count`` | platforms with an adjusted score above 0 |
| ``business_account_count``, ``premium_account_count`` | valid current business / premium accounts |
| ``validation_count`` | current well-formed validations, valid or not (0–5) |
| ``avg_confidence_score`` | their mean confidence; 0 without validations |
| ``profile_completeness`` | filled profile fields / 6 |
| ``geographic_consistency`` | 1.0 or 0.3 as in the score; 0.5 when unknown (the design's value) |
| ``account_age_days`` | whole days since ``created_at``; -1 when unknown |
| ``validation_recency_days`` | whole days since the latest validation; 999 when never validated |
| ``has_business_accounts``, ``has_premium_accounts`` | count above 0 |
| ``is_multi_platform`` | ``platform_count`` ≥ 2 |
| ``meta_ecosystem_user`` | WhatsApp and (Facebook or Instagram), valid |
| ``tech_ecosystem_user`` | Google and Apple, valid |
"""

import numpy as np
import pandas as pd

from lead_scoring_assets.scoring.config import PLATFORMS
from lead_scoring_assets.scoring.engine import ScoreParts

FEATURE_SET_VERSION = "features_v1"
UNKNOWN_GEOGRAPHY = 0.5
UNKNOWN_ACCOUNT_AGE_DAYS = -1
NEVER_VALIDATED_DAYS = 999
FEATURE_COLUMNS = (
    *(f"has_{p}" for p in PLATFORMS),
    *(f"{p}_score" for p in PLATFORMS),
    "platform_count",
    "business_account_count",
    "premium_account_count",
    "validation_count",
    "avg_confidence_score",
    "profile_completeness",
    "geographic_consistency",
    "account_age_days",
    "validation_recency_days",
    "has_business_accounts",
    "has_premium_accounts",
    "is_multi_platform",
    "meta_ecosystem_user",
    "tech_ecosystem_user",
)


def contact_features(parts: ScoreParts) -> pd.DataFrame:
    """One row per contact: ``contact_id`` and the ``FEATURE_COLUMNS``, all numeric."""
    valid = {p: parts.valid[:, i] for i, p in enumerate(PLATFORMS)}
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = parts.confidence_sum / parts.current_rows
    frame = pd.DataFrame({"contact_id": parts.contact_ids})
    for platform in PLATFORMS:
        frame[f"has_{platform}"] = valid[platform].astype("int8")
    for i, platform in enumerate(PLATFORMS):
        frame[f"{platform}_score"] = parts.adjusted[:, i].astype("int16")
    frame["platform_count"] = parts.platform_count.astype("int16")
    frame["business_account_count"] = parts.business_count.astype("int16")
    frame["premium_account_count"] = parts.premium_count.astype("int16")
    frame["validation_count"] = parts.current_rows.astype("int16")
    frame["avg_confidence_score"] = np.where(parts.current_rows > 0, mean_confidence, 0.0)
    frame["profile_completeness"] = parts.factors["profile_completeness"]
    frame["geographic_consistency"] = np.nan_to_num(
        parts.factors["geographic_consistency"], nan=UNKNOWN_GEOGRAPHY
    )
    frame["account_age_days"] = np.nan_to_num(
        parts.account_age_days, nan=UNKNOWN_ACCOUNT_AGE_DAYS
    ).astype("int32")
    frame["validation_recency_days"] = np.nan_to_num(
        parts.recency_days, nan=NEVER_VALIDATED_DAYS
    ).astype("int32")
    frame["has_business_accounts"] = (parts.business_count > 0).astype("int8")
    frame["has_premium_accounts"] = (parts.premium_count > 0).astype("int8")
    frame["is_multi_platform"] = (parts.platform_count >= 2).astype("int8")
    frame["meta_ecosystem_user"] = (
        valid["whatsapp"] & (valid["facebook"] | valid["instagram"])
    ).astype("int8")
    frame["tech_ecosystem_user"] = (valid["google"] & valid["apple"]).astype("int8")
    return frame[["contact_id", *FEATURE_COLUMNS]]
