"""Send lists sized for profit: how many contacts a budget buys, and what a campaign ranked
by uplift is expected to bring.

- A message is worth sending when ``uplift × value_per_conversion > cost_per_message``: its
  expected incremental revenue exceeds its cost (``select: max_profit``).
- A budget buys ``floor(budget / cost_per_message)`` messages; the control group is withheld
  from the selection and costs nothing, so the selection holds the most contacts whose target
  arm (selection − ``round(share × selection)``, as ``send_record.control_quotas`` draws it)
  fits in that many messages.
- Expected incremental conversions: the sum of the target recipients' uplift. Its 95 %
  interval is a normal approximation of the spread of what ``campaign_results`` will
  *measure* (target conversions − control rate × target recipients) if the scores are right:
  variance = Σ_target p1 (1 − p1) + (targets / controls)² × Σ_control p0 (1 − p0) (each
  recipient's conversion a Bernoulli variable) + N² (1 − controls / N) s² / controls (which
  contacts the control group happens to hold: a random sample of the N selected, s² the
  sample variance of p0 over them), with p1 the conversion probability (the conversion model
  learns from messaged contacts) and p0 = p1 − uplift, both clipped to [0, 1]; a recipient
  without a probability counts 1/4 (the largest variance) and stays out of s² (1/4 when fewer
  than two have one). Without a control group nothing is measured: the variance is that of
  the sum of the targets' Bernoulli differences, Σ_target p1 (1 − p1) + p0 (1 − p0). It
  covers the campaign's chance only, not the error of the uplift model itself.
- Expected profit = expected incremental conversions × value − messages × cost, its interval
  from the conversions' (the cost is known).
"""

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from lead_scoring_assets.campaigns.results import Z_95

UNKNOWN_VARIANCE = 0.25
"""A Bernoulli variable's largest variance, for a recipient without a probability."""


def messages_within(budget: float, cost_per_message: float) -> int | None:
    """How many messages ``budget`` pesos pay for (None: unbounded, the messages are free)."""
    if cost_per_message == 0:
        return None
    return math.floor(Fraction(str(budget)) / Fraction(str(cost_per_message)))


def selection_for(messages: int, control_share: float) -> int:
    """The most contacts to select so that, once ``round(share × n)`` (halves up) are
    withheld as control, at most ``messages`` are sent."""
    share = Fraction(str(control_share))

    def sent(n: int) -> int:
        return n - math.floor(share * n + Fraction(1, 2))

    n = math.floor((messages + Fraction(1, 2)) / (1 - share)) + 1  # sends more than that
    while n > 0 and sent(n) > messages:
        n -= 1
    return n


@dataclass(frozen=True)
class Expectation:
    """What a campaign is expected to bring, with 95 % intervals; money in pesos."""

    incremental_conversions: float
    incremental_low: float
    incremental_high: float
    profit: float
    profit_low: float
    profit_high: float

    def columns(self) -> dict[str, float]:
        """As the ``campaigns`` columns."""
        return {
            "expected_incremental_conversions": self.incremental_conversions,
            "expected_incremental_low": self.incremental_low,
            "expected_incremental_high": self.incremental_high,
            "expected_profit": self.profit,
            "expected_profit_low": self.profit_low,
            "expected_profit_high": self.profit_high,
        }


def _variances(probability: np.ndarray, uplift: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Each recipient's Bernoulli variance with the message (p1) and without (p0), and the
    sample variance of the known p0s."""
    p1 = np.clip(probability, 0, 1)
    p0 = np.clip(p1 - uplift, 0, 1)
    unknown = np.isnan(probability)
    known = p0[~unknown]
    spread = float(known.var(ddof=1)) if len(known) > 1 else UNKNOWN_VARIANCE
    return (
        np.where(unknown, UNKNOWN_VARIANCE, p1 * (1 - p1)),
        np.where(unknown, UNKNOWN_VARIANCE, p0 * (1 - p0)),
        spread,
    )


def expected_return(
    uplift: np.ndarray,
    probability: np.ndarray,
    control: np.ndarray,
    cost_per_message: float,
    value_per_conversion: float,
) -> Expectation:
    """The expectation of a selection: each recipient's ``uplift``, conversion
    ``probability`` (NaN: unknown) and whether it is ``control``."""
    uplift = np.asarray(uplift, dtype="float64")
    probability = np.asarray(probability, dtype="float64")
    target = ~np.asarray(control, dtype=bool)
    with_message, without, spread = _variances(probability, uplift)
    targets, controls = int(target.sum()), int((~target).sum())
    selected = targets + controls
    variance = with_message[target].sum() + (
        (targets / controls) ** 2 * without[~target].sum()
        + selected**2 * (1 - controls / selected) * spread / controls
        if controls
        else without[target].sum()
    )
    expected = float(uplift[target].sum())
    half = Z_95 * math.sqrt(variance)
    cost = cost_per_message * targets
    low, high = expected - half, expected + half
    return Expectation(
        expected,
        low,
        high,
        expected * value_per_conversion - cost,
        low * value_per_conversion - cost,
        high * value_per_conversion - cost,
    )
