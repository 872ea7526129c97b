"""The ``opt_out_replies`` asset: SMS replies turned into (or out of) opt-out suppressions."""

import dagster as dg

from lead_scoring_assets.consent.replies import apply_replies
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.defs.retries import retry_on_transient_database_errors


@dg.asset(deps=["sms_replies"], group_name="consent", kinds={"sql"}, owners=["team:data"])
def opt_out_replies(
    context: dg.AssetExecutionContext, database: DatabaseResource
) -> dg.MaterializeResult:
    """Applies every unprocessed SMS reply in received order: an opt-out keyword (BAJA, ALTO,
    STOP, ...) suppresses the number as ``opt_out``, ALTA/START lifts an earlier opt-out; each
    reply is marked processed. Requested by ``sms_replies_sensor``."""
    with retry_on_transient_database_errors(context), database.open() as db:
        report = apply_replies(db)
    return dg.MaterializeResult(metadata=report.metadata())
