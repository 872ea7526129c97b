"""Training, MLflow runs, the registry's champion/challenger and ml_lead_scores, on demo data
with a real MLflow store (SQLite here; PostgreSQL in test_ml_postgres.py)."""

import logging
import zipfile
from types import SimpleNamespace

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.defs.assets.lead_scoring_model import (
    LeadScoringModelConfig,
    lead_scoring_model,
)
from lead_scoring_assets.defs.assets.ml_lead_scores import ml_lead_scores
from lead_scoring_assets.defs.resources import DatabaseResource, MlflowResource
from lead_scoring_assets.demo.loader import load_demo_data
from lead_scoring_assets.geography.ladas import build_lada_reference
from lead_scoring_assets.ml.checks import ml_score_violations
from lead_scoring_assets.ml.feature_table import build_contact_features
from lead_scoring_assets.ml.features import FEATURE_COLUMNS, FEATURE_SET_VERSION
from lead_scoring_assets.ml.predictions import (
    FALLBACK_CONFIDENCE,
    FALLBACK_METHOD,
    confidence_from_spread,
    predict_with_spread,
)
from lead_scoring_assets.ml.split import in_holdout
from lead_scoring_assets.ml.tracking import load_model
from lead_scoring_assets.ml.training import (
    DEFAULT_CANDIDATES,
    load_training_data,
    train_candidate,
)
from lead_scoring_assets.scoring.full_rescore import rescore_all

from .conftest import AS_OF, PHONE_DIGITS, digit_runs

METRICS = {"mse", "rmse", "mae", "r2", "tier_accuracy"}
RETRAININGS = (["random_forest"], ["mean_baseline"], list(DEFAULT_CANDIDATES), ["linear_baseline"])
"""v1 becomes champion (there is none); v2, the mean, loses to it (challenger); v3, the best
of the default candidates (the linear model on this small sample), beats it (champion); v4,
the same linear model again, only ties v3 (challenger: a tie does not promote)."""


def _scored_database(url: str, contacts: int) -> None:
    database = Database(url)
    database.upgrade()
    database.replace_rows("ladas_reference", build_lada_reference())
    load_demo_data(database, contacts, seed=11, as_of=AS_OF, batch_size=1_000)
    rescore_all(database, AS_OF)
    build_contact_features(database, AS_OF)
    database.dispose()


def _resources(url: str, tracking_uri: str) -> dict:
    return {
        "database": DatabaseResource(url=url),
        "mlflow": MlflowResource(tracking_uri=tracking_uri),
    }


