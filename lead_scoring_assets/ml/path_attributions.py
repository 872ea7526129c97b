"""Saabas path attributions of scikit-learn tree ensembles, vectorised.

Saabas' method (what ``shap.TreeExplainer(...).shap_values(x, approximate=True)`` computes):
a contact walks down each tree from the root to a leaf, and every step from a node to its
child credits the node's split feature with the change of the node value,
``value[child] − value[node]``. Per tree the root value is the bias, and the steps add up to
``value[leaf] − value[root]``, so bias + Σ credits = the tree's output, exactly.

The credits of a contact in a tree depend only on the leaf it reaches, so they are
precomputed once per model: for every leaf, the credits summed along its path, already
added up by the column groups asked for (``groups``: each encoded column's output column,
−1 to leave it out). Scoring then only needs each contact's leaf in every tree (scikit-learn's
own traversal: ``apply`` for the forest, the compiled predictor for histogram gradient
boosting) and one sparse product, contacts × leaves (one 1 per tree) @ leaves × groups.

Node values are the ones ``shap`` uses, so the attributions are the same up to floating-point
summation order (tested to 1e-12): a leaf's value is the model's, an inner node's the average of
its children's weighted by their training samples (``shap``'s ``compute_expectations``; this
matters for histogram gradient boosting, whose stored inner values are not shrunk by the
learning rate while its leaves are):

- ``RandomForestClassifier``: each tree's class fractions of the positive class (normalised
  to sum to 1 over the classes), divided by the number of trees (the forest averages them);
  inputs compared as float32, as scikit-learn does. Output: the positive-class probability.
- ``HistGradientBoostingClassifier`` / ``Regressor`` (one tree per iteration): leaf values
  carry the learning rate already; the baseline prediction is added to the bias. Output: the
  raw prediction, log-odds for the classifier, the regression target for the regressor.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

BATCH_ROWS = 4_096
"""Contacts per batch: their encoded rows stay in the CPU cache while every tree is walked."""


@dataclass
class _Tree:
    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    value: np.ndarray
    is_leaf: np.ndarray
    weight: np.ndarray

    def __post_init__(self):
        """Every inner node's value becomes the average of its children's, weighted by their
        training samples, from the leaves up (``shap``'s ``compute_expectations``: an inner
        node's value is the expected output below it; 0 when neither child has a sample)."""
        value = self.value.astype(np.float64, copy=True)
        levels = []
        frontier = np.array([0])
        while frontier.size:
            inner = frontier[~self.is_leaf[frontier]]
            if inner.size:
                levels.append(inner)
            frontier = np.concatenate([self.left[inner], self.right[inner]])
        for inner in reversed(levels):
            left, right = self.left[inner], self.right[inner]
            w_left, w_right = self.weight[left], self.weight[right]
            total = w_left + w_right
            with np.errstate(invalid="ignore", divide="ignore"):
                average = (w_left * value[left] + w_right * value[right]) / total
            value[inner] = np.where(total == 0, 0.0, average)
        self.value = value


def _forest_trees(forest: RandomForestClassifier) -> list[_Tree]:
    scaling = 1.0 / len(forest.estimators_)
    trees = []
    for estimator in forest.estimators_:
        tree = estimator.tree_
        values = tree.value.reshape(tree.value.shape[0], -1)
        values = (values.T / values.sum(1)).T * scaling
        trees.append(
            _Tree(
                tree.children_left,
                tree.children_right,
                tree.feature,
                values[:, -1],
                tree.children_left < 0,
                tree.weighted_n_node_samples.astype(np.float64),
            )
        )
    return trees


def _hgb_predictors(model) -> list[TreePredictor]:
    if model.n_trees_per_iteration_ != 1:
        raise ValueError("only binary classification or regression is supported")
    return [p[0] for p in model._predictors]


def _hgb_tree(predictor: TreePredictor) -> _Tree:
    nodes = predictor.nodes
    if nodes["is_categorical"].any():
        raise ValueError("categorical splits are not supported")
    return _Tree(
        nodes["left"].astype(np.intp),
        nodes["right"].astype(np.intp),
        nodes["feature_idx"].astype(np.intp),
        nodes["value"].astype(np.float64),
        nodes["is_leaf"].astype(bool),
        nodes["count"].astype(np.float64),
    )


def _leaf_credits(tree: _Tree, groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(leaf node ids, leaves × groups credits summed along each leaf's path)."""
    credits = np.zeros((len(tree.value), n_groups))
    frontier = np.array([0])
    while frontier.size:
        inner = frontier[~tree.is_leaf[frontier]]
        group = groups[tree.feature[inner]]
        kept = group >= 0
        for children in (tree.left[inner], tree.right[inner]):
            credits[children] = credits[inner]
            credits[children[kept], group[kept]] += (
                tree.value[children[kept]] - tree.value[inner[kept]]
            )
        frontier = np.concatenate([tree.left[inner], tree.right[inner]])
    leaves = np.flatnonzero(tree.is_leaf)
    return leaves, credits[leaves]


class PathAttributions:
    """Saabas attributions of a weighted sum of tree ensembles (``models``, ``weights``),
    summed by column group: ``groups[j]`` is the output column of input column ``j`` (−1: left
    out), ``n_groups`` the number of output columns. ``base`` + an ``explain(z)`` row's
    attributions = Σ weight · model output (raw: log-odds for a gradient-boosting classifier,
    the positive-class probability for the forest, the prediction for a regressor)."""

    def __init__(self, models, weights, groups: np.ndarray, n_groups: int):
        groups = np.asarray(groups, dtype=np.intp)
        self.base = 0.0
        self.n_groups = n_groups
        self._forests = []
        """(forest, each tree's node → ``credits`` row, −1 for inner nodes)"""
        self._boosted = []
        """(model index, baseline, known categories bitsets, feature map, relabelled
        predictors: each leaf's value is its ``credits`` row)"""
        self.n_models = len(models)
        blocks, leaf_values = [], []
        offset = 0

        def add(tree: _Tree, weight: float) -> np.ndarray:
            nonlocal offset
            leaves, credits = _leaf_credits(tree, groups, n_groups)
            blocks.append(weight * credits)
            leaf_values.append(tree.value[leaves])
            rows = offset + np.arange(len(leaves))
            offset += len(leaves)
            return leaves, rows

        for k, (model, weight) in enumerate(zip(models, weights)):
            if isinstance(model, RandomForestClassifier):
                trees = _forest_trees(model)
                base = sum(float(t.value[0]) for t in trees)
                columns = []
                for tree in trees:
                    leaves, rows = add(tree, weight)
                    column = np.full(len(tree.value), -1, dtype=np.intp)
                    column[leaves] = rows
                    columns.append(column)
                self._forests.append((model, columns))
            elif isinstance(model, HistGradientBoostingClassifier | HistGradientBoostingRegressor):
                baseline = np.asarray(model._baseline_prediction, dtype=np.float64).ravel()
                if baseline.size != 1:
                    raise ValueError("only binary classification or regression is supported")
                base = float(baseline[0])
                predictors = []
                for predictor in _hgb_predictors(model):
                    tree = _hgb_tree(predictor)
                    base += float(tree.value[0])
                    leaves, rows = add(tree, weight)
                    nodes = predictor.nodes.copy()
                    nodes["value"][leaves] = rows
                    predictors.append(
                        TreePredictor(
                            nodes, predictor.binned_left_cat_bitsets, predictor.raw_left_cat_bitsets
                        )
                    )
                known, f_idx_map = model._bin_mapper.make_known_categories_bitsets()
                self._boosted.append((k, model._baseline_prediction, known, f_idx_map, predictors))
            else:
                raise TypeError(f"no path attributions for {type(model).__name__}")
            self.base += weight * base
        self.credits = np.vstack(blocks) if blocks else np.zeros((0, n_groups))
        self.leaf_values = np.concatenate(leaf_values) if leaf_values else np.zeros(0)
        """Each ``credits`` row's leaf output as scikit-learn stores it (before ``weights``)."""

    def _leaf_rows(self, z: np.ndarray) -> np.ndarray:
        """(rows × trees): the ``credits`` row of the leaf each row of ``z`` reaches in each
        tree (scikit-learn's own traversal, one thread: batches run in parallel)."""
        rows = []
        for forest, columns in self._forests:
            nodes = forest.apply(z)
            rows.extend(column[nodes[:, t]] for t, column in enumerate(columns))
        for _, _, known, f_idx_map, predictors in self._boosted:
            rows.extend(p.predict(z, known, f_idx_map, 1) for p in predictors)
        return np.column_stack(rows).astype(np.int32)

    def _explain_batch(self, z: np.ndarray) -> tuple[np.ndarray, list]:
        leaves = self._leaf_rows(z)
        rows, trees = leaves.shape
        path = sp.csr_array(
            (
                np.ones(rows * trees),
                leaves.ravel(),
                np.arange(0, rows * trees + 1, trees, dtype=np.int64),
            ),
            shape=(rows, len(self.credits)),
        )
        outputs: list = [None] * self.n_models
        first = sum(len(columns) for _, columns in self._forests)
        for k, baseline, _, _, predictors in self._boosted:
            # as HistGradientBoosting*._raw_predict adds them: baseline, then tree by tree
            raw = np.zeros((rows, 1), dtype=baseline.dtype, order="F")
            raw += baseline
            for t in range(first, first + len(predictors)):
                raw[:, 0] += self.leaf_values[leaves[:, t]]
            outputs[k] = raw.ravel()
            first += len(predictors)
        return path @ self.credits, outputs

    def explain(self, z: np.ndarray) -> tuple[np.ndarray, list]:
        """The (rows × ``n_groups``) attributions of the rows of ``z`` (encoded inputs) and,
        per model, its raw output for them as its own prediction computes it (bit for bit:
        ``decision_function`` of a gradient-boosting classifier, ``predict`` of a squared-error
        regressor) or None (forest: use the model)."""
        batches = [z[start : start + BATCH_ROWS] for start in range(0, len(z), BATCH_ROWS)]
        if not batches:
            return np.zeros((0, self.n_groups)), [None] * self.n_models
        with ThreadPoolExecutor(max(1, _openmp_effective_n_threads())) as pool:
            parts = list(pool.map(self._explain_batch, batches))
        outputs = [
            None if parts[0][1][k] is None else np.concatenate([p[1][k] for p in parts])
            for k in range(self.n_models)
        ]
        return np.concatenate([p[0] for p in parts]), outputs
