"""The conversion model: candidates, calibration, a time split, ranking metrics against the
rule score, and per-contact contributions that add up to the model's output.

Every candidate is a scikit-learn pipeline (numeric ``features_v1`` passed through, the
categorical columns one-hot encoded) calibrated with Platt's sigmoid
(``CalibratedClassifierCV`` on a frozen model, fitted on a held-aside fifth of the training
window). The calibrated log-odds are ``-(a·m + b)`` with ``m`` the model's margin (log-odds for
logistic regression and gradient boosting, the positive-class probability for the forest), an
affine function of ``m``; so contributions to ``m`` scaled by ``-a``, with ``-(a·base + b)`` as
the base value, add up exactly to the calibrated log-odds of each contact. Contributions to
``m``: ``coef × (x − mean)`` for the linear model (exact; the standard scaler centres ``x``),
Saabas path attributions for the trees (``path_attributions.PathAttributions``: what
``shap.TreeExplainer``'s ``approximate=True`` computes, vectorised; additive like exact
TreeSHAP, 80–250× faster, which is what lets a million contacts be explained in under a
minute). One-hot columns add up to their categorical feature; a
contact's reasons add its features up by concept (``REASON_CONCEPTS``), so one concept never
points two ways and the shown concepts plus the rest are its log-odds minus the average's.
"""

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import BaseEstimator, is_classifier
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils import check_random_state

from lead_scoring_assets.ml.conversion_features import (
    CATEGORICAL_COLUMNS,
    CONCEPTS,
    REASON_CONCEPTS,
    REASON_FEATURES,
    REST_CODE,
    TrainingSet,
)
from lead_scoring_assets.ml.features import FEATURE_COLUMNS
from lead_scoring_assets.ml.path_attributions import PathAttributions

MINIMUM_MESSAGES = 1_000
MINIMUM_CONVERSIONS = 50
CALIBRATION_SHARE = 0.2
RULE_BASELINE = "rule_total_score"
SHORT_NAMES = {"logistic_regression": "lr", "hist_gradient_boosting": "hgb", "random_forest": "rf"}
"""The ``method`` of ``conversion_scores`` rows scored by each candidate."""
FOREST_SAMPLE = 60_000
"""Rows each tree of the forest draws (bounds its training time at scale)."""


def feature_encoder() -> ColumnTransformer:
    """``features_v1`` passed through, the categorical columns one-hot encoded."""
    return ColumnTransformer(
        [
            ("numeric", "passthrough", list(FEATURE_COLUMNS)),
            (
                "categorical",
                OneHotEncoder(
                    handle_unknown="infrequent_if_exist", min_frequency=20, sparse_output=False
                ),
                list(CATEGORICAL_COLUMNS),
            ),
        ],
        verbose_feature_names_out=False,
    )


ENCODE_CHUNK = 100_000
"""Rows encoded at a time: an encoded row is 536 bytes (67 float64 columns)."""


def fit_encoder(rows: pd.DataFrame) -> ColumnTransformer:
    """``feature_encoder()`` fitted on ``rows`` without encoding them all (``fit`` would build
    the whole encoded matrix): the one-hot encoder learns its categories and their counts
    from the categorical columns alone and is frozen, the rest is fitted on one row."""
    encoder = feature_encoder()
    one_hot = {name: step for name, step, _ in encoder.transformers}["categorical"]
    one_hot.fit(rows[list(CATEGORICAL_COLUMNS)])
    encoder.set_params(categorical=FrozenEstimator(one_hot))
    return encoder.fit(features_of(rows.head(1)))


def encode_rows(
    encoder: ColumnTransformer, rows: pd.DataFrame, positions: np.ndarray | None = None
) -> np.ndarray:
    """``rows`` (or those at ``positions``) encoded by ``encoder`` into one float64 array, a
    chunk at a time (``ENCODE_CHUNK``)."""
    positions = np.arange(len(rows)) if positions is None else positions
    z = np.empty((len(positions), len(encoder.get_feature_names_out())))
    for start in range(0, len(positions), ENCODE_CHUNK):
        part = positions[start : start + ENCODE_CHUNK]
        z[start : start + len(part)] = encoder.transform(features_of(rows.iloc[part]))
    return z


