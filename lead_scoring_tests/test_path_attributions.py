"""The vectorised Saabas attributions (``ml/path_attributions.py``) against the reference
they replace, ``shap.TreeExplainer(model).shap_values(z, approximate=True)``, on every tree
model kind the conversion and uplift candidates use, and additivity against the models'
own outputs."""

import numpy as np
import pytest
import shap
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)

from lead_scoring_assets.ml.conversion import (
    Explainer,
    by_source_feature,
    features_of,
    fit_candidate,
    top_reasons,
)
from lead_scoring_assets.ml.conversion_features import REASON_FEATURES
from lead_scoring_assets.ml.path_attributions import BATCH_ROWS, PathAttributions
from lead_scoring_assets.ml.uplift import CANDIDATES, UpliftExplainer, fit_uplift

from .test_uplift import _synthetic


def _shap(model, z: np.ndarray) -> tuple[np.ndarray, float]:
    """The reference: shap's Saabas attributions (positive class) and expected value."""
    explainer = shap.TreeExplainer(model)
    values = np.asarray(explainer.shap_values(z, approximate=True, check_additivity=False))
    if values.ndim == 3:
        values = values[..., 1]
    return values, float(np.atleast_1d(explainer.expected_value)[-1])


def _data(n: int = 6_000, seed: int = 0):
    """Continuous, binary and missing inputs; a target with interactions."""
    rng = np.random.default_rng(seed)
    z = np.column_stack(
        [
            rng.normal(size=(n, 4)),
            rng.integers(0, 2, (n, 3)).astype(float),
            rng.integers(0, 1500, (n, 1)).astype(float),
        ]
    )
    missing = z.copy()
    missing[:, :4][rng.random((n, 4)) < 0.05] = np.nan
    signal = z[:, 0] + z[:, 1] * z[:, 4] - 0.5 * z[:, 5] + (z[:, 7] < 365) * z[:, 2]
    return z, missing, signal + rng.normal(size=n)


def _models():
    z, missing, y = _data()
    return [
        (
            "hgb regressor",
            HistGradientBoostingRegressor(max_iter=60, max_leaf_nodes=15, random_state=0).fit(
                missing, y
            ),
            missing,
        ),
        (
            "hgb classifier",
            HistGradientBoostingClassifier(max_iter=60, max_leaf_nodes=15, random_state=0).fit(
                missing, y > 0
            ),
            missing,
        ),
        (
            "forest",
            RandomForestClassifier(
                n_estimators=15, max_depth=10, min_samples_leaf=30, random_state=0
            ).fit(z, y > 0),
            z,
        ),
    ]


def _output(model, z: np.ndarray) -> np.ndarray:
    if isinstance(model, RandomForestClassifier):
        return model.predict_proba(z)[:, 1]
    if isinstance(model, HistGradientBoostingClassifier):
        return model.decision_function(z)
    return model.predict(z)


@pytest.mark.parametrize("kind", range(3), ids=["hgb regressor", "hgb classifier", "forest"])
def test_saabas_attributions_equal_shaps_and_add_up_to_the_output(kind):
    _, model, z = _models()[kind]
    z = np.vstack([z, z[: BATCH_ROWS + 7]])  # more than one batch, a partial last one
    reference, expected = _shap(model, z)
    paths = PathAttributions([model], [1.0], np.arange(z.shape[1]), z.shape[1])
    values, (raw,) = paths.explain(z)
    scale = np.abs(reference).max()
    assert scale > 0.05
    np.testing.assert_allclose(values, reference, rtol=0, atol=1e-12 * max(scale, 1))
    assert paths.base == pytest.approx(expected, abs=1e-12)
    output = _output(model, z)
    np.testing.assert_allclose(paths.base + values.sum(axis=1), output, rtol=0, atol=1e-12)
    if isinstance(model, RandomForestClassifier):
        assert raw is None
    else:
        assert np.array_equal(raw, output)  # bit for bit the model's own output


