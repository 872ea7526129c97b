"""Campaign results: each arm's conversions and the campaign's measured effect against its
control group, with 95 % intervals, per campaign and per probability decile.

- Recipients: a campaign's ``campaign_recipients`` rows with their arm; an outcome row without
  a recipients row is a target recipient (as in the conversion training set), so a campaign
  the platform wrote without recipients rows is all target arm. A recipient without an outcome
  row counts as neither delivered nor converted.
- Converted: ``converted`` and ``converted_at`` within ``attribution_days`` of ``sent_at``
  (or no ``converted_at``), the conversion model's label (``ml/conversion_features.label``),
  whether the message was delivered or not (intention to treat: the control arm gets none).
- Incremental conversions: target conversions − control rate × target recipients, i.e.
  target recipients × (target rate − control rate); the incremental rate is that difference.
  Its 95 % interval is Newcombe's hybrid score interval (Newcombe 1998, method 10), built from
  the Wilson score intervals of the two rates: it stays within [-1, 1] and is informative with
  small counts and zero conversions, where the normal approximation collapses to a point.
  Incremental conversions' interval is target recipients × the rate's interval.
- Money: cost = ``cost_per_message`` × messages sent (target recipients: the platform bills a
  message whether or not it is delivered); incremental revenue = ``value_per_conversion`` ×
  incremental conversions; incremental profit = revenue − cost; return per peso = profit /
  cost (0: break-even). Their intervals follow from the incremental conversions' interval
  (cost is known exactly).
- A campaign without control recipients is reported with its conversions only
  (``has_control`` false): no incremental figures.
- Predicted vs measured: a campaign planned with an expectation (``rank_by: uplift``,
  ``campaigns/profit.py``) shows its expected incremental conversions and profit next to the
  measured ones, both with their intervals, and whether each measured figure falls inside
  the expected interval (None while nothing is measured).
"""

import math
from dataclasses import asdict, dataclass, field

import pandas as pd
import sqlalchemy as sa

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.ml.conversion_features import DEFAULT_ATTRIBUTION_DAYS
from lead_scoring_assets.scoring.engine import utc_timestamp

Z_95 = 1.959963984540054
"""The standard normal quantile of a two-sided 95 % interval."""
DEFAULT_COST_PER_MESSAGE = 0.35
"""Pesos per SMS sent, for a campaign that records none."""
DEFAULT_VALUE_PER_CONVERSION = 120.0
"""Pesos per conversion, for a campaign that records none."""
NO_CONTROL = "no control group: conversions only, no incremental figures"
NO_TARGET = "no target recipients: no incremental figures"

ARM_COUNTS = """
SELECT x.arm, x.decile, count(*) AS recipients, sum(x.delivered) AS delivered,
       sum(x.converted) AS conversions
FROM (
  SELECT r.arm, r.probability_decile AS decile,
         CASE WHEN o.delivered THEN 1 ELSE 0 END AS delivered, {converted} AS converted
  FROM campaign_recipients r LEFT JOIN campaign_outcomes o
    ON o.campaign_id = r.campaign_id AND o.contact_id = r.contact_id
  WHERE r.campaign_id = :campaign
  UNION ALL
  SELECT 'target', NULL, CASE WHEN o.delivered THEN 1 ELSE 0 END, {converted}
  FROM campaign_outcomes o
  WHERE o.campaign_id = :campaign AND NOT EXISTS (
    SELECT 1 FROM campaign_recipients r
    WHERE r.campaign_id = o.campaign_id AND r.contact_id = o.contact_id)
) x
GROUP BY x.arm, x.decile
""".format(
    converted="CASE WHEN o.converted AND (o.converted_at IS NULL OR o.converted_at "
    "BETWEEN :window_start AND :window_end) THEN 1 ELSE 0 END"
)
"""One campaign's recipients, deliveries and conversions per arm and recorded decile: two
index range reads by the primary keys' ``campaign_id`` prefix and one aggregate."""


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (trials > 0)."""
    p = successes / trials
    denominator = trials + z * z
    centre = (successes + z * z / 2) / denominator
    half = z * math.sqrt(p * (1 - p) * trials + z * z / 4) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(x1: int, n1: int, x2: int, n2: int, z: float = Z_95) -> tuple[float, float]:
    """Newcombe's hybrid score interval of p1 − p2 (method 10), from Wilson intervals."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1, z)
    l2, u2 = wilson_interval(x2, n2, z)
    difference = p1 - p2
    return (
        difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
        difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
    )


