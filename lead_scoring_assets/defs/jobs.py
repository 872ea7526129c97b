"""Named jobs over the assets."""

import dagster as dg

full_rescore_job = dg.define_asset_job(
    "full_rescore_job",
    selection=["staged_ladas_reference", "ladas_reference", "staged_lead_scores", "lead_scores",
               "lead_scoring_analytics"],
    description="Rebuild the LADA reference and rescore every contact (advanced_v1), each "
    "staged, audited by its blocking check and only then published; refresh the analytics.",
    tags={"lead_scoring/writes": "lead_scores"},
)

nightly_retrain_job = dg.define_asset_job(
    "nightly_retrain_job",
    selection=["contact_features", "lead_scoring_model", "ml_lead_scores"],
    description="Rebuild the contact features, train and compare the candidates in MLflow "
    "(the champion alias moves only to a better model) and rescore every contact with the "
    "champion; the blocking checks run with it.",
    tags={"lead_scoring/writes": "ml"},
)
