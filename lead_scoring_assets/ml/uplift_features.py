"""The uplift model's point-in-time training set: every recipient of every campaign with a
control group, target and control arm alike, with its features as of the campaign's
``sent_at`` (``conversion_features.labelled_rows``: the features logged at selection, else the
contact as it was then) and its label.

Recipients and arms as ``campaigns/results.py`` counts them (intention to treat): a campaign's
``campaign_recipients`` rows with their arm, and outcome rows without a recipients row as
target recipients; a recipient without an outcome row did not convert; a conversion counts
within ``attribution_days`` of ``sent_at``, delivered or not. A campaign has a control group
when it has at least one control recipient; only campaigns whose attribution window closed by
``as_of`` take part.
"""

import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.ml.conversion_features import (
    CATEGORICAL_COLUMNS,
    DEFAULT_ATTRIBUTION_DAYS,
    REASON_FEATURES,
    labelled_rows,
)
from lead_scoring_assets.ml.point_in_time import training_set_sha256
from lead_scoring_assets.scoring.engine import utc_timestamp
from lead_scoring_assets.scoring.full_rescore import read_lada_reference

TREATED = "treated"
RECIPIENTS = (
    "SELECT x.contact_id, x.treated, x.converted, x.converted_at FROM ("
    "SELECT r.contact_id, CASE WHEN r.arm = 'control' THEN 0 ELSE 1 END AS treated, "
    "o.converted, o.converted_at FROM campaign_recipients r LEFT JOIN campaign_outcomes o "
    "ON o.campaign_id = r.campaign_id AND o.contact_id = r.contact_id "
    "WHERE r.campaign_id = :campaign AND r.contact_id > :after "
    "UNION ALL SELECT o.contact_id, 1, o.converted, o.converted_at FROM campaign_outcomes o "
    "WHERE o.campaign_id = :campaign AND o.contact_id > :after AND NOT EXISTS (SELECT 1 FROM "
    "campaign_recipients r WHERE r.campaign_id = o.campaign_id AND r.contact_id = o.contact_id)"
    ") x ORDER BY x.contact_id LIMIT :limit"
)
"""A campaign's recipients by contact id: ``treated`` 1 for the target arm, 0 for control."""
IS_RECIPIENT = (
    "(EXISTS (SELECT 1 FROM campaign_recipients r WHERE r.campaign_id = :campaign "
    "AND r.contact_id = {id}) OR EXISTS (SELECT 1 FROM campaign_outcomes o "
    "WHERE o.campaign_id = :campaign AND o.contact_id = {id}))"
)
WITH_CONTROL = (
    "SELECT c.id, c.name, c.sent_at FROM campaigns c WHERE EXISTS (SELECT 1 FROM "
    "campaign_recipients r WHERE r.campaign_id = c.id AND r.arm = 'control') "
    "ORDER BY c.sent_at, c.id"
)
HASHED_COLUMNS = (
    "campaign_id",
    "contact_id",
    TREATED,
    "converted",
    "total_score",
    *REASON_FEATURES,
)
SUMMARY_COLUMNS = (
    "id",
    "name",
    "sent_at",
    "target",
    "control",
    "target_conversions",
    "control_conversions",
)


@dataclass
class UpliftTrainingSet:
    """One row per recipient: ``campaign_id``, ``contact_id``, ``sent_at``, ``converted``,
    ``treated``, the rule's ``total_score`` at ``sent_at`` and the features."""

    rows: pd.DataFrame
    campaigns: pd.DataFrame
    """Per campaign with a control group and a closed window: ``SUMMARY_COLUMNS``."""
    open_campaigns: list[int] = field(default_factory=list)
    attribution_days: int = DEFAULT_ATTRIBUTION_DAYS
    as_of: pd.Timestamp | None = None
    seconds: float = 0.0

    @cached_property
    def sha256(self) -> str:
        return training_set_sha256(self.rows, HASHED_COLUMNS)

    @property
    def control_conversions(self) -> int:
        return int(self.campaigns["control_conversions"].sum())


def build_uplift_training_set(
    database: Database,
    attribution_days: int = DEFAULT_ATTRIBUTION_DAYS,
    as_of=None,
    chunk_size: int = 100_000,
) -> UpliftTrainingSet:
    """Every recipient of the campaigns with a control group whose attribution window closed
    by ``as_of`` (default now), with its point-in-time features, arm and label."""
    started = time.perf_counter()
    as_of = utc_timestamp(as_of if as_of is not None else pd.Timestamp.now(tz="UTC"))
    ladas = read_lada_reference(database)
    campaigns = database.read_frame(WITH_CONTROL)
    campaigns["sent_at"] = pd.to_datetime(campaigns["sent_at"], utc=True, format="ISO8601")
    closed = campaigns["sent_at"] + pd.Timedelta(days=attribution_days) <= as_of
    frames, summary = [], []
    for campaign in campaigns[closed].itertuples():
        counts = dict.fromkeys(SUMMARY_COLUMNS[3:], 0)
        for rows in labelled_rows(
            database, campaign, ladas, attribution_days, chunk_size, RECIPIENTS, IS_RECIPIENT
        ):
            rows[TREATED] = rows[TREATED].astype(bool)
            treated, converted = rows[TREATED].to_numpy(), rows["converted"].to_numpy()
            counts["target"] += int(treated.sum())
            counts["control"] += int((~treated).sum())
            counts["target_conversions"] += int((treated & converted).sum())
            counts["control_conversions"] += int((~treated & converted).sum())
            frames.append(rows.astype(dict.fromkeys(CATEGORICAL_COLUMNS, "category")))
        summary.append(
            {"id": campaign.id, "name": campaign.name, "sent_at": campaign.sent_at, **counts}
        )
    rows = (
        pd.concat(_shared_categories(frames), ignore_index=True)
        if frames
        else pd.DataFrame(
            {
                c: pd.Series(dtype=bool if c in (TREATED, "converted") else object)
                for c in (
                    "campaign_id",
                    "contact_id",
                    "sent_at",
                    "converted",
                    TREATED,
                    "total_score",
                    *REASON_FEATURES,
                )
            }
        )
    )
    return UpliftTrainingSet(
        rows=rows,
        campaigns=pd.DataFrame(summary, columns=list(SUMMARY_COLUMNS)),
        open_campaigns=[int(i) for i in campaigns.loc[~closed, "id"]],
        attribution_days=attribution_days,
        as_of=as_of,
        seconds=time.perf_counter() - started,
    )


def _shared_categories(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """The chunks with one category type per categorical column, so that they concatenate as
    categories (a byte or two a row) and not as Python strings (about 60 bytes a row each,
    300 MB at 1.7M recipients)."""
    for column in CATEGORICAL_COLUMNS:
        every = set().union(*(frame[column].cat.categories for frame in frames))
        shared = pd.CategoricalDtype(sorted(every))
        for frame in frames:
            frame[column] = frame[column].astype(shared)
    return frames


def propensity(rows: pd.DataFrame) -> np.ndarray:
    """Each recipient's probability of being in the target arm: its campaign's target share
    (the arms are drawn at random, with one share for a whole campaign)."""
    return rows.groupby("campaign_id")[TREATED].transform("mean").to_numpy(dtype="float64")
