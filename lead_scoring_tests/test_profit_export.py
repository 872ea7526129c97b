"""Send lists sized for profit: ``rank_by: uplift`` and ``select: max_profit`` against
hand-computed selections (threshold, budget, limit, ties, negative uplift), the recorded
expectation, the job's failure without uplift scores, and on synthetic contacts whose
message effect is known, more profit from fewer messages than the top N by probability."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from lead_scoring_assets.campaigns.profit import (
    Z_95,
    expected_return,
    messages_within,
    selection_for,
)
from lead_scoring_assets.campaigns.segment_export import (
    EXPORT_DIR_ENV,
    NothingProfitable,
    NoUpliftChampion,
    Segment,
    export_segment,
    select_segment,
)
from lead_scoring_assets.campaigns.send_record import (
    CampaignPlan,
    CampaignRecording,
    draw_control,
)
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.defs.campaign_export import CampaignExportConfig, campaign_export_job
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.demo.loader import load_demo_data
from lead_scoring_assets.geography.ladas import build_lada_reference
from lead_scoring_assets.ml.conversion_scores import write_conversion_scores
from lead_scoring_assets.scoring.full_rescore import rescore_all

from .conftest import AS_OF

REPOSITORY = Path(__file__).resolve().parents[1]

PROFIT = {
    "select": "max_profit",
    "rank_by": "uplift",
    "cost_per_message": 0.5,
    "value_per_conversion": 8.0,
}
"""Break-even at an uplift of 0.0625: 0.5 / 8."""


@pytest.fixture
def scored(demo_database, templates):
    return templates.cached(demo_database, "rescored_with_rule_conversion", _rescored)


def _rescored(database):
    rescore_all(database, AS_OF)
    write_conversion_scores(database, None, AS_OF)


@pytest.fixture
def folder(tmp_path, monkeypatch):
    path = tmp_path / "exports"
    monkeypatch.setenv(EXPORT_DIR_ENV, str(path))
    return path


@pytest.fixture
def seven(scored):
    """Seven contactable contacts, each the only one of the segment with its number, with
    uplift scores (binary fractions, exact in REAL): a 0.5, b and c 0.25 (a tie), d 0.125,
    e 0.0625 (break-even), f 0.03125, g -0.25; every other contact has none."""
    ids = sorted(select_segment(scored, Segment())["contact_id"].head(7).tolist())
    uplift = dict(zip(ids, (0.5, 0.25, 0.25, 0.125, 0.0625, 0.03125, -0.25)))
    _uplift(scored, uplift, deciles=[10, 9, 9, 8, 7, 6, 1])
    return ids


def _uplift(database, uplift: dict[int, float], deciles, version="u7") -> None:
    database.append_frame(
        "uplift_scores",
        pd.DataFrame(
            {
                "contact_id": np.array(list(uplift), dtype="int64"),
                "uplift": np.array(list(uplift.values()), dtype="float32"),
                "uplift_decile": np.array(deciles, dtype="int16"),
                "model_version": version,
                "method": "two_model",
                "calculated_at": pd.Series([AS_OF] * len(uplift), dtype="datetime64[us, UTC]"),
            }
        ),
    )


def _execute(database, sql: str, params: dict | None = None) -> None:
    with database.engine.begin() as connection:
        connection.execute(sa.text(sql), params or {})


def _exported(folder, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / name, dtype={"phone_e164": str})


def _resources(database) -> dict:
    return {"database": DatabaseResource(url=database.url.render_as_string(hide_password=False))}


def _run(database, **config) -> dg.ExecuteInProcessResult:
    return campaign_export_job.execute_in_process(
        run_config=dg.RunConfig({"export_campaign_segment": CampaignExportConfig(**config)}),
        resources=_resources(database),
        raise_on_error=False,
    )


def _failure(result) -> str:
    """The step's error, as the run's failure shows it."""
    return result.get_step_failure_events()[0].event_specific_data.error.cause.message


def _metadata(result) -> dict:
    output = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT)
    return {k: v.value for k, v in output.step_output_data.metadata.items()}


def test_a_budget_buys_whole_messages_and_the_control_group_is_free():
    assert messages_within(0.3, 0.1) == 3  # 0.3 / 0.1 is 2.9999999999999996 in floats
    assert messages_within(1.0, 0.35) == 2
    assert messages_within(5, 0) is None
    assert selection_for(3, 0.25) == 4  # 4 - round(1.0) = 3 sent; 5 - round(1.25) = 4
    assert selection_for(19, 0.05) == 20
    assert selection_for(0, 0.05) == 0
    assert selection_for(7, 0.0) == 7
    for messages in (0, 1, 2, 9, 10, 99, 1000, 12345):
        for share in (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.9):
            n = selection_for(messages, share)
            sent = n - math.floor(share * n + 0.5)
            more = n + 1 - math.floor(share * (n + 1) + 0.5)
            assert sent <= messages < more, (messages, share, n)


def test_the_expectation_against_hand_computed_figures():
    uplift = np.array([0.5, 0.25, 0.25, 0.125])
    probability = np.array([0.75, 0.5, 0.5, 0.25])
    control = np.array([False, False, False, True])
    e = expected_return(uplift, probability, control, 0.5, 8.0)
    # targets: 0.75·0.25 + 0.25 + 0.25 = 0.6875; control p0 = 0.25 - 0.125 = 0.125:
    # 0.125·0.875 = 0.109375, × (3 targets / 1 control)² = 0.984375; the control's draw:
    # p0s 0.25, 0.25, 0.25, 0.125, s² = 0.01171875 / 3 = 0.00390625, × 4² × (1 - 1/4) / 1
    # = 0.046875; variance 1.71875
    half = Z_95 * math.sqrt(1.71875)
    assert half == pytest.approx(2.569534, abs=1e-6)  # 1.959964 × 1.311011
    assert (e.incremental_conversions, e.incremental_low, e.incremental_high) == pytest.approx(
        (1.0, 1.0 - half, 1.0 + half)
    )
    # 8 × conversions - 3 messages × 0.5
    assert (e.profit, e.profit_low, e.profit_high) == pytest.approx(
        (6.5, 8 * (1 - half) - 1.5, 8 * (1 + half) - 1.5)
    )
    # without a control group: the targets' Bernoulli differences, p0 = 0.25, 0.25, 0.25
    alone = expected_return(uplift[:3], probability[:3], control[:3], 0.5, 8.0)
    assert alone.incremental_high == pytest.approx(1.0 + Z_95 * math.sqrt(0.6875 + 3 * 0.1875))
    # a probability unknown counts the largest variance, 1/4, on both sides (the two known
    # p0s are equal: s² = 0)
    unknown = expected_return(uplift, np.array([np.nan, 0.5, 0.5, np.nan]), control, 0.5, 8.0)
    assert unknown.incremental_high == pytest.approx(
        1.0 + Z_95 * math.sqrt(0.25 + 0.25 + 0.25 + 9 * 0.25)
    )
    # a negative uplift below zero probability is clipped: p0 = min(1, 0.9 + 0.3)
    clipped = expected_return(np.array([-0.3]), np.array([0.9]), np.array([False]), 0, 1)
    assert clipped.incremental_high == pytest.approx(-0.3 + Z_95 * math.sqrt(0.09 + 0))


def test_the_expected_interval_covers_the_measured_figure_95_times_in_100():
    """Simulated campaigns of 2,000 recipients with known conversion probabilities with and
    without the message: the control group drawn as the export draws it (per uplift decile),
    each recipient's conversion drawn, the incremental conversions measured as
    campaign_results measures them. The expected interval holds the measured figure in
    93-97 % of 1,000 campaigns, with a 5 % and a 20 % control group and none."""
    rng = np.random.default_rng(5)
    n = 2_000
    ids = np.arange(1, n + 1, dtype="int64")
    p1 = rng.uniform(0.01, 0.4, n)
    uplift = np.clip(rng.normal(0.03, 0.05, n), p1 - 0.999, p1 - 0.001)
    decile = np.argsort(np.argsort(uplift)) * 10 // n + 1
    for share in (0.05, 0.2, 0.0):
        draws = [draw_control(7, ids, decile, share, seed) for seed in range(20)]
        inside = 0
        for campaign in range(1_000):
            control = draws[campaign % 20]
            target = ~control
            e = expected_return(uplift, p1, control, 0.35, 120)
            messaged, unmessaged = rng.random(n) < p1, rng.random(n) < p1 - uplift
            measured = (
                messaged[target].sum() - unmessaged[control].mean() * target.sum()
                if share
                else messaged[target].sum() - unmessaged[target].sum()
            )
            inside += e.incremental_low <= measured <= e.incremental_high
        assert 0.93 <= inside / 1_000 <= 0.97, (share, inside)


def test_rank_by_uplift_orders_best_first_and_counts_contacts_without_a_score(
    scored, folder, seven
):
    report = export_segment(scored, Segment(rank_by="uplift"), "uplift.csv", batch_size=3)
    exported = _exported(folder, "uplift.csv")
    a, b, c, d, e, f, g = seven
    assert list(exported["contact_id"]) == [a, b, c, d, e, f, g]  # b, c tied: lower id first
    assert list(exported["uplift"]) == [0.5, 0.25, 0.25, 0.125, 0.0625, 0.03125, -0.25]
    assert list(exported["uplift_decile"]) == [10, 9, 9, 8, 7, 6, 1]
    segment = len(select_segment(scored, Segment()))
    with scored.engine.connect() as connection:
        scored_contacts = connection.execute(
            sa.text("SELECT count(*) FROM lead_scores")
        ).scalar_one()
    assert report.left_out["no_uplift_score"] == scored_contacts - 7 >= segment - 7 > 0
    assert report.uplift_model_version == "u7" and report.rows == 7
    plain = export_segment(scored, Segment(), "plain.csv")
    assert "uplift" not in _exported(folder, "plain.csv") and "no_uplift_score" not in (
        plain.left_out
    )


def test_max_profit_sends_above_break_even_best_first_within_budget_and_limit(
    scored, folder, seven
):
    a, b, c, d, e, f, _ = seven
    cases = {
        "all.csv": (Segment(**PROFIT), [a, b, c, d]),  # e at break-even is not sent
        "budget.csv": (Segment(**PROFIT, budget=1.0), [a, b]),  # two messages of 0.5
        "limit.csv": (Segment(**PROFIT, budget=10, limit=3), [a, b, c]),
        "short.csv": (Segment(**PROFIT, budget=0.99), [a]),
        "free.csv": (
            Segment(**{**PROFIT, "cost_per_message": 0.0}, budget=1),
            [a, b, c, d, e, f],
        ),  # free messages: every positive uplift, never g
    }
    for name, (segment, expected) in cases.items():
        report = export_segment(scored, segment, name)
        assert list(_exported(folder, name)["contact_id"]) == expected, name
        assert report.left_out["below_break_even"] == (1 if name == "free.csv" else 3), name
    with pytest.raises(NothingProfitable, match="no contact of the segment is worth a message"):
        export_segment(scored, Segment(**{**PROFIT, "value_per_conversion": 1.0}), "none.csv")
    assert not (folder / "none.csv").exists()


def test_bad_selections_are_refused(scored, folder):
    for segment, refusal in (
        (
            Segment(select="max_profit", cost_per_message=1, value_per_conversion=2),
            "needs rank_by uplift",
        ),
        (Segment(select="max_profit", rank_by="uplift"), "needs cost_per_message"),
        (Segment(rank_by="uplift", budget=10), "budget needs select max_profit"),
        (Segment(select="most"), "unknown select"),
    ):
        with pytest.raises(ValueError, match=refusal):
            export_segment(scored, segment, "refused.csv")
    with pytest.raises(NoUpliftChampion, match="no uplift champion: run uplift_scores"):
        export_segment(scored, Segment(rank_by="uplift"), "empty.csv")
    assert list(folder.iterdir()) == []


def test_the_job_fails_clearly_without_uplift_scores(scored, folder):
    result = _run(
        scored,
        output_path="u.csv",
        rank_by="uplift",
        select="max_profit",
        campaign_name="Sin modelo",
    )
    assert not result.success
    assert "no uplift champion: run uplift_scores" in _failure(result)
    assert scored.count("campaigns") == 6 and not (folder / "u.csv").exists()
    unnamed = _run(scored, output_path="u.csv", rank_by="uplift", select="max_profit")
    assert "set campaign_name" in _failure(unnamed)


def test_a_recorded_max_profit_campaign_keeps_its_expectation(scored, folder, seven):
    a, b, c, d, *_ = seven
    _execute(
        scored,
        "UPDATE conversion_scores SET conversion_probability = CASE contact_id "
        "WHEN :a THEN 0.75 WHEN :d THEN 0.25 ELSE 0.5 END, model_version = '4'",
        {"a": a, "d": d},
    )
    result = _run(
        scored,
        output_path="max.csv",
        campaign_name="Rentable",
        control_share=0.25,
        budget=1.5,
        **PROFIT,
    )
    assert result.success
    campaign = scored.read_frame("SELECT * FROM campaigns WHERE name = 'Rentable'").iloc[0]
    recipients = scored.read_frame(
        "SELECT contact_id, arm FROM campaign_recipients WHERE campaign_id = :id ORDER BY rank",
        {"id": int(campaign["id"])},
    )
    # a budget of 1.5 pays 3 messages; 4 selected, one withheld as control
    assert list(recipients["contact_id"]) == [a, b, c, d]
    assert list(recipients["arm"]).count("control") == 1
    uplift = {a: 0.5, b: 0.25, c: 0.25, d: 0.125}
    p1 = {a: 0.75, b: 0.5, c: 0.5, d: 0.25}
    [held] = recipients.loc[recipients["arm"] == "control", "contact_id"]
    targets = [k for k in uplift if k != held]
    expected = sum(uplift[k] for k in targets)
    p0 = p1[held] - uplift[held]
    draw = 16 * 0.75 * 0.00390625  # s² of the p0s 0.25, 0.25, 0.25, 0.125, whoever is held
    half = Z_95 * math.sqrt(sum(p1[k] * (1 - p1[k]) for k in targets) + 9 * p0 * (1 - p0) + draw)
    assert (
        campaign["rank_by"],
        campaign["select_rule"],
        campaign["budget"],
        campaign["uplift_model_version"],
    ) == ("uplift", "max_profit", 1.5, "u7")
    assert (campaign["cost_per_message"], campaign["value_per_conversion"]) == (0.5, 8.0)
    assert (
        campaign["expected_incremental_conversions"],
        campaign["expected_incremental_low"],
        campaign["expected_incremental_high"],
    ) == pytest.approx((expected, expected - half, expected + half))
    assert (
        campaign["expected_profit"],
        campaign["expected_profit_low"],
        campaign["expected_profit_high"],
    ) == pytest.approx(
        (8 * expected - 1.5, 8 * (expected - half) - 1.5, 8 * (expected + half) - 1.5)
    )
    metadata = _metadata(result)
    assert metadata["expected_incremental_conversions"] == pytest.approx(expected)
    assert metadata["expected_profit"] == pytest.approx(8 * expected - 1.5)
    assert metadata["messages_cost"] == 1.5 and metadata["budget"] == 1.5
    assert metadata["select"] == "max_profit" and metadata["uplift_model_version"] == "u7"
    assert metadata["below_break_even"] == 3 and metadata["no_uplift_score"] > 0
    by_decile = metadata["recipients_by_decile"].splitlines()
    assert by_decile[0] == "| uplift decile | target | control |"  # the draw's strata
    assert [line.split("|")[1].strip() for line in by_decile[2:]] == ["10", "9", "8"]
    text = repr(metadata) + "".join(str(ev) for ev in result.all_events)
    assert not [p for p in _exported(folder, "max.csv")["phone_e164"] if p[3:] in text]


def test_costs_default_to_campaign_results_and_the_plan_and_segment_agree(scored, folder, seven):
    result = _run(
        scored,
        output_path="defaults.csv",
        campaign_name="Por defecto",
        rank_by="uplift",
        select="max_profit",
        control_share=0.0,
    )
    assert result.success
    campaign = scored.read_frame("SELECT * FROM campaigns WHERE name = 'Por defecto'").iloc[0]
    # 0.35 / 120: break-even at an uplift of 0.0029; a-f are above it
    assert (campaign["cost_per_message"], campaign["value_per_conversion"]) == (0.35, 120.0)
    assert campaign["target_recipients"] == 6 and campaign["select_rule"] == "max_profit"
    plain = _run(scored, output_path="plain.csv", campaign_name="Por puntuación", limit=5)
    row = scored.read_frame("SELECT * FROM campaigns WHERE name = 'Por puntuación'").iloc[0]
    assert (row["rank_by"], row["select_rule"]) == ("total_score", "all") and plain.success
    assert pd.isna(row["expected_incremental_conversions"]) and pd.isna(row["budget"])
    with pytest.raises(ValueError, match="cost_per_message is 0.4 in the plan and 0.5"):
        CampaignRecording.plan_for(
            scored, CampaignPlan("x", cost_per_message=0.4), Segment(**PROFIT)
        )


def test_max_profit_beats_the_top_n_by_probability_on_known_effects(scored, folder):
    """Sure things (baseline 0.6, the message lowers it by 0.1), persuadables (0.05, +0.15)
    and lost causes (0.02, -0.01: a message annoys), by contact id modulo 3.
    conversion_scores holds the baseline, uplift_scores the true effect plus noise (sd 0.02,
    so some lost causes look worth a message). max_profit sends fewer messages than the top
    half by probability and earns more, by the true effects."""
    effect = {0: -0.1, 1: 0.15, 2: -0.01}
    decile = {0: 10, 1: 5, 2: 1}
    _execute(
        scored,
        "UPDATE conversion_scores SET conversion_probability = CASE contact_id % 3 "
        "WHEN 0 THEN 0.6 WHEN 1 THEN 0.05 ELSE 0.02 END, probability_decile = CASE "
        "contact_id % 3 WHEN 0 THEN 10 WHEN 1 THEN 5 ELSE 1 END, model_version = '4'",
    )
    ids = scored.read_frame("SELECT contact_id FROM lead_scores ORDER BY contact_id")[
        "contact_id"
    ].to_numpy()
    noise = np.random.default_rng(23).normal(0, 0.02, len(ids))
    true = np.array([effect[k % 3] for k in ids])
    _uplift(
        scored,
        dict(zip(ids.tolist(), (true + noise).tolist())),
        deciles=[decile[k % 3] for k in ids],
    )
    cost, value = 0.35, 120.0
    top_n = export_segment(
        scored, Segment(rank_by="conversion_probability", limit=len(ids) // 2), "top.csv"
    )
    profit = export_segment(
        scored,
        Segment(
            rank_by="uplift", select="max_profit", cost_per_message=cost, value_per_conversion=value
        ),
        "profit.csv",
    )

    def true_profit(name: str) -> float:
        sent = _exported(folder, name)["contact_id"].to_numpy()
        return float(sum(effect[k % 3] for k in sent) * value - len(sent) * cost)

    sent = _exported(folder, "profit.csv")["contact_id"].to_numpy()
    top = _exported(folder, "top.csv")["contact_id"].to_numpy()
    assert top_n.rows == len(ids) // 2 and profit.rows < top_n.rows
    assert (top % 3 == 0).sum() > 900  # the sure things rank first by probability
    assert (sent % 3 == 1).sum() > 900 and (sent % 3 == 1).mean() > 0.7  # persuadables
    assert true_profit("profit.csv") > true_profit("top.csv") + 10_000
    assert true_profit("top.csv") < 0  # the sure things buy less when messaged


def test_the_doc_commands_run(tmp_path):
    """The ``bash`` blocks of docs/campaigns.md, in a fresh folder as ``lead-scoring demo``
    leaves it (its instance folder; 1,000 demo contacts, scored) with uplift scores on the
    embedded database: the Buen Fin export, then the max_profit one within its budget."""
    data = tmp_path / "data"
    (data / "dagster_home").mkdir(parents=True)
    (data / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    database = Database(f"sqlite:///{data / 'lead_scoring.db'}")
    database.upgrade()
    database.replace_rows("ladas_reference", build_lada_reference())
    load_demo_data(database, 1_000, seed=3, as_of=AS_OF)
    rescore_all(database, AS_OF)
    ids = database.read_frame("SELECT contact_id FROM lead_scores")["contact_id"].to_numpy()
    uplift = (ids * 7919 % 1000) / 1000 * 0.04 - 0.015
    _uplift(
        database,
        dict(zip(ids.tolist(), uplift.tolist())),
        deciles=np.ceil(pd.Series(uplift).rank(pct=True) * 10).astype(int).tolist(),
    )
    doc = (REPOSITORY / "docs" / "campaigns.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", doc, re.DOTALL)
    assert len(blocks) == 2 and "max_profit" in blocks[1]
    (tmp_path / ".venv").symlink_to(sys.prefix)  # the environment running the tests
    env = {**os.environ, "LEAD_SCORING_DATA_DIR": str(data)}
    env.pop("LEAD_SCORING_DATABASE_URL", None)
    env.pop("LEAD_SCORING_EXPORT_DIR", None)
    for block in blocks:
        run = subprocess.run(
            ["bash", "-e", "-c", block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        assert "RUN_SUCCESS" in run.stderr + run.stdout
    campaign = database.read_frame("SELECT * FROM campaigns WHERE name = 'Navidad rentable'").iloc[
        0
    ]
    assert campaign["target_recipients"] == math.floor(50 / 0.35) == 142
    assert campaign["target_recipients"] + campaign["control_recipients"] == 150  # round(7.5)
    assert (campaign["select_rule"], campaign["uplift_model_version"]) == ("max_profit", "u7")
    assert (
        campaign["expected_profit_low"]
        < campaign["expected_profit"]
        < campaign["expected_profit_high"]
    )
    assert len(pd.read_csv(data / "exports" / "navidad.csv")) == 142
    assert not database.read_frame("SELECT id FROM campaigns WHERE name = 'Buen Fin'").empty
    database.dispose()


def test_a_budget_sized_for_another_control_share_is_refused(scored, folder, seven):
    """The reader sizes the budget for the share the recording withholds: a caller passing
    none while the plan withholds a quarter would send fewer messages than paid for."""
    segment = Segment(**PROFIT, budget=1.5)
    recording = CampaignRecording.plan_for(
        scored, CampaignPlan("cuarto", control_share=0.25), segment
    )
    with pytest.raises(ValueError, match="control share of 0.0, the plan withholds 0.25"):
        export_segment(
            scored, segment, "cuarto.csv", select=recording.select, record=recording.record
        )
    assert list(folder.iterdir()) == [] and scored.count("campaigns") == 6
