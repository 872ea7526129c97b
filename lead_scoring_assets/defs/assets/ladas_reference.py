"""Write, audit, publish of ``ladas_reference``: ``staged_ladas_reference`` builds the next
reference aside, the blocking check ``staged_ladas_reference_covers_mexico`` reads it, and
only then ``ladas_reference`` swaps it in."""

import dagster as dg

from lead_scoring_assets.db.staged_table import StagedTable
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.geography.ladas import build_lada_reference, geocoder_descriptions

LADAS = "ladas_reference"


@dg.asset(group_name="reference", kinds={"python", "sql"}, owners=["team:data"])
def staged_ladas_reference(
    context: dg.AssetExecutionContext, database: DatabaseResource
) -> dg.MaterializeResult:
    """(lada, state_name) pairs from the phonenumbers geocoder for +52, one row per state of a
    multi-state LADA, staged for the audit; LADAs whose description names no state are left
    out."""
    frame = build_lada_reference()
    with database.open() as db:
        staged = StagedTable(db, LADAS, run_id=context.run_id)
        with staged.stage():
            staged.append(frame)
    per_lada = frame.groupby("lada").size()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(frame),
            "ladas": int(per_lada.size),
            "states": int(frame["state_name"].nunique()),
            "multi_state_ladas": int((per_lada > 1).sum()),
            "ladas_left_out": len(geocoder_descriptions()) - int(per_lada.size),
        }
    )


@dg.asset(
    deps=["staged_ladas_reference"], group_name="reference", kinds={"sql"}, owners=["team:data"]
)
def ladas_reference(
    context: dg.AssetExecutionContext, database: DatabaseResource
) -> dg.MaterializeResult:
    """Which state(s) each Mexican LADA belongs to: this run's audited reference, swapped in."""
    with database.open() as db:
        StagedTable(db, LADAS, run_id=context.run_id).publish()
        rows = db.count(LADAS)
    return dg.MaterializeResult(metadata={"dagster/row_count": rows})
