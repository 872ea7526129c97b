"""The score breakdown (SCORING_SPEC.md §8) stored in typed columns, and read back as a dict.

``lead_scores`` keeps only what the breakdown cannot derive: each platform's points before
quality (``<platform>_points``), the number of non-blank profile fields, whether the LADA
matches the state (NULL: no geographic factor), and the whole days behind the account-age and
recency factors (NULL: factor absent), counted up to the day the factor saturates (365 and 15
days by default), so every row has one stored form. Everything else (factor values, multiplier,
bonus parts) follows from those, the stored adjusted scores and counts, and the configuration of
the row's ``calculation_version`` (``config.KNOWN_CONFIGS``), with the same arithmetic as the
scorer, so the dict is exactly the one the scorer computed. ``as_of`` is
``last_calculated_at``. Readers use ``read_breakdown``: a row of another version is shown as of
that version, one of an unknown version by its stored values only.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lead_scoring_assets.scoring.config import (
    DEFAULT_CONFIG,
    PLATFORMS,
    PROFILE_FIELDS,
    QUALITY_FACTORS,
    ScoringConfig,
    config_for,
)

POINTS_COLUMNS = tuple(f"{p}_points" for p in PLATFORMS)
BREAKDOWN_COLUMNS = (
    *POINTS_COLUMNS,
    "profile_fields",
    "lada_state_match",
    "account_age_days",
    "validation_recency_days",
)


def saturation_days(config: ScoringConfig) -> tuple[int, int]:
    """The days from which the account-age factor stays 1 and the recency factor stays at its
    floor: the stored day counts stop there."""
    recency = math.ceil(config.recency_window_days * (1 - config.recency_floor))
    return config.account_age_full_days, recency


def threshold_points(counts: np.ndarray, table: Mapping[int, int]) -> np.ndarray:
    """Points of the highest threshold each count reaches, from a {threshold: points} table."""
    points = np.zeros(len(counts), dtype="int64")
    for threshold, value in sorted(table.items()):
        points = np.where(counts >= threshold, value, points)
    return points


def bonus_parts(
    platform_count: np.ndarray,
    active: np.ndarray,
    business_count: np.ndarray,
    premium_count: np.ndarray,
    config: ScoringConfig,
) -> dict[str, np.ndarray]:
    """§6: each part of the combination bonus and the capped ``total``; ``active`` is a
    (contacts × platforms) mask of adjusted scores above 0."""
    synergy = np.zeros(len(platform_count), dtype="int64")
    for first, second, points in config.synergy_pairs:
        both = active[:, PLATFORMS.index(first)] & active[:, PLATFORMS.index(second)]
        synergy = synergy + np.where(both, points, 0)
    parts = {
        "platform_count": threshold_points(platform_count, config.count_bonus),
        "synergy": synergy,
        "business": threshold_points(business_count, config.business_bonus),
        "premium": threshold_points(premium_count, config.premium_bonus),
    }
    parts["total"] = np.minimum(config.bonus_cap, sum(parts.values()))
    return parts


def factor_values(
    profile_fields: np.ndarray,
    lada_state_match: np.ndarray,
    account_age_days: np.ndarray,
    recency_days: np.ndarray,
    config: ScoringConfig,
) -> dict[str, np.ndarray]:
    """§4: each quality factor from its stored inputs, NaN where the factor is absent
    (``lada_state_match`` is 1.0, 0.0 or NaN; the day counts NaN when unknown)."""
    return {
        "geographic_consistency": np.where(
            np.isnan(lada_state_match),
            np.nan,
            np.where(lada_state_match == 1.0, 1.0, config.geo_mismatch_value),
        ),
        "account_age": np.minimum(1.0, account_age_days / config.account_age_full_days),
        "profile_completeness": profile_fields / len(PROFILE_FIELDS),
        "validation_recency": np.maximum(
            config.recency_floor, 1.0 - recency_days / config.recency_window_days
        ),
    }


def quality_multiplier(factors: dict[str, np.ndarray], config: ScoringConfig) -> np.ndarray:
    """§5: ``1 − Σ w_f × (1 − value_f)`` over the present factors."""
    cost = np.zeros(len(factors["profile_completeness"]))
    for name in QUALITY_FACTORS:
        value = factors[name]
        cost = cost + np.where(np.isnan(value), 0.0, config.quality_weights[name] * (1.0 - value))
    return 1.0 - cost


def _number(value) -> float:
    return np.nan if value is None or pd.isna(value) else float(value)


class UnknownVersion(ValueError):
    """A row's ``calculation_version`` has no known configuration: no breakdown for it."""


