"""Named jobs over the assets."""

import dagster as dg

full_rescore_job = dg.define_asset_job(
    "full_rescore_job",
    selection=["ladas_reference", "lead_scores"],
    description="Rebuild the LADA reference and rescore every contact (advanced_v1).",
    tags={"lead_scoring/writes": "lead_scores"},
)
