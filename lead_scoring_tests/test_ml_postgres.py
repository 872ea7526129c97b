"""ml_lead_scores on both dialects, and MLflow with a PostgreSQL backend store."""

import numpy as np
import pandas as pd
import pytest

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.demo.loader import load_demo_data
from lead_scoring_assets.geography.ladas import build_lada_reference
from lead_scoring_assets.ml import predictions as predictions_module
from lead_scoring_assets.ml.checks import ml_score_violations
from lead_scoring_assets.ml.feature_table import build_contact_features
from lead_scoring_assets.ml.predictions import ChampionModel, write_ml_scores
from lead_scoring_assets.ml.retraining import retrain
from lead_scoring_assets.ml.tracking import MlflowTarget, load_champion
from lead_scoring_assets.ml.training import load_training_data, train_candidate
from lead_scoring_assets.scoring.full_rescore import rescore_all

from .conftest import AS_OF


@pytest.fixture
def featured_database(demo_database, templates):
    return templates.cached(demo_database, "rescored_with_features", _featured)


def _featured(database):
    rescore_all(database, AS_OF)
    build_contact_features(database, AS_OF)


def _stored(database) -> pd.DataFrame:
    return database.read_frame("SELECT * FROM ml_lead_scores ORDER BY contact_id")


def test_forest_scores_every_contact_and_a_failure_keeps_them(featured_database, monkeypatch):
    data = load_training_data(featured_database, 200_000)
    forest = ChampionModel(
        model=train_candidate("random_forest", data).model,
        version="7",
        candidate="random_forest",
        rmse_by_tier={},
    )
    report = write_ml_scores(featured_database, forest, chunk_size=1_000)
    stored = _stored(featured_database)
    assert report.contacts == len(stored) == 3_000
    assert report.by_method == {"ml_random_forest": 3_000}
    assert set(stored["model_version"]) == {"7"}
    assert stored["predicted_score"].between(0, 100).all()
    assert stored["confidence"].between(0.5, 1).all() and stored["confidence"].nunique() > 10
    assert (pd.to_datetime(stored["calculated_at"], utc=True, format="ISO8601") == AS_OF).all()
    assert not any(vars(ml_score_violations(featured_database)).values())

    calls = {"n": 0}
    real = predictions_module.predict_with_spread

    def failing(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return real(*args)

    monkeypatch.setattr(predictions_module, "predict_with_spread", failing)
    with pytest.raises(RuntimeError, match="boom"):
        write_ml_scores(featured_database, forest, chunk_size=1_000)
    pd.testing.assert_frame_equal(_stored(featured_database), stored)


def test_contacts_without_features_get_the_rule_based_score(featured_database):
    data = load_training_data(featured_database, 200_000)
    model = ChampionModel(
        model=train_candidate("linear_baseline", data).model,
        version="1",
        candidate="linear_baseline",
        rmse_by_tier={"LOW": 1.5},
    )
    with featured_database.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM contact_features WHERE contact_id <= 10")
    report = write_ml_scores(featured_database, model)
    stored = _stored(featured_database).set_index("contact_id")
    assert report.by_method == {"ml_linear_baseline": 2_990, "rule_based_fallback": 10}
    assert set(stored.loc[1:10, "method"]) == {"rule_based_fallback"}
    assert (stored.loc[1:10, "confidence"] == 0.7).all()
    low = stored[(stored["method"] == "ml_linear_baseline") & (stored["predicted_tier"] == "LOW")]
    assert len(low) and np.allclose(low["confidence"], 1 - 1.5 / 50)
    assert not any(vars(ml_score_violations(featured_database)).values())


def test_only_existing_contacts_are_scored_and_the_others_are_counted(featured_database):
    """A contact deleted after the rescoring keeps its features and rule-based score until the
    next run, but gets no ML score (the audit would refuse it); a contact added since has
    neither: it is counted, not scored, and the audit leaves it to the queue (it once failed
    the nightly whenever the platform added a contact between the rescoring and the ML
    scores)."""
    with featured_database.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM platform_validations WHERE contact_id IN (7, 8)")
        connection.exec_driver_sql("DELETE FROM contacts WHERE id IN (7, 8)")
        connection.exec_driver_sql(
            "INSERT INTO contacts (id, phone_e164, created_at) "
            "SELECT 5000, '+525512345678', created_at FROM contacts WHERE id = 1"
        )
    report = write_ml_scores(featured_database, None, chunk_size=500)
    stored = _stored(featured_database)
    assert report.contacts == len(stored) == 2_998
    assert report.contacts_without_any_score == 1
    assert not {7, 8, 5000} & set(stored["contact_id"])
    assert stored["contact_id"].is_unique
    assert not any(vars(ml_score_violations(featured_database)).values())


def test_mlflow_on_a_postgresql_backend(sqlite_url, postgres_url, tmp_path):
    database = Database(sqlite_url)
    database.upgrade()
    database.replace_rows("ladas_reference", build_lada_reference())
    load_demo_data(database, 500, seed=5, as_of=AS_OF)
    rescore_all(database, AS_OF)
    build_contact_features(database, AS_OF)
    target = MlflowTarget(
        tracking_uri=postgres_url, artifact_location=(tmp_path / "artifacts").as_uri()
    )
    report = retrain(database, target, ["linear_baseline"], 200_000)
    assert (report.decision.version, report.decision.alias) == ("1", "champion")
    champion, reason = load_champion(target.activate(), target)
    assert champion is not None, reason
    assert (champion.version, champion.candidate) == ("1", "linear_baseline")
