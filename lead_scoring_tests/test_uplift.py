"""The uplift model: Qini and AUUC by hand, learners on synthetic campaigns with a known
effect, the gate, the point-in-time recipients, uplift_scores on both dialects, and the
assets end to end on demo campaigns with control groups and a real MLflow store."""

from types import SimpleNamespace

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split

from lead_scoring_assets.campaigns.results import campaign_results
from lead_scoring_assets.cli import main
from lead_scoring_assets.consent.forget import forget
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.defs.assets.uplift_model import uplift_model
from lead_scoring_assets.defs.assets.uplift_scores import uplift_scores
from lead_scoring_assets.defs.resources import DatabaseResource, MlflowResource
from lead_scoring_assets.demo.loader import load_demo_data
from lead_scoring_assets.geography.ladas import build_lada_reference
from lead_scoring_assets.ml import conversion, uplift
from lead_scoring_assets.ml.conversion import (
    Split,
    encode_rows,
    feature_encoder,
    features_of,
    fit_encoder,
)
from lead_scoring_assets.ml.conversion_features import (
    REASON_FEATURES,
    decoded_reasons,
)
from lead_scoring_assets.ml.conversion_tracking import ConversionChampion
from lead_scoring_assets.ml.features import FEATURE_COLUMNS
from lead_scoring_assets.ml.tracking import NO_CHAMPION, UNAVAILABLE, USABLE, ChampionLookup
from lead_scoring_assets.ml.uplift import (
    CANDIDATES,
    CONVERSION_BASELINE,
    RULE_BASELINE,
    NotEnoughControl,
    UpliftExplainer,
    baseline_scores,
    fit_uplift,
    holdout_metrics,
    train_uplift_candidate,
    uplift_metrics,
    uplift_split,
)
from lead_scoring_assets.ml.uplift_features import TREATED, build_uplift_training_set
from lead_scoring_assets.ml.uplift_scores import uplift_score_violations, write_uplift_scores
from lead_scoring_assets.ml.uplift_tracking import decide
from lead_scoring_assets.scoring.full_rescore import rescore_all
from lead_scoring_assets.scoring.score_card import uplift_summary

from .conftest import AS_OF, digit_runs

DEMO_CONTACTS = 30_000


def test_qini_auuc_and_top_shares_by_hand():
    """Six recipients ranked 6..1 (T = target, C = control; y converted):
    T1 C0 T1 C1 T0 C0. After k: Q = Yt − Yc·Nt/Nc = 0, 1, 2, 1, 0.5, 1 and
    U = (Yt/Nt − Yc/Nc)·k = 0, 2, 3, 2, 5/6, 2. With x = k/6 and Nt = 3:
    Qini = ∫Q/3 − (1/3)/2 = (1/6)(1/3 + 2/3 + 1/3 + 1/6 + 1/6) − 1/6 = 1/9;
    AUUC = ∫U/6 = (1/6)(2/6 + 3/6 + 2/6 + 5/36 + 1/6) = 53/216;
    top 10 %: U(0.6) = 0; 20 %: 0.2 of the way from x = 1/6 (U = 0) to 2/6 (U = 2) … 0.4;
    30 %: 1.6."""
    y = np.array([1, 0, 1, 1, 0, 0])
    t = np.array([1, 0, 1, 0, 1, 0], dtype=bool)
    metrics = uplift_metrics(y, t, np.array([6, 5, 4, 3, 2, 1]))
    assert metrics["qini"] == pytest.approx(1 / 9)
    assert metrics["auuc"] == pytest.approx(53 / 216)
    assert metrics["incremental_top_10pct"] == pytest.approx(0)
    assert metrics["incremental_top_20pct"] == pytest.approx(0.4)
    assert metrics["incremental_top_30pct"] == pytest.approx(1.6)
    reversed_ = uplift_metrics(y, t, -np.array([6, 5, 4, 3, 2, 1]))
    assert reversed_["qini"] < 0 < metrics["qini"]


