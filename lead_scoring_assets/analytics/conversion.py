"""Conversion rates of the latest campaign per quality tier and per conversion-probability
decile: does PREMIUM really convert more? The proof page's figures for that campaign
(``analytics/proof.py``), so the asset and the dashboard never disagree."""

from dataclasses import dataclass

import pandas as pd

from lead_scoring_assets.analytics.proof import score_proof
from lead_scoring_assets.db.database import Database

COLUMNS = ["messages", "conversions", "conversion_rate"]


@dataclass
class ConversionRates:
    campaign: str | None
    basis: str | None
    by_tier: pd.DataFrame
    by_decile: pd.DataFrame


def latest_conversion_rates(database: Database) -> ConversionRates:
    """The latest campaign with outcome rows: its target recipients' conversions within the
    attribution window per tier and per decile (highest first), by the scores recorded at the
    send, else today's (``basis``)."""
    proof = score_proof(database)
    if not proof:
        return ConversionRates(None, None, pd.DataFrame(), pd.DataFrame())
    latest = proof[0]
    by_tier = pd.DataFrame(latest["by_tier"], columns=["tier", *COLUMNS]).rename(
        columns={"tier": "quality_tier"}
    )
    by_decile = pd.DataFrame(latest["by_decile"], columns=["decile", *COLUMNS]).rename(
        columns={"decile": "probability_decile"}
    )
    for table in (by_tier, by_decile):
        table["conversion_rate"] = table["conversion_rate"].round(4)
    return ConversionRates(
        latest["name"] or str(latest["campaign_id"]), latest["basis"], by_tier, by_decile
    )
