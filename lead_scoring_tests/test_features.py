"""Contact features (features_v1) on hand-made contacts."""

from lead_scoring_assets.ml.features import FEATURE_COLUMNS, contact_features

from .test_scoring_spec import contact, score, validation


def features(contacts, validations):
    return contact_features(score(contacts, validations).parts).set_index("contact_id")


def test_worked_example_features():
    row = features(
        [contact()],
        [
            validation("whatsapp", business=True, confidence=0.90, days_ago=3),
            validation("facebook", confidence=0.80, days_ago=10),
            validation("instagram", valid=False, confidence=0.95, days_ago=10),
        ],
    ).loc[1]
    assert [row[f"has_{p}"] for p in ("whatsapp", "instagram", "facebook", "google", "apple")] == [
        1,
        0,
        1,
        0,
        0,
    ]
    assert (row.whatsapp_score, row.facebook_score, row.platform_count) == (15, 11, 2)
    assert (row.business_account_count, row.premium_account_count, row.validation_count) == (
        1,
        0,
        3,
    )
    assert abs(row.avg_confidence_score - (0.90 + 0.80 + 0.95) / 3) < 1e-12
    assert (row.profile_completeness, row.geographic_consistency) == (1.0, 1.0)
    assert (row.account_age_days, row.validation_recency_days) == (400, 3)
    assert (row.has_business_accounts, row.has_premium_accounts, row.is_multi_platform) == (1, 0, 1)
    assert (row.meta_ecosystem_user, row.tech_ecosystem_user) == (1, 0)


def test_unknowns_get_the_documented_values():
    row = features([contact(created_at=None, lada="999")], []).loc[1]
    assert (row.geographic_consistency, row.account_age_days, row.validation_recency_days) == (
        0.5,
        -1,
        999,
    )
    assert (row.avg_confidence_score, row.validation_count, row.platform_count) == (0.0, 0, 0)


def test_ecosystems_and_no_personal_data():
    frame = features(
        [contact(id=1), contact(id=2)],
        [
            validation("google", contact_id=1),
            validation("apple", contact_id=1),
            validation("whatsapp", contact_id=2),
            validation("instagram", contact_id=2),
        ],
    )
    assert (frame.loc[1, "tech_ecosystem_user"], frame.loc[1, "meta_ecosystem_user"]) == (1, 0)
    assert (frame.loc[2, "tech_ecosystem_user"], frame.loc[2, "meta_ecosystem_user"]) == (0, 1)
    assert len(FEATURE_COLUMNS) == 24
    assert not {"phone_e164", "full_name", "address"} & set(frame.reset_index().columns)
