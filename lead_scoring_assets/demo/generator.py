"""Synthetic but realistic Mexican contacts and platform validations, deterministic per seed.

Names and streets come from ``Faker('es_MX')`` (drawn once into pools, then combined with
numpy so a million contacts take seconds); states are weighted by population (INEGI, Censo
2020); LADAs and municipalities come from the phonenumbers geocoder; every edge case of
SCORING_SPEC.md appears at a known small rate. Monthly SMS campaigns get outcomes drawn from a
conversion propensity of the generator's own (``conversion_propensity``), not from the rule
score, and a control group whose conversions follow a known, heterogeneous message effect
(``message_effect``: sure things and persuadables).
"""

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from faker import Faker

from lead_scoring_assets.geography.ladas import build_lada_reference, geocoder_descriptions
from lead_scoring_assets.geography.states import (
    STATE_CAPITALS,
    clean_place,
    normalize_state_series,
)
from lead_scoring_assets.scoring.config import PLATFORMS
from lead_scoring_assets.scoring.engine import utc_timestamp

STATE_POPULATION_2020: dict[str, tuple[str, int]] = {
    "AGUASCALIENTES": ("Aguascalientes", 1_425_607),
    "BAJA CALIFORNIA": ("Baja California", 3_769_020),
    "BAJA CALIFORNIA SUR": ("Baja California Sur", 798_447),
    "CAMPECHE": ("Campeche", 928_363),
    "CHIAPAS": ("Chiapas", 5_543_828),
    "CHIHUAHUA": ("Chihuahua", 3_741_869),
    "CIUDAD DE MEXICO": ("Ciudad de México", 9_209_944),
    "COAHUILA": ("Coahuila", 3_146_771),
    "COLIMA": ("Colima", 731_391),
    "DURANGO": ("Durango", 1_832_650),
    "GUANAJUATO": ("Guanajuato", 6_166_934),
    "GUERRERO": ("Guerrero", 3_540_685),
    "HIDALGO": ("Hidalgo", 3_082_841),
    "JALISCO": ("Jalisco", 8_348_151),
    "MEXICO": ("México", 16_992_418),
    "MICHOACAN": ("Michoacán", 4_748_846),
    "MORELOS": ("Morelos", 1_971_520),
    "NAYARIT": ("Nayarit", 1_235_456),
    "NUEVO LEON": ("Nuevo León", 5_784_442),
    "OAXACA": ("Oaxaca", 4_132_148),
    "PUEBLA": ("Puebla", 6_583_278),
    "QUERETARO": ("Querétaro", 2_368_467),
    "QUINTANA ROO": ("Quintana Roo", 1_857_985),
    "SAN LUIS POTOSI": ("San Luis Potosí", 2_822_255),
    "SINALOA": ("Sinaloa", 3_026_943),
    "SONORA": ("Sonora", 2_944_840),
    "TABASCO": ("Tabasco", 2_402_598),
    "TAMAULIPAS": ("Tamaulipas", 3_527_735),
    "TLAXCALA": ("Tlaxcala", 1_342_977),
    "VERACRUZ": ("Veracruz", 8_062_579),
    "YUCATAN": ("Yucatán", 2_320_898),
    "ZACATECAS": ("Zacatecas", 1_622_138),
}
STATE_VARIANTS: dict[str, tuple[str, ...]] = {
    "CIUDAD DE MEXICO": ("CDMX", "Distrito Federal", "Cd. de México", "CIUDAD DE MEXICO"),
    "MEXICO": ("Estado de México", "Edo. Méx.", "EDOMEX", "Mexico"),
    "NUEVO LEON": ("NL", "Nuevo Leon", "N.L."),
    "JALISCO": ("Jal.", "JALISCO", " jalisco "),
    "VERACRUZ": ("Veracruz de Ignacio de la Llave", "Ver."),
    "COAHUILA": ("Coahuila de Zaragoza", "Coah."),
    "MICHOACAN": ("Michoacán de Ocampo", "Michoacan"),
    "QUINTANA ROO": ("Q. Roo", "QROO"),
    "BAJA CALIFORNIA SUR": ("BCS",),
    "YUCATAN": ("Yucatan", "YUC"),
}
OPERATORS = {
    "Telcel": 0.62,
    "AT&T": 0.15,
    "Movistar": 0.12,
    "Bait": 0.06,
    "Unefon": 0.03,
    "Virgin Mobile": 0.02,
}
# share of contacts with an account, business share and premium/verified share per platform
PLATFORM_PRESENCE = {
    "whatsapp": 0.88,
    "instagram": 0.45,
    "facebook": 0.70,
    "google": 0.60,
    "apple": 0.22,
}
PLATFORM_BUSINESS = {
    "whatsapp": 0.12,
    "instagram": 0.08,
    "facebook": 0.07,
    "google": 0.04,
    "apple": 0.01,
}
PLATFORM_PREMIUM = {
    "whatsapp": 0.03,
    "instagram": 0.05,
    "facebook": 0.03,
    "google": 0.02,
    "apple": 0.06,
}
VALIDATION_METHODS = np.array(["api_lookup", "web_check", "sms_probe"])
MALFORMED_KINDS = np.array(
    [
        "unknown_platform",
        "confidence_null",
        "confidence_out_of_range",
        "is_valid_null",
        "validated_at_null",
        "unknown_contact",
        "validated_in_future",
    ]
)