@dataclass
class Arm:
    recipients: int = 0
    delivered: int = 0
    conversions: int = 0

    @property
    def conversion_rate(self) -> float | None:
        return self.conversions / self.recipients if self.recipients else None

    def add(self, other: "Arm") -> None:
        self.recipients += other.recipients
        self.delivered += other.delivered
        self.conversions += other.conversions

    def as_dict(self) -> dict:
        return {**asdict(self), "conversion_rate": self.conversion_rate}


@dataclass
class Effect:
    """The target arm against the control arm, with 95 % intervals; money in pesos."""

    incremental_conversions: float
    incremental_conversions_low: float
    incremental_conversions_high: float
    incremental_rate: float
    incremental_rate_low: float
    incremental_rate_high: float
    cost: float
    incremental_revenue: float
    incremental_revenue_low: float
    incremental_revenue_high: float
    incremental_profit: float
    incremental_profit_low: float
    incremental_profit_high: float
    return_per_peso: float | None
    return_per_peso_low: float | None
    return_per_peso_high: float | None


def effect(
    target: Arm, control: Arm, cost_per_message: float, value_per_conversion: float
) -> Effect | None:
    """The measured effect, or None without recipients in both arms."""
    if not target.recipients or not control.recipients:
        return None
    n = target.recipients
    rate = target.conversion_rate - control.conversion_rate
    low, high = newcombe_interval(target.conversions, n, control.conversions, control.recipients)
    cost = cost_per_message * n
    conversions = (n * rate, n * low, n * high)
    revenue = tuple(value_per_conversion * c for c in conversions)
    profit = tuple(r - cost for r in revenue)
    per_peso = tuple(p / cost for p in profit) if cost else (None, None, None)
    return Effect(*conversions, rate, low, high, cost, *revenue, *profit, *per_peso)


EXPECTED_COLUMNS = (
    "expected_incremental_conversions",
    "expected_incremental_low",
    "expected_incremental_high",
    "expected_profit",
    "expected_profit_low",
    "expected_profit_high",
)


@dataclass
class Prediction:
    """What a campaign was expected to bring against what was measured (None: nothing
    measured, no control group); ``*_inside``: the measured figure is within the expected
    interval."""

    uplift_model_version: str | None
    select_rule: str | None
    expected_incremental_conversions: float
    expected_incremental_low: float
    expected_incremental_high: float
    measured_incremental_conversions: float | None
    measured_incremental_low: float | None
    measured_incremental_high: float | None
    conversions_inside: bool | None
    expected_profit: float
    expected_profit_low: float
    expected_profit_high: float
    measured_profit: float | None
    measured_profit_low: float | None
    measured_profit_high: float | None
    profit_inside: bool | None


def prediction(campaign, measured: Effect | None) -> Prediction | None:
    """The campaign row's expectation against ``measured``, or None without one."""
    if campaign.expected_incremental_conversions is None:
        return None
    expected = [float(getattr(campaign, c)) for c in EXPECTED_COLUMNS]
    conversions = profit = (None, None, None)
    if measured is not None:
        conversions = (
            measured.incremental_conversions,
            measured.incremental_conversions_low,
            measured.incremental_conversions_high,
        )
        profit = (
            measured.incremental_profit,
            measured.incremental_profit_low,
            measured.incremental_profit_high,
        )

    def inside(value: float | None, low: float, high: float) -> bool | None:
        return None if value is None else low <= value <= high

    return Prediction(
        campaign.uplift_model_version,
        campaign.select_rule,
        *expected[:3],
        *conversions,
        inside(conversions[0], *expected[1:3]),
        *expected[3:],
        *profit,
        inside(profit[0], *expected[4:]),
    )


