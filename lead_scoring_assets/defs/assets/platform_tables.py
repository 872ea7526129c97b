"""The SMS platform's own tables, written by other systems: sources of the lineage."""

import dagster as dg

contacts = dg.AssetSpec(
    "contacts",
    group_name="platform",
    kinds={"sql"},
    description="Phone contacts of the SMS platform (written by the platform, or by demo_data_job).",
)
platform_validations = dg.AssetSpec(
    "platform_validations",
    group_name="platform",
    kinds={"sql"},
    description="Per-platform account validations of each contact, written by the external "
    "validation process (or by demo_data_job).",
)