@dataclass(frozen=True)
class DemoRates:
    """Rates of the edge cases the generator plants."""

    no_validations: float = 0.08
    blank_field: float = 0.03
    whitespace_field: float = 0.01
    state_variant: float = 0.15
    lada_other_state: float = 0.07
    lada_unknown: float = 0.02
    created_at_null: float = 0.02
    current_invalid: float = 0.07
    extra_rows: tuple[float, float] = (0.30, 0.10)
    tie: float = 0.02
    malformed: float = 0.005
    stale_last_validation: float = 0.05


def _faker_pools(seed: int) -> dict[str, np.ndarray]:
    fake = Faker("es_MX")
    fake.seed_instance(seed)
    return {
        "first": np.array([fake.first_name() for _ in range(2000)]),
        "last": np.array([fake.last_name() for _ in range(2000)]),
        "street": np.array([fake.street_name() for _ in range(3000)]),
    }


@functools.cache
def _places() -> tuple[
    list[str], np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray
]:
    """States (canonical), population weights, LADAs and municipalities by state, and
    three-digit codes missing from the reference."""
    reference = build_lada_reference()
    states = list(STATE_POPULATION_2020)
    weights = np.array([STATE_POPULATION_2020[s][1] for s in states], dtype=float)
    ladas = {s: reference.loc[reference.state_name == s, "lada"].to_numpy() for s in states}
    towns: dict[str, set[str]] = {s: set() for s in states}
    for capital, state in STATE_CAPITALS.items():
        towns[state].add(capital.title())
    towns["CIUDAD DE MEXICO"].add("Ciudad de México")
    lada_state = dict(zip(reference.lada, reference.state_name))
    for lada, description in geocoder_descriptions().items():
        if "," in description and lada in lada_state:
            for town in description.rsplit(",", 1)[0].split("/"):
                towns[lada_state[lada]].add(town.strip())
    municipalities = {s: np.array(sorted(towns[s], key=clean_place)) for s in states}
    unknown = np.array([f"{n:03d}" for n in range(100, 1000) if f"{n:03d}" not in lada_state])
    return states, weights / weights.sum(), ladas, municipalities, unknown


def _pick(rng: np.random.Generator, options: dict[str, float], size: int) -> np.ndarray:
    names = np.array(list(options))
    probabilities = np.array(list(options.values()))
    return names[rng.choice(len(names), size=size, p=probabilities / probabilities.sum())]


def _blank_some(rng: np.random.Generator, values: np.ndarray, rates: DemoRates) -> np.ndarray:
    values = values.astype(object)
    draw = rng.random(len(values))
    values[draw < rates.blank_field] = None
    values[(draw >= rates.blank_field) & (draw < rates.blank_field + rates.whitespace_field)] = "  "
    return values


