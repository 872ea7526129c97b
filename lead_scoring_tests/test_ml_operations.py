"""Trustworthy retraining (issue 14): one as_of for features, labels and predictions, a stable
holdout, promotion only on evidence, and feature drift. Real MLflow stores (SQLite) and real
databases; only the tracking store's network boundary is made to fail where said."""

import shutil
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sklearn.model_selection import train_test_split

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.defs.assets.contact_features import contact_features
from lead_scoring_assets.defs.assets.lead_scoring_model import (
    FEATURE_DRIFT_CHECK,
    LeadScoringModelConfig,
    _drift_result,
    lead_scoring_model,
)
from lead_scoring_assets.defs.assets.ml_lead_scores import ml_lead_scores
from lead_scoring_assets.defs.resources import DatabaseResource, MlflowResource
from lead_scoring_assets.ml import drift
from lead_scoring_assets.ml.feature_table import build_contact_features
from lead_scoring_assets.ml.features import FEATURE_COLUMNS
from lead_scoring_assets.ml.split import (
    HOLDOUT_SALT,
    in_holdout,
    salt_of,
    stable_hash,
    stable_hash_sql,
)
from lead_scoring_assets.ml.tracking import (
    NO_CHAMPION,
    UNAVAILABLE,
    UNUSABLE,
    USABLE,
    ChampionLookup,
)
from lead_scoring_assets.ml.training import load_training_data
from lead_scoring_assets.scoring.full_rescore import rescore_all
from lead_scoring_assets.scoring.incremental import score_queued

from .conftest import AS_OF
from .test_ml_pipeline import _metadata, _scored_database

EXTREME_IDS = [
    -(2**63),
    -(2**63) + 1,
    -(2**53) - 1,
    -3_500_000_001,
    -1,
    0,
    1,
    2,
    3_470_000_000,
    3_500_000_001,
    2**53 + 1,
    2**62 + 12_345,
    2**63 - 2,
    2**63 - 1,
]
LINEAR = LeadScoringModelConfig(candidates=["linear_baseline"])


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> str:
    """A SQLite database of 3,000 demo contacts, rescored and featured at AS_OF."""
    url = f"sqlite:///{tmp_path_factory.mktemp('ops') / 'lead_scoring.db'}"
    _scored_database(url, 3_000)
    return url


@pytest.fixture
def home(scored, tmp_path) -> SimpleNamespace:
    """A copy of ``scored`` and an empty MLflow store, both this test's own."""
    url = f"sqlite:///{tmp_path / 'lead_scoring.db'}"
    shutil.copy(sa.make_url(scored).database, sa.make_url(url).database)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    resources = {
        "database": DatabaseResource(url=url),
        "mlflow": MlflowResource(
            tracking_uri=tracking_uri, champion_load_attempts=3, champion_retry_seconds=0.01
        ),
    }
    return SimpleNamespace(
        url=url,
        database=Database(url),
        tracking_uri=tracking_uri,
        resources=resources,
        client=MlflowClient(tracking_uri, tracking_uri),
    )


def _train(home, instance, config=LINEAR) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [lead_scoring_model],
        resources=home.resources,
        instance=instance,
        run_config=dg.RunConfig({"lead_scoring_model": config}),
    )


def _alias(home, name: str) -> str:
    return str(home.client.get_model_version_by_alias("lead_scoring", name).version)


# 1. one as_of for features, labels and predictions


def _insert_validations(database: Database, contact_ids, first_id: int) -> None:
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO platform_validations (id, contact_id, platform, is_valid, "
                "is_business, is_premium, confidence_score, validated_at) VALUES "
                "(:id, :contact, 'apple', :yes, :no, :no, 1.0, :at)"
            ),
            [
                {
                    "id": first_id + i,
                    "contact": int(c),
                    "yes": True,
                    "no": False,
                    "at": database.bind_timestamp(AS_OF),
                }
                for i, c in enumerate(contact_ids)
            ],
        )


