"""Campaign results against hand-computed figures, on both dialects: a campaign with both arms
and deciles, one without a control group, one the platform wrote without recipients rows;
the asset through a Dagster materialisation."""

import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lead_scoring_assets.campaigns.results import (
    NO_CONTROL,
    NO_TARGET,
    campaign_results,
    newcombe_interval,
    wilson_interval,
)
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.defs.assets.campaign_results import (
    CampaignResultsConfig,
)
from lead_scoring_assets.defs.assets.campaign_results import (
    campaign_results as campaign_results_asset,
)
from lead_scoring_assets.defs.resources import DatabaseResource

from .api_data import BIG_ID, READ_KEY, app_for

REPOSITORY = Path(__file__).resolve().parents[1]
API = "/api/v1/lead-scoring"
READ = {"X-API-Key": READ_KEY}
SENT = pd.Timestamp("2026-10-01T00:00:00Z")
NOW = pd.Timestamp("2026-11-24T00:00:00Z")
DAY = pd.Timedelta(days=1)


def _at(offset: pd.Timedelta | None):
    return pd.NaT if offset is None else SENT + offset


def load_campaigns(database: Database) -> None:
    """Campaign 1 (costs 0.5 and 100): target decile 10, contacts 1-10, delivered but 10;
    1-3 convert on day 2, 4 without a time, 5 on day 40 (after the window). Target decile 1,
    11-20: 11-19 delivered, 20 without an outcome row, 11 converts on day 30 (the window's
    last instant). Control decile 10, 21-25: 21 converts on day 5; decile 1, 26-30: 26
    converts a day before the send. Target 5/20, control 1/10.
    Campaign 2 (no costs): planned without control, 31-34 target decile 5; 31-32 delivered,
    31 converts. Campaign 3: the platform's, outcome rows only, 41-43: 41-42 delivered, 41
    converts. Campaign 4: recipients, no outcomes yet. Outcomes of an unknown campaign 99."""
    database.append_frame(
        "campaigns",
        pd.DataFrame(
            {
                "id": [1, 2, 3, 4],
                "name": ["Con control", "Sin control", "Plataforma", "Planeada"],
                "sent_at": pd.Series(
                    [SENT, SENT + DAY, SENT + 2 * DAY, NOW - DAY], dtype="datetime64[us, UTC]"
                ),
                "cost_per_message": [0.5, None, None, None],
                "value_per_conversion": [100.0, None, None, None],
            }
        ),
    )
    recipients = (
        [(1, k, "target", 10) for k in range(1, 11)]
        + [(1, k, "target", 1) for k in range(11, 21)]
        + [(1, k, "control", 10) for k in range(21, 26)]
        + [(1, k, "control", 1) for k in range(26, 31)]
        + [(2, k, "target", 5) for k in range(31, 35)]
        + [(4, 50, "target", 9)]
    )
    database.append_frame(
        "campaign_recipients",
        pd.DataFrame(
            recipients, columns=["campaign_id", "contact_id", "arm", "probability_decile"]
        ),
    )
    converted = {
        1: 2 * DAY,
        2: 2 * DAY,
        3: 2 * DAY,
        4: None,
        5: 40 * DAY,
        11: 30 * DAY,
        21: 5 * DAY,
        26: -DAY,
    }
    outcomes = (
        [(1, k, k != 10, k in converted, _at(converted.get(k))) for k in range(1, 20)]
        + [(1, k, False, k in converted, _at(converted.get(k))) for k in range(21, 31)]
        + [
            (2, 31, True, True, SENT + 3 * DAY),
            (2, 32, True, False, pd.NaT),
            (2, 33, False, False, pd.NaT),
            (2, 34, False, False, pd.NaT),
            (3, 41, True, True, SENT + 4 * DAY),
            (3, 42, True, False, pd.NaT),
            (3, 43, False, False, pd.NaT),
            (99, 1, True, True, SENT),
        ]
    )
    frame = pd.DataFrame(
        outcomes, columns=["campaign_id", "contact_id", "delivered", "converted", "converted_at"]
    )
    frame["converted_at"] = pd.to_datetime(frame["converted_at"], utc=True)
    database.append_frame("campaign_outcomes", frame)


