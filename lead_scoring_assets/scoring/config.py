"""The advanced_v1 scoring weights: one typed, versioned configuration object.

Changing any value means a new ``calculation_version`` (see SCORING_SPEC.md).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

PLATFORMS: tuple[str, ...] = ("whatsapp", "instagram", "facebook", "google", "apple")
QUALITY_FACTORS: tuple[str, ...] = (
    "geographic_consistency",
    "account_age",
    "profile_completeness",
    "validation_recency",
)
PROFILE_FIELDS: tuple[str, ...] = (
    "full_name",
    "address",
    "state_name",
    "municipality",
    "lada",
    "operator",
)


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class ScoringConfig:
    """Every number of the rule-based score, as in SCORING_SPEC.md."""

    calculation_method: str = "advanced_v1"
    calculation_version: str = "advanced_v1.1"
    epsilon: float = 1e-9
    future_tolerance_hours: int = 24
    """A row dated more than this after ``as_of`` is malformed (``validated_in_future``)."""

    base_points: int = 15
    business_points: int = 3
    premium_points: int = 2
    platform_cap: int = 20
    display_weights: Mapping[str, int] = field(
        default_factory=lambda: _frozen(
            {"whatsapp": 25, "instagram": 20, "facebook": 20, "google": 20, "apple": 15}
        )
    )

    quality_weights: Mapping[str, float] = field(
        default_factory=lambda: _frozen({f: 0.10 for f in QUALITY_FACTORS})
    )
    geo_mismatch_value: float = 0.3
    account_age_full_days: int = 365
    recency_window_days: int = 30
    recency_floor: float = 0.5

    count_bonus: Mapping[int, int] = field(
        default_factory=lambda: _frozen({5: 10, 4: 7, 3: 5, 2: 2})
    )
    synergy_pairs: tuple[tuple[str, str, int], ...] = (
        ("whatsapp", "facebook", 3),
        ("instagram", "facebook", 3),
        ("whatsapp", "instagram", 2),
        ("google", "apple", 2),
    )
    business_bonus: Mapping[int, int] = field(default_factory=lambda: _frozen({3: 5, 2: 3}))
    premium_bonus: Mapping[int, int] = field(default_factory=lambda: _frozen({2: 3}))
    bonus_cap: int = 20
    total_cap: int = 100

    tiers: tuple[tuple[str, int], ...] = (
        ("PREMIUM", 90),
        ("HIGH", 75),
        ("MEDIUM", 50),
        ("LOW", 25),
        ("POOR", 1),
        ("UNKNOWN", 0),
    )

    confidence_validation_weight: float = 0.6
    confidence_quality_weight: float = 0.3
    confidence_per_validation: float = 0.05
    confidence_count_cap: float = 0.2
    confidence_decimals: int = 4


DEFAULT_CONFIG = ScoringConfig()

KNOWN_CONFIGS: Mapping[str, ScoringConfig] = _frozen(
    {
        config.calculation_version: config
        for config in (
            replace(DEFAULT_CONFIG, calculation_version="advanced_v1.0"),
            DEFAULT_CONFIG,
        )
    }
)
"""The configuration of every ``calculation_version`` this project has written, for reading
stored rows back (the scorer uses ``DEFAULT_CONFIG`` only). ``advanced_v1.0`` had every number
of v1.1 (git history of this file); v1.1 changed only which validation rows take part (rows
after ``as_of``, SCORING_SPEC.md §2), which the stored columns already reflect, not the
arithmetic that derives the breakdown from them. A new version adds its predecessor here."""


def config_for(calculation_version: str) -> ScoringConfig | None:
    """The configuration of ``calculation_version``, or None when this code does not know it
    (e.g. a row written by a newer deploy)."""
    return KNOWN_CONFIGS.get(calculation_version)