@dataclass
class CampaignResult:
    campaign_id: int
    name: str | None
    sent_at: pd.Timestamp
    window_closed: bool
    """Whether the attribution window had closed when the results were computed."""
    cost_per_message: float
    value_per_conversion: float
    costs_from: str
    """``campaign`` (its own costs) or ``default`` (at least one of them from the defaults)."""
    target: Arm
    control: Arm
    effect: Effect | None
    deciles: list[dict] = field(default_factory=list)
    """Per recorded probability decile: ``decile``, ``target``, ``control``, ``effect``."""
    predicted: Prediction | None = None

    @property
    def has_control(self) -> bool:
        return self.control.recipients > 0

    @property
    def note(self) -> str | None:
        """Why there are no incremental figures, if so."""
        if not self.has_control:
            return NO_CONTROL
        return NO_TARGET if self.effect is None else None

    def as_dict(self) -> dict:
        """Plain values for JSON (timestamps as datetimes)."""
        return {
            "campaign_id": self.campaign_id,
            "name": self.name,
            "sent_at": self.sent_at.to_pydatetime(),
            "window_closed": self.window_closed,
            "has_control": self.has_control,
            "note": self.note,
            "cost_per_message": self.cost_per_message,
            "value_per_conversion": self.value_per_conversion,
            "costs_from": self.costs_from,
            "arms": {"target": self.target.as_dict(), "control": self.control.as_dict()},
            "effect": None if self.effect is None else asdict(self.effect),
            "predicted": None if self.predicted is None else asdict(self.predicted),
            "deciles": [
                {
                    "decile": d["decile"],
                    "target": d["target"].as_dict(),
                    "control": d["control"].as_dict(),
                    "effect": None if d["effect"] is None else asdict(d["effect"]),
                }
                for d in self.deciles
            ],
        }


def _arm(row) -> Arm:
    return Arm(int(row.recipients), int(row.delivered or 0), int(row.conversions or 0))


def campaign_results(
    database: Database,
    campaign_id: int | None = None,
    default_cost_per_message: float = DEFAULT_COST_PER_MESSAGE,
    default_value_per_conversion: float = DEFAULT_VALUE_PER_CONVERSION,
    attribution_days: int = DEFAULT_ATTRIBUTION_DAYS,
    now=None,
) -> list[CampaignResult]:
    """The results of every campaign with outcome rows (or of ``campaign_id`` only), newest
    first."""
    now = utc_timestamp(now if now is not None else pd.Timestamp.now(tz="UTC"))
    where = "WHERE c.id = :campaign AND " if campaign_id is not None else "WHERE "
    results = []
    with database.engine.connect() as connection:
        campaigns = connection.execute(
            sa.text(
                "SELECT c.id, c.name, c.sent_at, c.cost_per_message, c.value_per_conversion, "
                f"c.uplift_model_version, c.select_rule, {', '.join(EXPECTED_COLUMNS)} "
                f"FROM campaigns c {where}EXISTS (SELECT 1 FROM campaign_outcomes o "
                "WHERE o.campaign_id = c.id) ORDER BY c.sent_at DESC, c.id DESC"
            ),
            {"campaign": campaign_id},
        ).all()
        for campaign in campaigns:
            sent_at = utc_timestamp(pd.Timestamp(campaign.sent_at))
            window_end = sent_at + pd.Timedelta(days=attribution_days)
            rows = connection.execute(
                sa.text(ARM_COUNTS),
                {
                    "campaign": campaign.id,
                    "window_start": database.bind_timestamp(sent_at),
                    "window_end": database.bind_timestamp(window_end),
                },
            ).all()
            cost = campaign.cost_per_message
            value = campaign.value_per_conversion
            costs_from = "campaign" if cost is not None and value is not None else "default"
            cost = float(default_cost_per_message if cost is None else cost)
            value = float(default_value_per_conversion if value is None else value)
            arms = {"target": Arm(), "control": Arm()}
            deciles: dict[int, dict[str, Arm]] = {}
            for row in rows:
                arms[row.arm].add(_arm(row))
                if row.decile is not None:
                    deciles.setdefault(int(row.decile), {"target": Arm(), "control": Arm()})[
                        row.arm
                    ].add(_arm(row))
            measured = effect(arms["target"], arms["control"], cost, value)
            results.append(
                CampaignResult(
                    int(campaign.id),
                    campaign.name,
                    sent_at,
                    window_end <= now,
                    cost,
                    value,
                    costs_from,
                    arms["target"],
                    arms["control"],
                    measured,
                    [
                        {
                            "decile": d,
                            **pair,
                            "effect": effect(pair["target"], pair["control"], cost, value),
                        }
                        for d, pair in sorted(deciles.items(), reverse=True)
                    ],
                    prediction(campaign, measured),
                )
            )
    return results