def test_the_intervals_match_newcombes_published_examples():
    """Newcombe (1998), Stat. Med. 17:873, table II, method 10, and one zero count."""
    assert newcombe_interval(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=5e-5)
    assert newcombe_interval(9, 10, 3, 10) == pytest.approx((0.1705, 0.8090), abs=5e-5)
    assert newcombe_interval(5, 56, 0, 29) == pytest.approx((-0.0381, 0.1926), abs=5e-5)
    assert wilson_interval(0, 5) == pytest.approx((0.0, 0.434482), abs=1e-6)


def test_a_campaign_with_both_arms_against_hand_computed_figures(database):
    load_campaigns(database)
    [result] = campaign_results(database, 1, now=NOW)
    assert result.has_control and result.note is None and result.window_closed
    assert (result.target.recipients, result.target.delivered, result.target.conversions) == (
        20,
        18,
        5,
    )
    assert (result.control.recipients, result.control.delivered, result.control.conversions) == (
        10,
        0,
        1,
    )
    assert (result.target.conversion_rate, result.control.conversion_rate) == (0.25, 0.1)
    assert (result.cost_per_message, result.value_per_conversion, result.costs_from) == (
        0.5,
        100.0,
        "campaign",
    )
    e = result.effect
    # Wilson 5/20: [0.111862, 0.468701]; 1/10: [0.017876, 0.404150]; d = 0.15,
    # low = 0.15 - sqrt(0.138138² + 0.304150²), high = 0.15 + sqrt(0.218701² + 0.082124²)
    assert (e.incremental_rate, e.incremental_rate_low, e.incremental_rate_high) == pytest.approx(
        (0.15, -0.184050, 0.383612), abs=1e-6
    )
    # 5 - 0.1 × 20 = 3, and 20 × the rate's bounds
    assert (
        e.incremental_conversions,
        e.incremental_conversions_low,
        e.incremental_conversions_high,
    ) == pytest.approx((3.0, -3.68100, 7.67223), abs=1e-4)
    # cost 0.5 × 20 sent = 10; revenue 100 × conversions; profit revenue - 10; per peso / 10
    assert e.cost == 10.0
    assert (
        e.incremental_revenue,
        e.incremental_revenue_low,
        e.incremental_revenue_high,
    ) == pytest.approx((300.0, -368.100, 767.223), abs=1e-2)
    assert (
        e.incremental_profit,
        e.incremental_profit_low,
        e.incremental_profit_high,
    ) == pytest.approx((290.0, -378.100, 757.223), abs=1e-2)
    assert (e.return_per_peso, e.return_per_peso_low, e.return_per_peso_high) == pytest.approx(
        (29.0, -37.8100, 75.7223), abs=1e-3
    )
    top, bottom = result.deciles
    assert top["decile"] == 10 and bottom["decile"] == 1
    assert (
        top["target"].recipients,
        top["target"].delivered,
        top["target"].conversions,
        top["control"].recipients,
        top["control"].conversions,
    ) == (10, 9, 4, 5, 1)
    assert (
        bottom["target"].recipients,
        bottom["target"].delivered,
        bottom["target"].conversions,
        bottom["control"].recipients,
        bottom["control"].conversions,
    ) == (10, 9, 1, 5, 0)
    # 4/10 - 1/5 = 0.2; 1/10 - 0/5 = 0.1 (Wilson 0/5: [0, 0.434482])
    assert (
        top["effect"].incremental_rate,
        top["effect"].incremental_rate_low,
        top["effect"].incremental_rate_high,
    ) == pytest.approx((0.2, -0.283644, 0.530725), abs=1e-6)
    assert (
        bottom["effect"].incremental_rate,
        bottom["effect"].incremental_rate_low,
        bottom["effect"].incremental_rate_high,
    ) == pytest.approx((0.1, -0.342176, 0.404150), abs=1e-6)
    assert top["effect"].incremental_conversions == pytest.approx(2.0)
    assert top["effect"].cost == 5.0