@pytest.fixture(scope="module")
def ml_home(tmp_path_factory) -> SimpleNamespace:
    folder = tmp_path_factory.mktemp("ml")
    url = f"sqlite:///{folder / 'lead_scoring.db'}"
    _scored_database(url, 3_000)
    return SimpleNamespace(folder=folder, url=url, tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")


@pytest.fixture(scope="module")
def trained(ml_home) -> SimpleNamespace:
    """The retrainings of ``RETRAININGS`` on one MLflow store, then ml_lead_scores."""
    resources = _resources(ml_home.url, ml_home.tracking_uri)
    with dg.instance_for_test() as instance:
        trainings = [
            dg.materialize(
                [lead_scoring_model],
                resources=resources,
                instance=instance,
                run_config=dg.RunConfig(
                    {"lead_scoring_model": LeadScoringModelConfig(candidates=candidates)}
                ),
            )
            for candidates in RETRAININGS
        ]
        scoring = dg.materialize([ml_lead_scores], resources=resources, instance=instance)
    mlflow.set_tracking_uri(ml_home.tracking_uri)
    return SimpleNamespace(
        trainings=trainings,
        scoring=scoring,
        client=MlflowClient(ml_home.tracking_uri, ml_home.tracking_uri),
    )


def _metadata(result, node: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def test_each_candidate_is_an_mlflow_run_with_metrics_and_model(ml_home, trained):
    experiment = trained.client.get_experiment_by_name("lead_scoring")
    runs = trained.client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.dagster_run_id = '{trained.trainings[2].run_id}'",
    )
    assert sorted(r.info.run_name for r in runs) == sorted(DEFAULT_CANDIDATES)
    for run in runs:
        assert METRICS <= set(run.data.metrics)
        assert run.data.metrics["mse"] == pytest.approx(run.data.metrics["rmse"] ** 2)
        assert 0 < run.data.metrics["tier_accuracy"] <= 1
        params = run.data.params
        assert int(params["training_rows"]) + int(params["holdout_rows"]) == 3_000
        assert int(params["holdout_rows"]) == int(in_holdout(np.arange(1, 3_001)).sum())
        assert (params["as_of"], params["feature_set_version"]) == (
            AS_OF.isoformat(),
            FEATURE_SET_VERSION,
        )
        artifacts = {a.path for a in trained.client.list_artifacts(run.info.run_id)}
        assert {
            "feature_importances.json",
            "feature_importances.png",
            "training_distribution.json",
        } <= artifacts
        importances = mlflow.load_table("feature_importances.json", run_ids=[run.info.run_id])
        assert sorted(importances["feature"]) == sorted(FEATURE_COLUMNS)
    [forest] = [r for r in runs if r.info.run_name == "random_forest"]
    assert (
        forest.data.params["model.n_estimators"],
        forest.data.params["model.max_depth"],
        forest.data.params["model.min_samples_split"],
        forest.data.params["model.min_samples_leaf"],
    ) == ("100", "10", "5", "2")
    model = mlflow.models.get_model_info("models:/lead_scoring/3")
    assert model.signature.inputs.input_names() == list(FEATURE_COLUMNS)
    example = mlflow.models.Model.load(model.model_uri).load_input_example(
        mlflow.artifacts.download_artifacts(model.model_uri)
    )
    assert list(example.columns) == list(FEATURE_COLUMNS)


def test_champion_moves_only_to_a_better_model(trained):
    first, weak, best, tie = (_metadata(r, "lead_scoring_model") for r in trained.trainings)
    assert (first["registered_version"], first["alias"], first["decision"]) == (
        "1",
        "champion",
        "no champion yet",
    )
    assert (weak["registered_version"], weak["alias"], weak["champion_version"]) == (
        "2",
        "challenger",
        "1",
    )
    assert weak["best_candidate"] == "mean_baseline"
    assert weak["candidate_metrics"]["rmse"] > weak["champion_metrics"]["rmse"]
    assert (best["registered_version"], best["alias"], best["champion_version"]) == (
        "3",
        "champion",
        "1",
    )
    assert best["candidate_metrics"]["rmse"] < best["champion_metrics"]["rmse"]
    assert set(best["candidate_metrics"]) == METRICS
    assert (tie["registered_version"], tie["alias"], tie["champion_version"]) == (
        "4",
        "challenger",
        "3",
    )
    assert tie["candidate_metrics"]["rmse"] == pytest.approx(tie["champion_metrics"]["rmse"])

    def alias(name: str) -> str:
        return str(trained.client.get_model_version_by_alias("lead_scoring", name).version)

    assert (alias("champion"), alias("challenger")) == ("3", "4")
    version = trained.client.get_model_version("lead_scoring", "3")
    assert version.tags["dagster_run_id"] == trained.trainings[2].run_id
    assert version.tags["feature_set_version"] == FEATURE_SET_VERSION
    assert version.tags["registry_decision"] == best["decision"]


def test_champion_is_compared_on_the_same_holdout(ml_home, trained):
    data = load_training_data(Database(ml_home.url), 200_000)
    champion = load_model("models:/lead_scoring/1")
    predictions = np.clip(champion.predict(data.x_test), 0, 100)
    rmse = float(np.sqrt(np.mean((predictions - data.y_test.to_numpy()) ** 2)))
    assert _metadata(trained.trainings[2], "lead_scoring_model")["champion_metrics"][
        "rmse"
    ] == pytest.approx(rmse)


def test_predictions_use_the_champion_loaded_by_alias(ml_home, trained):
    database = Database(ml_home.url)
    scores = database.read_frame("SELECT * FROM ml_lead_scores ORDER BY contact_id")
    features = database.read_frame("SELECT * FROM contact_features ORDER BY contact_id")
    champion = trained.client.get_model_version_by_alias("lead_scoring", "champion")
    candidate = champion.tags["candidate"]
    assert len(scores) == 3_000
    assert set(scores["model_version"]) == {str(champion.version)}
    assert set(scores["method"]) == {f"ml_{candidate}"}
    model = load_model("models:/lead_scoring@champion")
    expected = np.round(np.clip(model.predict(features[list(FEATURE_COLUMNS)]), 0, 100), 2)
    np.testing.assert_allclose(scores["predicted_score"], expected, atol=0.011)
    assert scores["confidence"].between(0.5, 1).all()
    assert scores["confidence"].nunique() > 1
    metadata = _metadata(trained.scoring, "ml_lead_scores")
    assert metadata["model_version"] == str(champion.version)
    rule = database.read_frame(
        "SELECT total_score, quality_tier FROM lead_scores ORDER BY contact_id"
    )
    assert metadata["mean_absolute_difference_from_rule"] == pytest.approx(
        (scores["predicted_score"] - rule["total_score"]).abs().mean(), abs=1e-4
    )
    assert metadata["tier_agreement_with_rule"] == pytest.approx(
        (scores["predicted_tier"] == rule["quality_tier"]).mean(), abs=1e-4
    )
    audits = {e.check_name: e for e in trained.scoring.get_asset_check_evaluations()}
    assert audits["ml_lead_scores_are_consistent"].passed
    assert not ml_score_violations(database).failed


def test_forest_confidence_is_the_spread_of_its_trees(ml_home):
    data = load_training_data(Database(ml_home.url), 200_000)
    forest = train_candidate("random_forest", data).model
    predictions, spread = predict_with_spread(forest, data.x_test, {})
    scaled = forest.named_steps["scaler"].transform(data.x_test)
    per_tree = np.stack([tree.predict(scaled) for tree in forest.named_steps["model"].estimators_])
    np.testing.assert_allclose(predictions, forest.predict(data.x_test), rtol=1e-4)
    np.testing.assert_allclose(spread, per_tree.std(axis=0), rtol=1e-4, atol=1e-6)
    assert spread.std() > 0
    np.testing.assert_allclose(confidence_from_spread(np.array([0.0, 10.0, 30.0])), [1.0, 0.8, 0.5])


def _fallback_scores(url: str, tracking_uri: str, instance) -> tuple[pd.DataFrame, list]:
    result = dg.materialize(
        [ml_lead_scores], resources=_resources(url, tracking_uri), instance=instance
    )
    warnings = [
        e.user_message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING
    ]
    scores = Database(url).read_frame(
        "SELECT m.*, s.total_score, s.quality_tier FROM ml_lead_scores m "
        "JOIN lead_scores s ON s.contact_id = m.contact_id"
    )
    return scores, warnings


def _assert_rule_based(scores: pd.DataFrame) -> None:
    assert len(scores) == 3_000
    assert set(scores["method"]) == {FALLBACK_METHOD}
    assert (scores["confidence"] == FALLBACK_CONFIDENCE).all()
    assert scores["model_version"].isna().all()
    assert (scores["predicted_score"] == scores["total_score"]).all()
    assert (scores["predicted_tier"] == scores["quality_tier"]).all()


def test_empty_registry_falls_back_to_the_rule_based_score(ml_home, tmp_path):
    with dg.instance_for_test() as instance:
        scores, warnings = _fallback_scores(
            ml_home.url, f"sqlite:///{tmp_path / 'empty.db'}", instance
        )
    _assert_rule_based(scores)
    assert any("no usable champion" in w and "no champion alias" in w for w in warnings)


def test_broken_champion_falls_back_to_the_rule_based_score(ml_home, tmp_path):
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with dg.instance_for_test() as instance:
        dg.materialize(
            [lead_scoring_model],
            resources=_resources(ml_home.url, tracking_uri),
            instance=instance,
            run_config=dg.RunConfig(
                {"lead_scoring_model": LeadScoringModelConfig(candidates=["linear_baseline"])}
            ),
        )
        [model_file] = (tmp_path / "mlartifacts").rglob("model.skops")
        model_file.write_bytes(b"not a model")
        scores, warnings = _fallback_scores(ml_home.url, tracking_uri, instance)
    _assert_rule_based(scores)
    assert any("v1 failed to load" in w for w in warnings)


def test_no_phone_number_in_any_mlflow_artifact(ml_home, trained, tmp_path):
    phones = Database(ml_home.url).read_frame("SELECT phone_e164 FROM contacts")["phone_e164"]
    numbers = {p.lstrip("+").encode() for p in phones.dropna()}
    numbers |= {n[2:] for n in numbers if n.startswith(b"52")}
    artifacts = ml_home.folder / "mlartifacts"
    assert len(list(artifacts.rglob("model.skops"))) == 6
    assert not digit_runs(artifacts) & numbers
    assert not set(PHONE_DIGITS.findall((ml_home.folder / "mlflow.db").read_bytes())) & numbers
    planted = tmp_path / "planted"
    planted.mkdir()
    with zipfile.ZipFile(planted / "model.skops", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("schema.json", b'{"x": "' + min(numbers) + b'"}')
    assert digit_runs(planted) & numbers


def test_too_few_contacts_fail_clearly(tmp_path):
    url = f"sqlite:///{tmp_path / 'small.db'}"
    _scored_database(url, 60)
    with pytest.raises(
        dg.Failure,
        match="only 60 contacts have both features and a "
        "rule-based score of 2026-11-24T00:00:00\\+00:00; training needs at "
        "least 100",
    ):
        dg.materialize(
            [lead_scoring_model], resources=_resources(url, f"sqlite:///{tmp_path / 'mlflow.db'}")
        )


def test_unknown_candidate_fails_before_training(ml_home, tmp_path):
    with pytest.raises(dg.Failure, match="unknown candidates \\['xgboost'\\]"):
        dg.materialize(
            [lead_scoring_model],
            resources=_resources(ml_home.url, f"sqlite:///{tmp_path / 'm.db'}"),
            run_config=dg.RunConfig(
                {"lead_scoring_model": LeadScoringModelConfig(candidates=["xgboost"])}
            ),
        )