def generate_contacts(
    rng: np.random.Generator,
    first_id: int,
    size: int,
    as_of: pd.Timestamp,
    pools: dict[str, np.ndarray],
    rates: DemoRates = DemoRates(),
) -> pd.DataFrame:
    """``size`` contacts with ids from ``first_id`` (``last_platform_validation`` unset)."""
    states, weights, ladas, municipalities, unknown_ladas = _places()
    state_idx = rng.choice(len(states), size=size, p=weights)
    canonical = np.array(states)[state_idx]
    display = np.array([STATE_POPULATION_2020[s][0] for s in states])[state_idx].astype(object)
    variant = rng.random(size) < rates.state_variant
    for i in np.flatnonzero(variant):
        options = STATE_VARIANTS.get(canonical[i], (canonical[i].title(), canonical[i]))
        display[i] = options[rng.integers(len(options))]

    lada_draw = rng.random(size)
    lada_state = np.where(
        lada_draw < rates.lada_other_state,
        np.array(states)[rng.integers(len(states), size=size)],
        canonical,
    )
    lada = np.array([ladas[s][rng.integers(len(ladas[s]))] for s in lada_state], dtype=object)
    unknown = lada_draw > 1 - rates.lada_unknown
    lada[unknown] = unknown_ladas[rng.integers(len(unknown_ladas), size=int(unknown.sum()))]
    town = np.array(
        [municipalities[s][rng.integers(len(municipalities[s]))] for s in canonical], dtype=object
    )
    subscriber = rng.integers(0, 10**8, size=size)
    phone = [
        f"+52{code}{number:0{10 - len(code)}d}"[: 3 + 10] for code, number in zip(lada, subscriber)
    ]
    first, last = pools["first"], pools["last"]
    full_name = (
        pd.Series(first[rng.integers(len(first), size=size)])
        + " "
        + pd.Series(last[rng.integers(len(last), size=size)])
        + " "
        + pd.Series(last[rng.integers(len(last), size=size)])
    ).to_numpy(dtype=object)
    street = pools["street"][rng.integers(len(pools["street"]), size=size)]
    address = (
        pd.Series(street)
        + " "
        + pd.Series(rng.integers(1, 3000, size=size)).astype(str)
        + ", C.P. "
        + pd.Series(rng.integers(1000, 99999, size=size)).map("{:05d}".format)
    ).to_numpy(dtype=object)
    age_days = rng.gamma(2.0, 300.0, size=size)
    created_at = pd.Series(as_of - pd.to_timedelta(np.round(age_days * 86400), unit="s"))
    created_at[rng.random(size) < rates.created_at_null] = pd.NaT
    return pd.DataFrame(
        {
            "id": np.arange(first_id, first_id + size, dtype="int64"),
            "phone_e164": phone,
            "full_name": _blank_some(rng, full_name, rates),
            "address": _blank_some(rng, address, rates),
            "state_name": _blank_some(rng, display, rates),
            "municipality": _blank_some(rng, town, rates),
            "lada": _blank_some(rng, lada, rates),
            "operator": _blank_some(rng, _pick(rng, OPERATORS, size), rates),
            "created_at": created_at.dt.as_unit("us"),
            "last_platform_validation": pd.Series(
                pd.NaT, index=range(size), dtype="datetime64[us, UTC]"
            ),
        }
    )