def test_weighted_ensembles_summed_by_group_equal_shaps():
    models = [m for _, m, _ in _models()[:2]]
    z = _models()[0][2]
    groups = np.array([0, 0, 1, -1, 2, 2, 3, 4])
    weights = (0.7, -1.3)
    paths = PathAttributions(models, weights, groups, 5)
    values, raw = paths.explain(z)
    expected_values = np.zeros((len(z), 5))
    expected_base = 0.0
    for weight, model in zip(weights, models):
        reference, expected = _shap(model, z)
        for column, group in enumerate(groups):
            if group >= 0:
                expected_values[:, group] += weight * reference[:, column]
        expected_base += weight * expected
    np.testing.assert_allclose(values, expected_values, rtol=0, atol=1e-12)
    assert paths.base == pytest.approx(expected_base, abs=1e-12)
    assert np.array_equal(raw[0], models[0].predict(z))
    assert np.array_equal(raw[1], models[1].decision_function(z))


def test_an_unsupported_model_is_refused():
    from sklearn.ensemble import ExtraTreesClassifier

    z, _, y = _data(500)
    with pytest.raises(TypeError, match="ExtraTreesClassifier"):
        PathAttributions([ExtraTreesClassifier(n_estimators=2).fit(z, y > 0)], [1.0], [0] * 8, 1)


@pytest.fixture(scope="module")
def rows():
    rows = _synthetic(rows_per_campaign=6_000)
    rng = np.random.default_rng(3)
    # continuous inputs as the real features have, so that thresholds fall between values
    rows["avg_confidence_score"] = rng.random(len(rows))
    rows["validation_recency_days"] = rng.integers(0, 400, len(rows))
    return rows


@pytest.mark.parametrize("name", CANDIDATES)
def test_uplift_explainer_gives_shaps_contributions_reasons_and_the_models_uplift(rows, name):
    model = fit_uplift(name, rows)
    x = features_of(rows.head(5_000))
    z = model.encode(x)
    got = UpliftExplainer(model).explain(x)
    values = np.zeros(z.shape)
    base = 0.0
    for weight, regressor in zip(model.weights, model.regressors):
        reference, expected = _shap(regressor, z)
        values += weight * reference
        base += weight * expected
    groups = UpliftExplainer(model).groups
    reference = by_source_feature(values, groups)
    np.testing.assert_allclose(got.values, reference, rtol=0, atol=1e-12)
    assert got.base == pytest.approx(base, abs=1e-12)
    assert np.array_equal(got.uplift, model.predict(x))
    np.testing.assert_allclose(got.base + got.values.sum(axis=1), got.uplift, rtol=0, atol=1e-12)
    _assert_same_reasons(got.values, reference, min_effect=0.001)


@pytest.mark.parametrize("name", ["hist_gradient_boosting", "random_forest"])
def test_conversion_explainer_gives_shaps_contributions_and_reasons(rows, name):
    model = fit_candidate(name, rows)
    x = features_of(rows.head(5_000))
    explainer = Explainer(model)
    got = explainer.explain(x)
    z = explainer._transform(x)
    reference, expected = _shap(explainer.estimator, z)
    reference = -explainer.a * by_source_feature(reference, explainer.groups)
    assert got.values.shape == (len(x), len(REASON_FEATURES))
    np.testing.assert_allclose(got.values, reference, rtol=0, atol=1e-11)
    assert explainer.margin_base == pytest.approx(expected, abs=1e-12)
    logit = -(explainer.a * explainer._margin(z) + explainer.b)
    if name == "random_forest":  # n_jobs=-1: its trees' shares add up in any order
        np.testing.assert_allclose(got.logit, logit, rtol=0, atol=1e-12)
    else:
        assert np.array_equal(got.logit, logit)
    np.testing.assert_allclose(got.base + got.values.sum(axis=1), got.logit, rtol=0, atol=1e-9)
    _assert_same_reasons(got.values, reference)


def _assert_same_reasons(values: np.ndarray, reference: np.ndarray, **kwargs) -> None:
    got, expected = top_reasons(values, **kwargs), top_reasons(reference, **kwargs)
    for key in ("up_feature", "down_feature"):
        assert np.array_equal(got[key], expected[key])
    for key in ("up_effect", "down_effect"):
        np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=1e-11)