def test_campaigns_without_a_control_group_report_conversions_only(database):
    load_campaigns(database)
    results = {
        r.campaign_id: r
        for r in campaign_results(
            database, default_cost_per_message=0.3, default_value_per_conversion=90, now=NOW
        )
    }
    assert list(results) == [3, 2, 1]  # newest first; 4 has no outcomes, 99 is unknown
    planned, platform = results[2], results[3]
    assert (planned.target.recipients, planned.target.delivered, planned.target.conversions) == (
        4,
        2,
        1,
    )
    assert not planned.has_control and planned.effect is None and planned.note == NO_CONTROL
    assert (planned.cost_per_message, planned.value_per_conversion, planned.costs_from) == (
        0.3,
        90.0,
        "default",
    )
    assert [d["decile"] for d in planned.deciles] == [5]
    assert planned.deciles[0]["effect"] is None
    assert (
        platform.target.recipients,
        platform.target.delivered,
        platform.target.conversions,
        platform.control.recipients,
    ) == (3, 2, 1, 0)
    assert not platform.has_control and platform.deciles == []
    body = platform.as_dict()
    assert body["has_control"] is False and body["effect"] is None
    assert body["arms"]["target"]["conversion_rate"] == pytest.approx(1 / 3)


def test_a_campaign_of_control_recipients_only_says_so(database):
    database.append_frame(
        "campaigns",
        pd.DataFrame(
            {
                "id": [7],
                "name": ["Solo control"],
                "sent_at": pd.Series([SENT], dtype="datetime64[us, UTC]"),
            }
        ),
    )
    database.append_frame(
        "campaign_recipients",
        pd.DataFrame({"campaign_id": [7, 7], "contact_id": [1, 2], "arm": ["control", "control"]}),
    )
    database.append_frame(
        "campaign_outcomes",
        pd.DataFrame(
            {"campaign_id": [7], "contact_id": [1], "delivered": [False], "converted": [True]}
        ),
    )
    [result] = campaign_results(database, now=NOW)
    assert result.has_control and result.effect is None and result.note == NO_TARGET
    assert (result.control.recipients, result.control.conversions) == (2, 1)
    assert result.target.recipients == 0 and result.target.conversion_rate is None


def expect(database: Database, campaign_id: int, figures: tuple[float, ...]) -> None:
    """Set a campaign's expectation: conversions, low, high, profit, low, high."""
    names = (
        "expected_incremental_conversions",
        "expected_incremental_low",
        "expected_incremental_high",
        "expected_profit",
        "expected_profit_low",
        "expected_profit_high",
    )
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                f"UPDATE campaigns SET {', '.join(f'{n} = :{n}' for n in names)}, "
                "select_rule = 'max_profit', rank_by = 'uplift', uplift_model_version = 'u7' "
                "WHERE id = :id"
            ),
            {"id": campaign_id, **dict(zip(names, figures))},
        )


