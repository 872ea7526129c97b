"""The uplift model: how much a message changes a contact's probability of converting.

Three candidates, each a weighted sum of scikit-learn histogram gradient-boosting regressors
on the conversion features (``conversion_v1``, one-hot encoded as the conversion model's),
so that one class (``UpliftModel``) stores, predicts and explains them all:

- ``two_model`` (T-learner): μ₁ fitted on the target arm, μ₀ on the control arm (each a
  regression of the 0/1 outcome, i.e. a conversion probability); τ = μ₁ − μ₀.
- ``x_learner`` (Künzel et al. 2019): μ₀, μ₁ as above; imputed effects D₁ = Y − μ₀(x) on the
  target arm and D₀ = μ₁(x) − Y on the control arm, regressed by τ₁ and τ₀;
  τ = g·τ₀ + (1 − g)·τ₁ with g the target share.
- ``transformed_outcome`` (Athey & Imbens 2016): Y* = Y·(T − e)/(e·(1 − e)) with e the
  recipient's campaign's target share, whose expectation given x is τ(x); τ regresses Y*.

τ is an absolute change of conversion probability (0.02 = two more conversions per hundred
messages; negative: the message loses sales). Reasons: the Saabas path attributions
(``path_attributions.PathAttributions``, as ``shap.TreeExplainer``'s ``approximate=True``) of
each regressor, weighted like the regressors, add up exactly to τ: base + Σ contributions =
τ(x).

causalml's uplift trees and forests were left out: its 0.18 release brings xgboost, lightgbm
and NVIDIA's NCCL (hundreds of MB) and its Cython trees do not load through skops' allow-list.

Ranking metrics on a holdout with both arms (``uplift_curve``): sort by the score, highest
first, and take the recipients in groups of equal score (ties are a group: between group ends
the curves are interpolated linearly, the expectation under random tie-breaking). After the
first k recipients, with Nₜ(k), N꜀(k) recipients and Yₜ(k), Y꜀(k) conversions per arm:

- Qini curve (Radcliffe 2007): Q(k) = Yₜ(k) − Y꜀(k)·Nₜ(k)/N꜀(k) (0 while N꜀(k) = 0):
  incremental conversions among the target recipients of the top k.
- uplift curve: U(k) = (Yₜ(k)/Nₜ(k) − Y꜀(k)/N꜀(k))·k (0 while an arm is empty): incremental
  conversions if all of the top k were messaged.
- Qini coefficient: the area between Q/Nₜ(N) and the random-targeting line from (0, 0) to
  (1, Q(N)/Nₜ(N)), over the share x = k/N targeted: ∫₀¹ Q/Nₜ(N) dx − Q(N)/(2·Nₜ(N)).
- AUUC: ∫₀¹ U/N dx, the area under the uplift curve per recipient.
- incremental conversions in the top s (10 %, 20 %, 30 %): U at k = s·N.
"""

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor

from lead_scoring_assets.ml.conversion import (
    ENCODE_CHUNK,
    Split,
    encode_rows,
    features_of,
    fit_candidate,
    fit_encoder,
    fit_on_rows,
    reason_feature_index,
    source_feature,
)
from lead_scoring_assets.ml.conversion_features import REASON_FEATURES
from lead_scoring_assets.ml.path_attributions import PathAttributions
from lead_scoring_assets.ml.uplift_features import TREATED, UpliftTrainingSet, propensity

CANDIDATES = ("two_model", "x_learner", "transformed_outcome")
TOP_SHARES = (0.1, 0.2, 0.3)
MINIMUM_CAMPAIGNS = 2
"""Campaigns with a control group: the latest is the holdout, the others the training."""
MINIMUM_CONTROL_CONVERSIONS = 200
"""Conversions in the control arms of those campaigns."""
CONVERSION_BASELINE = "conversion_probability"
RULE_BASELINE = "rule_total_score"


class NotEnoughControl(ValueError):
    """Too few campaigns with a control group or control conversions to train on."""

    training = None


def evidence_problem(training: UpliftTrainingSet) -> str | None:
    """Why ``training`` is too small for an uplift model, or None."""
    campaigns, conversions = len(training.campaigns), training.control_conversions
    if campaigns < MINIMUM_CAMPAIGNS or conversions < MINIMUM_CONTROL_CONVERSIONS:
        return (
            f"{campaigns} campaigns with a control group and a closed attribution window, "
            f"{conversions} control conversions; an uplift model needs at least "
            f"{MINIMUM_CAMPAIGNS} campaigns and {MINIMUM_CONTROL_CONVERSIONS} control "
            "conversions"
        )
    return None


