"""Proof the score pays, on both dialects: the demo's campaigns by current tier and decile
against a pandas recount, and a recorded campaign by its tier and decile at the send with its
results against control; the API endpoint."""

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from lead_scoring_assets.analytics.conversion import latest_conversion_rates
from lead_scoring_assets.analytics.proof import AT_SEND, CURRENT, score_proof
from lead_scoring_assets.campaigns.results import campaign_results, wilson_interval
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.ml.conversion_features import label
from lead_scoring_assets.ml.conversion_scores import write_conversion_scores
from lead_scoring_assets.scoring.engine import tier_of
from lead_scoring_assets.scoring.full_rescore import rescore_all

from .api_data import READ_KEY, app_for
from .conftest import AS_OF

RECORDED_ID = 900
SENT = AS_OF - pd.Timedelta(days=10)


def _record_campaign(database: Database) -> None:
    """Target 1-20 PREMIUM decile 10 (1-10 convert), 21-40 LOW decile 1 (21-22 convert; 23
    after the window); control 41-60 (41-43 convert)."""
    database.append_frame(
        "campaigns",
        pd.DataFrame(
            {
                "id": [RECORDED_ID],
                "name": ["Registrada"],
                "sent_at": pd.Series([SENT], dtype="datetime64[us, UTC]"),
            }
        ),
    )
    recipients = (
        [(k, "target", 95, 10) for k in range(1, 21)]
        + [(k, "target", 30, 1) for k in range(21, 41)]
        + [(k, "control", 60, 5) for k in range(41, 61)]
    )
    frame = pd.DataFrame(
        recipients, columns=["contact_id", "arm", "total_score", "probability_decile"]
    )
    database.append_frame("campaign_recipients", frame.assign(campaign_id=RECORDED_ID))
    converted = {
        **dict.fromkeys([*range(1, 11), 21, 22, 41, 42, 43], SENT + pd.Timedelta(days=2)),
        23: SENT + pd.Timedelta(days=40),
    }
    outcomes = pd.DataFrame({"contact_id": range(1, 61)})
    outcomes["campaign_id"] = RECORDED_ID
    outcomes["delivered"] = outcomes["contact_id"] <= 40
    outcomes["converted"] = outcomes["contact_id"].isin(list(converted))
    outcomes["converted_at"] = pd.to_datetime(outcomes["contact_id"].map(converted), utc=True)
    database.append_frame("campaign_outcomes", outcomes)


def _row(rows: list[dict], key: str, value) -> dict:
    return next(r for r in rows if r[key] == value)


def test_conversion_by_tier_and_decile_for_every_campaign(demo_database):
    database = demo_database
    rescore_all(database, AS_OF)
    write_conversion_scores(database, None, AS_OF)
    _record_campaign(database)
    proof = score_proof(database, now=AS_OF)
    campaigns = database.read_frame(
        "SELECT c.id, c.sent_at FROM campaigns c WHERE EXISTS (SELECT 1 FROM "
        "campaign_outcomes o WHERE o.campaign_id = c.id) ORDER BY c.sent_at DESC"
    )
    assert [p["campaign_id"] for p in proof] == campaigns["id"].tolist()
    assert len(proof) >= 3

    recorded = proof[0]
    assert (recorded["campaign_id"], recorded["basis"]) == (RECORDED_ID, AT_SEND)
    assert (recorded["messages"], recorded["conversions"]) == (40, 12)
    premium, low = (
        _row(recorded["by_tier"], "tier", "PREMIUM"),
        _row(recorded["by_tier"], "tier", "LOW"),
    )
    assert (premium["messages"], premium["conversions"], low["conversions"]) == (20, 10, 2)
    assert premium["conversion_rate"] == 0.5 and premium["lift"] == pytest.approx(0.5 / 0.3)
    assert (premium["rate_low"], premium["rate_high"]) == pytest.approx(wilson_interval(10, 20))
    assert [d["decile"] for d in recorded["by_decile"]] == [10, 1]
    [expected] = campaign_results(database, RECORDED_ID, now=AS_OF)
    assert recorded["against_control"]["effect"] == pytest.approx(expected.as_dict()["effect"])
    assert recorded["against_control"]["arms"]["control"]["conversions"] == 3

    scores = database.read_frame("SELECT contact_id, total_score FROM lead_scores")
    deciles = database.read_frame("SELECT contact_id, probability_decile FROM conversion_scores")
    for campaign in proof[1:]:
        assert campaign["basis"] == CURRENT and campaign["against_control"] is not None
        outcomes = database.read_frame(
            "SELECT contact_id, converted, converted_at FROM campaign_outcomes o "
            "WHERE campaign_id = :id AND NOT EXISTS (SELECT 1 FROM campaign_recipients r "
            "WHERE r.campaign_id = o.campaign_id AND r.contact_id = o.contact_id "
            "AND r.arm = 'control')",
            {"id": campaign["campaign_id"]},
        )
        sent = pd.Timestamp(campaign["sent_at"])
        outcomes["converted"] = label(outcomes, sent, 30)
        outcomes = outcomes.merge(scores, on="contact_id", how="left").merge(
            deciles, on="contact_id", how="left"
        )
        assert campaign["messages"] == len(outcomes)
        assert campaign["conversions"] == int(outcomes["converted"].sum())
        scored = outcomes.dropna(subset=["total_score"])
        scored = scored.assign(tier=tier_of(scored["total_score"].to_numpy()))
        expected = scored.groupby("tier")["converted"].agg(["size", "sum"])
        assert {r["tier"]: (r["messages"], r["conversions"]) for r in campaign["by_tier"]} == {
            t: (int(n), int(c)) for t, (n, c) in expected.iterrows()
        }
        expected = (
            outcomes.dropna(subset=["probability_decile"])
            .groupby("probability_decile")["converted"]
            .agg(["size", "sum"])
        )
        assert [(r["decile"], r["messages"], r["conversions"]) for r in campaign["by_decile"]] == [
            (int(d), int(n), int(c)) for d, (n, c) in expected[::-1].iterrows()
        ]
        assert len(campaign["by_decile"]) == 10


def test_the_proof_endpoint(demo_database):
    database = demo_database
    rescore_all(database, AS_OF)
    _record_campaign(database)
    with TestClient(app_for(database)) as client:
        response = client.get("/api/v1/lead-scoring/proof", headers={"X-API-Key": READ_KEY})
        page = client.get("/proof?lang=en")
    assert response.status_code == 200
    items = response.json()["items"]
    assert items[0]["campaign_id"] == RECORDED_ID
    assert items[0]["by_tier"][0]["tier"] == "PREMIUM"
    assert page.status_code == 200 and 'data-page="proof"' in page.text


def test_the_conversion_analytics_asset_reads_the_proofs_latest_campaign(demo_database):
    """``conversion_analytics`` and the proof page give the latest campaign the same rates."""
    database = demo_database
    rescore_all(database, AS_OF)
    write_conversion_scores(database, None, AS_OF)
    _record_campaign(database)
    [latest, *_] = score_proof(database)
    rates = latest_conversion_rates(database)
    assert rates.campaign == latest["name"]
    assert rates.by_tier[["quality_tier", "messages", "conversions"]].to_dict("records") == [
        {"quality_tier": r["tier"], "messages": r["messages"], "conversions": r["conversions"]}
        for r in latest["by_tier"]
    ]
    assert rates.by_decile["probability_decile"].tolist() == [
        r["decile"] for r in latest["by_decile"]
    ]