def test_predicted_against_measured_with_both_intervals(database):
    """Campaign 1 measured 3.0 [-3.681, 7.672] conversions and 290 [-378.1, 757.2] pesos;
    expected 2 [0.5, 3.5] and 190 [40, 340]: both inside. Expected 10 [8, 12] and 990
    [790, 1190]: both outside. Campaign 2 has no control group: nothing measured."""
    load_campaigns(database)
    expect(database, 1, (2.0, 0.5, 3.5, 190.0, 40.0, 340.0))
    expect(database, 2, (1.0, -1.0, 3.0, 50.0, -150.0, 250.0))
    results = {r.campaign_id: r for r in campaign_results(database, now=NOW)}
    p = results[1].predicted
    assert (
        p.expected_incremental_conversions,
        p.expected_incremental_low,
        p.expected_incremental_high,
    ) == (2.0, 0.5, 3.5)
    assert (
        p.measured_incremental_conversions,
        p.measured_incremental_low,
        p.measured_incremental_high,
    ) == pytest.approx((3.0, -3.68100, 7.67223), abs=1e-4)
    assert (p.measured_profit, p.measured_profit_low, p.measured_profit_high) == pytest.approx(
        (290.0, -378.100, 757.223), abs=1e-2
    )
    assert p.conversions_inside is True and p.profit_inside is True
    assert (p.uplift_model_version, p.select_rule) == ("u7", "max_profit")
    unmeasured = results[2].predicted
    assert unmeasured.expected_profit == 50.0 and unmeasured.measured_profit is None
    assert unmeasured.conversions_inside is None and unmeasured.profit_inside is None
    assert results[3].predicted is None and results[3].as_dict()["predicted"] is None
    expect(database, 1, (10.0, 8.0, 12.0, 990.0, 790.0, 1190.0))
    [far] = campaign_results(database, 1, now=NOW)
    assert far.predicted.conversions_inside is False and far.predicted.profit_inside is False
    expect(database, 1, (3.0, 3.0, 3.0, 289.0, 289.0, 290.0))  # the bounds are inside
    [edge] = campaign_results(database, 1, now=NOW)
    assert edge.predicted.conversions_inside is True and edge.predicted.profit_inside is True


def test_an_open_attribution_window_is_marked(database):
    load_campaigns(database)
    [result] = campaign_results(database, 1, now=SENT + 10 * DAY)
    assert not result.window_closed


def test_the_asset_reports_every_campaign_in_its_metadata(database):
    load_campaigns(database)
    with dg.instance_for_test() as instance:
        run = dg.materialize(
            [campaign_results_asset],
            instance=instance,
            resources={
                "database": DatabaseResource(url=database.url.render_as_string(hide_password=False))
            },
            run_config=dg.RunConfig(
                {"campaign_results": CampaignResultsConfig(default_cost_per_message=0.3)}
            ),
        )
    assert run.success
    [event] = run.asset_materializations_for_node("campaign_results")
    metadata = {key: value.value for key, value in event.metadata.items()}
    assert metadata["campaigns"] == 3 and metadata["campaigns_with_control"] == 1
    arms = metadata["arms"].splitlines()
    assert len(arms) == 2 + 4  # header, rule; campaign 1 both arms, 2 and 3 target only
    assert any("Con control" in line and "control" in line.split("|")[3] for line in arms)
    assert "3.0 [-3.7, 7.7]" in metadata["effects"]
    assert "290 [-378, 757]" in metadata["effects"]
    assert NO_CONTROL in metadata["effects"]
    assert "15.00 [-18.41, 38.36] pp" in metadata["effects"]
    assert "20.00 [-28.36, 53.07] pp" in metadata["deciles"]  # decile 10: 4/10 against 1/5
    assert metadata["chart"].startswith("![Incremental profit")
    assert "predicted_vs_measured" not in metadata


def test_the_asset_shows_predicted_against_measured(database):
    load_campaigns(database)
    expect(database, 1, (2.0, 0.5, 3.5, 190.0, 40.0, 340.0))
    expect(database, 2, (1.0, -1.0, 3.0, 50.0, -150.0, 250.0))
    with dg.instance_for_test() as instance:
        run = dg.materialize(
            [campaign_results_asset],
            instance=instance,
            resources={
                "database": DatabaseResource(url=database.url.render_as_string(hide_password=False))
            },
        )
    [event] = run.asset_materializations_for_node("campaign_results")
    metadata = {key: value.value for key, value in event.metadata.items()}
    assert metadata["campaigns_with_expectation"] == 2
    table = metadata["predicted_vs_measured"].splitlines()
    assert len(table) == 2 + 2
    [one] = [line for line in table if "Con control" in line]
    cells = [cell.strip() for cell in one.split("|")[1:-1]]
    assert cells[2:8] == [
        "2.0 [0.5, 3.5]",
        "3.0 [-3.7, 7.7]",
        "yes",
        "190 [40, 340]",
        "290 [-378, 757]",
        "yes",
    ]
    [two] = [line for line in table if "Sin control" in line]
    assert [cell.strip() for cell in two.split("|")[1:-1]][3:5] == ["—", "—"]