def generate_validations(
    rng: np.random.Generator,
    contacts: pd.DataFrame,
    first_id: int,
    as_of: pd.Timestamp,
    rates: DemoRates = DemoRates(),
) -> pd.DataFrame:
    """Validation history for ``contacts``: one to three rows per platform account."""
    ids = contacts["id"].to_numpy()
    checked = rng.random(len(ids)) >= rates.no_validations
    frames = []
    for code, platform in enumerate(PLATFORMS):
        has = checked & (rng.random(len(ids)) < PLATFORM_PRESENCE[platform])
        owner = ids[has]
        rows = (
            1
            + (rng.random(len(owner)) < rates.extra_rows[0])
            + (rng.random(len(owner)) < rates.extra_rows[1])
        )
        contact_id = np.repeat(owner, rows)
        order = np.concatenate([np.arange(r) for r in rows]) if len(rows) else np.array([], int)
        latest_age = rng.exponential(12.0, size=len(owner))
        age = np.repeat(latest_age, rows) + order * rng.uniform(20, 120, size=len(order))
        tie = (order > 0) & (rng.random(len(order)) < rates.tie)
        age[tie] = np.roll(age, 1)[tie]
        is_current = order == 0
        valid = np.where(
            is_current,
            rng.random(len(order)) >= rates.current_invalid,
            rng.random(len(order)) < 0.8,
        )
        confidence = np.round(np.clip(rng.beta(8, 2, size=len(order)), 0, 1), 3)
        frames.append(
            pd.DataFrame(
                {
                    "contact_id": contact_id,
                    "platform": platform,
                    "is_valid": valid,
                    "is_business": np.repeat(
                        rng.random(len(owner)) < PLATFORM_BUSINESS[platform], rows
                    ),
                    "is_premium": np.repeat(
                        rng.random(len(owner)) < PLATFORM_PREMIUM[platform], rows
                    ),
                    "confidence_score": confidence,
                    "validation_method": VALIDATION_METHODS[rng.integers(3, size=len(order))],
                    "response_time_ms": np.round(rng.lognormal(5.5, 0.6, size=len(order))),
                    "validated_at": as_of - pd.to_timedelta(np.round(age * 86400), unit="s"),
                    "_order": order,
                }
            )
        )
    validations = pd.concat(frames, ignore_index=True)
    validations = validations.sort_values(
        ["contact_id", "_order"], kind="stable", ascending=[True, False], ignore_index=True
    )
    validations = validations.drop(columns="_order")
    validations = validations.astype(
        {
            "is_valid": "boolean",
            "is_business": "boolean",
            "is_premium": "boolean",
            "confidence_score": "float64",
            "response_time_ms": "Int32",
            "contact_id": "Int64",
            "platform": "object",
        }
    )
    validations["validated_at"] = validations["validated_at"].dt.as_unit("us")
    _plant_malformed(rng, validations, int(ids.max()) if len(ids) else 0, rates)
    validations.insert(0, "id", np.arange(first_id, first_id + len(validations), dtype="int64"))
    return validations


def _plant_malformed(rng, validations: pd.DataFrame, max_contact_id: int, rates) -> None:
    hit = np.flatnonzero(rng.random(len(validations)) < rates.malformed)
    kinds = MALFORMED_KINDS[rng.integers(len(MALFORMED_KINDS), size=len(hit))]
    for kind in MALFORMED_KINDS:
        rows = validations.index[hit[kinds == kind]]
        if kind == "unknown_platform":
            validations.loc[rows, "platform"] = rng.choice(
                ["tiktok", "WhatsApp", "telegram"], size=len(rows)
            )
        elif kind == "confidence_null":
            validations.loc[rows, "confidence_score"] = np.nan
        elif kind == "confidence_out_of_range":
            validations.loc[rows, "confidence_score"] = rng.choice(
                [1.5, -0.2, 12.0], size=len(rows)
            )
        elif kind == "is_valid_null":
            validations.loc[rows, "is_valid"] = pd.NA
        elif kind == "validated_at_null":
            validations.loc[rows, "validated_at"] = pd.NaT
        elif kind == "validated_in_future":
            years = pd.to_timedelta(rng.integers(1, 75, size=len(rows)) * 365, unit="D")
            validations.loc[rows, "validated_at"] += years
        else:
            validations.loc[rows, "contact_id"] = max_contact_id + 10**9 + rows