def fit_on_rows(
    estimator: BaseEstimator,
    encoder: ColumnTransformer,
    rows: pd.DataFrame,
    positions: np.ndarray,
    y: np.ndarray,
) -> BaseEstimator:
    """``estimator`` fitted on the rows at ``positions``, encoded by ``encoder``. A histogram
    gradient boosting with early stopping is given the validation tenth it would draw itself
    from its ``random_state`` (the same rows in the same order: the same model), encoded
    apart: its own split would copy the whole encoded matrix."""
    boosting = isinstance(estimator, HistGradientBoostingClassifier | HistGradientBoostingRegressor)
    if not boosting or estimator.early_stopping is not True:
        return estimator.fit(encode_rows(encoder, rows, positions), y)
    seed = check_random_state(estimator.random_state).randint(np.iinfo(np.uint32).max, dtype="u8")
    fit, validation = train_test_split(
        np.arange(len(positions)),
        test_size=estimator.validation_fraction,
        stratify=y if is_classifier(estimator) else None,
        random_state=seed,
    )
    return estimator.fit(
        encode_rows(encoder, rows, positions[fit]),
        y[fit],
        X_val=encode_rows(encoder, rows, positions[validation]),
        y_val=y[validation],
    )


def _candidate(name: str, rows: int, seed: int) -> Pipeline:
    if name == "logistic_regression":
        return Pipeline(
            [
                ("prepare", feature_encoder()),
                ("scale", StandardScaler()),
                ("model", LogisticRegression(max_iter=2000)),
            ]
        )
    if name == "hist_gradient_boosting":
        return Pipeline(
            [
                ("prepare", feature_encoder()),
                (
                    "model",
                    HistGradientBoostingClassifier(
                        learning_rate=0.1,
                        max_iter=150,
                        max_leaf_nodes=15,
                        min_samples_leaf=50,
                        l2_regularization=1.0,
                        early_stopping=True,
                        random_state=seed,
                    ),
                ),
            ]
        )
    if name == "random_forest":
        return Pipeline(
            [
                ("prepare", feature_encoder()),
                (
                    "model",
                    RandomForestClassifier(
                        n_estimators=60,
                        max_depth=10,
                        min_samples_leaf=30,
                        max_samples=min(1.0, FOREST_SAMPLE / max(rows, 1)),
                        n_jobs=-1,
                        random_state=seed,
                    ),
                ),
            ]
        )
    raise ValueError(f"unknown candidate {name!r}; known: {sorted(SHORT_NAMES)}")


CANDIDATES = tuple(SHORT_NAMES)


class NotEnoughOutcomes(ValueError):
    """Too few delivered messages or conversions in the training window to train on;
    ``training`` is the training set that was found (set by ``train_conversion_model``)."""

    training = None


@dataclass
class Split:
    """Training window and holdout (the most recent campaigns), by time."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    holdout_campaigns: list[int]


def time_split(training: TrainingSet, holdout_campaigns: int = 1) -> Split:
    """The latest ``holdout_campaigns`` campaigns (by ``sent_at``) are the holdout, never a
    random split; ``NotEnoughOutcomes`` when the window before them is too small."""
    order = training.campaigns.sort_values(["sent_at", "id"])
    if len(order) <= holdout_campaigns:
        raise NotEnoughOutcomes(
            f"{len(order)} campaigns with a closed attribution window: training needs more "
            f"than the {holdout_campaigns} held out"
        )
    holdout_ids = [int(i) for i in order["id"].iloc[-holdout_campaigns:]]
    in_holdout = training.rows["campaign_id"].isin(holdout_ids).to_numpy()
    train = training.rows[~in_holdout]
    messages, conversions = len(train), int(train["converted"].sum())
    if messages < MINIMUM_MESSAGES or conversions < MINIMUM_CONVERSIONS:
        raise NotEnoughOutcomes(
            f"the training window holds {messages} delivered messages and {conversions} "
            f"conversions; training needs at least {MINIMUM_MESSAGES} and "
            f"{MINIMUM_CONVERSIONS}"
        )
    return Split(train=train, holdout=training.rows[in_holdout], holdout_campaigns=holdout_ids)


def features_of(rows: pd.DataFrame) -> pd.DataFrame:
    """The model's input columns of training or scoring rows."""
    x = rows[list(REASON_FEATURES)].copy()
    x[list(FEATURE_COLUMNS)] = x[list(FEATURE_COLUMNS)].astype("float64")
    return x