def test_the_nightly_job_computes_the_campaign_results(definitions):
    job = definitions.resolve_job_def("nightly_retrain_job")
    assert dg.AssetKey("campaign_results") in job.asset_layer.executable_asset_keys
    graph = definitions.resolve_asset_graph()
    node = graph.get(dg.AssetKey("campaign_results"))
    assert node.group_name == "campaigns"
    assert {k.to_user_string() for k in node.parent_keys} == {"campaign_outcomes"}


def test_the_api_serves_the_campaign_results(database):
    load_campaigns(database)
    with TestClient(app_for(database)) as api:
        listed = api.get(f"{API}/campaigns", headers=READ)
        one = api.get(f"{API}/campaigns/1", headers=READ)
        platform = api.get(
            f"{API}/campaigns/3",
            params={"cost_per_message": 0.2, "value_per_conversion": 50},
            headers=READ,
        )
        planned_only = api.get(f"{API}/campaigns/4", headers=READ)
        unknown = api.get(f"{API}/campaigns/99", headers=READ)
        without_key = api.get(f"{API}/campaigns")
        negative = api.get(f"{API}/campaigns", params={"cost_per_message": -1}, headers=READ)
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert [c["campaign_id"] for c in items] == [3, 2, 1]
    assert "deciles" not in items[0]
    assert [c["has_control"] for c in items] == [False, False, True]
    assert items[1]["note"] == NO_CONTROL and items[1]["effect"] is None
    body = one.json()
    assert body["arms"] == {
        "target": {"recipients": 20, "delivered": 18, "conversions": 5, "conversion_rate": 0.25},
        "control": {"recipients": 10, "delivered": 0, "conversions": 1, "conversion_rate": 0.1},
    }
    assert body["effect"]["incremental_conversions"] == pytest.approx(3.0)
    assert (
        body["effect"]["incremental_profit_low"],
        body["effect"]["incremental_profit_high"],
    ) == pytest.approx((-378.100, 757.223), abs=1e-2)
    assert [d["decile"] for d in body["deciles"]] == [10, 1]
    assert body["sent_at"].startswith("2026-10-01T00:00:00")
    assert (
        platform.json()["cost_per_message"],
        platform.json()["value_per_conversion"],
        platform.json()["costs_from"],
    ) == (0.2, 50.0, "default")
    assert planned_only.status_code == 404 and unknown.status_code == 404
    assert "no campaign with this id" in unknown.json()["detail"]
    assert "99" not in unknown.json()["detail"]
    assert without_key.status_code == 401 and negative.status_code == 422
    assert body["predicted"] is None


def test_the_api_serves_predicted_against_measured(database):
    load_campaigns(database)
    expect(database, 1, (10.0, 8.0, 12.0, 990.0, 790.0, 1190.0))
    with TestClient(app_for(database)) as api:
        one = api.get(f"{API}/campaigns/1", headers=READ).json()
        listed = api.get(f"{API}/campaigns", headers=READ).json()["items"]
    predicted = one["predicted"]
    assert (
        predicted["expected_incremental_conversions"],
        predicted["expected_profit_high"],
        predicted["conversions_inside"],
        predicted["profit_inside"],
    ) == (10.0, 1190.0, False, False)
    assert predicted["measured_incremental_conversions"] == pytest.approx(3.0)
    assert predicted["measured_profit_low"] == pytest.approx(-378.100, abs=1e-2)
    assert [c["predicted"] is not None for c in listed] == [False, False, True]


