"""``lead_scoring_analytics_history``: one row of figures per analytics run."""

import json

import sqlalchemy as sa

from lead_scoring_assets.analytics.figures import Figures
from lead_scoring_assets.db.database import Database


def previous_tier_distribution(database: Database) -> dict[str, int] | None:
    """The tier counts of the last recorded run, or None before the first."""
    rows = database.read_frame(
        "SELECT tier_distribution FROM lead_scoring_analytics_history ORDER BY id DESC LIMIT 1"
    )
    if rows.empty:
        return None
    value = rows["tier_distribution"].iloc[0]
    return json.loads(value) if isinstance(value, str) else value


def append_figures(database: Database, figures: Figures, run_id: str | None, computed_at) -> None:
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO lead_scoring_analytics_history (run_id, computed_at, contacts, "
                "premium_leads, average_score, validated_contacts, multi_platform_contacts, "
                "tier_distribution, score_distribution, platform_success, by_state) VALUES (:run_id, "
                ":computed_at, :contacts, :premium, :average, :validated, :multi, :tiers, "
                ":scores, :platforms, :by_state)"
            ),
            {
                "run_id": run_id,
                "computed_at": database.bind_timestamp(computed_at),
                "contacts": figures.contacts,
                "premium": figures.premium_leads,
                "average": figures.average_score,
                "validated": figures.validated_contacts,
                "multi": figures.multi_platform_contacts,
                "tiers": json.dumps(figures.tier_distribution),
                "scores": json.dumps(figures.score_distribution),
                "platforms": json.dumps(figures.success_rates()),
                "by_state": figures.by_state.to_json(orient="records"),
            },
        )