def fit_candidate(name: str, train: pd.DataFrame, seed: int = 42) -> CalibratedClassifierCV:
    """Fit a candidate on four fifths of the training window and calibrate it (sigmoid) on
    the other fifth (stratified). The pipeline's encoder is fitted by ``fit_encoder`` and the
    rows encoded a chunk at a time: the model the pipeline's own ``fit`` gives, without every
    row's features held twice."""
    y = train["converted"].astype(int).to_numpy()
    fit, calibration = train_test_split(
        np.arange(len(train)), test_size=CALIBRATION_SHARE, stratify=y, random_state=seed
    )
    model = _candidate(name, len(fit), seed)
    model.steps[0] = ("prepare", fit_encoder(train.iloc[fit]))
    rest = model[1:]  # the steps after the encoder, fitted in place
    fit_on_rows(rest[0] if len(rest) == 1 else rest, model[0], train, fit, y[fit])
    return CalibratedClassifierCV(FrozenEstimator(model), method="sigmoid").fit(
        features_of(train.iloc[calibration]), y[calibration]
    )


def top_share_rate(y: np.ndarray, score: np.ndarray, share: float) -> float:
    """Conversion rate among the top ``share`` by ``score``; ties at the cut are taken at
    their mean rate (the expected rate if the tie were broken at random)."""
    y = np.asarray(y, dtype=float)
    score = np.asarray(score, dtype=float)
    k = max(1, round(share * len(y)))
    cut = np.sort(score)[::-1][k - 1]
    above = score > cut
    tied = score == cut
    return float((y[above].sum() + (k - above.sum()) * y[tied].mean()) / k)


def ranking_metrics(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """AUC-ROC, AUC-PR and the lift of the top 10 % and 5 % (their conversion rate over the
    overall rate)."""
    base = float(np.mean(y))
    return {
        "auc_roc": float(roc_auc_score(y, score)),
        "auc_pr": float(average_precision_score(y, score)),
        "lift_top_decile": top_share_rate(y, score, 0.10) / base,
        "lift_top_5pct": top_share_rate(y, score, 0.05) / base,
    }


def probability_metrics(y: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    return {
        "brier": float(brier_score_loss(y, probability)),
        "log_loss": float(log_loss(y, probability, labels=[0, 1])),
    }


def decile_table(y: np.ndarray, score: np.ndarray, seed: int = 42) -> pd.DataFrame:
    """Messages, conversions and conversion rate per predicted decile (10 = highest score;
    ties broken at random with ``seed``)."""
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(score)), score))
    decile = np.empty(len(score), dtype=int)
    decile[order] = np.arange(len(score)) * 10 // len(score) + 1
    frame = pd.DataFrame({"decile": decile, "converted": np.asarray(y, dtype=int)})
    table = (
        frame.groupby("decile")
        .agg(messages=("converted", "size"), conversions=("converted", "sum"))
        .reset_index()
    )
    table["conversion_rate"] = table["conversions"] / table["messages"]
    return table


@dataclass
class Evaluation:
    metrics: dict[str, float]
    deciles: pd.DataFrame


