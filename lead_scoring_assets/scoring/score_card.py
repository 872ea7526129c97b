"""The score card: one contact's stored score laid out for the people who run campaigns."""

from dataclasses import dataclass

import pandas as pd

from lead_scoring_assets.contacts.phones import PhoneRejected, mask_phone, normalize_phone
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.ml.conversion_features import FACT_COLUMNS, decoded_reasons
from lead_scoring_assets.scoring.breakdown import read_breakdown
from lead_scoring_assets.scoring.config import (
    DEFAULT_CONFIG,
    PLATFORMS,
    ScoringConfig,
    config_for,
)

BAR_WIDTH = 20


def _bar(value: int, maximum: int) -> str:
    filled = round(BAR_WIDTH * min(value, maximum) / maximum) if maximum else 0
    return "#" * filled + "." * (BAR_WIDTH - filled)


def render_score_card(
    score: dict,
    breakdown: dict | None,
    config: ScoringConfig = DEFAULT_CONFIG,
    note: str | None = None,
) -> str:
    """Total and tier, each platform against its display weight, the quality factors, each
    bonus part, confidence and the time of the calculation; ``note`` (a score of another
    version) under the total. Without a breakdown (a version whose configuration is not
    known), the stored platform scores only."""
    lines = [
        f"contact {score['contact_id']}  {mask_phone(score.get('phone_e164')) or '(no phone)'}",
        (
            f"score {score['total_score']}/100  {score['quality_tier']}  "
            f"confidence {float(score['confidence_level']):.4f}"
        ),
        *([f"note: {note}"] if note else []),
        "",
        "platforms (adjusted score / display weight; before quality in brackets):"
        if breakdown
        else "platforms (stored score / display weight):",
    ]
    for platform in PLATFORMS:
        weight = config.display_weights[platform]
        value = int(score[f"{platform}_score"])
        before = f" ({breakdown['points_before_quality'][platform]})" if breakdown else ""
        lines.append(f"  {platform:<9} {_bar(value, weight)} {value:>2}/{weight:<2}{before}")
    if breakdown:
        lines.append(f"quality multiplier {breakdown['quality_multiplier']:.4f}:")
        for name, value in breakdown["quality_factors"].items():
            lines.append(f"  {name:<23} {value:.3f}")
        lines.append("bonus:")
        for name, value in breakdown["bonus"].items():
            lines.append(f"  {name:<23} {value:>2}")
    as_of = breakdown["as_of"] if breakdown else score["last_calculated_at"]
    lines.append(
        f"as of {as_of} ({score['calculation_method']} "
        f"{score['calculation_version']}), calculated {score['last_calculated_at']}"
    )
    return "\n".join(lines)


@dataclass(frozen=True)
class StoredScore:
    """A stored score row, its breakdown (None for a version whose configuration is not
    known) and the note for a score of another version."""

    score: dict
    breakdown: dict | None
    note: str | None = None

    def render(self) -> str:
        config = config_for(self.score["calculation_version"]) or DEFAULT_CONFIG
        return render_score_card(self.score, self.breakdown, config, self.note)


def _find(database: Database, condition: str, value) -> int | None:
    found = database.read_frame(f"SELECT id FROM contacts WHERE {condition}", {"value": value})
    return None if found.empty else int(found["id"].iloc[0])


def _contact_id(database: Database, key: str) -> int:
    """The contact a contact id or a phone number (any form ``normalize_phone`` accepts)
    names; a longer run of digits that is no contact's phone is tried as an id."""
    key = key.strip()
    if key.isdigit() and len(key) < 10:
        found = _find(database, "id = :value", int(key))
        if found is None:
            raise LookupError(f"no contact matches {key}")
        return found
    try:
        phone = normalize_phone(key)
    except PhoneRejected as rejected:
        phone, why = None, f": {rejected}"
    else:
        why = f" {mask_phone(phone)}"
    found = None if phone is None else _find(database, "phone_e164 = :value", phone)
    if found is None and key.isdigit():
        found = _find(database, "id = :value", int(key))
    if found is None:
        raise LookupError(f"no contact matches{why}")
    return found


