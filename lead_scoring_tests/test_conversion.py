"""The conversion model: outcomes, point-in-time training set, time split, gate, scores,
reasons and fallback, on small demo data (SQLite and PostgreSQL) and a real MLflow store."""

from types import SimpleNamespace

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from scipy.special import expit

from lead_scoring_assets.analytics.conversion import latest_conversion_rates
from lead_scoring_assets.api.queries import ScoreReader
from lead_scoring_assets.campaigns.segment_export import Segment, select_segment
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.defs.assets.conversion_model import ConversionModelConfig, conversion_model
from lead_scoring_assets.defs.assets.conversion_scores import conversion_scores
from lead_scoring_assets.defs.resources import DatabaseResource, MlflowResource
from lead_scoring_assets.demo.loader import load_demo_data
from lead_scoring_assets.geography.ladas import build_lada_reference
from lead_scoring_assets.ml.conversion import (
    CANDIDATES,
    MIN_EFFECT,
    Explainer,
    NotEnoughOutcomes,
    concept_effects,
    features_of,
    fit_candidate,
    time_split,
    top_reasons,
    top_share_rate,
)
from lead_scoring_assets.ml.conversion_features import (
    CONCEPTS,
    REASON_CONCEPTS,
    REASON_FEATURES,
    REST_CODE,
    build_training_set,
    decoded_reasons,
    reason_code,
    reason_name,
)
from lead_scoring_assets.ml.conversion_scores import (
    FALLBACK_METHOD,
    conversion_score_violations,
    write_conversion_scores,
)
from lead_scoring_assets.ml.conversion_tracking import ConversionChampion, decide
from lead_scoring_assets.ml.tracking import (
    CHALLENGER,
    CHAMPION,
    NO_CHAMPION,
    USABLE,
    ChampionLookup,
)
from lead_scoring_assets.scoring.full_rescore import rescore_all
from lead_scoring_assets.scoring.score_card import conversion_summary

from .conftest import AS_OF, digit_runs

CONTACTS = 3_000


@pytest.fixture
def outcomes_database(database: Database) -> Database:
    load_demo_data(database, CONTACTS, seed=11, as_of=AS_OF, batch_size=1_000)
    return database


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> SimpleNamespace:
    """A scored SQLite demo database and its training set, shared by the model tests."""
    folder = tmp_path_factory.mktemp("conversion")
    url = f"sqlite:///{folder / 'lead_scoring.db'}"
    database = Database(url)
    database.upgrade()
    database.replace_rows("ladas_reference", build_lada_reference())
    load_demo_data(database, CONTACTS, seed=11, as_of=AS_OF, batch_size=1_000)
    rescore_all(database, AS_OF)
    training = build_training_set(database, as_of=AS_OF)
    database.dispose()
    return SimpleNamespace(
        url=url, training=training, tracking_uri=f"sqlite:///{folder / 'mlflow.db'}"
    )


def _row(training, campaign_id: int, contact_id: int) -> pd.Series:
    rows = training.rows
    return rows[(rows["campaign_id"] == campaign_id) & (rows["contact_id"] == contact_id)].iloc[0]


def test_features_are_computed_as_of_each_campaigns_sent_at(outcomes_database):
    database = outcomes_database
    before = build_training_set(database, as_of=AS_OF)
    first = before.campaigns.iloc[0]
    rows = before.rows[before.rows["campaign_id"] == first["id"]]
    contact = int(rows.loc[rows["has_apple"] == 0, "contact_id"].iloc[0])
    later = first["sent_at"] + pd.Timedelta(days=2)
    with database.engine.begin() as connection:
        top = connection.execute(sa.text("SELECT max(id) FROM platform_validations")).scalar()
    database.append_frame(
        "platform_validations",
        pd.DataFrame(
            {
                "id": [top + 1],
                "contact_id": [contact],
                "platform": ["apple"],
                "is_valid": [True],
                "is_business": [True],
                "is_premium": [True],
                "confidence_score": [1.0],
                "validation_method": ["api_lookup"],
                "response_time_ms": [100],
                "validated_at": [later],
            }
        ),
    )
    after = build_training_set(database, as_of=AS_OF)
    pd.testing.assert_series_equal(
        _row(before, first["id"], contact), _row(after, first["id"], contact)
    )
    assert len(after.rows) == len(before.rows)
    # the same validation dated before sent_at does change that campaign's row
    with database.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE platform_validations SET validated_at = :t WHERE id = :id"),
            {"t": database.bind_timestamp(first["sent_at"] - pd.Timedelta(days=1)), "id": top + 1},
        )
    moved = build_training_set(database, as_of=AS_OF)
    assert _row(moved, first["id"], contact)["has_apple"] == 1


