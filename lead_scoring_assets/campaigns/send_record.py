"""A record of every send: the campaign, its recipients (target and control arms) and the
conversion features each recipient had when it was selected.

An export with a campaign name reads its segment once (one snapshot), spills the batches to a
private temporary file next to the export, draws the control group over the whole selection,
writes the target rows only to the file, and records everything in one transaction inside
which the complete file is renamed into place: no file without its record, no record without
its file.

Control group: each selected contact gets a hash, the first 8 bytes of BLAKE2b over the
little-endian int64 triple (campaign id, contact id, seed). The strata are the probability
deciles (the rule's decile where ``conversion_scores`` holds its fallback; contacts without a
``conversion_scores`` row form one more stratum). The group's size is ``round(share × N)``
(halves up), shared between strata by largest remainder: each stratum gets ``floor(share ×
n)`` plus one for the strata with the largest fractional parts (ties: highest decile first);
within a stratum the lowest hashes (ties: lowest contact id) are control. The draw depends
only on the selection, the campaign id and the seed: a rerun draws the same group, whatever
the batch size.
"""

import hashlib
import json
import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from lead_scoring_assets.campaigns.profit import Expectation, expected_return
from lead_scoring_assets.campaigns.results import (
    DEFAULT_COST_PER_MESSAGE,
    DEFAULT_VALUE_PER_CONVERSION,
)
from lead_scoring_assets.campaigns.segment_export import UPLIFT_SCHEMA, Segment, SegmentReader
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.tables import SCORING_CONTACT_COLUMNS, SCORING_VALIDATION_COLUMNS
from lead_scoring_assets.ml.conversion_features import (
    CATEGORICAL_COLUMNS,
    CONVERSION_FEATURE_SET,
    conversion_features,
)
from lead_scoring_assets.ml.features import FEATURE_COLUMNS
from lead_scoring_assets.scoring.config import DEFAULT_CONFIG
from lead_scoring_assets.scoring.engine import score_chunk, utc_timestamp
from lead_scoring_assets.scoring.full_rescore import read_lada_reference

DEFAULT_CONTROL_SHARE = 0.05
NO_DECILE = 0
"""The stratum of contacts without a ``conversion_scores`` row."""
REAL_FEATURES = ("avg_confidence_score", "profile_completeness", "geographic_consistency")
"""Stored as REAL (float32) in ``campaign_recipient_features``."""
FEATURE_CHUNK = 50_000
SELECTION_KEYS = ("contact_id", "total_score", "conversion_probability", "probability_decile")
"""What the draw and the recipients' rows need of each selected row (with the uplift and its
decile when ranked by uplift)."""


class CampaignRefused(ValueError):
    """A campaign that cannot be recorded (name or id already used, bad share)."""


@dataclass(frozen=True)
class CampaignPlan:
    """What the export records: the campaign's name, optional id (else the next one), planned
    send time (default the export's ``as_of``), costs, and the control group's share and
    seed."""

    name: str
    campaign_id: int | None = None
    sent_at: pd.Timestamp | str | None = None
    cost_per_message: float | None = None
    value_per_conversion: float | None = None
    control_share: float = DEFAULT_CONTROL_SHARE
    control_seed: int = 0

    def __post_init__(self):
        if not self.name or not self.name.strip():
            raise CampaignRefused("campaign_name must not be empty")
        if not 0 <= self.control_share < 1:
            raise CampaignRefused(
                f"control_share must be at least 0 and below 1, not {self.control_share}"
            )
        if self.sent_at is not None:
            try:
                object.__setattr__(self, "sent_at", utc_timestamp(self.sent_at))
            except ValueError:
                raise CampaignRefused(
                    f"sent_at {self.sent_at!r} is not a time (ISO 8601, e.g. 2026-12-10T16:00:00Z)"
                ) from None


def _costs(plan: CampaignPlan, segment: Segment) -> dict[str, float]:
    """The plan's costs, else the segment's, else the defaults; refused if they differ."""
    costs = {}
    for name, default in (
        ("cost_per_message", DEFAULT_COST_PER_MESSAGE),
        ("value_per_conversion", DEFAULT_VALUE_PER_CONVERSION),
    ):
        mine, selected = getattr(plan, name), getattr(segment, name)
        if None not in (mine, selected) and mine != selected:
            raise CampaignRefused(
                f"{name} is {mine} in the plan and {selected} in the segment: give one"
            )
        costs[name] = float(next((v for v in (mine, selected) if v is not None), default))
    return costs


