"""The vectorised engine against SCORING_SPEC.md: golden cases and a property-based comparison
with the plain per-contact reading in ``spec_reference``."""

from datetime import timedelta

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lead_scoring_assets.scoring.breakdown import breakdown_of
from lead_scoring_assets.scoring.engine import LadaReference, score_chunk

from .conftest import AS_OF
from .spec_reference import PLATFORMS, malformed_reason, reference_score

LADAS = pd.DataFrame(
    {
        "lada": ["667", "55", "33", "427", "427"],
        "state_name": ["SINALOA", "CIUDAD DE MEXICO", "JALISCO", "MEXICO", "QUINTANA ROO"],
    }
)
REFERENCE = LadaReference.from_frame(LADAS)
PAIRS = set(zip(LADAS.lada, LADAS.state_name))
DAY = timedelta(days=1)
NUMERIC = [f"{p}_score" for p in PLATFORMS] + [
    "total_score",
    "platform_count",
    "business_account_count",
    "premium_account_count",
]


def contact(id=1, **fields):
    row = {
        "id": id,
        "phone_e164": "+526671234567",
        "full_name": "Ana López",
        "address": "Calle 1",
        "state_name": "Sinaloa",
        "municipality": "Culiacán",
        "lada": "667",
        "operator": "Telcel",
        "created_at": AS_OF - 400 * DAY,
        "last_platform_validation": None,
    }
    row.update(fields)
    return row


_ids = iter(range(1, 10**9))


def validation(
    platform,
    valid=True,
    business=False,
    premium=False,
    confidence=0.9,
    days_ago=3,
    contact_id=1,
    id=None,
    **fields,
):
    row = {
        "id": id if id is not None else next(_ids),
        "contact_id": contact_id,
        "platform": platform,
        "is_valid": valid,
        "is_business": business,
        "is_premium": premium,
        "confidence_score": confidence,
        "validation_method": "api",
        "response_time_ms": 120,
        "validated_at": None if days_ago is None else AS_OF - days_ago * DAY,
    }
    row.update(fields)
    return row


def frames(contacts, validations):
    c = pd.DataFrame(contacts)
    for column in ("created_at", "last_platform_validation"):
        c[column] = pd.to_datetime(c[column], utc=True)
    v = pd.DataFrame(
        validations,
        columns=[
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
        ],
    )
    v["validated_at"] = pd.to_datetime(v["validated_at"], utc=True)
    v["contact_id"] = v["contact_id"].astype("Int64")
    v["confidence_score"] = v["confidence_score"].astype("float64")
    for flag in ("is_valid", "is_business", "is_premium"):
        v[flag] = v[flag].astype("boolean")
    return c, v


def score(contacts, validations):
    return score_chunk(*frames(contacts, validations), REFERENCE, AS_OF)


def one(contacts, validations):
    return score(contacts, validations).scores.iloc[0]


def test_worked_example_of_the_spec():
    result = score(
        [contact()],
        [
            validation("whatsapp", business=True, confidence=0.90, days_ago=3),
            validation("facebook", confidence=0.80, days_ago=10),
            validation("instagram", valid=False, confidence=0.95, days_ago=10),
        ],
    )
    row = result.scores.iloc[0]
    assert (row.whatsapp_score, row.facebook_score, row.instagram_score) == (15, 11, 0)
    assert (row.total_score, row.quality_tier, row.confidence_level) == (31, "LOW", 0.9725)
    assert (row.platform_count, row.business_account_count, row.premium_account_count) == (2, 1, 0)
    breakdown = breakdown_of(row)
    assert breakdown["points_before_quality"]["whatsapp"] == 16
    assert breakdown["points_before_quality"]["facebook"] == 12
    assert breakdown["quality_factors"] == {
        "profile_completeness": 1,
        "geographic_consistency": 1,
        "account_age": 1,
        "validation_recency": 0.9,
    }
    assert breakdown["quality_multiplier"] == pytest.approx(0.99)
    assert breakdown["bonus"] == {
        "platform_count": 2,
        "synergy": 3,
        "business": 0,
        "premium": 0,
        "total": 5,
    }
    assert breakdown["as_of"] == AS_OF.isoformat()
    assert row.calculation_method == "advanced_v1"
    assert row.calculation_version == "advanced_v1.1"


