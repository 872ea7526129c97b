"""The ``hard_bounce_suppressions`` asset: numbers that bounced in each of their last three
campaigns, suppressed until delivered again."""

import dagster as dg

from lead_scoring_assets.consent.bounces import update_hard_bounces
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.defs.retries import retry_on_transient_database_errors


@dg.asset(
    deps=["campaign_outcomes", "contacts"],
    group_name="consent",
    kinds={"sql"},
    owners=["team:data"],
)
def hard_bounce_suppressions(
    context: dg.AssetExecutionContext, database: DatabaseResource
) -> dg.MaterializeResult:
    """A number (the contact's phone; contacts sharing it count together) not delivered in
    each of its last three campaigns by ``sent_at`` is suppressed as ``hard_bounce`` (source
    ``campaigns <ids>``); the row is removed once the number is delivered again. Control-arm
    recipients are no send. Runs in the nightly job."""
    with retry_on_transient_database_errors(context), database.open() as db:
        report = update_hard_bounces(db)
    return dg.MaterializeResult(
        metadata={"added": report.added, "lifted": report.lifted, "in_force": report.in_force}
    )