def test_ties_count_at_their_expected_value():
    y = np.array([1, 0, 1, 1, 0, 0])
    t = np.array([1, 0, 1, 0, 1, 0], dtype=bool)
    flat = uplift_metrics(y, t, np.zeros(6))
    assert flat["qini"] == pytest.approx(0)
    # the overall effect is (2/3 − 1/3)·6 = 2 incremental conversions, spread evenly
    assert flat["incremental_top_30pct"] == pytest.approx(0.6)
    order = np.array([5, 3, 1, 0, 2, 4])
    assert uplift_metrics(y[order], t[order], np.zeros(6)) == pytest.approx(flat)


def _synthetic(rows_per_campaign: int = 20_000, campaigns: int = 3, seed: int = 0) -> pd.DataFrame:
    """Campaigns with a known effect unlike the propensity: sure things (WhatsApp with a
    business account) convert at 30 % without the message and 24 % with it; persuadables
    (Instagram, account under a year) 1 % without and 8 % with it; everyone else 9 % and
    10 %: ranked by conversion probability, persuadables come last. 20 % control."""
    rng = np.random.default_rng(seed)
    n = rows_per_campaign * campaigns
    rows = pd.DataFrame({c: rng.integers(0, 2, n) for c in FEATURE_COLUMNS})
    rows["account_age_days"] = rng.integers(0, 1500, n)
    rows["business_account_count"] = rng.integers(0, 2, n) * rng.integers(0, 2, n)
    rows["state"] = rng.choice(["JALISCO", "SONORA", "OAXACA"], n)
    rows["carrier"] = rng.choice(["TELCEL", "AT&T"], n)
    rows["lada_status"] = rng.choice(["known", "unknown"], n)
    sure = (rows["has_whatsapp"] == 1) & (rows["business_account_count"] > 0)
    persuadable = ~sure & (rows["has_instagram"] == 1) & (rows["account_age_days"] < 365)
    without = np.where(sure, 0.30, np.where(persuadable, 0.01, 0.09))
    with_message = np.where(sure, 0.24, np.where(persuadable, 0.08, 0.10))
    treated = rng.random(n) >= 0.2
    rows.insert(0, "campaign_id", np.repeat(np.arange(1, campaigns + 1), rows_per_campaign))
    rows.insert(1, "contact_id", np.arange(n))
    rows.insert(2, TREATED, treated)
    rows.insert(3, "converted", rng.random(n) < np.where(treated, with_message, without))
    rows.insert(4, "total_score", rng.integers(0, 100, n))
    return rows


@pytest.fixture(scope="module")
def synthetic_split() -> Split:
    rows = _synthetic()
    holdout = rows["campaign_id"] == rows["campaign_id"].max()
    return Split(
        train=rows[~holdout],
        holdout=rows[holdout],
        holdout_campaigns=[int(rows["campaign_id"].max())],
    )


@pytest.mark.parametrize("name", CANDIDATES)
def test_each_learner_finds_the_persuadables_the_conversion_ranking_misses(synthetic_split, name):
    split = synthetic_split
    trained = train_uplift_candidate(name, split)
    baselines = {b: holdout_metrics(split.holdout, s) for b, s in baseline_scores(split).items()}
    top = "incremental_top_10pct"
    assert trained.metrics[top] > baselines[CONVERSION_BASELINE][top] + 50
    assert trained.metrics["qini"] > max(m["qini"] for m in baselines.values())
    assert decide(trained.metrics, baselines, ChampionLookup(NO_CHAMPION), {}, "")[0]
    holdout = split.holdout
    sure = ((holdout["has_whatsapp"] == 1) & (holdout["business_account_count"] > 0)).to_numpy()
    assert trained.holdout_uplift[sure].mean() < 0 < trained.holdout_uplift[~sure].mean()


def test_contributions_add_up_to_the_uplift(synthetic_split):
    for name in CANDIDATES:
        model = fit_uplift(name, synthetic_split.train)
        x = features_of(synthetic_split.holdout.head(300))
        contributions = UpliftExplainer(model).explain(x)
        assert contributions.values.shape == (300, len(REASON_FEATURES))
        np.testing.assert_allclose(contributions.uplift, model.predict(x), atol=1e-12)
        np.testing.assert_allclose(
            contributions.base + contributions.values.sum(axis=1), contributions.uplift, atol=1e-9
        )