def set_last_platform_validation(
    rng: np.random.Generator,
    contacts: pd.DataFrame,
    validations: pd.DataFrame,
    rates: DemoRates = DemoRates(),
) -> None:
    """Fill the platform's denormalised ``last_platform_validation``, a few left stale."""
    latest = validations.groupby("contact_id")["validated_at"].max()
    values = contacts["id"].map(latest).astype("datetime64[us, UTC]")
    stale = rng.random(len(values)) < rates.stale_last_validation
    values[stale] = pd.NaT
    contacts["last_platform_validation"] = values


DEMO_CAMPAIGNS = 6
CAMPAIGN_AUDIENCE = 0.35
DELIVERY_RATE = 0.93
CONVERSION_DELAY_DAYS = 8.0
"""Mean days from message to conversion (exponential): a few convert after the window."""
BAD_OUTCOME_RATE = 0.001
NORTH = {
    "BAJA CALIFORNIA",
    "BAJA CALIFORNIA SUR",
    "SONORA",
    "CHIHUAHUA",
    "COAHUILA",
    "NUEVO LEON",
    "TAMAULIPAS",
    "SINALOA",
    "DURANGO",
}
SOUTH = {
    "CHIAPAS",
    "OAXACA",
    "GUERRERO",
    "TABASCO",
    "CAMPECHE",
    "YUCATAN",
    "QUINTANA ROO",
    "VERACRUZ",
}
CARRIER_EFFECT = {
    "Telcel": 0.0,
    "AT&T": 0.35,
    "Movistar": -0.25,
    "Bait": -0.6,
    "Unefon": -0.3,
    "Virgin Mobile": 0.15,
}
PROPENSITY_INTERCEPT = -3.7
CONTROL_SHARE = 0.2
"""The control group's share of each campaign's recipients (no message)."""
SURE_THING_EFFECT = -0.3
PERSUADABLE_EFFECT = 2.0
BASE_EFFECT = 0.5


def demo_campaigns(as_of, count: int = DEMO_CAMPAIGNS) -> pd.DataFrame:
    """``count`` monthly campaigns, the latest sent 35 days before ``as_of`` (its 30-day
    attribution window has closed)."""
    as_of = utc_timestamp(as_of)
    sent = [as_of - pd.Timedelta(days=35 + 30 * k) for k in reversed(range(count))]
    return pd.DataFrame(
        {
            "id": np.arange(1, count + 1, dtype="int64"),
            "name": [f"Promo {stamp:%Y-%m}" for stamp in sent],
            "sent_at": pd.Series(sent, dtype="datetime64[us, UTC]"),
        }
    )


def _drivers(
    contacts: pd.DataFrame, validations: pd.DataFrame, sent_at: pd.Timestamp
) -> dict[str, np.ndarray]:
    """What the demo's conversions depend on, per contact, as it was at ``sent_at``."""
    known = validations[
        validations["validated_at"].notna()
        & (validations["validated_at"] <= sent_at)
        & validations["platform"].isin(PLATFORMS)
    ]
    current = known.sort_values("validated_at").drop_duplicates(
        ["contact_id", "platform"], keep="last"
    )
    valid = current[current["is_valid"].fillna(False).astype(bool)]
    ids = contacts["id"]
    drivers = {
        p: ids.isin(valid.loc[valid["platform"] == p, "contact_id"]).to_numpy(float)
        for p in PLATFORMS
    }
    drivers["business"] = (
        ids.map(valid[valid["is_business"].fillna(False).astype(bool)].groupby("contact_id").size())
        .fillna(0)
        .to_numpy(float)
    )
    latest = contacts[["id"]].merge(
        known.groupby("contact_id")["validated_at"].max().rename("latest"),
        how="left",
        left_on="id",
        right_index=True,
    )["latest"]
    recency = (sent_at - latest).dt.days.to_numpy(dtype=float, na_value=np.nan)
    drivers["recency"] = np.nan_to_num(recency, nan=180.0)
    age = (sent_at - contacts["created_at"]).dt.days.to_numpy(dtype=float, na_value=np.nan)
    drivers["age"] = np.nan_to_num(age, nan=365.0).clip(0)
    state = normalize_state_series(contacts["state_name"].astype("str"))
    drivers["north"] = state.isin(NORTH).to_numpy(float)
    drivers["south"] = state.isin(SOUTH).to_numpy(float)
    drivers["carrier"] = contacts["operator"].map(CARRIER_EFFECT).fillna(-0.2).to_numpy(float)
    return drivers