def test_nightly_job_trains_and_scores_on_the_as_of_it_published(home, definitions):
    job = definitions.resolve_job_def("nightly_retrain_job")
    nightly_as_of = AS_OF + pd.Timedelta(days=1)
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            run_config={
                "ops": {"staged_lead_scores": {"config": {"as_of": nightly_as_of.isoformat()}}}
            },
            instance=instance,
            resources=home.resources,
        )
        assert result.success
        as_ofs = {
            node: _metadata(result, node)["as_of"]
            for node in ("lead_scores", "contact_features", "lead_scoring_model", "ml_lead_scores")
        }
        assert set(as_ofs.values()) == {nightly_as_of.isoformat()}, as_ofs

        # An incremental run moves some scores past the nightly as_of; the ML assets keep it.
        _insert_validations(home.database, range(1, 41), 10**8)
        incremental = score_queued(
            home.database,
            nightly_as_of + pd.Timedelta(hours=5),
            owner="incremental-run",
            batch_size=1_000,
        )
        assert incremental.scored == 40
        again = dg.materialize(
            [contact_features, lead_scoring_model, ml_lead_scores],
            resources=home.resources,
            instance=instance,
            run_config=dg.RunConfig({"lead_scoring_model": LINEAR}),
        )
    for node in ("contact_features", "lead_scoring_model", "ml_lead_scores"):
        assert _metadata(again, node)["as_of"] == nightly_as_of.isoformat()
    model = _metadata(again, "lead_scoring_model")
    sampled_rescored = 40
    assert model["labels_rescored_since"] == sampled_rescored
    assert model["training_rows"] + model["holdout_rows"] == 3_000 - sampled_rescored
    stored = home.database.read_frame(
        "SELECT calculated_at FROM ml_lead_scores WHERE method <> 'rule_based_fallback'"
    )
    assert (
        pd.to_datetime(stored["calculated_at"], utc=True, format="ISO8601") == nightly_as_of
    ).all()


def test_nightly_job_runs_the_rescoring_before_the_ml_assets(definitions):
    job = definitions.resolve_job_def("nightly_retrain_job")
    keys = {key.to_user_string() for key in job.asset_layer.executable_asset_keys}
    assert {
        "ladas_reference",
        "lead_scores",
        "lead_scoring_analytics",
        "contact_features",
        "lead_scoring_model",
        "ml_lead_scores",
    } <= keys
    assert {"contacts", "platform_validations"}.isdisjoint(keys)
    upstream = (
        dg.AssetSelection.assets("contact_features")
        .upstream()
        .resolve(definitions.resolve_asset_graph())
    )
    assert dg.AssetKey("lead_scores") in upstream
    assert job.tags["lead_scoring/writes"] == "lead_scores"


def test_features_of_another_moment_fail_training_and_scoring(home):
    rescore_all(home.database, AS_OF + pd.Timedelta(days=1))
    with dg.instance_for_test() as instance:
        for asset in (lead_scoring_model, ml_lead_scores):
            result = dg.materialize(
                [asset], resources=home.resources, instance=instance, raise_on_error=False
            )
            assert not result.success
            [failure] = [e for e in result.all_events if e.is_step_failure]
            message = failure.step_failure_data.error.message
            assert (
                "contact_features describe ['2026-11-24T00:00:00+00:00'], the published "
                "lead_scores 2026-11-25T00:00:00+00:00" in message
            )


# 2. a stable holdout, a hash that cannot overflow


def test_the_hash_is_the_same_in_sql_and_numpy_for_any_int64_id(database):
    rng = np.random.default_rng(3)
    ids = EXTREME_IDS + rng.integers(-(2**63), 2**63 - 1, size=200, dtype=np.int64).tolist()
    with database.engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE hash_probe (id BIGINT NOT NULL)"))
        connection.execute(
            sa.text("INSERT INTO hash_probe (id) VALUES (:id)"), [{"id": i} for i in ids]
        )
    for salt in (HOLDOUT_SALT, salt_of(42), salt_of(-7)):
        stored = database.read_frame(
            f"SELECT id, {stable_hash_sql('id', salt)} AS h FROM hash_probe ORDER BY id"
        )
        expected = stable_hash(stored["id"].to_numpy(dtype=np.int64), salt)
        np.testing.assert_array_equal(stored["h"].to_numpy(dtype=np.int64), expected)
        assert ((expected >= 0) & (expected < 2**31)).all()


def test_training_sample_with_ids_above_2_to_the_53_and_negative(demo_database):
    rescore_all(demo_database, AS_OF)
    build_contact_features(demo_database, AS_OF)
    moved = {1: 2**62 + 1, 2: 2**53 + 1, 3: -(2**62), 4: 3_500_000_001, 5: 2**63 - 1}
    with demo_database.engine.begin() as connection:
        for table in ("contact_features", "lead_scores"):
            for old, new in moved.items():
                connection.execute(
                    sa.text(f"UPDATE {table} SET contact_id = :new WHERE contact_id = :old"),
                    {"new": new, "old": old},
                )
    data = load_training_data(demo_database, 200_000)
    ids = set(data.x_train.index) | set(data.x_test.index)
    assert set(moved.values()) <= ids and len(ids) == 3_000
    assert set(data.x_test.index) == {i for i in ids if in_holdout(np.array([i]))[0]}


