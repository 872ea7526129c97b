"""Explain one contact's score: recompute it from its rows and lay out each part."""

from dataclasses import dataclass

import pandas as pd

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.tables import CONTACT_COLUMNS, SCORING_VALIDATION_COLUMNS
from lead_scoring_assets.scoring.breakdown import breakdown_of
from lead_scoring_assets.scoring.config import DEFAULT_CONFIG, ScoringConfig
from lead_scoring_assets.scoring.engine import score_chunk
from lead_scoring_assets.scoring.full_rescore import read_lada_reference
from lead_scoring_assets.scoring.score_card import render_score_card


@dataclass(frozen=True)
class Explanation:
    """A contact's recomputed score row and its breakdown (SCORING_SPEC.md §8)."""

    contact_id: int
    score: dict
    breakdown: dict

    def render(self, config: ScoringConfig = DEFAULT_CONFIG) -> str:
        """The score card of the recomputed score."""
        return render_score_card(self.score, self.breakdown, config)


def explain_contact(
    database: Database, contact_id: int, as_of=None, config: ScoringConfig = DEFAULT_CONFIG
) -> Explanation:
    """Recompute ``contact_id``'s score from the database, at ``as_of`` (default: the time of
    its stored score). Raises ``LookupError`` for an unknown contact, or when ``as_of`` is not
    given and the contact has no stored score."""
    contacts = database.read_frame(
        f"SELECT {', '.join(CONTACT_COLUMNS)} FROM contacts WHERE id = :id", {"id": contact_id}
    )
    if contacts.empty:
        raise LookupError(f"no contact with id {contact_id}")
    if as_of is None:
        stored = database.read_frame(
            "SELECT last_calculated_at FROM lead_scores WHERE contact_id = :id", {"id": contact_id}
        )
        if stored.empty:
            raise LookupError(f"contact {contact_id} has not been scored yet; give as_of")
        as_of = pd.to_datetime(stored["last_calculated_at"].iloc[0], utc=True, format="ISO8601")
    validations = database.read_frame(
        f"SELECT {', '.join(SCORING_VALIDATION_COLUMNS)} FROM platform_validations "
        "WHERE contact_id = :id",
        {"id": contact_id},
    )
    scored = score_chunk(contacts, validations, read_lada_reference(database), as_of, config)
    row = {**scored.scores.iloc[0].to_dict(), "phone_e164": contacts["phone_e164"].iloc[0]}
    return Explanation(contact_id, row, breakdown_of(row, config))