def control_hashes(campaign_id: int, contact_ids: np.ndarray, seed: int) -> np.ndarray:
    """BLAKE2b (8 bytes, little-endian) of each (campaign id, contact id, seed) as int64s."""
    keys = np.empty((len(contact_ids), 3), dtype="<i8")
    keys[:, 0], keys[:, 1], keys[:, 2] = campaign_id, contact_ids, seed
    data = memoryview(keys.tobytes())
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(data[i : i + 24], digest_size=8).digest(), "little")
            for i in range(0, len(data), 24)
        ),
        dtype=np.uint64,
        count=len(contact_ids),
    )


def control_quotas(counts: dict[int, int], share: float) -> dict[int, int]:
    """Control contacts per stratum: ``round(share × total)`` (halves up) in all, shared by
    largest remainder (ties: the highest stratum first). ``share`` is taken as written
    (0.05 is exactly 1/20)."""
    exact = Fraction(str(share))
    quotas = {s: math.floor(exact * n) for s, n in counts.items()}
    total = math.floor(exact * sum(counts.values()) + Fraction(1, 2))
    by_remainder = sorted(counts, key=lambda s: (-(exact * counts[s] - quotas[s]), -s))
    for stratum in by_remainder[: total - sum(quotas.values())]:
        quotas[stratum] += 1
    return quotas


def draw_control(
    campaign_id: int, contact_ids: np.ndarray, strata: np.ndarray, share: float, seed: int
) -> np.ndarray:
    """Which contacts are control (a boolean per contact), stratified by ``strata``."""
    control = np.zeros(len(contact_ids), dtype=bool)
    if not len(contact_ids) or share == 0:
        return control
    hashes = control_hashes(campaign_id, contact_ids, seed)
    values, counts = np.unique(strata, return_counts=True)
    quotas = control_quotas(dict(zip(values.tolist(), counts.tolist())), share)
    for stratum, quota in quotas.items():
        members = np.flatnonzero(strata == stratum)
        order = np.lexsort((contact_ids[members], hashes[members]))
        control[members[order[:quota]]] = True
    return control


def campaign_id_for(database: Database, plan: CampaignPlan) -> int:
    """The plan's id, or the next one; ``CampaignRefused`` if its name or id is taken."""
    refusal = _taken(database, plan.name, plan.campaign_id)
    if refusal:
        raise CampaignRefused(f"{refusal}: nothing was written")
    if plan.campaign_id is not None:
        return plan.campaign_id
    return int(
        database.read_frame("SELECT coalesce(max(id), 0) + 1 AS next_id FROM campaigns")[
            "next_id"
        ].iloc[0]
    )


def _taken(database: Database, name: str, campaign_id: int | None, connection=None) -> str | None:
    """Why ``name`` or ``campaign_id`` cannot be used, or None."""
    taken = database.read_frame(
        "SELECT id, name FROM campaigns WHERE name = :name OR id = :id",
        {"name": name, "id": campaign_id if campaign_id is not None else 0},
        connection,
    )
    if taken.empty:
        return None
    if name in set(taken["name"]):
        return (
            f"campaign name {name!r} is already used (campaign "
            f"{int(taken.loc[taken['name'] == name, 'id'].iloc[0])})"
        )
    return f"campaign id {campaign_id} is already used"


