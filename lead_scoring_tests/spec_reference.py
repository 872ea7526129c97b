"""A plain, per-contact reading of SCORING_SPEC.md, for tests only.

Written from the spec with dicts, loops and Python arithmetic, independently of the
vectorised engine; only the state normalisation function is shared, as the spec asks.
"""

import math
from datetime import datetime, timedelta

from lead_scoring_assets.geography.states import normalize_state

PLATFORMS = ["whatsapp", "instagram", "facebook", "google", "apple"]
EPS = 1e-9


def floor_plus(x: float) -> int:
    return math.floor(x + EPS)


def blank(value) -> bool:
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (str(value).strip() == "")
    )


def days(a: datetime, b: datetime) -> int:
    return max(0, math.floor((b - a).total_seconds() / 86400))


def malformed_reason(row: dict, contact_ids: set, as_of: datetime) -> str | None:
    confidence = row.get("confidence_score")
    if row.get("contact_id") is None or row["contact_id"] not in contact_ids:
        return "unknown_contact"
    if row.get("platform") not in PLATFORMS:
        return "unknown_platform"
    if row.get("is_valid") is None:
        return "missing_is_valid"
    if row.get("validated_at") is None:
        return "missing_validated_at"
    if confidence is None or math.isnan(confidence):
        return "missing_confidence_score"
    if confidence < 0 or confidence > 1:
        return "confidence_score_out_of_range"
    if row["validated_at"] > as_of + timedelta(hours=24):
        return "validated_in_future"
    return None


def tier(total: int) -> str:
    for name, minimum in (("PREMIUM", 90), ("HIGH", 75), ("MEDIUM", 50), ("LOW", 25), ("POOR", 1)):
        if total >= minimum:
            return name
    return "UNKNOWN"


def reference_score(contact: dict, rows: list[dict], lada_pairs: set, as_of: datetime) -> dict:
    """The §8 fields of one contact; ``rows`` are its non-malformed validation rows (§2 v1.1:
    those dated after ``as_of`` take no part)."""
    rows = [r for r in rows if r["validated_at"] <= as_of]
    current: dict[str, dict] = {}
    for row in rows:
        best = current.get(row["platform"])
        if best is None or (row["validated_at"], row["id"]) > (best["validated_at"], best["id"]):
            current[row["platform"]] = row
    valid = {p: r for p, r in current.items() if r["is_valid"]}

    points = {p: 0 for p in PLATFORMS}
    for p, r in valid.items():
        raw = 15 + (3 if r.get("is_business") else 0) + (2 if r.get("is_premium") else 0)
        points[p] = min(20, floor_plus(raw * r["confidence_score"]))

    factors = {}
    lada = None if blank(contact.get("lada")) else str(contact["lada"]).strip()
    known_ladas = {l for l, _ in lada_pairs}
    if (
        not blank(contact.get("state_name"))
        and not blank(contact.get("municipality"))
        and lada is not None
        and lada in known_ladas
    ):
        state = normalize_state(contact["state_name"])
        factors["geographic_consistency"] = 1.0 if (lada, state) in lada_pairs else 0.3
    if contact.get("created_at") is not None:
        factors["account_age"] = min(1, days(contact["created_at"], as_of) / 365)
    fields = ["full_name", "address", "state_name", "municipality", "lada", "operator"]
    factors["profile_completeness"] = sum(not blank(contact.get(f)) for f in fields) / 6
    if rows:
        last = max(r["validated_at"] for r in rows)
        factors["validation_recency"] = max(0.5, 1 - days(last, as_of) / 30)

    order = ["geographic_consistency", "account_age", "profile_completeness", "validation_recency"]
    m = 1 - sum(0.10 * (1 - factors[f]) for f in order if f in factors)
    adjusted = {p: floor_plus(points[p] * m) for p in PLATFORMS}
    active = {p for p in PLATFORMS if adjusted[p] > 0}

    count_bonus = {5: 10, 4: 7, 3: 5, 2: 2}.get(len(active), 0)
    synergy = 0
    for a, b, bonus in (
        ("whatsapp", "facebook", 3),
        ("instagram", "facebook", 3),
        ("whatsapp", "instagram", 2),
        ("google", "apple", 2),
    ):
        if a in active and b in active:
            synergy += bonus
    b = sum(1 for r in valid.values() if r.get("is_business"))
    q = sum(1 for r in valid.values() if r.get("is_premium"))
    business = 5 if b >= 3 else 3 if b == 2 else 0
    premium = 3 if q >= 2 else 0
    bonus_total = min(20, count_bonus + synergy + business + premium)
    total = min(100, sum(adjusted.values()) + bonus_total)

    n = len(current)
    if n == 0:
        confidence = 0
    else:
        vc = sum(r["confidence_score"] for r in current.values()) / n
        qc = sum(factors.values()) / len(factors)
        confidence = round(min(1, 0.6 * vc + 0.3 * qc + min(0.2, 0.05 * n)), 4)

    return {
        **{f"{p}_score": adjusted[p] for p in PLATFORMS},
        "total_score": total,
        "quality_tier": tier(total),
        "confidence_level": confidence,
        "platform_count": len(active),
        "business_account_count": b,
        "premium_account_count": q,
        "last_validated_at": max((r["validated_at"] for r in rows), default=None),
        "points": points,
        "factors": factors,
        "multiplier": m,
        "bonus": {
            "platform_count": count_bonus,
            "synergy": synergy,
            "business": business,
            "premium": premium,
            "total": bonus_total,
        },
    }