def test_label_counts_conversions_within_the_attribution_window(outcomes_database):
    database = outcomes_database
    training = build_training_set(database, attribution_days=30, as_of=AS_OF)
    converted = training.rows[training.rows["converted"]]
    campaign, contact = int(converted["campaign_id"].iloc[0]), int(converted["contact_id"].iloc[0])
    sent_at = training.campaigns.set_index("id").loc[campaign, "sent_at"]
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE campaign_outcomes SET converted_at = :t WHERE campaign_id = :c "
                "AND contact_id = :k"
            ),
            {
                "t": database.bind_timestamp(sent_at + pd.Timedelta(days=31)),
                "c": campaign,
                "k": contact,
            },
        )
    assert not _row(build_training_set(database, 30, AS_OF), campaign, contact)["converted"]
    assert _row(build_training_set(database, 45, AS_OF), campaign, contact)["converted"]


def test_bad_outcome_rows_are_reported_and_left_out(outcomes_database):
    database = outcomes_database
    with database.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM campaign_outcomes"))
    database.append_frame(
        "campaign_outcomes",
        pd.DataFrame(
            {
                "campaign_id": [1, 99, 1, 1, 1],
                "contact_id": [10, 11, 10**9, 12, 13],
                "delivered": pd.array([True, True, True, False, None], dtype="boolean"),
                "converted": pd.array([True, False, True, True, False], dtype="boolean"),
                "converted_at": pd.Series([AS_OF] * 5, dtype="datetime64[us, UTC]"),
            }
        ),
    )
    rejected = database.read_frame(
        "SELECT campaign_id, contact_id, reason FROM rejected_campaign_outcomes ORDER BY contact_id"
    )
    assert rejected.values.tolist() == [
        [99, 11, "unknown_campaign"],
        [1, 12, "converted_without_delivery"],
        [1, 13, "missing_delivered"],
        [1, 10**9, "unknown_contact"],
    ]
    training = build_training_set(database, as_of=AS_OF)
    assert training.rejected == {
        "unknown_campaign": 1,
        "converted_without_delivery": 1,
        "missing_delivered": 1,
        "unknown_contact": 1,
    }
    assert training.rows[["campaign_id", "contact_id"]].values.tolist() == [[1, 10]]


def test_the_holdout_is_the_latest_campaign(home):
    split = time_split(home.training)
    latest = home.training.campaigns.sort_values("sent_at")["id"].iloc[-1]
    assert split.holdout_campaigns == [latest]
    assert set(split.holdout["campaign_id"]) == {latest}
    assert split.train["sent_at"].max() < split.holdout["sent_at"].min()
    assert len(split.train) + len(split.holdout) == home.training.messages
    two = time_split(home.training, holdout_campaigns=2)
    assert len(two.holdout_campaigns) == 2 and latest in two.holdout_campaigns


def test_too_few_outcomes_trains_nothing_and_says_how_many(home):
    rows = home.training.rows
    few = SimpleNamespace(campaigns=home.training.campaigns, rows=rows[rows["contact_id"] <= 300])
    messages = int((few.rows["campaign_id"] != few.campaigns["id"].iloc[-1]).sum())
    with pytest.raises(NotEnoughOutcomes, match=f"holds {messages} delivered messages"):
        time_split(few)


@pytest.mark.parametrize("name", CANDIDATES)
def test_contributions_add_up_to_the_calibrated_log_odds(home, name):
    split = time_split(home.training)
    model = fit_candidate(name, split.train)
    x = features_of(split.holdout.head(500))
    contributions = Explainer(model).explain(x)
    assert contributions.values.shape == (len(x), len(REASON_FEATURES))
    np.testing.assert_allclose(
        contributions.base + contributions.values.sum(axis=1), contributions.logit, atol=1e-6
    )
    np.testing.assert_allclose(contributions.probability, model.predict_proba(x)[:, 1], atol=1e-9)
    _assert_concept_reasons(top_reasons(contributions.values), contributions)


