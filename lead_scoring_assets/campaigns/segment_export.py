"""Campaign segments: the targeted contacts, best first, written to CSV or Parquet."""

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.geography.states import normalize_state, normalize_state_series
from lead_scoring_assets.scoring.config import DEFAULT_CONFIG, PLATFORMS

EXPORT_COLUMNS = (
    "contact_id", "phone_e164", "full_name", "state_name", "municipality", "total_score",
    "quality_tier", "confidence_level", *(f"{p}_score" for p in PLATFORMS),
)
PAGE = 100_000


@dataclass(frozen=True)
class Segment:
    """Who to target. Unset bounds do not filter; ``states`` match after normalisation."""

    min_tier: str | None = None
    min_score: int | None = None
    min_confidence: float = 0.0
    states: tuple[str, ...] = field(default_factory=tuple)
    limit: int | None = None

    def min_total(self) -> int:
        tiers = dict(DEFAULT_CONFIG.tiers)
        if self.min_tier is not None and self.min_tier.upper() not in tiers:
            raise ValueError(f"unknown tier {self.min_tier!r}; one of {', '.join(tiers)}")
        tier_floor = tiers[self.min_tier.upper()] if self.min_tier else 0
        return max(tier_floor, self.min_score or 0)


def select_segment(database: Database, segment: Segment, page_size: int = PAGE) -> pd.DataFrame:
    """The contacts of ``segment`` ordered by score, confidence, then contact id, read
    ``page_size`` rows at a time until the limit is reached."""
    wanted_states = {normalize_state(s) for s in segment.states}
    columns = ", ".join(
        f"c.{c}" if c in ("full_name", "state_name", "municipality") else f"s.{c}"
        for c in EXPORT_COLUMNS
    )
    pages, kept, offset = [], 0, 0
    while True:
        page = database.read_frame(
            f"SELECT {columns} FROM lead_scores s JOIN contacts c ON c.id = s.contact_id "
            "WHERE s.total_score >= :min_total AND s.confidence_level >= :min_confidence "
            "ORDER BY s.total_score DESC, s.confidence_level DESC, s.contact_id "
            "LIMIT :page OFFSET :offset",
            {"min_total": segment.min_total(), "min_confidence": segment.min_confidence,
             "page": page_size, "offset": offset},
        )
        fetched = len(page)
        offset += fetched
        if wanted_states:
            page = page[normalize_state_series(page["state_name"].astype("str"))
                        .isin(wanted_states).to_numpy()]
        pages.append(page)
        kept += len(page)
        if fetched < page_size or (segment.limit is not None and kept >= segment.limit):
            break
    selected = pd.concat([p for p in pages if len(p)] or pages[:1], ignore_index=True)
    return selected if segment.limit is None else selected.head(segment.limit)


def export_segment(database: Database, segment: Segment, path: str | Path,
                   file_format: str = "csv") -> int:
    """Write the segment to ``path`` as ``csv`` or ``parquet``; returns how many contacts."""
    if file_format not in ("csv", "parquet"):
        raise ValueError(f"format must be csv or parquet, not {file_format!r}")
    frame = select_segment(database, segment)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if file_format == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return len(frame)
