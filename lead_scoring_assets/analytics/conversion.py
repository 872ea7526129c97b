"""Conversion rates of the latest campaign's delivered messages per quality tier and per
conversion-probability decile: does PREMIUM really convert more?"""

from dataclasses import dataclass

import pandas as pd

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.scoring.engine import tier_of


@dataclass
class ConversionRates:
    campaign: str | None
    by_tier: pd.DataFrame
    by_decile: pd.DataFrame


def _rates(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    table = frame.groupby(key).agg(messages=("converted", "size"),
                                   conversions=("converted", "sum")).reset_index()
    table["conversion_rate"] = (table["conversions"] / table["messages"]).round(4)
    return table


def latest_conversion_rates(database: Database) -> ConversionRates:
    """Per tier and per decile of the current ``lead_scores`` and ``conversion_scores``, the
    conversion rate of the latest campaign's delivered messages (in hindsight: the current
    scores, not those of the day the message was sent; the conversion model's holdout gives
    the point-in-time view)."""
    latest = database.read_frame(
        "SELECT id, name FROM campaigns ORDER BY sent_at DESC, id DESC LIMIT 1")
    if latest.empty:
        return ConversionRates(None, pd.DataFrame(), pd.DataFrame())
    rows = database.read_frame(
        "SELECT o.converted, s.total_score, p.probability_decile FROM campaign_outcomes o "
        "JOIN lead_scores s ON s.contact_id = o.contact_id "
        "LEFT JOIN conversion_scores p ON p.contact_id = o.contact_id "
        "WHERE o.campaign_id = :campaign AND o.delivered = :yes",
        {"campaign": int(latest["id"].iloc[0]), "yes": True})
    rows["converted"] = rows["converted"].astype("boolean").fillna(False).astype(int)
    rows["quality_tier"] = tier_of(rows["total_score"].to_numpy())
    deciles = rows[rows["probability_decile"].notna()]
    return ConversionRates(str(latest["name"].iloc[0]), _rates(rows, "quality_tier"),
                           _rates(deciles, "probability_decile"))