def _assert_concept_reasons(reasons: dict, contributions) -> None:
    """One reason per concept, raising ones up and lowering ones down, at most five shown,
    the rest once, and all of them adding up to the log-odds minus the average contact's."""
    codes = np.hstack([reasons["up_feature"], reasons["down_feature"]])
    effects = np.hstack([reasons["up_effect"], reasons["down_effect"]])
    np.testing.assert_allclose(
        effects.sum(axis=1), contributions.logit - contributions.base, atol=1e-9
    )
    assert ((codes == REST_CODE).sum(axis=1) == 1).all()
    shown = codes > REST_CODE
    assert (shown.sum(axis=1) <= 5).all()
    for row in codes:
        concepts = [reason_name(c) for c in row if c > REST_CODE]
        assert len(concepts) == len(set(concepts))
    up_shown = reasons["up_feature"] > REST_CODE
    down_shown = reasons["down_feature"] > REST_CODE
    assert (reasons["up_effect"][up_shown] >= MIN_EFFECT).all()
    assert (reasons["down_effect"][down_shown] <= -MIN_EFFECT).all()
    concept = concept_effects(contributions.values)
    best = concept.argmax(axis=1)
    raised = concept.max(axis=1) >= MIN_EFFECT
    assert (reasons["up_feature"][raised, 0] == REST_CODE + 1 + best[raised]).all()


def test_every_feature_belongs_to_one_concept():
    grouped = [f for features in REASON_CONCEPTS.values() for f in features]
    assert sorted(grouped) == sorted(REASON_FEATURES)


def test_the_smaller_last_reason_gives_way_to_the_rest():
    values = np.zeros((2, len(REASON_FEATURES)))
    feature = {c: REASON_FEATURES.index(REASON_CONCEPTS[c][0]) for c in CONCEPTS}
    for row, small in ((0, -0.05), (1, -0.5)):
        for concept, effect in (
            ("whatsapp", 1.0),
            ("business", 0.5),
            ("recency", 0.2),
            ("region", -1.0),
            ("carrier", -0.35),
            ("profile", small),
            ("apple", 0.01),
        ):
            values[row, feature[concept]] = effect
    values[:, REASON_FEATURES.index("google_score")] = -0.4
    values[:, REASON_FEATURES.index("has_google")] = 0.7
    reasons = top_reasons(values)
    names = {
        side: [[reason_name(c) for c in row] for row in reasons[f"{side}_feature"]]
        for side in ("up", "down")
    }
    assert names["up"][0] == ["whatsapp", "business", "google"]
    assert names["down"][0] == ["region", "carrier", "rest"]
    assert reasons["down_effect"][0, 2] == pytest.approx(0.2 + 0.01 - 0.05)
    assert names["up"][1] == ["whatsapp", "business", "rest"]
    assert names["down"][1] == ["region", "profile", "carrier"]
    assert reasons["up_effect"][1, 2] == pytest.approx(0.3 + 0.2 + 0.01)
    values[:, :] = 0.0
    values[:, feature["carrier"]] = 0.009
    assert reason_name(top_reasons(values)["up_feature"][0, 0]) == "rest"


FACTS = {
    "whatsapp_score": 20,
    "instagram_score": 0,
    "facebook_score": 0,
    "google_score": 14,
    "apple_score": 0,
    "platform_count": 2,
    "business_account_count": 1,
    "premium_account_count": 0,
    "validation_recency_days": 3,
    "profile_fields": 5,
    "lada_state_match": 1.0,
    "state_name": "jalisco",
    "operator": "telcel ",
}