def test_training_encodes_in_chunks_and_fits_the_models_scikit_learn_would(
    synthetic_split, monkeypatch
):
    """The memory-saving fit (the encoder fitted without encoding every row, each arm encoded
    a chunk at a time, the early-stopping tenth encoded apart) gives the encoding and the
    regressor scikit-learn's own fits give on the whole encoded matrix."""
    train = synthetic_split.train.copy()
    train.loc[train.index[:5], "carrier"] = "Operador raro"  # infrequent: below min_frequency
    whole = feature_encoder().fit_transform(features_of(train))
    encoder = fit_encoder(train)
    monkeypatch.setattr(conversion, "ENCODE_CHUNK", 777)
    np.testing.assert_array_equal(encode_rows(encoder, train), whole)
    control = np.flatnonzero(~train[TREATED].to_numpy(bool))
    y = train["converted"].to_numpy(dtype="float64")[control]
    chunked = uplift._fit_regressor(encoder, train, control, y, seed=7)
    reference = uplift._regressor(7).fit(whole[control], y)
    assert chunked.n_iter_ == reference.n_iter_
    np.testing.assert_array_equal(chunked.predict(whole), reference.predict(whole))
    model = fit_uplift("x_learner", train)
    x = features_of(synthetic_split.holdout)
    np.testing.assert_array_equal(model.predict(x), model._predict_encoded(model.encode(x)))


@pytest.mark.parametrize("name", ["hist_gradient_boosting", "logistic_regression"])
def test_a_conversion_candidate_fitted_in_chunks_is_the_pipelines_own_fit(
    synthetic_split, monkeypatch, name
):
    train = synthetic_split.train
    x, y = features_of(train), train["converted"].astype(int).to_numpy()
    x_fit, x_cal, y_fit, y_cal = train_test_split(
        x, y, test_size=conversion.CALIBRATION_SHARE, stratify=y, random_state=42
    )
    pipeline = conversion._candidate(name, len(x_fit), 42).fit(x_fit, y_fit)
    reference = CalibratedClassifierCV(FrozenEstimator(pipeline), method="sigmoid")
    reference.fit(x_cal, y_cal)
    monkeypatch.setattr(conversion, "ENCODE_CHUNK", 999)
    chunked = conversion.fit_candidate(name, train)
    holdout = features_of(synthetic_split.holdout)
    np.testing.assert_array_equal(chunked.predict_proba(holdout), reference.predict_proba(holdout))


def test_the_gate_promotes_only_a_model_beating_both_baselines_and_the_champion():
    baselines = {CONVERSION_BASELINE: {"qini": 0.01}, RULE_BASELINE: {"qini": 0.002}}
    good = {"qini": 0.02}
    assert decide(good, baselines, ChampionLookup(NO_CHAMPION), {}, "")[:2] == (True, NO_CHAMPION)
    promoted, basis, reason = decide(
        {"qini": 0.009}, baselines, ChampionLookup(NO_CHAMPION), {}, ""
    )
    assert (promoted, basis) == (False, "baseline_not_beaten")
    assert "conversion_probability" in reason
    assert not decide(
        {"qini": 0.001}, {RULE_BASELINE: {"qini": 0.002}}, ChampionLookup(NO_CHAMPION), {}, ""
    )[0]
    assert not decide(good, baselines, ChampionLookup(USABLE), {"qini": 0.03}, "")[0]
    assert not decide(good, baselines, ChampionLookup(USABLE), {"qini": 0.02}, "")[0]
    assert decide(good, baselines, ChampionLookup(USABLE), {"qini": 0.015}, "")[:2] == (
        True,
        "compared",
    )
    assert decide(good, baselines, ChampionLookup(UNAVAILABLE), {}, "down")[:2] == (
        False,
        "champion_unavailable",
    )


