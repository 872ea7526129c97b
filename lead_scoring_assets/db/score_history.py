"""Append ``lead_score_history`` rows for the contacts whose total score or tier changes."""

import sqlalchemy as sa


def record_changes(connection, new_scores: str, run_id: str | None, changed_at) -> int:
    """One row per contact of the table ``new_scores`` whose total or tier differs from
    ``lead_scores`` (or that has no score yet), in the caller's transaction; set-based."""
    return connection.execute(
        sa.text(
            "INSERT INTO lead_score_history (contact_id, old_total_score, new_total_score, "
            "old_quality_tier, new_quality_tier, calculation_version, run_id, changed_at) "
            "SELECT n.contact_id, o.total_score, n.total_score, o.quality_tier, n.quality_tier, "
            f"n.calculation_version, :run_id, :changed_at FROM {new_scores} n "
            "LEFT JOIN lead_scores o ON o.contact_id = n.contact_id "
            "WHERE o.contact_id IS NULL OR o.total_score <> n.total_score "
            "OR o.quality_tier <> n.quality_tier"
        ),
        {"run_id": run_id, "changed_at": changed_at},
    ).rowcount