@dataclass
class CampaignRecording:
    """The hooks of ``export_segment`` that record a campaign: ``select`` (spill, draw the
    control group, yield the target rows) and ``record`` (write the record around the
    file's rename). ``by_decile``: ``{decile: (target, control)}`` once selected, the
    uplift deciles when ranked by uplift (the strata of the draw); ``expectation``: what a
    campaign ranked by uplift is expected to bring (``campaigns/profit.py``)."""

    database: Database
    plan: CampaignPlan
    segment: Segment
    campaign_id: int
    as_of: pd.Timestamp
    chunk_size: int = FEATURE_CHUNK
    target: int = 0
    control: int = 0
    by_decile: dict[int, tuple[int, int]] = field(default_factory=dict)
    suppressed: int | None = None
    """Contacts the segment selected but left out as suppressed (set once selected)."""
    expectation: Expectation | None = None
    uplift_model_version: str | None = None
    _recipients: pd.DataFrame | None = field(default=None, repr=False)

    @classmethod
    def plan_for(
        cls,
        database: Database,
        plan: CampaignPlan,
        segment: Segment,
        as_of=None,
        chunk_size: int = FEATURE_CHUNK,
    ) -> "CampaignRecording":
        """Check the plan (before anything is written); ``as_of`` defaults to now, to the
        second. Ranked by uplift, the plan's costs are the segment's, else
        ``campaign_results``' defaults, and are recorded."""
        as_of = utc_timestamp(as_of if as_of is not None else pd.Timestamp.now(tz="UTC").floor("s"))
        if segment.by_uplift:
            plan = replace(plan, **_costs(plan, segment))
        return cls(database, plan, segment, campaign_id_for(database, plan), as_of, chunk_size)

    @property
    def sent_at(self) -> pd.Timestamp:
        return self.plan.sent_at if self.plan.sent_at is not None else self.as_of

    def select(self, reader: SegmentReader, folder: Path) -> Iterator[pa.RecordBatch]:
        """Spill the segment to a private file in ``folder``, draw the control group over
        it, then yield its target rows in order."""
        if self.segment.budget is not None and reader.control_share != self.plan.control_share:
            raise ValueError(
                f"the reader sizes the budget for a control share of "
                f"{reader.control_share}, the plan withholds "
                f"{self.plan.control_share}"
            )
        names = [*SELECTION_KEYS, *(UPLIFT_SCHEMA.names if self.segment.by_uplift else ())]
        with tempfile.TemporaryDirectory(prefix=".selection_", dir=folder) as spill_folder:
            spill = Path(spill_folder) / "selection.arrow"
            keys = []
            with pa.ipc.new_file(
                spill, reader.schema, options=pa.ipc.IpcWriteOptions(compression="lz4")
            ) as writer:
                for batch in reader:
                    writer.write_batch(batch)
                    keys.append(batch.select(names))
            self.suppressed = reader.left_out.get("suppressed_contacts")
            self.uplift_model_version = reader.uplift_model_version
            selected = pa.Table.from_batches(
                keys, schema=pa.schema([reader.schema.field(name) for name in names])
            ).to_pandas()
            keys.clear()
            control = self._draw(selected)
            with pa.memory_map(str(spill)) as source:
                file = pa.ipc.open_file(source)
                start = 0
                for i in range(file.num_record_batches):
                    batch = file.get_batch(i)
                    yield batch.filter(pa.array(~control[start : start + batch.num_rows]))
                    start += batch.num_rows

    def _draw(self, selected: pd.DataFrame) -> np.ndarray:
        stratum = "uplift_decile" if self.segment.by_uplift else "probability_decile"
        decile = selected[stratum].fillna(NO_DECILE).to_numpy(dtype="int64")
        control = draw_control(
            self.campaign_id,
            selected["contact_id"].to_numpy(dtype="int64"),
            decile,
            self.plan.control_share,
            self.plan.control_seed,
        )
        if self.segment.by_uplift:
            self.expectation = expected_return(
                selected["uplift"].to_numpy(dtype="float64"),
                selected["conversion_probability"].to_numpy(dtype="float64", na_value=np.nan),
                control,
                self.plan.cost_per_message,
                self.plan.value_per_conversion,
            )
        self.control = int(control.sum())
        self.target = len(control) - self.control
        self.by_decile = {
            int(d): (int((~control[decile == d]).sum()), int(control[decile == d].sum()))
            for d in np.unique(decile)
        }
        self._recipients = pd.DataFrame(
            {
                "campaign_id": np.int64(self.campaign_id),
                "contact_id": selected["contact_id"].to_numpy(dtype="int64"),
                "arm": np.where(control, "control", "target"),
                "rank": np.arange(1, len(selected) + 1, dtype="int64"),
                "total_score": selected["total_score"].astype("Int16"),
                "conversion_probability": selected["conversion_probability"].astype("Float32"),
                "probability_decile": selected["probability_decile"].astype("Int16"),
                "model_version": None,
            }
        )
        return control

    @contextmanager
    def record(self, target: Path, sha256: str) -> Iterator[None]:
        """Record the campaign, its recipients and their features in one transaction, inside
        which the file is renamed into place (the body); if the commit fails the file is
        removed."""
        placed = False
        try:
            with self.database.transaction() as connection:
                refusal = _taken(self.database, self.plan.name, self.campaign_id, connection)
                if refusal:
                    raise CampaignRefused(
                        f"{refusal} since the export started: the file was not kept"
                    )
                self.database.append_frame(
                    "campaigns", self._campaign_row(target, sha256), connection
                )
                self._write_recipients(connection)
                self._write_features(connection)
                yield
                placed = True
        except BaseException:
            if placed:
                target.unlink(missing_ok=True)
            raise

    def _campaign_row(self, target: Path, sha256: str) -> pd.DataFrame:
        now = pd.Timestamp.now(tz="UTC")
        return pd.DataFrame(
            [
                {
                    "id": self.campaign_id,
                    "name": self.plan.name,
                    "sent_at": self.sent_at,
                    "status": "planned",
                    "planned_at": now,
                    "as_of": self.as_of,
                    "filters": json.dumps(asdict(self.segment), sort_keys=True),
                    "file_name": target.name,
                    "file_sha256": sha256,
                    "cost_per_message": self.plan.cost_per_message,
                    "value_per_conversion": self.plan.value_per_conversion,
                    "control_share": self.plan.control_share,
                    "target_recipients": self.target,
                    "control_recipients": self.control,
                    "suppressed": self.suppressed,
                    "rank_by": self.segment.rank_by,
                    "select_rule": self.segment.select,
                    "budget": self.segment.budget,
                    "uplift_model_version": self.uplift_model_version,
                    **(self.expectation.columns() if self.expectation else {}),
                }
            ]
        ).astype(
            {
                "sent_at": "datetime64[us, UTC]",
                "planned_at": "datetime64[us, UTC]",
                "as_of": "datetime64[us, UTC]",
                "cost_per_message": "float64",
                "value_per_conversion": "float64",
                "suppressed": "Int64",
                "budget": "float64",
            }
        )

    def _write_recipients(self, connection) -> None:
        """The recipients, with ``conversion_scores``' model version (one per table: it is
        swapped whole) where a probability was read."""
        version = self.database.read_frame(
            "SELECT max(model_version) AS v FROM conversion_scores", None, connection
        )["v"]
        recipients = self._recipients.copy()
        if version.notna().iloc[0]:
            recipients["model_version"] = recipients["model_version"].where(
                recipients["conversion_probability"].isna(), str(version.iloc[0])
            )
        for start in range(0, len(recipients), self.chunk_size):
            self.database.append_frame(
                "campaign_recipients", recipients.iloc[start : start + self.chunk_size], connection
            )

    def _write_features(self, connection) -> None:
        """Every recipient's ``conversion_v1`` features at ``as_of``, computed as the
        conversion scores and the training set compute them, ``chunk_size`` at a time."""
        ladas = read_lada_reference(self.database)
        mine = (
            "JOIN campaign_recipients r ON r.contact_id = {key} AND r.campaign_id = "
            ":campaign WHERE {key} BETWEEN :low AND :high"
        )
        ids = np.sort(self._recipients["contact_id"].to_numpy())
        for start in range(0, len(ids), self.chunk_size):
            window = {
                "campaign": self.campaign_id,
                "low": int(ids[start]),
                "high": int(ids[min(start + self.chunk_size, len(ids)) - 1]),
            }
            contacts = self.database.read_frame(
                f"SELECT {', '.join(f'c.{c}' for c in SCORING_CONTACT_COLUMNS)} FROM contacts c "
                f"{mine.format(key='c.id')} ORDER BY c.id",
                window,
                connection,
            )
            if contacts.empty:
                continue
            validations = self.database.read_frame(
                f"SELECT {', '.join(f'v.{c}' for c in SCORING_VALIDATION_COLUMNS)} "
                f"FROM platform_validations v {mine.format(key='v.contact_id')}",
                window,
                connection,
            )
            scored = score_chunk(contacts, validations, ladas, self.as_of, DEFAULT_CONFIG)
            features = conversion_features(scored.parts, contacts, ladas)
            features[list(REAL_FEATURES)] = features[list(REAL_FEATURES)].astype("float32")
            features.insert(0, "campaign_id", np.int64(self.campaign_id))
            features.insert(2, "feature_set", CONVERSION_FEATURE_SET)
            self.database.append_frame(
                "campaign_recipient_features",
                features[
                    [
                        "campaign_id",
                        "contact_id",
                        "feature_set",
                        *FEATURE_COLUMNS,
                        *CATEGORICAL_COLUMNS,
                    ]
                ],
                connection,
            )