def _metadata(result, node: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def _materialize(database: Database, tracking_uri: str, assets):
    resources = {
        "database": DatabaseResource(url=database.url.render_as_string(False)),
        "mlflow": MlflowResource(tracking_uri=tracking_uri),
    }
    with dg.instance_for_test() as instance:
        return dg.materialize(assets, resources=resources, instance=instance)


def test_no_promotion_without_control_groups_or_with_too_few_control_conversions(
    database, tmp_path
):
    """3,000 demo contacts: six campaigns with a control group, far fewer than 200 control
    conversions; then no control group at all. Nothing trained, nothing registered, the
    metadata says why, and uplift_scores stays empty."""
    load_demo_data(database, 3_000, seed=11, as_of=AS_OF, batch_size=1_000)
    rescore_all(database, AS_OF)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    few = _metadata(_materialize(database, uri, [uplift_model]), "uplift_model")
    assert few["trained"] is False and few["registered"] is False
    assert few["campaigns_with_control"] == 6 and few["control_conversions"] < 200
    assert f"{few['control_conversions']} control conversions" in few["reason"]
    assert "at least 2 campaigns and 200 control conversions" in few["reason"]
    with database.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM campaign_recipients WHERE arm = 'control'"))
    none = _metadata(_materialize(database, uri, [uplift_model]), "uplift_model")
    assert none["trained"] is False and none["campaigns_with_control"] == 0
    assert none["reason"].startswith("0 campaigns with a control group")
    assert MlflowClient(uri, uri).search_registered_models() == []
    scores = _metadata(_materialize(database, uri, [uplift_scores]), "uplift_scores")
    assert scores["dagster/row_count"] == 0 and scores["model"].startswith("no uplift champion")
    assert database.count("uplift_scores") == 0


def test_recipients_both_arms_at_campaign_time_as_campaign_results_counts_them(database):
    load_demo_data(database, 2_000, seed=3, as_of=AS_OF, batch_size=1_000)
    training = build_uplift_training_set(database, as_of=AS_OF)
    measured = {r.campaign_id: r for r in campaign_results(database, now=AS_OF)}
    assert len(training.campaigns) == 6
    for campaign in training.campaigns.itertuples():
        result = measured[campaign.id]
        assert (campaign.control, campaign.control_conversions) == (
            result.control.recipients,
            result.control.conversions,
        )
        # target outcome rows of unknown contacts (planted bad rows) have no features
        assert 0 <= result.target.recipients - campaign.target <= 5
        assert campaign.target_conversions <= result.target.conversions
    rows = training.rows
    assert set(rows.columns) >= {
        "campaign_id",
        "contact_id",
        "sent_at",
        TREATED,
        "converted",
        "total_score",
        *REASON_FEATURES,
    }
    share = rows.groupby("campaign_id")[TREATED].mean()
    assert share.between(0.75, 0.85).all()
    assert not rows.duplicated(["campaign_id", "contact_id"]).any()
    with pytest.raises(NotEnoughControl, match="control conversions"):
        uplift_split(training)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> SimpleNamespace:
    """A scored SQLite database of 30,000 demo contacts: six campaigns with 20 % control
    groups and the demo's sure things and persuadables."""
    folder = tmp_path_factory.mktemp("uplift")
    url = f"sqlite:///{folder / 'lead_scoring.db'}"
    database = Database(url)
    database.upgrade()
    database.replace_rows("ladas_reference", build_lada_reference())
    load_demo_data(database, DEMO_CONTACTS, seed=11, as_of=AS_OF, batch_size=10_000)
    rescore_all(database, AS_OF)
    database.dispose()
    return SimpleNamespace(url=url, tracking_uri=f"sqlite:///{folder / 'mlflow.db'}", folder=folder)


def test_demo_campaigns_train_an_uplift_champion_that_scores_every_contact(demo, capsys):
    database = Database(demo.url)
    empty = _metadata(_materialize(database, demo.tracking_uri, [uplift_scores]), "uplift_scores")
    assert empty["dagster/row_count"] == 0 and "no uplift champion" in empty["model"]
    first = _materialize(database, demo.tracking_uri, [uplift_model])
    one = _metadata(first, "uplift_model")
    assert one["trained"] is True and one["registered"] is True, one["decision"]
    assert (one["registered_version"], one["decision_basis"]) == ("1", NO_CHAMPION)
    assert "conversion_probability" in one["holdout_metrics"]
    two = _metadata(_materialize(database, demo.tracking_uri, [uplift_model]), "uplift_model")
    assert two["decision_basis"] == "compared" and two["registered"] is False
    assert "≤ the champion's" in two["decision"]
    client = MlflowClient(demo.tracking_uri, demo.tracking_uri)
    experiment = client.get_experiment_by_name("lead_uplift")
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.dagster_run_id = '{first.run_id}'"
    )
    assert sorted(r.info.run_name for r in runs) == sorted(
        [*CANDIDATES, CONVERSION_BASELINE, RULE_BASELINE]
    )
    for run in runs:
        assert {"qini", "auuc", "incremental_top_10pct", "incremental_top_30pct"} <= set(
            run.data.metrics
        )
    assert len(client.search_model_versions("name = 'lead_uplift'")) == 1
    scored = _metadata(_materialize(database, demo.tracking_uri, [uplift_scores]), "uplift_scores")
    assert scored["dagster/row_count"] == DEMO_CONTACTS and scored["model_version"] == "1"
    rows = database.read_frame("SELECT * FROM uplift_scores")
    assert len(rows) == DEMO_CONTACTS and set(rows["uplift_decile"]) == set(range(1, 11))
    assert rows.groupby("uplift_decile")["uplift"].min().is_monotonic_increasing
    assert set(rows["method"]) == {one["best_candidate"]}
    assert not uplift_score_violations(database).failed
    best = rows.sort_values("uplift").iloc[-1]
    summary = uplift_summary(database, int(best["contact_id"]))
    assert "decile 10 of 10" in summary and "what raises it" in summary
    assert decoded_reasons(best.to_dict())["raises"][0]["effect"] == pytest.approx(
        best["up_effect_1"], abs=1e-4
    )
    assert main(["explain", str(int(best["contact_id"])), "--url", demo.url]) == 0
    printed = capsys.readouterr().out
    assert "points of conversion probability when messaged, decile 10 of 10" in printed
    phones = database.read_frame("SELECT phone_e164 FROM contacts")["phone_e164"]
    numbers = {p.lstrip("+").encode() for p in phones.dropna()}
    numbers |= {n[2:] for n in numbers if n.startswith(b"52")}
    assert not digit_runs(demo.folder / "mlartifacts") & numbers
    database.dispose()


