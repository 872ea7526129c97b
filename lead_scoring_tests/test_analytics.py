"""lead_scoring_analytics: figures on hand-made data, history rows, drift warning."""

import json

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from lead_scoring_assets.analytics.figures import compute_figures, tier_drift
from lead_scoring_assets.defs.assets.analytics import AnalyticsConfig, lead_scoring_analytics
from lead_scoring_assets.defs.resources import DatabaseResource

from .conftest import AS_OF

CONTACTS = [  # id, state, total, tier, platform_count
    (1, "Jalisco", 95, "PREMIUM", 5),
    (2, "JAL", 80, "HIGH", 3),
    (3, "CDMX", 55, "MEDIUM", 2),
    (4, "Ciudad de México", 30, "LOW", 1),
    (5, None, 0, "UNKNOWN", 0),
]


def _load(database) -> None:
    with database.engine.begin() as connection:
        for contact_id, state, total, tier, platforms in CONTACTS:
            connection.execute(
                sa.text(
                    "INSERT INTO contacts (id, phone_e164, state_name) VALUES (:id, :phone, :state)"
                ),
                {"id": contact_id, "phone": f"+5233000000{contact_id:02d}", "state": state},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO lead_scores (contact_id, whatsapp_score, "
                    "instagram_score, facebook_score, google_score, apple_score, total_score, "
                    "quality_tier, confidence_level, platform_count, business_account_count, "
                    "premium_account_count, whatsapp_points, instagram_points, facebook_points, "
                    "google_points, apple_points, profile_fields, calculation_method, "
                    "calculation_version, last_calculated_at) VALUES (:id, 0, 0, 0, 0, 0, "
                    ":total, :tier, 0.5, :platforms, 0, 0, 0, 0, 0, 0, 0, 1, 'advanced_v1', 'v', "
                    ":at)"
                ),
                {
                    "id": contact_id,
                    "total": total,
                    "tier": tier,
                    "platforms": platforms,
                    "at": database.bind_timestamp(AS_OF),
                },
            )
        rows = [
            ("whatsapp", True, 0.9),
            ("whatsapp", True, 0.8),
            ("whatsapp", False, 0.7),
            ("apple", False, 0.9),
            ("apple", True, 1.0),
            ("apple", None, 0.9),
            ("tiktok", True, 0.9),
            ("google", True, 1.5),
        ]
        for i, (platform, valid, confidence) in enumerate(rows):
            connection.execute(
                sa.text(
                    "INSERT INTO platform_validations (id, contact_id, platform, is_valid, "
                    "confidence_score, validated_at) VALUES (:id, 1, :platform, :valid, :c, :at)"
                ),
                {
                    "id": i + 1,
                    "platform": platform,
                    "valid": valid,
                    "c": confidence,
                    "at": database.bind_timestamp(AS_OF),
                },
            )


def test_figures_on_hand_made_data(database):
    _load(database)
    figures = compute_figures(database)
    assert (
        figures.contacts,
        figures.premium_leads,
        figures.validated_contacts,
        figures.multi_platform_contacts,
    ) == (5, 1, 4, 3)
    assert figures.average_score == 52.0
    assert figures.score_distribution == {
        "0": 1,
        "1-24": 0,
        "25-49": 1,
        "50-74": 1,
        "75-89": 1,
        "90-100": 1,
    }
    assert figures.tier_distribution == {
        "PREMIUM": 1,
        "HIGH": 1,
        "MEDIUM": 1,
        "LOW": 1,
        "POOR": 0,
        "UNKNOWN": 1,
    }
    success = figures.platform_success.set_index("platform")
    assert success.loc["whatsapp", "success_rate"] == round(2 / 3, 4)
    assert success.loc["apple", "success_rate"] == 0.5
    assert success.loc["google", "validations"] == 0
    states = figures.by_state.set_index("state")
    assert states.loc["JALISCO"].tolist() == [2, 2, 87.5, 0.6]
    assert states.loc["CIUDAD DE MEXICO"].tolist() == [2, 0, 42.5, 0.0]
    assert states.loc["(blank)", "contacts"] == 1


def test_tiles_histogram_and_state_table_agree(database):
    """The tiles are the state table's sums and the histogram's bins are the tiers' ranges."""
    _load(database)
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE lead_scores SET total_score = 24, "
                "quality_tier = 'POOR' WHERE contact_id = 4"
            )
        )
    figures = compute_figures(database)
    states = figures.by_state
    assert figures.top_leads == states["top_leads"].sum() == 2
    assert figures.contacts == states["contacts"].sum() == sum(figures.score_distribution.values())
    assert list(figures.score_distribution.values()) == [
        figures.tier_distribution[t]
        for t in ("UNKNOWN", "POOR", "LOW", "MEDIUM", "HIGH", "PREMIUM")
    ]
    assert figures.score_distribution["1-24"] == 1


def test_tier_drift():
    assert tier_drift({"HIGH": 0.5, "LOW": 0.5}, {"HIGH": 0.4, "LOW": 0.6}) == {
        "HIGH": 0.1,
        "LOW": -0.1,
    }


def test_asset_appends_history_and_warns_on_drift(database, database_url):
    _load(database)
    resources = {"database": DatabaseResource(url=database_url)}
    first = dg.materialize([lead_scoring_analytics], resources=resources)
    metadata = first.asset_materializations_for_node("lead_scoring_analytics")[0].metadata
    assert metadata["premium_leads"].value == 1
    assert "data:image/png;base64," in metadata["charts"].value
    assert "| whatsapp" in metadata["platform_success"].value
    assert metadata["tier_drift_warning"].value is False

    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE lead_scores SET total_score = 10, "
                "quality_tier = 'POOR' WHERE contact_id IN (1, 2)"
            )
        )
    second = dg.materialize(
        [lead_scoring_analytics],
        resources=resources,
        run_config=dg.RunConfig({"lead_scoring_analytics": AnalyticsConfig(drift_threshold=0.1)}),
    )
    metadata = second.asset_materializations_for_node("lead_scoring_analytics")[0].metadata
    assert metadata["tier_drift_warning"].value is True
    assert metadata["tier_drift"].value["POOR"] == 0.4
    history = database.read_frame(
        "SELECT run_id, premium_leads, tier_distribution FROM "
        "lead_scoring_analytics_history ORDER BY id"
    )
    assert history["run_id"].tolist() == [first.run_id, second.run_id]
    assert history["premium_leads"].tolist() == [1, 0]
    tiers = history["tier_distribution"].iloc[1]
    assert (json.loads(tiers) if isinstance(tiers, str) else tiers)["POOR"] == 2
    assert pd.notna(history["run_id"]).all()