def conversion_propensity(
    contacts: pd.DataFrame, validations: pd.DataFrame, sent_at: pd.Timestamp
) -> np.ndarray:
    """Each contact's probability to convert after a campaign sent at ``sent_at``, from what
    was true then: valid platforms (WhatsApp and Instagram matter, Facebook and Google do
    not), business accounts, recency of the latest validation, carrier, region and account
    age, with interactions (Instagram helps young accounts, Apple helps in the north,
    business accounts help more on WhatsApp). Deliberately not the rule score."""
    d = _drivers(contacts, validations, sent_at)
    young = (d["age"] < 365).astype(float)
    logit = (
        PROPENSITY_INTERCEPT
        + 1.0 * d["whatsapp"]
        + 0.3 * d["instagram"]
        + 0.7 * d["instagram"] * young
        + 0.5 * d["apple"] * d["north"]
        + 0.4 * np.minimum(d["business"], 2)
        + 0.6 * d["whatsapp"] * (d["business"] > 0)
        - 0.6 * np.minimum(d["recency"], 120) / 120
        + d["carrier"]
        + 0.35 * d["north"]
        - 0.3 * d["south"]
        - 0.5 * (d["age"] < 60)
        + 0.25 * np.log1p(d["age"] / 365)
    )
    return 1.0 / (1.0 + np.exp(-logit))


def message_effect(
    contacts: pd.DataFrame, validations: pd.DataFrame, sent_at: pd.Timestamp
) -> np.ndarray:
    """How much the message raises each contact's log-odds of converting (the control arm's
    log-odds are the target arm's minus this): sure things (WhatsApp with a business
    account, or in the north: a high propensity) buy anyway and less when messaged
    (``SURE_THING_EFFECT``); persuadables (other accounts under a year old: a low propensity
    without the message) buy mostly because of it (``PERSUADABLE_EFFECT``); everyone else
    gains ``BASE_EFFECT``."""
    d = _drivers(contacts, validations, sent_at)
    sure = ((d["whatsapp"] > 0) & (d["business"] > 0)) | (d["north"] > 0)
    persuadable = ~sure & (d["age"] < 365)
    return np.where(sure, SURE_THING_EFFECT, np.where(persuadable, PERSUADABLE_EFFECT, BASE_EFFECT))


