"""Feature drift: the population stability index (PSI) of each feature between the contacts
a model was trained on and today's contacts.

A model's training distribution is kept as bins per feature (cut points and the share of
training contacts in each), small and free of personal data, stored with the model. A
feature with few distinct values gets one bin per value; the others get deciles.
``PSI = Σ (today − training) × ln(today / training)`` over the bins, shares floored at
``SHARE_FLOOR`` so an empty bin does not give an infinite index.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

MAX_BINS = 10
SHARE_FLOOR = 1e-4
WARN_PSI = 0.1
FAIL_PSI = 0.25


def training_distribution(features: pd.DataFrame) -> dict[str, dict[str, list[float]]]:
    """Per feature: ``cuts`` (bin boundaries, a value equal to a cut goes to the upper bin)
    and ``shares`` (the share of ``features`` rows in each of the ``len(cuts) + 1`` bins)."""
    distribution = {}
    for name in features.columns:
        values = features[name].to_numpy(dtype="float64")
        distinct = np.unique(values)
        if len(distinct) <= MAX_BINS:
            cuts = (distinct[:-1] + distinct[1:]) / 2
        else:
            cuts = np.unique(np.quantile(values, np.linspace(0, 1, MAX_BINS + 1)[1:-1]))
        distribution[name] = {"cuts": cuts.tolist(), "shares": _shares(values, cuts).tolist()}
    return distribution


def _shares(values: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    bins = np.searchsorted(cuts, values, side="right")
    return np.bincount(bins, minlength=len(cuts) + 1) / max(len(values), 1)


def population_stability(
    distribution: dict[str, dict[str, list[float]]], features: pd.DataFrame
) -> dict[str, float]:
    """The PSI of each feature of ``distribution`` between its training shares and
    ``features`` (today's contacts), in the distribution's bins."""
    result = {}
    for name, bins in distribution.items():
        expected = np.maximum(np.asarray(bins["shares"]), SHARE_FLOOR)
        actual = np.maximum(
            _shares(features[name].to_numpy(dtype="float64"), np.asarray(bins["cuts"])), SHARE_FLOOR
        )
        result[name] = float(np.sum((actual - expected) * np.log(actual / expected)))
    return result


@dataclass(frozen=True)
class DriftVerdict:
    """How the largest PSI compares with the thresholds: ``ok``, ``warn`` or ``fail``."""

    level: str
    worst_feature: str | None
    worst_psi: float
    drifted: dict[str, float]


def judge(psi: dict[str, float], warn: float = WARN_PSI, fail: float = FAIL_PSI) -> DriftVerdict:
    """``fail`` when a feature's PSI exceeds ``fail``, ``warn`` when one exceeds ``warn``;
    ``drifted`` lists the features above ``warn``, largest first. Raises ``ValueError`` for
    an empty ``psi``: nothing measured is no evidence of stability."""
    if warn > fail:
        raise ValueError(f"the warning threshold {warn} is above the failure threshold {fail}")
    if not psi:
        raise ValueError("no PSI to judge: the drift was not measured")
    worst = max(psi, key=psi.get)
    drifted = dict(sorted(((n, v) for n, v in psi.items() if v > warn), key=lambda item: -item[1]))
    level = "fail" if psi[worst] > fail else "warn" if psi[worst] > warn else "ok"
    return DriftVerdict(level, worst, psi[worst], drifted)
