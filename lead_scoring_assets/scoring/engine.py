"""The vectorised advanced_v1 scorer: contacts + validations + LADA reference -> lead scores.

Every step is a whole-column operation on one chunk of contacts; there is no per-contact
Python loop. The numbered comments point at the sections of SCORING_SPEC.md.
"""

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lead_scoring_assets.db.tables import SCORE_COLUMNS
from lead_scoring_assets.geography.states import normalize_state_series
from lead_scoring_assets.scoring.breakdown import (
    POINTS_COLUMNS,
    bonus_parts,
    factor_values,
    quality_multiplier,
    saturation_days,
)
from lead_scoring_assets.scoring.config import (
    DEFAULT_CONFIG,
    PLATFORMS,
    PROFILE_FIELDS,
    QUALITY_FACTORS,
    ScoringConfig,
)

MALFORMED_REASONS = (
    "unknown_contact",
    "unknown_platform",
    "missing_is_valid",
    "missing_validated_at",
    "missing_confidence_score",
    "confidence_score_out_of_range",
    "validated_in_future",
)
_DAY_US = 86_400_000_000


@dataclass(frozen=True)
class LadaReference:
    """The LADA reference prepared for look-ups: known LADAs and (lada, canonical state) pairs."""

    ladas: frozenset[str]
    pairs: frozenset[str]

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "LadaReference":
        ladas = frame["lada"].astype("str").str.strip()
        states = normalize_state_series(frame["state_name"].astype("str"))
        keep = ladas.notna() & (ladas != "") & states.notna()
        return cls(
            ladas=frozenset(ladas[keep]),
            pairs=frozenset((ladas[keep] + "|" + states[keep]).tolist()),
        )


@dataclass
class ScoreParts:
    """Per-contact intermediate values of the score, in ``contact_ids`` order (for features).

    ``valid``: a valid current row per platform (columns in ``PLATFORMS`` order);
    ``factors``: each quality factor, NaN when absent; ``account_age_days`` and
    ``recency_days``: whole days, NaN when unknown; ``current_rows``: current well-formed rows,
    valid or not; ``confidence_sum``: their confidence scores summed.
    """

    contact_ids: np.ndarray
    valid: np.ndarray
    adjusted: np.ndarray
    platform_count: np.ndarray
    business_count: np.ndarray
    premium_count: np.ndarray
    current_rows: np.ndarray
    confidence_sum: np.ndarray
    factors: dict[str, np.ndarray]
    account_age_days: np.ndarray
    recency_days: np.ndarray


@dataclass
class ScoredChunk:
    """The scorer's output for one chunk of contacts."""

    scores: pd.DataFrame
    malformed: pd.DataFrame
    last_validated_at: pd.Series
    parts: ScoreParts
    rows_after_as_of: int
    """Well-formed rows dated after ``as_of``: they take no part (SCORING_SPEC.md §2 v1.1)."""
    due_later: pd.DataFrame
    """The contacts with such rows (``contact_id``) and when the last of them is due
    (``not_before``): their score catches up once it is, so they stay queued until then."""


