"""Named jobs over the assets."""

import dagster as dg

full_rescore_job = dg.define_asset_job(
    "full_rescore_job",
    selection=["ladas_reference", "lead_scores", "lead_scoring_analytics"],
    description="Rebuild the LADA reference, rescore every contact (advanced_v1) and refresh "
    "the analytics; the blocking checks run with it.",
    tags={"lead_scoring/writes": "lead_scores"},
)