def test_yesterdays_holdout_is_never_in_todays_training_set(home):
    """Yesterday 2,000 of the contacts existed; today all 3,000 do (and both days sample
    fewer than all). The old row-position split leaked yesterday's holdout into training."""
    database = home.database
    with database.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM contact_features WHERE contact_id % 3 = 0"))
    yesterday = load_training_data(database, 1_800)
    build_contact_features(database, AS_OF)
    today = load_training_data(database, 2_500)
    assert set(yesterday.x_test.index).isdisjoint(today.x_train.index)
    assert set(yesterday.x_train.index).isdisjoint(today.x_test.index)
    assert len(set(yesterday.x_test.index) & set(today.x_test.index)) > 100
    share = len(today.x_test) / (len(today.x_test) + len(today.x_train))
    assert 0.17 < share < 0.23

    def by_position(data, size):
        ids = sorted(set(data.x_train.index) | set(data.x_test.index))[:size]
        return train_test_split(ids, test_size=0.2, random_state=42)

    _, old_holdout = by_position(yesterday, 1_800)
    new_train, _ = by_position(today, 2_500)
    assert set(old_holdout) & set(new_train)


# 3. promotion only on evidence


def _fail_once(monkeypatch, target, name, error):
    real = getattr(target, name)
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, flaky)
    return calls


def _always_fail(monkeypatch, target, name, error):
    """Every call fails; for downloads, every download of the champion (the registration
    still reads the new model's own file)."""
    real = getattr(target, name)

    def broken(*args, **kwargs):
        if name != "download_artifacts" or "@champion" in str(args[0]):
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, broken)


TRANSIENT = [
    (
        MlflowClient,
        "get_model_version_by_alias",
        MlflowException(
            "API request to http://mlflow:5000/api/2.0/mlflow/registered-models/"
            "alias failed with exception ConnectionError"
        ),
    ),
    (
        mlflow.artifacts,
        "download_artifacts",
        requests.exceptions.ConnectionError("Connection reset by peer"),
    ),
    (mlflow.artifacts, "download_artifacts", OSError("Network is unreachable")),
]


@pytest.mark.parametrize(
    ("target", "name", "error"), TRANSIENT, ids=["alias_lookup", "download", "os_error"]
)
def test_a_champion_that_fails_once_is_retried_and_compared(home, monkeypatch, target, name, error):
    with dg.instance_for_test() as instance:
        _train(home, instance)
        calls = _fail_once(monkeypatch, target, name, error)
        second = _metadata(
            _train(home, instance, LeadScoringModelConfig(candidates=["mean_baseline"])),
            "lead_scoring_model",
        )
    assert calls["n"] >= 2
    assert (second["decision_basis"], second["alias"], second["champion_load_attempts"]) == (
        "compared",
        "challenger",
        2,
    )
    assert second["champion_metrics"]["rmse"] < second["candidate_metrics"]["rmse"]
    assert (_alias(home, "champion"), _alias(home, "challenger")) == ("1", "2")


@pytest.mark.parametrize(
    ("target", "name", "error"), TRANSIENT, ids=["alias_lookup", "download", "os_error"]
)
def test_a_champion_that_cannot_be_reached_is_not_replaced(home, monkeypatch, target, name, error):
    with dg.instance_for_test() as instance:
        _train(home, instance, LeadScoringModelConfig(candidates=["mean_baseline"]))
        _always_fail(monkeypatch, target, name, error)
        second = _metadata(_train(home, instance), "lead_scoring_model")
    monkeypatch.undo()
    assert (second["decision_basis"], second["alias"], second["champion_load_attempts"]) == (
        "champion_unavailable",
        "challenger",
        3,
    )
    assert "could not be loaded after 3 attempts" in second["decision"]
    assert "no promotion without evidence" in second["decision"]
    assert (_alias(home, "champion"), _alias(home, "challenger")) == ("1", "2")
    assert (
        home.client.get_model_version("lead_scoring", "2").tags["registry_decision"]
        == second["decision"]
    )