def utc_timestamp(value: datetime | str | pd.Timestamp) -> pd.Timestamp:
    """``value`` as a timezone-aware UTC timestamp (naive values are read as UTC)."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _utc_micros(values: pd.Series) -> np.ndarray:
    """Timestamps as microseconds since the epoch, float64 (NaN for NULL)."""
    stamps = pd.to_datetime(values, utc=True, format="ISO8601").dt.as_unit("us")
    micros = stamps.dt.tz_localize(None).to_numpy(dtype="datetime64[us]").view("int64")
    return np.where(stamps.isna().to_numpy(), np.nan, micros.astype("float64"))


def _days_between(start_us: np.ndarray, end_us: int) -> np.ndarray:
    """Whole days from each start to ``end``, rounded down, never below 0 (NaN stays NaN)."""
    return np.maximum(np.floor((end_us - start_us) / _DAY_US), 0.0)


def _nonblank(values: pd.Series) -> np.ndarray:
    text = values.astype("str")
    return (text.notna() & (text.str.strip().str.len() > 0)).to_numpy(dtype=bool)


def _as_bool(values: pd.Series) -> pd.Series:
    return values.astype("boolean")


def _floor_plus(values: np.ndarray, config: ScoringConfig) -> np.ndarray:
    return np.floor(values + config.epsilon)


def _round_half_even_exact(values: np.ndarray, decimals: int) -> np.ndarray:
    """``round(x, decimals)`` exactly as Python rounds floats, vectorised.

    numpy rounds ``x * 10**d``, which can differ from Python's correctly rounded result
    near a tie; those few values are rounded again one by one.
    """
    rounded = np.round(values, decimals)
    scaled = values * 10.0**decimals
    near_tie = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6
    for i in np.flatnonzero(near_tie):
        rounded[i] = round(float(values[i]), decimals)
    return rounded


def _validation_arrays(validations: pd.DataFrame, contact_ids: np.ndarray) -> dict:
    """Each validation row's fields as numpy arrays, parsed once (NaN / -1 where missing)."""
    contact_na = validations["contact_id"].isna().to_numpy()
    contact = validations["contact_id"].fillna(0).to_numpy(dtype="int64")
    pos = np.searchsorted(contact_ids, contact)
    known = np.zeros(len(contact), dtype=bool)
    if len(contact_ids):
        known = ~contact_na & (contact_ids[np.minimum(pos, len(contact_ids) - 1)] == contact)
    platform = pc.index_in(
        pa.array(validations["platform"], type=pa.string(), from_pandas=True),
        value_set=pa.array(PLATFORMS),
    )
    flags = {
        name: _as_bool(validations[name]).to_numpy(dtype=bool, na_value=False)
        for name in ("is_valid", "is_business", "is_premium")
    }
    return {
        "pos": pos,
        "known_contact": known,
        "platform": pc.fill_null(platform, -1).to_numpy(),
        "is_valid_missing": validations["is_valid"].isna().to_numpy(),
        "time": _utc_micros(validations["validated_at"]),
        "confidence": pd.to_numeric(validations["confidence_score"], errors="coerce")
        .astype("float64")
        .to_numpy(),
        "id": validations["id"].to_numpy(dtype="int64"),
        **flags,
    }


def _reasons(arrays: dict, future_us: int) -> np.ndarray:
    """The first malformed reason of each row ("" if well formed); a row dated after
    ``future_us`` (microseconds since the epoch) is ``validated_in_future``."""
    confidence = arrays["confidence"]
    with np.errstate(invalid="ignore"):
        out_of_range = (confidence < 0) | (confidence > 1)
        in_future = arrays["time"] > future_us
    checks = (
        ~arrays["known_contact"],
        arrays["platform"] < 0,
        arrays["is_valid_missing"],
        np.isnan(arrays["time"]),
        np.isnan(confidence),
        out_of_range,
        in_future,
    )
    return np.select(checks, MALFORMED_REASONS, default="")


def _due_later(contact_ids: np.ndarray, arrays: dict, after_as_of: np.ndarray) -> pd.DataFrame:
    """Per contact with well-formed rows dated after ``as_of`` (``after_as_of``, a mask over
    ``arrays``' rows), the time of the last of them: ``contact_id``, ``not_before``."""
    last = (
        pd.Series(arrays["time"][after_as_of])
        .groupby(contact_ids[arrays["pos"][after_as_of]])
        .max()
    )
    return pd.DataFrame(
        {
            "contact_id": last.index.to_numpy(dtype="int64"),
            "not_before": pd.to_datetime(last.to_numpy(dtype="int64"), unit="us", utc=True),
        }
    )