def arms_table(results: list[CampaignResult]) -> pd.DataFrame:
    """One row per campaign and arm: recipients, delivered, conversions, rate."""
    return pd.DataFrame(
        [
            {"campaign_id": r.campaign_id, "campaign": r.name, "arm": arm, **counts.as_dict()}
            for r in results
            for arm, counts in (("target", r.target), ("control", r.control))
            if counts.recipients or arm == "target"
        ]
    )


def effects_table(results: list[CampaignResult]) -> pd.DataFrame:
    """One row per campaign: incremental conversions, rate and profit with their intervals
    (empty cells and the note for a campaign without a control group)."""
    rows = []
    for r in results:
        e = r.effect
        rows.append(
            {
                "campaign_id": r.campaign_id,
                "campaign": r.name,
                "incremental_conversions": None
                if e is None
                else _interval(
                    e.incremental_conversions,
                    e.incremental_conversions_low,
                    e.incremental_conversions_high,
                    "{:.1f}",
                ),
                "incremental_rate": None
                if e is None
                else _interval(
                    e.incremental_rate * 100,
                    e.incremental_rate_low * 100,
                    e.incremental_rate_high * 100,
                    "{:.2f}",
                    " pp",
                ),
                "incremental_profit": None
                if e is None
                else _interval(
                    e.incremental_profit,
                    e.incremental_profit_low,
                    e.incremental_profit_high,
                    "{:,.0f}",
                ),
                "return_per_peso": None
                if e is None or e.return_per_peso is None
                else _interval(
                    e.return_per_peso, e.return_per_peso_low, e.return_per_peso_high, "{:.2f}"
                ),
                "costs_from": r.costs_from,
                "window_closed": r.window_closed,
                "note": r.note or "",
            }
        )
    return pd.DataFrame(rows)


def deciles_table(results: list[CampaignResult]) -> pd.DataFrame:
    """One row per campaign with a control group and recorded decile: both arms' rates and
    the incremental rate with its interval."""
    return pd.DataFrame(
        [
            {
                "campaign_id": r.campaign_id,
                "decile": d["decile"],
                "target": f"{d['target'].conversions}/{d['target'].recipients}",
                "control": f"{d['control'].conversions}/{d['control'].recipients}",
                "incremental_rate": None
                if d["effect"] is None
                else _interval(
                    d["effect"].incremental_rate * 100,
                    d["effect"].incremental_rate_low * 100,
                    d["effect"].incremental_rate_high * 100,
                    "{:.2f}",
                    " pp",
                ),
            }
            for r in results
            if r.has_control
            for d in r.deciles
        ]
    )


def predicted_table(results: list[CampaignResult]) -> pd.DataFrame:
    """One row per campaign with an expectation: expected and measured incremental
    conversions and profit, each ``value [low, high]``, and whether the measured is inside
    the expected interval."""

    def measured(value, low, high, form: str) -> str:
        return "—" if value is None else _interval(value, low, high, form)

    def verdict(inside: bool | None) -> str:
        return "—" if inside is None else "yes" if inside else "no"

    return pd.DataFrame(
        [
            {
                "campaign_id": r.campaign_id,
                "campaign": r.name,
                "expected_conversions": _interval(
                    p.expected_incremental_conversions,
                    p.expected_incremental_low,
                    p.expected_incremental_high,
                    "{:.1f}",
                ),
                "measured_conversions": measured(
                    p.measured_incremental_conversions,
                    p.measured_incremental_low,
                    p.measured_incremental_high,
                    "{:.1f}",
                ),
                "conversions_inside": verdict(p.conversions_inside),
                "expected_profit": _interval(
                    p.expected_profit, p.expected_profit_low, p.expected_profit_high, "{:,.0f}"
                ),
                "measured_profit": measured(
                    p.measured_profit, p.measured_profit_low, p.measured_profit_high, "{:,.0f}"
                ),
                "profit_inside": verdict(p.profit_inside),
                "window_closed": r.window_closed,
            }
            for r in results
            if (p := r.predicted) is not None
        ]
    )


def _interval(value: float, low: float, high: float, form: str, unit: str = "") -> str:
    return f"{form.format(value)} [{form.format(low)}, {form.format(high)}]{unit}"
