"""Where MLflow runs and artifacts go: MLFLOW_TRACKING_URI, the data folder, the resource."""

from pathlib import Path

from lead_scoring_assets.defs.resources import MlflowResource
from lead_scoring_assets.ml.tracking import MlflowTarget, default_tracking_uri


def test_tracking_uri_defaults_to_sqlite_in_the_data_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("LEAD_SCORING_DATA_DIR", str(tmp_path))
    assert default_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert default_tracking_uri() == "http://mlflow.internal:5000"


def test_artifacts_go_beside_a_sqlite_store_or_to_the_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("LEAD_SCORING_DATA_DIR", str(tmp_path / "data"))
    sqlite = MlflowTarget(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    assert sqlite.artifact_root() == (tmp_path / "store" / "mlartifacts").as_uri()
    postgres = MlflowTarget("postgresql+psycopg://mlflow@db:5432/mlflow")
    assert postgres.artifact_root() == (tmp_path / "data" / "mlartifacts").as_uri()
    assert MlflowTarget("http://mlflow.internal:5000").artifact_root() is None
    explicit = MlflowTarget("http://mlflow.internal:5000", artifact_location="s3://bucket/ml")
    assert explicit.artifact_root() == "s3://bucket/ml"


def test_resource_builds_the_target_and_creates_the_experiment(tmp_path):
    resource = MlflowResource(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        experiment_name="scoring_trials",
        registered_model_name="trial",
    )
    target = resource.target()
    assert (target.experiment_name, target.registered_model_name) == ("scoring_trials", "trial")
    experiment = target.activate().get_experiment_by_name("scoring_trials")
    assert experiment.artifact_location == (tmp_path / "mlartifacts").as_uri()
    assert not Path("mlartifacts").exists() and not Path("mlruns").exists()