def test_campaign_ids_travel_exactly_as_strings(database):
    """Campaign 1 renumbered 2^60 + 1: the list, the campaign, its deciles and the proof
    give campaign_id_str exactly, and the page's script reads no other id (a JSON number
    above 2^53 is rounded in JavaScript: /campaigns/{rounded} would be another campaign)."""
    load_campaigns(database)
    with database.engine.begin() as connection:
        connection.execute(sa.text("UPDATE campaigns SET id = :big WHERE id = 1"), {"big": BIG_ID})
        for table in ("campaign_recipients", "campaign_outcomes"):
            connection.execute(
                sa.text(f"UPDATE {table} SET campaign_id = :big WHERE campaign_id = 1"),
                {"big": BIG_ID},
            )
    with TestClient(app_for(database)) as api:
        listed = api.get(f"{API}/campaigns", headers=READ)
        one = api.get(f"{API}/campaigns/{BIG_ID}", headers=READ)
        rounded = api.get(f"{API}/campaigns/{BIG_ID - 1}", headers=READ)
        proof = api.get(f"{API}/proof", headers=READ)
    assert f'"campaign_id_str":"{BIG_ID}"' in listed.text
    assert [c["campaign_id_str"] for c in listed.json()["items"]] == ["3", "2", str(BIG_ID)]
    assert (one.json()["campaign_id"], one.json()["campaign_id_str"]) == (BIG_ID, str(BIG_ID))
    assert rounded.status_code == 404
    assert f'"campaign_id_str":"{BIG_ID}"' in proof.text
    by_id = {c["campaign_id_str"]: c for c in proof.json()["items"]}
    assert by_id[str(BIG_ID)]["against_control"]["campaign_id_str"] == str(BIG_ID)
    script = (REPOSITORY / "lead_scoring_assets" / "api" / "static" / "dashboard.js").read_text()
    pages = script[script.index("// campaign results") : script.index("// start")]
    assert re.findall(r"campaign_id\w*", pages) and set(re.findall(r"campaign_id\w*", pages)) == {
        "campaign_id_str"
    }


def test_the_campanas_page_is_served_and_its_data_calls_work(database):
    """The page in Spanish and English, and the API calls its script makes (the list, then
    a campaign's deciles) answer with what it reads; no browser needed."""
    load_campaigns(database)
    script = (REPOSITORY / "lead_scoring_assets" / "api" / "static" / "dashboard.js").read_text()
    page_script = script[script.index("// campaign results") : script.index("// start")]
    assert 'api("/campaigns")' in page_script and "api(`/campaigns/${id}`)" in page_script
    with TestClient(app_for(database)) as client:
        spanish = client.get("/campaigns")
        english = client.get("/campaigns", params={"lang": "en"})
        listed = client.get(f"{API}/campaigns", headers=READ).json()
        detail = client.get(
            f"{API}/campaigns/{listed['items'][-1]['campaign_id']}", headers=READ
        ).json()
    assert spanish.status_code == 200 and 'data-page="campaigns"' in spanish.text
    assert "Campañas" in spanish.text and "Grupo de control" in spanish.text
    assert "Incremental profit" in english.text and 'lang="en"' in english.text
    assert 'id="predicted"' in spanish.text and "Previsto vs medido" in spanish.text
    assert "Predicted vs measured" in english.text
    assert "c.predicted" in page_script and "p.measured_profit_high" in page_script
    for field in (
        "campaign_id",
        "name",
        "sent_at",
        "window_closed",
        "has_control",
        "arms",
        "effect",
    ):
        assert field in listed["items"][0] and f"c.{field}" in page_script
    assert {"incremental_conversions_low", "incremental_profit_high", "return_per_peso_low"} <= set(
        detail["effect"]
    )
    assert detail["deciles"][0]["effect"]["incremental_rate_low"] is not None


def test_the_benchmark_runs_as_documented(tmp_path):
    """The benchmark, small (20,000 recipients) on a SQLite file, prints its timing and
    removes the file."""
    path = tmp_path / "bench.db"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.campaign_results",
            "--recipients",
            "20000",
            "--url",
            f"sqlite:///{path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert re.search(
        r"campaign_results: 4 campaigns, 20,000 recipients in [0-9.]+ s", run.stdout
    ), run.stdout
    assert not path.exists()