@pytest.fixture(scope="module")
def champion(synthetic_split) -> ConversionChampion:
    return ConversionChampion(fit_uplift("two_model", synthetic_split.train), "3", "two_model")


def test_uplift_scores_on_both_dialects_and_forget_removes_a_row(database, champion):
    load_demo_data(database, 1_500, seed=2, as_of=AS_OF, batch_size=1_000)
    report = write_uplift_scores(
        database, champion, AS_OF, chunk_size=400, audit=uplift_score_violations
    )
    assert report.contacts == 1_500 and not report.violations.failed
    rows = database.read_frame("SELECT * FROM uplift_scores ORDER BY contact_id")
    assert len(rows) == 1_500 and (rows["model_version"] == "3").all()
    assert rows["uplift_decile"].between(1, 10).all() and rows["uplift"].between(-1, 1).all()
    assert rows.groupby("uplift_decile")["uplift"].max().is_monotonic_increasing
    if database.dialect == "postgresql":  # the list's index, on every swapped partition
        attached = database.read_frame(
            "SELECT count(*) AS n FROM pg_inherits "
            "WHERE inhparent = CAST('ix_uplift_scores_rank' AS regclass)"
        )
        assert attached["n"].iloc[0] == 16
    victim = int(rows["contact_id"].iloc[0])
    phone = database.read_frame(f"SELECT phone_e164 FROM contacts WHERE id = {victim}")[
        "phone_e164"
    ][0]
    forgotten = forget(database, phone)
    assert forgotten.deleted["uplift_scores"] >= 1
    assert (
        database.read_frame(f"SELECT count(*) AS n FROM uplift_scores WHERE contact_id = {victim}")[
            "n"
        ][0]
        == 0
    )
    emptied = write_uplift_scores(database, None, AS_OF, audit=uplift_score_violations)
    assert emptied.contacts == 0 and not emptied.violations.failed
    assert database.count("uplift_scores") == 0
