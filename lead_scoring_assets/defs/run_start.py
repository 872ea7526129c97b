"""The start time of the current run: the default ``as_of`` of a scoring run."""

from datetime import UTC, datetime

import dagster as dg


def run_start(context: dg.OpExecutionContext | dg.AssetExecutionContext) -> datetime:
    record = context.instance.get_run_record_by_id(context.run_id)
    started = record.start_time if record is not None else None
    return datetime.fromtimestamp(started, UTC) if started else datetime.now(UTC)
