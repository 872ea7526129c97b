"""The dashboard's figures, aggregated in SQL from lead_scores, contacts and validations.

The tiles, the tier distribution, the score histogram and the state table come from one
query (scored contacts per state and tier), so each tile is its table's sum; the histogram's
bins are the tiers' score ranges."""

from dataclasses import dataclass

import pandas as pd

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.geography.states import normalize_state_series
from lead_scoring_assets.scoring.config import DEFAULT_CONFIG, PLATFORMS

TOP_TIERS = ("PREMIUM", "HIGH")
SCORE_BUCKETS = {
    name: (low, (DEFAULT_CONFIG.tiers[i - 1][1] - 1) if i else DEFAULT_CONFIG.total_cap)
    for i, (name, low) in enumerate(DEFAULT_CONFIG.tiers)
}
"""Each tier's score range, a bin of the histogram."""
WELL_FORMED = (
    f"v.platform IN ({', '.join(repr(p) for p in PLATFORMS)}) "
    "AND v.is_valid IS NOT NULL AND v.validated_at IS NOT NULL "
    "AND v.confidence_score BETWEEN 0 AND 1"
)
BLANK_STATE = "(blank)"


@dataclass
class Figures:
    """``validated_contacts``: at least one active platform; ``multi_platform_contacts``: two
    or more; ``top_leads``: PREMIUM and HIGH. Success rate: valid share of the well-formed
    validation rows, per platform and per state."""

    contacts: int
    premium_leads: int
    top_leads: int
    average_score: float
    validated_contacts: int
    multi_platform_contacts: int
    score_distribution: dict[str, int]
    tier_distribution: dict[str, int]
    platform_success: pd.DataFrame
    by_state: pd.DataFrame

    def success_rates(self) -> dict[str, float]:
        """Each platform's validation success rate."""
        return dict(
            zip(
                self.platform_success["platform"],
                self.platform_success["success_rate"],
                strict=True,
            )
        )

    def tier_shares(self) -> dict[str, float]:
        return {
            t: (n / self.contacts if self.contacts else 0.0)
            for t, n in self.tier_distribution.items()
        }


def _label(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}-{high}"


def compute_figures(database: Database) -> Figures:
    groups = database.read_frame(
        "SELECT c.state_name, s.quality_tier, count(*) AS contacts, "
        "sum(s.total_score) AS score_sum, "
        "sum(CASE WHEN s.platform_count >= 1 THEN 1 ELSE 0 END) AS validated, "
        "sum(CASE WHEN s.platform_count >= 2 THEN 1 ELSE 0 END) AS multi "
        "FROM lead_scores s LEFT JOIN contacts c ON c.id = s.contact_id "
        "GROUP BY c.state_name, s.quality_tier"
    )
    groups["top_leads"] = groups["contacts"].where(groups["quality_tier"].isin(TOP_TIERS), 0)
    tiers = groups.groupby("quality_tier")["contacts"].sum()
    tier_counts = {t: int(tiers.get(t, 0)) for t in SCORE_BUCKETS}
    contacts = int(groups["contacts"].sum())
    success = (
        database.read_frame(
            "SELECT platform, count(*) AS validations, "
            "sum(CASE WHEN is_valid THEN 1 ELSE 0 END) AS valid FROM platform_validations v "
            f"WHERE {WELL_FORMED} GROUP BY platform"
        )
        .set_index("platform")
        .reindex(list(PLATFORMS), fill_value=0)
    )
    success["success_rate"] = (
        (success["valid"] / success["validations"].where(success["validations"] > 0))
        .fillna(0.0)
        .round(4)
    )
    state_validations = database.read_frame(
        "SELECT c.state_name, count(*) AS validations, "
        "sum(CASE WHEN v.is_valid THEN 1 ELSE 0 END) AS valid FROM platform_validations v "
        f"JOIN contacts c ON c.id = v.contact_id WHERE {WELL_FORMED} GROUP BY c.state_name"
    )
    for frame in (groups, state_validations):
        frame["state"] = normalize_state_series(frame["state_name"].astype("str")).fillna(
            BLANK_STATE
        )
    by_state = groups.groupby("state")[["contacts", "score_sum", "top_leads"]].sum()
    by_state["average_score"] = (by_state["score_sum"] / by_state["contacts"]).round(2)
    rates = state_validations.groupby("state")[["validations", "valid"]].sum()
    by_state["validation_success_rate"] = (
        (rates["valid"] / rates["validations"]).reindex(by_state.index).fillna(0.0).round(4)
    )
    by_state = by_state.drop(columns="score_sum").sort_values("contacts", ascending=False)
    by_state[["contacts", "top_leads"]] = by_state[["contacts", "top_leads"]].astype("int64")
    return Figures(
        contacts=contacts,
        premium_leads=tier_counts["PREMIUM"],
        top_leads=sum(tier_counts[t] for t in TOP_TIERS),
        average_score=round(float(groups["score_sum"].sum()) / contacts, 3) if contacts else 0.0,
        validated_contacts=int(groups["validated"].sum()),
        multi_platform_contacts=int(groups["multi"].sum()),
        score_distribution={
            _label(low, high): tier_counts[t] for t, (low, high) in reversed(SCORE_BUCKETS.items())
        },
        tier_distribution=tier_counts,
        platform_success=success.reset_index(),
        by_state=by_state.reset_index(),
    )


def tier_drift(current: dict[str, float], previous: dict[str, float]) -> dict[str, float]:
    """Change of each tier's share since the previous run (percentage points as fractions)."""
    return {
        t: round(current.get(t, 0.0) - previous.get(t, 0.0), 6)
        for t in sorted(set(current) | set(previous))
    }