def generate_campaign_outcomes(
    rng: np.random.Generator,
    contacts: pd.DataFrame,
    validations: pd.DataFrame,
    campaigns: pd.DataFrame,
    rates: DemoRates = DemoRates(),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Outcome rows and control recipients of ``contacts`` in each campaign: a random audience
    of the contacts that existed then, delivered or not, converted by
    ``conversion_propensity``; a few bad rows (unknown contact or campaign, converted without
    delivery) planted to be reported. Then each campaign's control group, drawn at random
    from the other contacts that existed then, ``CONTROL_SHARE`` of all its recipients
    (``campaign_recipients`` rows with arm ``control``, outcome rows not delivered),
    converted by the same log-odds less ``message_effect``."""
    frames, others = [], []
    for campaign in campaigns.itertuples():
        existed = contacts["created_at"].isna() | (contacts["created_at"] <= campaign.sent_at)
        chosen = existed.to_numpy() & (rng.random(len(contacts)) < CAMPAIGN_AUDIENCE)
        audience = contacts[chosen]
        delivered = rng.random(len(audience)) < DELIVERY_RATE
        propensity = conversion_propensity(audience, validations, campaign.sent_at)
        converted = delivered & (rng.random(len(audience)) < propensity)
        frames.append(_outcomes(rng, campaign, audience, delivered, converted))
        others.append(existed.to_numpy() & ~chosen)
    outcomes = pd.concat(frames, ignore_index=True)
    bad = np.flatnonzero(rng.random(len(outcomes)) < BAD_OUTCOME_RATE)
    kind = rng.integers(3, size=len(bad))
    rows = outcomes.index[bad]
    outcomes.loc[rows[kind == 0], "contact_id"] += 10**12
    outcomes.loc[rows[kind == 1], "campaign_id"] += 10**6
    outcomes.loc[rows[kind == 2], ["delivered", "converted"]] = [False, True]
    draw = CONTROL_SHARE / (1 - CONTROL_SHARE) * CAMPAIGN_AUDIENCE / (1 - CAMPAIGN_AUDIENCE)
    controls, recipients = [], []
    for campaign, eligible in zip(campaigns.itertuples(), others):
        group = contacts[eligible & (rng.random(len(contacts)) < draw)]
        propensity = conversion_propensity(group, validations, campaign.sent_at)
        logit = np.log(propensity / (1 - propensity)) - message_effect(
            group, validations, campaign.sent_at
        )
        converted = rng.random(len(group)) < 1.0 / (1.0 + np.exp(-logit))
        controls.append(_outcomes(rng, campaign, group, np.zeros(len(group), bool), converted))
        recipients.append(
            pd.DataFrame(
                {"campaign_id": campaign.id, "contact_id": group["id"].to_numpy(), "arm": "control"}
            )
        )
    outcomes = pd.concat([outcomes, *controls], ignore_index=True)
    outcomes["converted_at"] = pd.to_datetime(outcomes["converted_at"], utc=True)
    return outcomes, pd.concat(recipients, ignore_index=True)


def _outcomes(
    rng: np.random.Generator,
    campaign,
    recipients: pd.DataFrame,
    delivered: np.ndarray,
    converted: np.ndarray,
) -> pd.DataFrame:
    """Outcome rows of ``recipients``, each conversion ``CONVERSION_DELAY_DAYS`` after the
    send on average."""
    delay = pd.to_timedelta(
        np.round(rng.exponential(CONVERSION_DELAY_DAYS, len(recipients)) * 86400), unit="s"
    )
    converted_at = pd.Series(campaign.sent_at + delay).where(converted)
    return pd.DataFrame(
        {
            "campaign_id": campaign.id,
            "contact_id": recipients["id"].to_numpy(),
            "delivered": delivered,
            "converted": converted,
            "converted_at": converted_at.astype("datetime64[us, UTC]").to_numpy(),
        }
    )


@dataclass(frozen=True)
class DemoBatch:
    contacts: pd.DataFrame
    validations: pd.DataFrame
    outcomes: pd.DataFrame
    recipients: pd.DataFrame
    """The control recipients (``campaign_recipients`` rows); the target arm is the outcome
    rows without one, as the platform records it."""


def generate_demo_data(
    n_contacts: int,
    seed: int,
    as_of,
    batch_size: int = 100_000,
    first_contact_id: int = 1,
    first_validation_id: int = 1,
    rates: DemoRates = DemoRates(),
) -> Iterator[DemoBatch]:
    """Demo data in batches of ``batch_size`` contacts; the same seed gives the same rows."""
    as_of = utc_timestamp(as_of)
    pools = _faker_pools(seed)
    campaigns = demo_campaigns(as_of)
    next_validation_id = first_validation_id
    for index, start in enumerate(range(0, n_contacts, batch_size)):
        rng = np.random.default_rng([seed, index])
        size = min(batch_size, n_contacts - start)
        contacts = generate_contacts(rng, first_contact_id + start, size, as_of, pools, rates)
        validations = generate_validations(rng, contacts, next_validation_id, as_of, rates)
        set_last_platform_validation(rng, contacts, validations, rates)
        next_validation_id += len(validations)
        outcomes, recipients = generate_campaign_outcomes(
            rng, contacts, validations, campaigns, rates
        )
        yield DemoBatch(contacts, validations, outcomes, recipients)