@pytest.mark.parametrize(
    ("concept", "facts", "es", "en"),
    [
        ("google", {}, "Google validado (14/20)", "Validated on Google (14/20)"),
        ("instagram", {}, "Sin Instagram validado", "Not validated on Instagram"),
        ("business", {}, "Tiene 1 cuenta de negocio", "Has 1 business account"),
        ("premium", {}, "Sin cuentas premium", "No premium account"),
        ("recency", {}, "Validado hace 3 días", "Validated 3 days ago"),
        (
            "recency",
            {"validation_recency_days": 15},
            "Validado hace 15 días o más",
            "Validated 15 days ago or more",
        ),
        ("recency", {"validation_recency_days": None}, "Nunca validado", "Never validated"),
        ("region", {}, "Región: JALISCO", "Region: JALISCO"),
        (
            "region",
            {"lada_state_match": 0.0, "state_name": "NL"},
            "Región: NUEVO LEON (LADA de otro estado)",
            "Region: NUEVO LEON (LADA of another state)",
        ),
        ("carrier", {}, "Operador: TELCEL", "Carrier: TELCEL"),
        ("platforms", {}, "Activo en 2 de 5 plataformas", "Active on 2 of 5 platforms"),
        ("profile", {}, "Perfil con 5 de 6 datos", "Profile with 5 of 6 fields"),
    ],
)
def test_reasons_are_worded_as_the_contacts_facts(concept, facts, es, en):
    row = {
        "conversion_probability": 0.1,
        "up_feature_1": reason_code(concept),
        "up_effect_1": 0.5,
        "up_feature_2": REST_CODE,
        "up_effect_2": -0.1,
    }
    reasons = decoded_reasons(row, {**FACTS, **facts})
    assert reasons["raises"] == [
        {"feature": concept, "words": en, "text": {"es": es, "en": en}, "effect": 0.5}
    ]
    assert reasons["rest"]["effect"] == -0.1
    assert reasons["average_probability"] == pytest.approx(
        0.1 / 0.9 * np.exp(-0.4) / (1 + 0.1 / 0.9 * np.exp(-0.4)), abs=1e-6
    )


def test_a_row_of_an_earlier_run_has_no_reasons():
    row = {"conversion_probability": 0.1, "up_feature_1": 7, "up_effect_1": 0.5}
    assert decoded_reasons(row, FACTS) == {"raises": [], "lowers": [], "rest": None}


def _lookup(status: str) -> ChampionLookup:
    return ChampionLookup(status)


def test_the_gate_promotes_only_a_model_that_beats_champion_and_rule():
    rule = {"lift_top_decile": 2.0}
    good = {"auc_pr": 0.2, "lift_top_decile": 3.0}
    assert decide(good, rule, _lookup(NO_CHAMPION), {}, "")[0] == CHAMPION
    loses_to_rule = {"auc_pr": 0.9, "lift_top_decile": 1.9}
    assert decide(loses_to_rule, rule, _lookup(NO_CHAMPION), {}, "")[:2] == (
        CHALLENGER,
        "rule_not_beaten",
    )
    assert decide(good, rule, _lookup(USABLE), {"auc_pr": 0.25}, "")[0] == CHALLENGER
    assert decide(good, rule, _lookup(USABLE), {"auc_pr": 0.2}, "")[0] == CHALLENGER
    assert decide(good, rule, _lookup(USABLE), {"auc_pr": 0.1}, "")[0] == CHAMPION


def test_top_share_rate_takes_ties_at_their_mean():
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    assert top_share_rate(y, np.arange(10)[::-1], 0.1) == 1.0
    assert top_share_rate(y, np.zeros(10), 0.5) == pytest.approx(0.2)