def test_ml_scores_stand_when_the_champion_cannot_be_reached(home, monkeypatch):
    with dg.instance_for_test() as instance:
        _train(home, instance)
        dg.materialize([ml_lead_scores], resources=home.resources, instance=instance)
        before = home.database.read_frame("SELECT * FROM ml_lead_scores ORDER BY contact_id")
        _always_fail(monkeypatch, *TRANSIENT[1])
        result = dg.materialize(
            [ml_lead_scores], resources=home.resources, instance=instance, raise_on_error=False
        )
    assert not result.success
    after = home.database.read_frame("SELECT * FROM ml_lead_scores ORDER BY contact_id")
    pd.testing.assert_frame_equal(after, before)
    assert set(before["method"]) == {"ml_linear_baseline"}


def _model_file(home, version: str) -> Path:
    model_id = home.client.get_model_version("lead_scoring", version).source.rsplit("/", 1)[-1]
    folder = Path(sa.make_url(home.tracking_uri).database).parent / "mlartifacts"
    [path] = [p for p in folder.rglob("model.skops") if model_id in p.parts]
    return path


@pytest.mark.parametrize(
    ("breakage", "problem"),
    [
        ("feature_set", "was trained on feature set features_v0, not features_v1"),
        ("missing", "its model artifact is missing"),
        ("corrupted", "failed integrity check (model.skops does not match the SHA-256"),
    ],
)
def test_a_provably_unusable_champion_is_replaced_and_the_decision_says_why(
    home, breakage, problem
):
    with dg.instance_for_test() as instance:
        _train(home, instance)
        if breakage == "feature_set":
            home.client.set_model_version_tag(
                "lead_scoring", "1", "feature_set_version", "features_v0"
            )
        elif breakage == "missing":
            _model_file(home, "1").unlink()
        else:
            path = _model_file(home, "1")
            path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
        second = _metadata(
            _train(home, instance, LeadScoringModelConfig(candidates=["mean_baseline"])),
            "lead_scoring_model",
        )
    assert (second["decision_basis"], second["alias"]) == ("champion_unusable", "champion")
    assert problem in second["decision"]
    assert second["champion_load_attempts"] == 1
    assert _alias(home, "champion") == "2"


# 4. feature drift


def test_psi_is_zero_on_the_same_population_and_sees_a_rare_value_grow():
    rng = np.random.default_rng(0)
    training = pd.DataFrame(
        {"days": rng.integers(0, 400, 5_000), "flag": (rng.random(5_000) < 0.05).astype(int)}
    )
    distribution = drift.training_distribution(training)
    assert len(distribution["days"]["shares"]) == drift.MAX_BINS
    assert distribution["flag"]["cuts"] == [0.5]
    same = drift.population_stability(distribution, training)
    assert same == {"days": pytest.approx(0, abs=1e-12), "flag": pytest.approx(0, abs=1e-12)}
    shifted = training.assign(flag=(rng.random(5_000) < 0.5).astype(int))
    psi = drift.population_stability(distribution, shifted)
    expected = (0.5 - 0.05) * np.log(0.5 / 0.05) + (0.5 - 0.95) * np.log(0.5 / 0.95)
    assert psi["flag"] == pytest.approx(expected, rel=0.1)
    assert drift.judge(psi).level == "fail"
    assert drift.judge({"days": 0.15}).level == "warn"
    assert drift.judge({"days": 0.05}).level == "ok"
    with pytest.raises(ValueError, match="above the failure threshold"):
        drift.judge(psi, warn=0.3, fail=0.2)


def test_no_psi_is_not_judged_ok():
    """Nothing measured is no evidence of stability."""
    with pytest.raises(ValueError, match="no PSI"):
        drift.judge({})


@pytest.mark.parametrize(
    ("lookup", "reason"),
    [
        (
            ChampionLookup(NO_CHAMPION, "no champion alias on registered model 'lead_scoring'"),
            "no champion alias",
        ),
        (
            ChampionLookup(
                UNAVAILABLE,
                "the champion of lead_scoring could not be loaded after 3 "
                "attempts (ConnectionError: reset)",
            ),
            "could not be loaded after 3 attempts",
        ),
        (
            ChampionLookup(
                UNUSABLE,
                "lead_scoring v1 failed to load: its model artifact is missing",
                version=SimpleNamespace(version="1"),
            ),
            "its model artifact is missing",
        ),
        (
            ChampionLookup(USABLE, version=SimpleNamespace(version="4")),
            "champion v4 has no stored training distribution",
        ),
    ],
    ids=[NO_CHAMPION, UNAVAILABLE, UNUSABLE, "no_distribution"],
)
def test_a_drift_check_that_could_not_compare_is_not_passed(lookup, reason):
    """Every way the PSI could not be computed gives a failed WARN result saying why, never a
    pass."""
    result = _drift_result(SimpleNamespace(psi={}, champion=lookup), LINEAR)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["evaluated"].value is False
    assert reason in result.metadata["not_evaluated_reason"].value
    assert result.metadata["champion_status"].value == lookup.status
    assert result.description.startswith("not evaluated")


