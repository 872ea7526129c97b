"""The dashboard's figures, aggregated in SQL from lead_scores, contacts and validations."""

from dataclasses import dataclass

import pandas as pd

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.geography.states import normalize_state_series
from lead_scoring_assets.scoring.config import DEFAULT_CONFIG, PLATFORMS

SCORE_BUCKETS = ((0, 20), (21, 40), (41, 60), (61, 80), (81, 100))
WELL_FORMED = (
    f"v.platform IN ({', '.join(repr(p) for p in PLATFORMS)}) "
    "AND v.is_valid IS NOT NULL AND v.validated_at IS NOT NULL "
    "AND v.confidence_score BETWEEN 0 AND 1"
)


@dataclass
class Figures:
    """``validated_contacts``: at least one active platform; ``multi_platform_contacts``: two
    or more. Success rate: valid share of the well-formed validation rows, per platform and
    per state."""

    contacts: int
    premium_leads: int
    average_score: float
    validated_contacts: int
    multi_platform_contacts: int
    score_distribution: dict[str, int]
    tier_distribution: dict[str, int]
    platform_success: pd.DataFrame
    by_state: pd.DataFrame

    def success_rates(self) -> dict[str, float]:
        """Each platform's validation success rate."""
        return dict(zip(self.platform_success["platform"], self.platform_success["success_rate"],
                        strict=True))

    def tier_shares(self) -> dict[str, float]:
        return {t: (n / self.contacts if self.contacts else 0.0)
                for t, n in self.tier_distribution.items()}


def compute_figures(database: Database) -> Figures:
    buckets = ", ".join(
        f"coalesce(sum(CASE WHEN total_score BETWEEN {low} AND {high} THEN 1 ELSE 0 END), 0) "
        f"AS b{low}" for low, high in SCORE_BUCKETS
    )
    totals = database.read_frame(
        "SELECT count(*) AS contacts, "
        "coalesce(sum(CASE WHEN quality_tier = 'PREMIUM' THEN 1 ELSE 0 END), 0) AS premium, "
        "coalesce(avg(total_score), 0) AS average, "
        "coalesce(sum(CASE WHEN platform_count >= 1 THEN 1 ELSE 0 END), 0) AS validated, "
        "coalesce(sum(CASE WHEN platform_count >= 2 THEN 1 ELSE 0 END), 0) AS multi, "
        f"{buckets} FROM lead_scores"
    ).iloc[0]
    tiers = database.read_frame(
        "SELECT quality_tier, count(*) AS n FROM lead_scores GROUP BY quality_tier")
    tier_counts = dict(zip(tiers["quality_tier"], tiers["n"].astype(int)))
    success = database.read_frame(
        "SELECT platform, count(*) AS validations, "
        "sum(CASE WHEN is_valid THEN 1 ELSE 0 END) AS valid FROM platform_validations v "
        f"WHERE {WELL_FORMED} GROUP BY platform"
    ).set_index("platform").reindex(list(PLATFORMS), fill_value=0)
    success["success_rate"] = (success["valid"] / success["validations"].where(
        success["validations"] > 0)).fillna(0.0).round(4)
    states = database.read_frame(
        "SELECT c.state_name, count(*) AS contacts, sum(s.total_score) AS score_sum, "
        "sum(CASE WHEN s.quality_tier IN ('PREMIUM', 'HIGH') THEN 1 ELSE 0 END) AS top_leads "
        "FROM lead_scores s JOIN contacts c ON c.id = s.contact_id GROUP BY c.state_name"
    )
    state_validations = database.read_frame(
        "SELECT c.state_name, count(*) AS validations, "
        "sum(CASE WHEN v.is_valid THEN 1 ELSE 0 END) AS valid FROM platform_validations v "
        f"JOIN contacts c ON c.id = v.contact_id WHERE {WELL_FORMED} GROUP BY c.state_name"
    )
    for frame in (states, state_validations):
        frame["state"] = normalize_state_series(frame["state_name"].astype("str")).fillna(
            "(blank)")
    by_state = states.groupby("state")[["contacts", "score_sum", "top_leads"]].sum()
    by_state["average_score"] = (by_state["score_sum"] / by_state["contacts"]).round(2)
    rates = state_validations.groupby("state")[["validations", "valid"]].sum()
    by_state["validation_success_rate"] = (rates["valid"] / rates["validations"]).reindex(
        by_state.index).fillna(0.0).round(4)
    by_state = by_state.drop(columns="score_sum").sort_values("contacts", ascending=False)
    return Figures(
        contacts=int(totals["contacts"]),
        premium_leads=int(totals["premium"]),
        average_score=round(float(totals["average"]), 3),
        validated_contacts=int(totals["validated"]),
        multi_platform_contacts=int(totals["multi"]),
        score_distribution={f"{low}-{high}": int(totals[f"b{low}"])
                            for low, high in SCORE_BUCKETS},
        tier_distribution={t: tier_counts.get(t, 0) for t, _ in DEFAULT_CONFIG.tiers},
        platform_success=success.reset_index(),
        by_state=by_state.reset_index(),
    )


def tier_drift(current: dict[str, float], previous: dict[str, float]) -> dict[str, float]:
    """Change of each tier's share since the previous run (percentage points as fractions)."""
    return {t: round(current.get(t, 0.0) - previous.get(t, 0.0), 6)
            for t in sorted(set(current) | set(previous))}