def _metadata(result, node: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def test_training_logs_candidates_and_rule_then_scores_every_contact(home, tmp_path):
    resources = {
        "database": DatabaseResource(url=home.url),
        "mlflow": MlflowResource(tracking_uri=home.tracking_uri),
    }
    config = dg.RunConfig(
        {"conversion_model": ConversionModelConfig(candidates=["logistic_regression"])}
    )
    with dg.instance_for_test() as instance:
        fallback = dg.materialize([conversion_scores], resources=resources, instance=instance)
        database = Database(home.url)
        stored = database.read_frame(
            "SELECT s.probability_decile, s.method, "
            "s.conversion_probability, l.total_score "
            "FROM conversion_scores s JOIN lead_scores l "
            "ON l.contact_id = s.contact_id"
        )
        assert set(stored["method"]) == {FALLBACK_METHOD}
        assert stored["conversion_probability"].isna().all()
        assert stored.groupby("probability_decile")["total_score"].max().is_monotonic_increasing
        assert _metadata(fallback, "conversion_scores")["fallback"] is True
        first = dg.materialize(
            [conversion_model], resources=resources, instance=instance, run_config=config
        )
        second = dg.materialize(
            [conversion_model], resources=resources, instance=instance, run_config=config
        )
        scored = dg.materialize([conversion_scores], resources=resources, instance=instance)
    one, two = _metadata(first, "conversion_model"), _metadata(second, "conversion_model")
    assert (one["alias"], one["decision_basis"]) == (CHAMPION, NO_CHAMPION)
    assert (two["alias"], two["decision_basis"]) == (CHALLENGER, "compared")
    client = MlflowClient(home.tracking_uri, home.tracking_uri)
    experiment = client.get_experiment_by_name("lead_conversion")
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.dagster_run_id = '{first.run_id}'"
    )
    assert sorted(r.info.run_name for r in runs) == ["logistic_regression", "rule_total_score"]
    assert {r.data.params["training_set_sha256"] for r in runs} == {one["training_set_sha256"]}
    assert two["training_set_sha256"] == one["training_set_sha256"]
    for run in runs:
        assert {"auc_roc", "auc_pr", "lift_top_decile", "lift_top_5pct"} <= set(run.data.metrics)
    [model_run] = [r for r in runs if r.info.run_name == "logistic_regression"]
    assert {"brier", "log_loss", "rule_auc_pr"} <= set(model_run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(model_run.info.run_id)}
    assert {
        "conversion_by_decile.png",
        "calibration_curve.png",
        "conversion_by_decile.json",
    } <= artifacts
    assert str(client.get_model_version_by_alias("lead_conversion", CHAMPION).version) == "1"
    mlflow.set_tracking_uri(home.tracking_uri)
    downloaded = tmp_path / "artifacts"
    mlflow.artifacts.download_artifacts(
        run_id=model_run.info.run_id, dst_path=str(downloaded / "run")
    )
    mlflow.artifacts.download_artifacts(
        artifact_uri="models:/lead_conversion/1", dst_path=str(downloaded / "model")
    )
    assert len(list(downloaded.rglob("model.skops"))) == 1
    assert len(list(downloaded.rglob("*.png"))) >= 2
    phones = Database(home.url).read_frame("SELECT phone_e164 FROM contacts")["phone_e164"]
    numbers = {p.lstrip("+").encode() for p in phones.dropna()}
    numbers |= {n[2:] for n in numbers if n.startswith(b"52")}
    assert not digit_runs(downloaded) & numbers
    rows = database.read_frame("SELECT * FROM conversion_scores")
    assert len(rows) == CONTACTS and set(rows["method"]) == {"lr"}
    assert rows["conversion_probability"].between(0, 1).all()
    assert set(rows["probability_decile"]) == set(range(1, 11))
    assert (rows["model_version"] == "1").all()
    assert not conversion_score_violations(database).failed
    assert _metadata(scored, "conversion_scores")["model_version"] == "1"
    best = rows.sort_values("conversion_probability").iloc[-1]
    summary = conversion_summary(database, int(best["contact_id"]))
    assert "decile 10 of 10" in summary and "what raises it" in summary
    reasons = decoded_reasons(best.to_dict())
    assert reasons["raises"][0]["effect"] == pytest.approx(best["up_effect_1"], abs=1e-4)
    ranked = select_segment(database, Segment(rank_by="conversion_probability", min_decile=9))
    assert len(ranked) == (rows["probability_decile"] >= 9).sum()
    assert ranked["conversion_probability"].is_monotonic_decreasing
    assert ranked["probability_decile"].min() == 9
    rates = latest_conversion_rates(database)
    latest = home.training.campaigns.iloc[-1]
    assert rates.campaign == latest["name"]
    recipients = database.read_frame(
        "SELECT count(*) AS n FROM campaign_outcomes o JOIN lead_scores s "
        "ON s.contact_id = o.contact_id WHERE o.campaign_id = :id AND NOT EXISTS ("
        "SELECT 1 FROM campaign_recipients r WHERE r.campaign_id = o.campaign_id "
        "AND r.contact_id = o.contact_id AND r.arm = 'control')",
        {"id": int(latest["id"])},
    )
    assert (
        rates.by_tier["messages"].sum()
        == rates.by_decile["messages"].sum()
        == recipients["n"].iloc[0]
    )
    assert list(rates.by_decile["probability_decile"]) == list(range(10, 0, -1))
    likely = select_segment(
        database, Segment(rank_by="conversion_probability", min_probability=0.05)
    )
    assert len(likely) == (rows["conversion_probability"] >= np.float32(0.05)).sum()
    database.dispose()