def test_contact_without_validations():
    row = one([contact()], [])
    assert (row.total_score, row.quality_tier, row.confidence_level, row.platform_count) == (
        0,
        "UNKNOWN",
        0.0,
        0,
    )
    assert "validation_recency" not in breakdown_of(row)["quality_factors"]


def test_everything_valid_business_premium_hits_both_caps():
    row = one(
        [contact()],
        [validation(p, business=True, premium=True, confidence=1.0, days_ago=0) for p in PLATFORMS],
    )
    assert [row[f"{p}_score"] for p in PLATFORMS] == [20] * 5
    assert breakdown_of(row)["bonus"]["total"] == 20
    assert (row.total_score, row.quality_tier) == (100, "PREMIUM")
    assert (row.business_account_count, row.premium_account_count) == (5, 5)


def test_invalid_current_row_hides_older_valid_row():
    row = one(
        [contact()],
        [validation("whatsapp", days_ago=20), validation("whatsapp", valid=False, days_ago=2)],
    )
    assert row.whatsapp_score == 0 and row.total_score == 0


def test_tie_on_validated_at_is_broken_by_larger_id():
    tied = [
        validation("google", confidence=1.0, id=500, days_ago=1),
        validation("google", valid=False, id=400, days_ago=1),
    ]
    assert one([contact()], tied).google_score > 0
    tied = [
        validation("google", confidence=1.0, id=400, days_ago=1),
        validation("google", valid=False, id=500, days_ago=1),
    ]
    assert one([contact()], tied).google_score == 0


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"platform": "tiktok"}, "unknown_platform"),
        ({"platform": "WhatsApp"}, "unknown_platform"),
        ({"confidence_score": None}, "missing_confidence_score"),
        ({"confidence_score": 1.01}, "confidence_score_out_of_range"),
        ({"confidence_score": -0.1}, "confidence_score_out_of_range"),
        ({"is_valid": None}, "missing_is_valid"),
        ({"validated_at": None}, "missing_validated_at"),
        ({"contact_id": 99}, "unknown_contact"),
        ({"contact_id": None}, "unknown_contact"),
    ],
)
def test_malformed_rows_are_reported_and_never_score(fields, reason):
    bad = validation(**{"platform": "whatsapp", "confidence": 1.0, "days_ago": 0, **fields})
    result = score([contact()], [bad])
    assert result.malformed["reason"].tolist() == [reason]
    assert result.malformed["id"].tolist() == [bad["id"]]
    row = result.scores.iloc[0]
    assert (row.total_score, row.confidence_level) == (0, 0.0)


def test_row_dated_far_in_the_future_is_malformed_and_hides_nothing():
    row_2099 = validation(
        "whatsapp", valid=False, days_ago=None, validated_at=pd.Timestamp("2099-01-01T00:00:00Z")
    )
    result = score([contact()], [validation("whatsapp", confidence=1.0, days_ago=2), row_2099])
    assert result.malformed["reason"].tolist() == ["validated_in_future"]
    assert result.scores.iloc[0].whatsapp_score > 0
    assert result.last_validated_at.iloc[0] == AS_OF - 2 * DAY
    assert result.rows_after_as_of == 0


@pytest.mark.parametrize("hours_after", [1, 24])
def test_row_dated_after_as_of_takes_no_part_and_is_counted(hours_after):
    later = validation(
        "whatsapp",
        valid=False,
        confidence=0.1,
        days_ago=None,
        validated_at=AS_OF + timedelta(hours=hours_after),
    )
    with_later = score([contact()], [validation("whatsapp", confidence=1.0, days_ago=2), later])
    without = score([contact()], [validation("whatsapp", confidence=1.0, days_ago=2)])
    assert with_later.malformed.empty
    assert with_later.rows_after_as_of == 1
    pd.testing.assert_frame_equal(with_later.scores, without.scores)
    assert with_later.last_validated_at.iloc[0] == AS_OF - 2 * DAY