def breakdown_of(row: Mapping, config: ScoringConfig | None = None) -> dict:
    """The breakdown of one stored score row: points before quality, each present factor, the
    multiplier, adjusted scores, each bonus part, the total and ``as_of``, with the
    configuration of the row's ``calculation_version`` (``config``, if given, must be that
    version's). Raises ``UnknownVersion`` when that configuration is not known."""
    version = row["calculation_version"]
    config = config or config_for(version)
    if config is None or config.calculation_version != version:
        raise UnknownVersion(
            f"score of contact {row['contact_id']} was calculated by "
            f"{version}, whose configuration is not known here: its "
            "breakdown cannot be derived"
        )
    match = row["lada_state_match"]
    factors = factor_values(
        np.array([_number(row["profile_fields"])]),
        np.array([_number(match)]),
        np.array([_number(row["account_age_days"])]),
        np.array([_number(row["validation_recency_days"])]),
        config,
    )
    adjusted = {p: int(row[f"{p}_score"]) for p in PLATFORMS}
    bonus = bonus_parts(
        np.array([int(row["platform_count"])]),
        np.array([[adjusted[p] > 0 for p in PLATFORMS]]),
        np.array([int(row["business_account_count"])]),
        np.array([int(row["premium_account_count"])]),
        config,
    )
    as_of = pd.Timestamp(row["last_calculated_at"])
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    present = (
        "profile_completeness",
        "geographic_consistency",
        "account_age",
        "validation_recency",
    )
    return {
        "as_of": as_of.isoformat(),
        "points_before_quality": {p: int(row[f"{p}_points"]) for p in PLATFORMS},
        "quality_factors": {
            name: float(factors[name][0]) for name in present if not np.isnan(factors[name][0])
        },
        "quality_multiplier": float(quality_multiplier(factors, config)[0]),
        "adjusted_scores": adjusted,
        "bonus": {name: int(values[0]) for name, values in bonus.items()},
        "total_score": int(row["total_score"]),
    }


@dataclass(frozen=True)
class StoredBreakdown:
    """What a reader shows of a stored row: its breakdown (None when its version's
    configuration is unknown) and, for a row of another version than the scorer writes now, a
    note saying so."""

    breakdown: dict | None
    calculation_version: str
    current_version: str
    note: str | None

    @property
    def is_current(self) -> bool:
        return self.calculation_version == self.current_version


def read_breakdown(row: Mapping) -> StoredBreakdown:
    """A stored row's breakdown for a reader, whatever the row's version: a row of another
    known version is read with its own configuration; one of an unknown version (e.g. written
    by a newer deploy) has no breakdown, its stored values stand alone."""
    version, current = row["calculation_version"], DEFAULT_CONFIG.calculation_version
    config = config_for(version)
    breakdown = None if config is None else breakdown_of(row, config)
    note = None
    if version != current:
        shown = (
            "its breakdown derived with that version's configuration"
            if config
            else "stored values only (that version's configuration is not known here)"
        )
        note = (
            f"computed by {version}, not the current {current}: {shown}; recomputed at "
            "the next rescoring"
        )
    return StoredBreakdown(breakdown, version, current, note)