def evaluate(y: np.ndarray, probability: np.ndarray) -> Evaluation:
    return Evaluation(
        {**ranking_metrics(y, probability), **probability_metrics(y, probability)},
        decile_table(y, probability),
    )


def evaluate_rule(holdout: pd.DataFrame) -> Evaluation:
    """The rule's ``total_score`` at ``sent_at`` ranked on the same holdout: the baseline."""
    y = holdout["converted"].astype(int).to_numpy()
    score = holdout["total_score"].astype(float).to_numpy()
    return Evaluation(ranking_metrics(y, score), decile_table(y, score))


@dataclass
class TrainedConversionModel:
    name: str
    model: CalibratedClassifierCV
    evaluation: Evaluation
    holdout_probability: np.ndarray
    seconds_fit: float


def train_conversion_candidate(name: str, split: Split, seed: int = 42) -> TrainedConversionModel:
    started = time.perf_counter()
    model = fit_candidate(name, split.train, seed)
    seconds = time.perf_counter() - started
    probability = model.predict_proba(features_of(split.holdout))[:, 1]
    y = split.holdout["converted"].astype(int).to_numpy()
    return TrainedConversionModel(name, model, evaluate(y, probability), probability, seconds)


@dataclass
class Contributions:
    """Per contact: the calibrated log-odds and each feature's contribution to it
    (columns in ``REASON_FEATURES`` order); ``base + values.sum(axis=1) == logit``."""

    base: float
    values: np.ndarray
    logit: np.ndarray

    @property
    def probability(self) -> np.ndarray:
        return expit(self.logit)


class Explainer:
    """Contributions of one calibrated candidate, built once per scoring run."""

    def __init__(self, model: CalibratedClassifierCV):
        self.pipeline: Pipeline = model.estimator.estimator
        calibrator = model.calibrated_classifiers_[0].calibrators[0]
        self.a, self.b = float(calibrator.a_), float(calibrator.b_)
        self.estimator = self.pipeline.steps[-1][1]
        names = self.pipeline.steps[0][1].get_feature_names_out()
        self.groups = np.array([source_feature(n) for n in names])
        self.tree = None
        if isinstance(self.estimator, LogisticRegression):
            self.margin_base = float(self.estimator.intercept_[0])
        else:
            self.tree = PathAttributions(
                [self.estimator], [1.0], reason_feature_index(self.groups), len(REASON_FEATURES)
            )
            self.margin_base = self.tree.base

    @property
    def base_value(self) -> float:
        """The average contact's calibrated log-odds: every contact's contributions are
        measured from it (logistic regression: the contact at the training mean; trees: the
        mean over the training data)."""
        return -(self.a * self.margin_base + self.b)

    def _transform(self, x: pd.DataFrame) -> np.ndarray:
        z = x
        for _, step in self.pipeline.steps[:-1]:
            z = step.transform(z)
        return np.asarray(z, dtype=np.float64)

    def explain(self, x: pd.DataFrame) -> Contributions:
        if x.empty:
            return Contributions(
                base=0.0, values=np.zeros((0, len(REASON_FEATURES))), logit=np.zeros(0)
            )
        z = self._transform(x)
        if self.tree is None:
            by_feature = by_source_feature(z * self.estimator.coef_[0], self.groups)
            margin = self._margin(z)
        else:
            by_feature, (margin,) = self.tree.explain(z)
            if margin is None:
                margin = self._margin(z)
        logit = -(self.a * margin + self.b)
        return Contributions(base=self.base_value, values=-self.a * by_feature, logit=logit)

    def _margin(self, z: np.ndarray) -> np.ndarray:
        if hasattr(self.estimator, "decision_function"):
            return self.estimator.decision_function(z)
        return self.estimator.predict_proba(z)[:, 1]