def test_row_dated_exactly_at_as_of_takes_part():
    row = one([contact()], [validation("google", confidence=1.0, days_ago=0)])
    assert row.google_score > 0


def test_malformed_newer_row_does_not_hide_older_valid_row():
    row = one(
        [contact()],
        [
            validation("whatsapp", confidence=1.0, days_ago=5),
            validation("whatsapp", valid=None, days_ago=1),
        ],
    )
    assert row.whatsapp_score > 0


def test_null_flags_count_as_false():
    row = one(
        [contact()],
        [validation("whatsapp", business=None, premium=None, confidence=1.0, days_ago=0)],
    )
    assert (row.whatsapp_score, row.business_account_count) == (15, 0)


@pytest.mark.parametrize(
    ("fields", "geo"),
    [
        ({}, 1.0),
        ({"state_name": "Jalisco"}, 0.3),
        ({"lada": "999"}, None),
        ({"lada": "55", "state_name": "CDMX"}, 1.0),
        ({"lada": "55", "state_name": "Distrito Federal"}, 1.0),
        ({"lada": "427", "state_name": "Quintana Roo"}, 1.0),
        ({"municipality": "   "}, None),
        ({"state_name": None}, None),
    ],
)
def test_geographic_consistency(fields, geo):
    row = one([contact(**fields)], [validation("whatsapp")])
    assert breakdown_of(row)["quality_factors"].get("geographic_consistency") == geo


def test_profile_completeness_counts_blank_and_whitespace_as_missing():
    row = one([contact(full_name="  ", address=None, operator="\t")], [validation("whatsapp")])
    assert breakdown_of(row)["quality_factors"]["profile_completeness"] == 0.5


def test_null_created_at_has_no_age_factor_and_recency_floor_is_half():
    row = one([contact(created_at=None)], [validation("whatsapp", days_ago=200)])
    factors = breakdown_of(row)["quality_factors"]
    assert "account_age" not in factors
    assert factors["validation_recency"] == 0.5


def test_floor_plus_keeps_whole_products_whole():
    row = one([contact()], [validation("facebook", confidence=0.8, days_ago=0)])
    assert breakdown_of(row)["points_before_quality"]["facebook"] == 12


@pytest.mark.parametrize("confidences", [[0.05], [0.6, 0.7], [0.9, 0.95, 1.0], [0.33] * 5])
def test_tiers_follow_the_total(confidences):
    platforms = PLATFORMS[: len(confidences)]
    row = one(
        [contact()],
        [validation(p, confidence=c, days_ago=0) for p, c in zip(platforms, confidences)],
    )
    expected = next(
        name
        for name, low in (
            ("PREMIUM", 90),
            ("HIGH", 75),
            ("MEDIUM", 50),
            ("LOW", 25),
            ("POOR", 1),
            ("UNKNOWN", 0),
        )
        if row.total_score >= low
    )
    assert row.quality_tier == expected


def test_row_order_does_not_change_scores():
    contacts = [contact(id=i) for i in (3, 1, 2)]
    rows = [
        validation(p, contact_id=i, confidence=0.5 + i / 10, days_ago=i)
        for i in (1, 2, 3)
        for p in PLATFORMS[: i + 1]
    ]
    forward = score(contacts, rows).scores
    backward = score(contacts[::-1], rows[::-1]).scores
    pd.testing.assert_frame_equal(forward, backward)


# property-based: random contacts full of edge cases against the plain reading of the spec