def uplift_split(training: UpliftTrainingSet) -> Split:
    """The latest campaign with a control group is the holdout, the earlier ones train;
    ``NotEnoughControl`` (with ``training``) when the evidence is too small."""
    problem = evidence_problem(training)
    if problem:
        error = NotEnoughControl(problem)
        error.training = training
        raise error
    holdout = int(training.campaigns.sort_values(["sent_at", "id"])["id"].iloc[-1])
    rows = training.rows
    in_holdout = (rows["campaign_id"] == holdout).to_numpy()
    start = len(rows) - int(in_holdout.sum())
    if in_holdout[start:].all():  # built campaign by campaign: slices share the rows' memory
        return Split(rows.iloc[:start], rows.iloc[start:], [holdout])
    return Split(rows[~in_holdout], rows[in_holdout], [holdout])


class UpliftModel(BaseEstimator):
    """τ(x) = Σₖ ``weights[k]`` · ``regressors[k]``.predict(``encoder``.transform(x))."""

    def __init__(
        self, encoder: ColumnTransformer | None = None, regressors: tuple = (), weights: tuple = ()
    ):
        self.encoder = encoder
        self.regressors = regressors
        self.weights = weights

    def encode(self, x: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.encoder.transform(x), dtype=np.float64)

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        """The uplift of each row of ``x`` (``features_of`` columns), a chunk at a time."""
        return np.concatenate(
            [np.zeros(0)]
            + [
                self._predict_encoded(self.encode(x.iloc[start : start + ENCODE_CHUNK]))
                for start in range(0, len(x), ENCODE_CHUNK)
            ]
        )

    def _predict_encoded(self, z: np.ndarray) -> np.ndarray:
        return sum(w * r.predict(z) for w, r in zip(self.weights, self.regressors))


def _regressor(seed: int) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(
        learning_rate=0.1,
        max_iter=150,
        max_leaf_nodes=15,
        min_samples_leaf=100,
        l2_regularization=1.0,
        early_stopping=True,
        random_state=seed,
    )


def _fit_regressor(
    encoder: ColumnTransformer, rows: pd.DataFrame, positions: np.ndarray, y: np.ndarray, seed: int
) -> HistGradientBoostingRegressor:
    """``_regressor(seed)`` fitted on the rows at ``positions`` (targets ``y``)."""
    return fit_on_rows(_regressor(seed), encoder, rows, positions, y)


def _predict_rows(
    regressor: HistGradientBoostingRegressor,
    encoder: ColumnTransformer,
    rows: pd.DataFrame,
    positions: np.ndarray,
) -> np.ndarray:
    return np.concatenate(
        [np.zeros(0)]
        + [
            regressor.predict(encode_rows(encoder, rows, positions[start : start + ENCODE_CHUNK]))
            for start in range(0, len(positions), ENCODE_CHUNK)
        ]
    )


def fit_uplift(name: str, train: pd.DataFrame, seed: int = 42) -> UpliftModel:
    """Fit candidate ``name`` on ``train`` (rows with ``treated`` and ``converted``)."""
    if name not in CANDIDATES:
        raise ValueError(f"unknown candidate {name!r}; known: {list(CANDIDATES)}")
    encoder = fit_encoder(train)
    y = train["converted"].to_numpy(dtype="float64")
    t = train[TREATED].to_numpy(bool)
    if name == "transformed_outcome":
        e = propensity(train)
        y_star = y * (t - e) / (e * (1 - e))
        everyone = np.arange(len(train))
        return UpliftModel(
            encoder, (_fit_regressor(encoder, train, everyone, y_star, seed),), (1.0,)
        )
    in_target, in_control = np.flatnonzero(t), np.flatnonzero(~t)
    treated = _fit_regressor(encoder, train, in_target, y[t], seed)
    control = _fit_regressor(encoder, train, in_control, y[~t], seed)
    if name == "two_model":
        return UpliftModel(encoder, (treated, control), (1.0, -1.0))
    d_treated = y[t] - _predict_rows(control, encoder, train, in_target)
    d_control = _predict_rows(treated, encoder, train, in_control) - y[~t]
    tau_treated = _fit_regressor(encoder, train, in_target, d_treated, seed)
    tau_control = _fit_regressor(encoder, train, in_control, d_control, seed)
    g = float(t.mean())
    return UpliftModel(encoder, (tau_control, tau_treated), (g, 1.0 - g))


@dataclass
class UpliftContributions:
    """Per contact: the uplift and each feature's contribution to it (``REASON_FEATURES``
    order); ``base + values.sum(axis=1) == uplift``."""

    base: float
    values: np.ndarray
    uplift: np.ndarray


