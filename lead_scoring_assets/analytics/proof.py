"""Proof the score pays: each campaign's conversion rate per quality tier and per
conversion-probability decile, the latest campaign first, with its results against control.

A campaign's messages are its target recipients (``campaigns/results.py``: an outcome row
without a recipients row is one; control recipients are left out) and a conversion is one
within the attribution window, as in the campaign results. The tier and decile are those
recorded when the campaign was sent (``campaign_recipients.total_score`` and
``probability_decile``, ``basis`` ``at_send``) when it recorded them; otherwise the current
``lead_scores`` and ``conversion_scores`` (``basis`` ``current``: in hindsight, scores computed
after the send). Each rate has its 95 % Wilson interval and its lift over the campaign's rate.
"""

import pandas as pd
import sqlalchemy as sa

from lead_scoring_assets.campaigns.results import campaign_results, wilson_interval
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.ml.conversion_features import DEFAULT_ATTRIBUTION_DAYS
from lead_scoring_assets.scoring.config import DEFAULT_CONFIG
from lead_scoring_assets.scoring.engine import utc_timestamp

AT_SEND, CURRENT = "at_send", "current"
CONVERTED = (
    "CASE WHEN o.converted AND (o.converted_at IS NULL OR o.converted_at BETWEEN "
    ":window_start AND :window_end) THEN 1 ELSE 0 END"
)
TIER = "CASE {cases} ELSE NULL END".format(
    cases=" ".join(f"WHEN {{score}} >= {low} THEN '{name}'" for name, low in DEFAULT_CONFIG.tiers)
)
MESSAGES = {
    AT_SEND: (
        f"SELECT {TIER.format(score='r.total_score')} AS tier, r.probability_decile AS decile, "
        f"{CONVERTED} AS converted FROM campaign_recipients r LEFT JOIN campaign_outcomes o "
        "ON o.campaign_id = r.campaign_id AND o.contact_id = r.contact_id "
        "WHERE r.campaign_id = :campaign AND r.arm = 'target'"
    ),
    CURRENT: (
        f"SELECT {TIER.format(score='s.total_score')} AS tier, p.probability_decile AS decile, "
        f"{CONVERTED} AS converted FROM campaign_outcomes o "
        "LEFT JOIN lead_scores s ON s.contact_id = o.contact_id "
        "LEFT JOIN conversion_scores p ON p.contact_id = o.contact_id "
        "WHERE o.campaign_id = :campaign AND NOT EXISTS (SELECT 1 FROM campaign_recipients r "
        "WHERE r.campaign_id = o.campaign_id AND r.contact_id = o.contact_id "
        "AND r.arm = 'control')"
    ),
}
COUNTS = (
    "SELECT x.tier, x.decile, count(*) AS messages, sum(x.converted) AS conversions "
    "FROM ({messages}) x GROUP BY x.tier, x.decile"
)
RECORDED = (
    "SELECT count(*) FROM campaign_recipients WHERE campaign_id = :campaign "
    "AND arm = 'target' AND total_score IS NOT NULL"
)


def _rates(counts: pd.DataFrame, key: str, order: list, overall: float | None) -> list[dict]:
    """Messages, conversions, rate, its interval and lift per value of ``key`` (in ``order``;
    rows without a value are left out)."""
    table = counts.dropna(subset=[key]).groupby(key)[["messages", "conversions"]].sum()
    rows = []
    for value in order:
        if value not in table.index:
            continue
        messages, conversions = (int(n) for n in table.loc[value])
        rate = conversions / messages
        low, high = wilson_interval(conversions, messages)
        rows.append(
            {
                key: value,
                "messages": messages,
                "conversions": conversions,
                "conversion_rate": rate,
                "rate_low": low,
                "rate_high": high,
                "lift": rate / overall if overall else None,
            }
        )
    return rows


def score_proof(
    database: Database, attribution_days: int = DEFAULT_ATTRIBUTION_DAYS, now=None
) -> list[dict]:
    """Every campaign with outcome rows, latest first: its conversion rate per tier and per
    decile (highest first) and its ``campaign_results`` against control."""
    proof = []
    for result in campaign_results(database, attribution_days=attribution_days, now=now):
        window = {
            "campaign": result.campaign_id,
            "window_start": database.bind_timestamp(result.sent_at),
            "window_end": database.bind_timestamp(
                utc_timestamp(result.sent_at) + pd.Timedelta(days=attribution_days)
            ),
        }
        with database.engine.connect() as connection:
            recorded = connection.execute(sa.text(RECORDED), window).scalar()
            basis = AT_SEND if recorded else CURRENT
            counts = pd.DataFrame(
                connection.execute(sa.text(COUNTS.format(messages=MESSAGES[basis])), window)
                .mappings()
                .all(),
                columns=["tier", "decile", "messages", "conversions"],
            )
        messages, conversions = int(counts["messages"].sum()), int(counts["conversions"].sum())
        overall = conversions / messages if messages else None
        summary = result.as_dict()
        summary.pop("deciles")
        proof.append(
            {
                "campaign_id": result.campaign_id,
                "name": result.name,
                "sent_at": result.sent_at,
                "window_closed": result.window_closed,
                "basis": basis,
                "messages": messages,
                "conversions": conversions,
                "conversion_rate": overall,
                "by_tier": _rates(
                    counts, "tier", [name for name, _ in DEFAULT_CONFIG.tiers], overall
                ),
                "by_decile": _rates(counts, "decile", list(range(10, 0, -1)), overall),
                "against_control": summary if result.has_control else None,
            }
        )
    return proof