text = st.one_of(st.none(), st.just(""), st.just("  "), st.sampled_from(["Ana", "Calle 5", "x"]))
states = st.one_of(
    st.none(),
    st.just(" "),
    st.sampled_from(
        [
            "Sinaloa",
            "SINALOA",
            "sinaloa ",
            "CDMX",
            "Ciudad de México",
            "Distrito Federal",
            "Jalisco",
            "Jal.",
            "Edo. Méx.",
            "Quintana Roo",
            "Q. Roo",
            "Atlantis",
        ]
    ),
)
ladas = st.one_of(
    st.none(), st.just(""), st.sampled_from(["667", "55", "33", "427", "999", " 33 ", "12"])
)
confidences = st.one_of(
    st.sampled_from([0.0, 0.05, 0.5, 0.8, 0.9, 0.95, 1.0, 0.333, 0.777]),
    st.floats(0, 1),
    st.none(),
    st.sampled_from([-0.5, 1.5]),
)
moments = st.one_of(
    st.none(),
    st.sampled_from([AS_OF - DAY, AS_OF - 3 * DAY, AS_OF - 45 * DAY]),
    st.integers(0, 90 * 24).map(lambda h: AS_OF - timedelta(hours=h)),
    st.sampled_from(
        [
            AS_OF,
            AS_OF + DAY,
            AS_OF + timedelta(hours=1),
            AS_OF + DAY + timedelta(microseconds=1),
            AS_OF + 40 * DAY,
            pd.Timestamp("2099-01-01T00:00:00Z"),
        ]
    ),
)


@st.composite
def batches(draw):
    ids = draw(st.lists(st.integers(1, 40), min_size=1, max_size=8, unique=True))
    contacts = [
        contact(
            id=i,
            full_name=draw(text),
            address=draw(text),
            state_name=draw(states),
            municipality=draw(text),
            lada=draw(ladas),
            operator=draw(text),
            created_at=draw(
                st.one_of(
                    st.none(), st.integers(0, 900).map(lambda d: AS_OF - timedelta(days=d, hours=7))
                )
            ),
        )
        for i in ids
    ]
    rows = []
    for row_id in range(draw(st.integers(0, 25))):
        rows.append(
            validation(
                draw(st.one_of(st.sampled_from(PLATFORMS), st.sampled_from(["tiktok", None]))),
                valid=draw(st.one_of(st.booleans(), st.none())),
                business=draw(st.one_of(st.booleans(), st.none())),
                premium=draw(st.one_of(st.booleans(), st.none())),
                confidence=draw(confidences),
                days_ago=None,
                validated_at=draw(moments),
                contact_id=draw(st.one_of(st.sampled_from(ids[:2]), st.sampled_from(ids + [99]))),
                id=draw(st.integers(1, 60)) * 1000 + row_id,
            )
        )
    return contacts, rows


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_engine_matches_the_plain_reading_of_the_spec(batch):
    contacts, rows = batch
    result = score(contacts, rows)
    contact_ids = {c["id"] for c in contacts}
    reasons = {r["id"]: malformed_reason(r, contact_ids, AS_OF) for r in rows}
    assert dict(zip(result.malformed["id"], result.malformed["reason"])) == {
        i: r for i, r in reasons.items() if r is not None
    }
    scores = result.scores.set_index("contact_id")
    for c in contacts:
        good = [r for r in rows if r["contact_id"] == c["id"] and reasons[r["id"]] is None]
        expected = reference_score(c, good, PAIRS, AS_OF.to_pydatetime())
        got = scores.loc[c["id"]]
        for column in NUMERIC + ["quality_tier"]:
            assert got[column] == expected[column], (column, c, good)
        assert got["confidence_level"] == expected["confidence_level"], (c, good)
        breakdown = breakdown_of(got)
        assert breakdown["points_before_quality"] == expected["points"]
        assert breakdown["quality_factors"] == pytest.approx(expected["factors"], abs=0)
        assert breakdown["bonus"] == expected["bonus"]
        assert breakdown["quality_multiplier"] == pytest.approx(expected["multiplier"], abs=1e-12)
        assert breakdown["adjusted_scores"] == {p: expected[f"{p}_score"] for p in PLATFORMS}
        last = result.last_validated_at.loc[c["id"]]
        assert (None if pd.isna(last) else last) == expected["last_validated_at"]
    after = [r for r in rows if reasons[r["id"]] is None and r["validated_at"] > AS_OF]
    assert result.rows_after_as_of == len(after)