def by_source_feature(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Contributions of encoded columns summed per feature (``REASON_FEATURES`` order);
    ``groups`` is each column's ``source_feature``."""
    by_feature = np.zeros((len(values), len(REASON_FEATURES)))
    for i, name in enumerate(REASON_FEATURES):
        columns = groups == name
        if columns.any():
            by_feature[:, i] = values[:, columns].sum(axis=1)
    return by_feature


def reason_feature_index(groups: np.ndarray) -> np.ndarray:
    """Each encoded column's position in ``REASON_FEATURES`` (−1: none), from its
    ``source_feature`` (``groups``)."""
    return np.array([REASON_FEATURES.index(g) if g in REASON_FEATURES else -1 for g in groups])


def source_feature(column: str) -> str:
    """The input feature an encoded column comes from (one-hot columns: ``<feature>_<value>``)."""
    if column in FEATURE_COLUMNS:
        return column
    for name in CATEGORICAL_COLUMNS:
        if column.startswith(f"{name}_"):
            return name
    raise ValueError(f"encoded column {column!r} has no source feature")


CONCEPT_MATRIX = np.array(
    [[feature in REASON_CONCEPTS[c] for c in CONCEPTS] for feature in REASON_FEATURES],
    dtype=np.float64,
)
"""(features × concepts): 1 where the feature belongs to the concept."""


def concept_effects(contributions: np.ndarray) -> np.ndarray:
    """Per-feature contributions (columns in ``REASON_FEATURES`` order) summed by concept
    (columns in ``CONCEPTS`` order)."""
    return contributions @ CONCEPT_MATRIX


MIN_EFFECT = 0.01
"""A concept moving the log-odds by less is left in the rest (it would read ±0.00)."""


def top_reasons(
    contributions: np.ndarray, count: int = 3, min_effect: float = MIN_EFFECT
) -> dict[str, np.ndarray]:
    """Each contact's reasons from its per-feature contributions, grouped by concept: the
    concepts raising (largest positive) and lowering (most negative) its log-odds (or uplift)
    by at least ``min_effect``, at most ``count`` a side and ``2 × count − 1`` in all (the smaller of the
    two last ones gives way), and the rest (the sum of every other concept) in the first free
    slot. Codes
    (``reason_code``; 0 in an empty slot) and effects: all of a contact's effects add up to
    its contributions' sum, i.e. its log-odds minus the average contact's."""
    effects = concept_effects(contributions)
    rows = np.arange(len(effects))[:, None]
    order = np.argsort(effects, axis=1, kind="stable")
    up_index, down_index = order[:, ::-1][:, :count], order[:, :count]
    up, down = effects[rows, up_index], effects[rows, down_index]
    up_shown, down_shown = up >= min_effect, down <= -min_effect
    full = up_shown[:, -1] & down_shown[:, -1]
    up_gives_way = full & (up[:, -1] <= -down[:, -1])
    up_shown[:, -1] &= ~up_gives_way
    down_shown[:, -1] &= ~(full & ~up_gives_way)
    concept_codes = REST_CODE + 1 + np.arange(len(CONCEPTS))
    up_code = np.where(up_shown, concept_codes[up_index], 0)
    down_code = np.where(down_shown, concept_codes[down_index], 0)
    up_effect, down_effect = np.where(up_shown, up, 0.0), np.where(down_shown, down, 0.0)
    rest = effects.sum(axis=1) - up_effect.sum(axis=1) - down_effect.sum(axis=1)
    up_count, down_count = up_shown.sum(axis=1), down_shown.sum(axis=1)
    on_up = up_count < count
    slot = np.arange(count)[None, :]
    rest_up = on_up[:, None] & (slot == up_count[:, None])
    rest_down = ~on_up[:, None] & (slot == down_count[:, None])
    return {
        "up_feature": np.where(rest_up, REST_CODE, up_code),
        "up_effect": np.where(rest_up, rest[:, None], up_effect),
        "down_feature": np.where(rest_down, REST_CODE, down_code),
        "down_effect": np.where(rest_down, rest[:, None], down_effect),
    }