def test_the_drift_check_fails_when_the_champion_cannot_be_reached(home, monkeypatch):
    with dg.instance_for_test() as instance:
        _train(home, instance)
        _always_fail(monkeypatch, *TRANSIENT[0])
        result = _train(home, instance)
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == FEATURE_DRIFT_CHECK
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["evaluated"].value is False
    assert check.metadata["champion_status"].value == UNAVAILABLE
    assert "could not be loaded after 3 attempts" in check.metadata["not_evaluated_reason"].value


def _shift_population(database: Database, as_of: pd.Timestamp) -> None:
    """Half the contacts lose their WhatsApp account and validate again only now."""
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE platform_validations SET is_valid = :no, validated_at = :at "
                "WHERE platform = 'whatsapp' AND contact_id % 2 = 0"
            ),
            {"no": False, "at": database.bind_timestamp(as_of)},
        )
    rescore_all(database, as_of)
    build_contact_features(database, as_of)


def test_drift_check_fails_on_a_shifted_population_and_metrics_form_a_series(home):
    later = AS_OF + pd.Timedelta(days=1)
    with dg.instance_for_test() as instance:
        first = _train(home, instance)
        first_check = first.get_asset_check_evaluations()[0]
        _shift_population(home.database, later)
        shifted = dg.materialize(
            [lead_scoring_model, ml_lead_scores],
            resources=home.resources,
            instance=instance,
            run_config=dg.RunConfig({"lead_scoring_model": LINEAR}),
        )
        warned = _train(
            home,
            instance,
            LeadScoringModelConfig(
                candidates=["linear_baseline"], drift_warn_psi=0.0001, drift_fail_psi=100
            ),
        )
        plotted = instance.fetch_materializations(dg.AssetKey("lead_scoring_model"), limit=10)
    assert not first_check.passed and first_check.severity == dg.AssetCheckSeverity.WARN
    assert first_check.metadata["champion_status"].value == NO_CHAMPION
    checks = {e.check_name: e for e in shifted.get_asset_check_evaluations()}
    assert set(checks) == {FEATURE_DRIFT_CHECK, "ml_lead_scores_are_consistent"}
    check = checks[FEATURE_DRIFT_CHECK]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert shifted.success and shifted.asset_materializations_for_node("ml_lead_scores")
    psi_table = check.metadata["psi"].value
    assert all(f"| {name} |" in psi_table for name in FEATURE_COLUMNS)
    assert check.metadata["worst_feature"].value in {
        "has_whatsapp",
        "whatsapp_score",
        "meta_ecosystem_user",
        "validation_recency_days",
    }
    assert check.metadata["psi_max"].value > 0.25
    [warning] = warned.get_asset_check_evaluations()
    assert not warning.passed and warning.severity == dg.AssetCheckSeverity.WARN

    metadata = _metadata(shifted, "lead_scoring_model")
    assert metadata["psi_max"] == pytest.approx(check.metadata["psi_max"].value)
    series = [
        r.event_log_entry.asset_materialization.metadata["champion_rmse"].value
        for r in plotted.records
    ]
    assert len(series) == 3 and all(isinstance(v, float) for v in series)

    experiment = home.client.get_experiment_by_name("lead_scoring")
    [monitoring] = home.client.search_runs(
        [experiment.experiment_id], filter_string="tags.monitoring = 'champion'"
    )
    history = home.client.get_metric_history(monitoring.info.run_id, "champion_rmse")
    days = int(AS_OF.timestamp() // 86_400)
    assert sorted({m.step for m in history}) == [days, days + 1]
    psi = home.client.get_metric_history(monitoring.info.run_id, "psi_has_whatsapp")
    assert [m.step for m in psi] == [days + 1, days + 1]
    assert max(m.value for m in psi) > 0.25
