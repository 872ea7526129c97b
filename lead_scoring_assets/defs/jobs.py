"""Named jobs over the assets."""

import dagster as dg

from lead_scoring_assets.defs.partitions import ALL_BUCKETS

full_rescore_job = dg.define_asset_job(
    "full_rescore_job",
    selection=[
        "staged_ladas_reference",
        "ladas_reference",
        "staged_lead_scores",
        "lead_scores",
        "lead_scoring_analytics",
    ],
    description="Rebuild the LADA reference and rescore every contact (advanced_v1), each "
    "staged, audited by its blocking check and only then published; refresh the analytics. "
    "All contact buckets in one run unless the run selects a range.",
    tags={"lead_scoring/writes": "lead_scores", **ALL_BUCKETS},
)

nightly_retrain_job = dg.define_asset_job(
    "nightly_retrain_job",
    selection=(
        dg.AssetSelection.assets(
            "lead_scoring_analytics", "ml_lead_scores", "conversion_analytics", "uplift_scores"
        ).upstream()
        | dg.AssetSelection.assets(
            "lead_score_history", "hard_bounce_suppressions", "campaign_results"
        )
    ).materializable(),
    description="The nightly run: the full rescoring (and the analytics), then, on the scores "
    "it published, the score history's retention, the contact features of the same as_of, the "
    "candidates trained and compared in MLflow (the champion alias moves only on evidence) and "
    "every contact scored by the champion, the conversion model retrained on the campaign "
    "outcomes and every contact's conversion probability and the conversion rates per tier and "
    "decile, the uplift model trained on the campaigns with a control group and every "
    "contact's uplift, the hard-bounce suppressions and the campaign results; the checks run with it. All contact buckets in "
    "one run.",
    tags={"lead_scoring/writes": "lead_scores", **ALL_BUCKETS},
)

opt_out_replies_job = dg.define_asset_job(
    "opt_out_replies_job",
    selection=["opt_out_replies"],
    description="Apply the unprocessed SMS replies: opt-outs become suppressions, opt-ins lift "
    "earlier opt-outs. Requested by sms_replies_sensor.",
)