def _micros(stamp: pd.Timestamp) -> int:
    return int(stamp.value // 1000)


def classify_malformed(
    validations: pd.DataFrame,
    contact_ids: np.ndarray,
    as_of,
    config: ScoringConfig = DEFAULT_CONFIG,
) -> pd.Series:
    """The first reason (in ``MALFORMED_REASONS`` order) each row is malformed at ``as_of``; NA
    if it is not. ``contact_ids`` must be sorted."""
    future = utc_timestamp(as_of) + pd.Timedelta(hours=config.future_tolerance_hours)
    arrays = _validation_arrays(validations, np.asarray(contact_ids, dtype="int64"))
    reason = _reasons(arrays, _micros(future))
    return pd.Series(reason, index=validations.index, dtype="str").replace("", pd.NA)


def tier_of(
    scores: np.ndarray, config: ScoringConfig = DEFAULT_CONFIG, rounding: float = 0.0
) -> np.ndarray:
    """The quality tier of each score; a score within ``rounding`` below a tier's minimum
    belongs to it (0.5 reads a fractional score rounded half up to a whole point)."""
    scores = np.asarray(scores, dtype=float)
    tier = np.full(len(scores), config.tiers[-1][0], dtype=object)
    for name, minimum in reversed(config.tiers):
        tier = np.where(scores >= minimum - rounding, name, tier)
    return tier


def score_chunk(
    contacts: pd.DataFrame,
    validations: pd.DataFrame,
    ladas: LadaReference,
    as_of: datetime | str | pd.Timestamp,
    config: ScoringConfig = DEFAULT_CONFIG,
) -> ScoredChunk:
    """Score every contact of ``contacts`` from its ``validations`` (SCORING_SPEC.md §2–§8).

    ``validations`` may hold rows of contacts outside the chunk and any malformed rows:
    those are returned in ``malformed`` with their reason and never scored.
    """
    as_of_ts = utc_timestamp(as_of)
    as_of_us = _micros(as_of_ts)
    contacts = contacts.sort_values("id", ignore_index=True)
    contact_ids = contacts["id"].to_numpy(dtype="int64")
    n_contacts = len(contacts)

    # §2 malformed rows, rows after as_of, then the current row per (contact, platform)
    arrays = _validation_arrays(validations, contact_ids)
    future_us = _micros(as_of_ts + pd.Timedelta(hours=config.future_tolerance_hours))
    reason = _reasons(arrays, future_us)
    is_malformed = reason != ""
    malformed = validations.loc[is_malformed].assign(reason=reason[is_malformed])
    after_as_of = ~is_malformed & (arrays["time"] > as_of_us)
    takes_part = ~is_malformed & ~after_as_of
    good = {name: values[takes_part] for name, values in arrays.items()}
    slot = good["pos"] * len(PLATFORMS) + good["platform"]
    order = np.lexsort((good["id"], good["time"], slot))
    is_last = np.ones(len(order), dtype=bool)
    is_last[:-1] = slot[order][1:] != slot[order][:-1]
    current = pd.DataFrame(
        {
            name: good[name][order[is_last]]
            for name in (
                "pos",
                "platform",
                "time",
                "is_valid",
                "is_business",
                "is_premium",
                "confidence",
            )
        }
    )
    pos = current["pos"].to_numpy()
    n_current = np.bincount(pos, minlength=n_contacts)
    confidence_sum = np.bincount(
        pos, weights=current["confidence"].to_numpy(), minlength=n_contacts
    )
    last_us = np.full(n_contacts, np.nan)
    np.fmax.at(last_us, pos, current["time"].to_numpy())

    # §3 platform points from the valid current rows
    valid = current[current["is_valid"]]
    raw = (
        config.base_points
        + config.business_points * valid["is_business"].to_numpy(dtype="int64")
        + config.premium_points * valid["is_premium"].to_numpy(dtype="int64")
    )
    platform_points = np.minimum(
        config.platform_cap, _floor_plus(raw * valid["confidence"].to_numpy(), config)
    )
    points = np.zeros((n_contacts, len(PLATFORMS)))
    points[valid["pos"].to_numpy(), valid["platform"].to_numpy()] = platform_points
    has_valid = np.zeros((n_contacts, len(PLATFORMS)), dtype=bool)
    has_valid[valid["pos"].to_numpy(), valid["platform"].to_numpy()] = True
    business_count = np.bincount(
        valid["pos"], weights=valid["is_business"].to_numpy(dtype=float), minlength=n_contacts
    ).astype("int64")
    premium_count = np.bincount(
        valid["pos"], weights=valid["is_premium"].to_numpy(dtype=float), minlength=n_contacts
    ).astype("int64")

    # §4 quality factors: value (NaN when absent)
    lada = contacts["lada"].astype("str").str.strip()
    geo_present = (
        _nonblank(contacts["state_name"])
        & _nonblank(contacts["municipality"])
        & _nonblank(contacts["lada"])
        & lada.isin(ladas.ladas).to_numpy(dtype=bool)
    )
    pair = lada + "|" + normalize_state_series(contacts["state_name"].astype("str"))
    geo_match = pair.isin(ladas.pairs).to_numpy(dtype=bool)
    lada_state_match = np.where(geo_present, geo_match.astype(float), np.nan)
    profile_fields = np.sum([_nonblank(contacts[f]) for f in PROFILE_FIELDS], axis=0)
    age_days = _days_between(_utc_micros(contacts["created_at"]), as_of_us)
    recency_days = _days_between(last_us, as_of_us)
    factors = factor_values(profile_fields, lada_state_match, age_days, recency_days, config)

    # §5 quality multiplier and adjusted platform scores
    multiplier = quality_multiplier(factors, config)
    adjusted = np.where(points > 0, _floor_plus(points * multiplier[:, None], config), 0.0)
    adjusted = adjusted.astype("int64")
    active = adjusted > 0
    platform_count = active.sum(axis=1)

    # §6 combination bonus
    bonus = bonus_parts(platform_count, active, business_count, premium_count, config)

    # §7 total, tier, confidence
    total = np.minimum(config.total_cap, adjusted.sum(axis=1) + bonus["total"])
    tier = tier_of(total, config)
    factor_matrix = np.column_stack([factors[f] for f in QUALITY_FACTORS])
    quality_mean = np.nansum(factor_matrix, axis=1) / np.sum(~np.isnan(factor_matrix), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        validation_mean = confidence_sum / n_current
    confidence = np.minimum(
        1.0,
        config.confidence_validation_weight * validation_mean
        + config.confidence_quality_weight * quality_mean
        + np.minimum(config.confidence_count_cap, config.confidence_per_validation * n_current),
    )
    confidence = np.where(n_current > 0, confidence, 0.0)
    confidence = _round_half_even_exact(confidence, config.confidence_decimals)

    # §8 one row per contact
    scores = pd.DataFrame({"contact_id": contact_ids})
    for i, platform in enumerate(PLATFORMS):
        scores[f"{platform}_score"] = adjusted[:, i].astype("int32")
    scores["total_score"] = total.astype("int32")
    scores["quality_tier"] = pd.array(tier, dtype="str")
    scores["confidence_level"] = confidence
    scores["platform_count"] = platform_count.astype("int32")
    scores["business_account_count"] = business_count.astype("int32")
    scores["premium_account_count"] = premium_count.astype("int32")
    for i, column in enumerate(POINTS_COLUMNS):
        scores[column] = points[:, i].astype("int16")
    scores["profile_fields"] = profile_fields.astype("int16")
    scores["lada_state_match"] = pd.array(
        np.where(np.isnan(lada_state_match), None, lada_state_match == 1.0), dtype="boolean"
    )
    age_cap, recency_cap = saturation_days(config)
    scores["account_age_days"] = _stored_days(age_days, age_cap)
    scores["validation_recency_days"] = _stored_days(recency_days, recency_cap)
    scores["calculation_method"] = config.calculation_method
    scores["calculation_version"] = config.calculation_version
    scores["last_calculated_at"] = as_of_ts
    scores = scores[list(SCORE_COLUMNS)]
    last_validated = pd.Series(
        pd.to_datetime(last_us, unit="us", utc=True), index=contact_ids, name="last_validated_at"
    )
    parts = ScoreParts(
        contact_ids=contact_ids,
        valid=has_valid,
        adjusted=adjusted,
        platform_count=platform_count,
        business_count=business_count,
        premium_count=premium_count,
        current_rows=n_current,
        confidence_sum=confidence_sum,
        factors=factors,
        account_age_days=age_days,
        recency_days=recency_days,
    )
    return ScoredChunk(
        scores=scores,
        malformed=malformed,
        last_validated_at=last_validated,
        parts=parts,
        rows_after_as_of=int(after_as_of.sum()),
        due_later=_due_later(contact_ids, arrays, after_as_of),
    )


def _stored_days(days: np.ndarray, cap: int) -> pd.array:
    """Whole days as stored: up to ``cap``, where the factor saturates; NA when unknown."""
    capped = np.minimum(days, cap)
    return pd.array(np.where(np.isnan(capped), None, capped), dtype="Int16")