class UpliftExplainer:
    """Contributions of one ``UpliftModel``, built once per scoring run."""

    def __init__(self, model: UpliftModel):
        self.model = model
        self.groups = np.array([source_feature(n) for n in model.encoder.get_feature_names_out()])
        self.paths = PathAttributions(
            model.regressors, model.weights, reason_feature_index(self.groups), len(REASON_FEATURES)
        )

    def explain(self, x: pd.DataFrame) -> UpliftContributions:
        if x.empty:
            return UpliftContributions(0.0, np.zeros((0, len(REASON_FEATURES))), np.zeros(0))
        z = self.model.encode(x)
        values, raw = self.paths.explain(z)
        # each regressor's prediction from the leaves just found, bit for bit its predict(z)
        # (squared error: the raw prediction), weighted and summed as UpliftModel.predict does
        predictions = [
            p if p is not None and r.loss == "squared_error" else r.predict(z)
            for p, r in zip(raw, self.model.regressors)
        ]
        uplift = sum(w * p for w, p in zip(self.model.weights, predictions))
        return UpliftContributions(self.paths.base, values, uplift)


@dataclass
class UpliftCurve:
    """The curves at the ends of the groups of equal score, from (0, 0)."""

    share: np.ndarray
    qini: np.ndarray
    uplift: np.ndarray
    treated: int
    rows: int


def uplift_curve(converted: np.ndarray, treated: np.ndarray, score: np.ndarray) -> UpliftCurve:
    """The Qini and uplift curves of ranking by ``score`` (module docstring)."""
    y = np.asarray(converted, dtype="float64")
    t = np.asarray(treated, dtype=bool)
    score = np.asarray(score, dtype="float64")
    order = np.argsort(-score, kind="stable")
    y, t, score = y[order], t[order], score[order]
    ends = np.append(np.flatnonzero(np.diff(score) != 0), len(score) - 1)
    n_t = np.cumsum(t)[ends].astype("float64")
    n_c = np.cumsum(~t)[ends].astype("float64")
    y_t = np.cumsum(y * t)[ends]
    y_c = np.cumsum(y * ~t)[ends]
    k = (ends + 1).astype("float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        qini = np.where(n_c > 0, y_t - y_c * n_t / n_c, 0.0)
        uplift = np.where((n_t > 0) & (n_c > 0), (y_t / n_t - y_c / n_c) * k, 0.0)
    return UpliftCurve(
        np.concatenate([[0.0], k / len(score)]),
        np.concatenate([[0.0], qini]),
        np.concatenate([[0.0], uplift]),
        int(t.sum()),
        len(score),
    )


def uplift_metrics(
    converted: np.ndarray, treated: np.ndarray, score: np.ndarray
) -> dict[str, float]:
    """Qini coefficient, AUUC and incremental conversions in the top 10 / 20 / 30 %."""
    curve = uplift_curve(converted, treated, score)
    q = curve.qini / max(curve.treated, 1)
    metrics = {
        "qini": float(np.trapezoid(q, curve.share) - q[-1] / 2),
        "auuc": float(np.trapezoid(curve.uplift / max(curve.rows, 1), curve.share)),
    }
    for share in TOP_SHARES:
        metrics[f"incremental_top_{round(share * 100)}pct"] = float(
            np.interp(share, curve.share, curve.uplift)
        )
    return metrics


@dataclass
class TrainedUpliftModel:
    name: str
    model: UpliftModel
    metrics: dict[str, float]
    holdout_uplift: np.ndarray
    seconds_fit: float


def holdout_metrics(holdout: pd.DataFrame, score: np.ndarray) -> dict[str, float]:
    return uplift_metrics(holdout["converted"].to_numpy(), holdout[TREATED].to_numpy(), score)


def train_uplift_candidate(name: str, split: Split, seed: int = 42) -> TrainedUpliftModel:
    started = time.perf_counter()
    model = fit_uplift(name, split.train, seed)
    seconds = time.perf_counter() - started
    uplift = model.predict(features_of(split.holdout))
    return TrainedUpliftModel(name, model, holdout_metrics(split.holdout, uplift), uplift, seconds)


def baseline_scores(split: Split, seed: int = 42) -> dict[str, np.ndarray]:
    """The two rankings an uplift model must beat, on the holdout: the conversion probability
    of the conversion model's gradient-boosting candidate fitted on the target arm of the
    same training window, and the rule's ``total_score`` at ``sent_at``."""
    treated = split.train[split.train[TREATED].to_numpy(bool)]
    response = fit_candidate("hist_gradient_boosting", treated, seed)
    return {
        CONVERSION_BASELINE: response.predict_proba(features_of(split.holdout))[:, 1],
        RULE_BASELINE: split.holdout["total_score"].to_numpy(dtype="float64"),
    }
