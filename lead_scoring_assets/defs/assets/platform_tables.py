"""The SMS platform's own tables, written by other systems: sources of the lineage."""

import dagster as dg

contacts = dg.AssetSpec(
    "contacts",
    group_name="platform",
    kinds={"sql"},
    description="Phone contacts of the SMS platform, written by the platform (`lead-scoring "
    "demo` fills a demo database of its own).",
)
platform_validations = dg.AssetSpec(
    "platform_validations",
    group_name="platform",
    kinds={"sql"},
    description="Per-platform account validations of each contact, written by the external "
    "validation process (`lead-scoring demo` fills a demo database of its own).",
)
campaign_outcomes = dg.AssetSpec(
    "campaign_outcomes",
    group_name="platform",
    kinds={"sql"},
    description="SMS campaigns (`campaigns`) and each recipient's delivery and conversion "
    "(`campaign_outcomes`), written by the platform; rows that cannot be used are listed in "
    "the view `rejected_campaign_outcomes` with their reason.",
)
sms_replies = dg.AssetSpec(
    "sms_replies",
    group_name="platform",
    kinds={"sql"},
    description="Replies to SMS campaigns (number, text, received_at), written by the "
    "platform; `opt_out_replies` applies them and sets `processed_at`.",
)