def ml_score_summary(database: Database, contact_id: int) -> str:
    """One line on the contact's row of ``ml_lead_scores``, or why there is none."""
    rows = database.read_frame(
        "SELECT predicted_score, predicted_tier, confidence, model_version, method, "
        "calculated_at FROM ml_lead_scores WHERE contact_id = :id",
        {"id": contact_id},
    )
    if rows.empty:
        return "ML score: none yet (run nightly_retrain_job)"
    row = rows.iloc[0]
    model = "" if row["model_version"] is None else f", model v{row['model_version']}"
    return (
        f"ML score {float(row['predicted_score']):.2f}/100  {row['predicted_tier']}  "
        f"confidence {float(row['confidence']):.4f}  ({row['method']}{model}, "
        f"as of {row['calculated_at']})"
    )


def conversion_summary(database: Database, contact_id: int) -> str:
    """The contact's conversion probability, decile and top reasons in plain words, or why
    there is none."""
    facts = ", ".join(
        [
            *(f"s.{c}" for c in FACT_COLUMNS["lead_scores"]),
            *(f"c.{c}" for c in FACT_COLUMNS["contacts"]),
        ]
    )
    rows = database.read_frame(
        f"SELECT p.*, {facts} FROM conversion_scores p JOIN contacts c ON c.id = p.contact_id "
        "LEFT JOIN lead_scores s ON s.contact_id = p.contact_id WHERE p.contact_id = :id",
        {"id": contact_id},
    )
    if rows.empty:
        return "Conversion probability: none yet (run nightly_retrain_job)"
    row = rows.iloc[0].to_dict()
    if pd.isna(row["conversion_probability"]):
        return (
            f"Conversion: decile {int(row['probability_decile'])} of 10 by the rule score "
            f"(no conversion model yet; {row['method']}, as of {row['calculated_at']})"
        )
    lines = [
        (
            f"Conversion probability {float(row['conversion_probability']):.2%}, decile "
            f"{int(row['probability_decile'])} of 10 (10 = most likely; model v"
            f"{row['model_version']} {row['method']}, as of {row['calculated_at']})"
        )
    ]
    reasons = decoded_reasons(row, None if pd.isna(row["platform_count"]) else row)
    for key, verb in (("raises", "raises it"), ("lowers", "lowers it")):
        if reasons[key]:
            lines.append(
                f"  what {verb}: "
                + "; ".join(f"{r['words']} ({r['effect']:+.2f})" for r in reasons[key])
            )
    if reasons["rest"]:
        lines.append(
            f"  everything else: {reasons['rest']['effect']:+.2f}; against the average "
            f"contact ({reasons['average_probability']:.2%}), in log-odds"
        )
    return "\n".join(lines)


def uplift_summary(database: Database, contact_id: int) -> str:
    """The contact's uplift (the change in its probability of converting when messaged),
    decile and top reasons in plain words, or why there is none."""
    rows = database.read_frame(
        "SELECT * FROM uplift_scores WHERE contact_id = :id", {"id": contact_id}
    )
    if rows.empty:
        return (
            "Uplift: none (no lead_uplift champion yet, or uplift_scores not run: "
            "see docs/uplift.md)"
        )
    row = rows.iloc[0].to_dict()
    lines = [
        (
            f"Uplift {float(row['uplift']) * 100:+.2f} points of conversion probability "
            f"when messaged, decile {int(row['uplift_decile'])} of 10 (10 = highest; model "
            f"v{row['model_version']} {row['method']}, as of {row['calculated_at']})"
        )
    ]
    reasons = decoded_reasons(row)
    for key, verb in (("raises", "raises it"), ("lowers", "lowers it")):
        if reasons[key]:
            lines.append(
                f"  what {verb}: "
                + "; ".join(f"{r['words']} ({r['effect'] * 100:+.2f} points)" for r in reasons[key])
            )
    return "\n".join(lines)


def stored_score(database: Database, key: str) -> StoredScore:
    """The stored score of the contact named by ``key``; ``LookupError`` says clearly when the
    contact is unknown or has not been scored yet."""
    contact_id = _contact_id(database, key)
    rows = database.read_frame(
        "SELECT s.*, c.phone_e164 FROM lead_scores s JOIN contacts c ON c.id = s.contact_id "
        "WHERE s.contact_id = :id",
        {"id": contact_id},
    )
    if rows.empty:
        raise LookupError(
            f"contact {contact_id} exists but has not been scored yet "
            "(run full_rescore_job, or wait for the scoring queue)"
        )
    score = rows.iloc[0].to_dict()
    stored = read_breakdown(score)
    return StoredScore(score, stored.breakdown, stored.note)