def test_too_few_outcomes_in_the_asset_succeeds_without_training(outcomes_database, tmp_path):
    database = outcomes_database
    with database.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM campaign_outcomes WHERE contact_id > 200"))
    resources = {
        "database": DatabaseResource(url=database.url.render_as_string(False)),
        "mlflow": MlflowResource(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}"),
    }
    with dg.instance_for_test() as instance:
        result = dg.materialize([conversion_model], resources=resources, instance=instance)
    metadata = _metadata(result, "conversion_model")
    assert metadata["trained"] is False
    assert (
        metadata["delivered_messages"]
        == database.read_frame(
            "SELECT count(*) AS n FROM campaign_outcomes WHERE delivered = :yes", {"yes": True}
        )["n"].iloc[0]
        - 0
    )
    assert "training needs at least 1000 and 50" in metadata["reason"]
    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}", f"sqlite:///{tmp_path / 'm.db'}")
    assert client.search_registered_models() == []


def test_conversion_scores_on_both_dialects(outcomes_database):
    database = outcomes_database
    report = write_conversion_scores(
        database, None, AS_OF, chunk_size=1_000, audit=conversion_score_violations
    )
    assert report.contacts == CONTACTS and not report.violations.failed
    counts = database.read_frame(
        "SELECT probability_decile, count(*) AS n "
        "FROM conversion_scores GROUP BY probability_decile"
    )
    assert counts["n"].sum() == CONTACTS
    assert counts["probability_decile"].between(1, 10).all()
    if database.dialect == "postgresql":  # the list's index, on every swapped partition
        attached = database.read_frame(
            "SELECT count(*) AS n FROM pg_inherits "
            "WHERE inhparent = CAST('ix_conversion_scores_rank' AS regclass)"
        )
        assert attached["n"].iloc[0] == 16


def test_scores_with_a_champion_in_chunks(home):
    """Every contact scored by the champion, read bucket by bucket in chunks."""
    split = time_split(home.training)
    champion = ConversionChampion(
        fit_candidate("hist_gradient_boosting", split.train), "7", "hist_gradient_boosting"
    )
    database = Database(home.url)
    report = write_conversion_scores(
        database, champion, AS_OF, chunk_size=CONTACTS // 3, audit=conversion_score_violations
    )
    assert report.contacts == CONTACTS and not report.violations.failed
    assert report.by_method == {"hgb": CONTACTS}
    database.dispose()


def test_stored_reasons_add_up_and_read_the_same_in_card_and_cli(home, outcomes_database):
    """On both dialects: the stored effects and the rest add up to the contact's log-odds
    minus the average contact's, and the API card and the explain CLI word them alike."""
    database = outcomes_database
    rescore_all(database, AS_OF)
    split = time_split(home.training)
    model = fit_candidate("logistic_regression", split.train)
    report = write_conversion_scores(
        database,
        ConversionChampion(model, "3", "logistic_regression"),
        AS_OF,
        chunk_size=1_000,
        audit=conversion_score_violations,
    )
    assert not report.violations.failed
    rows = database.read_frame("SELECT * FROM conversion_scores ORDER BY contact_id")
    effects = rows[[f"{s}_effect_{i}" for s in ("up", "down") for i in (1, 2, 3)]]
    p = rows["conversion_probability"].astype(float)
    base = Explainer(model).base_value
    np.testing.assert_allclose(
        effects.astype(float).sum(axis=1), np.log(p / (1 - p)) - base, atol=1e-4
    )
    codes = rows[[f"{s}_feature_{i}" for s in ("up", "down") for i in (1, 2, 3)]]
    assert ((codes == REST_CODE).sum(axis=1) == 1).all()
    reader = ScoreReader(database)
    for contact_id in rows["contact_id"].iloc[[0, len(rows) // 2, -1]]:
        card = reader.score_card(int(contact_id))
        reasons = card["conversion_score"]["reasons"]
        summary = conversion_summary(database, int(contact_id))
        for reason in reasons["raises"] + reasons["lowers"]:
            assert f"{reason['words']} ({reason['effect']:+.2f})" in summary
            assert reason["text"]["es"] != reason["text"]["en"]
        assert reasons["average_probability"] == pytest.approx(expit(base), abs=1e-4)
        google = [r for r in reasons["raises"] + reasons["lowers"] if r["feature"] == "google"]
        for reason in google:
            assert f"({card['google_score']}/20)" in reason["words"] or card["google_score"] == 0
