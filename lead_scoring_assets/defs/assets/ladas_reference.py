"""The ``ladas_reference`` asset: which state(s) each Mexican LADA belongs to."""

import dagster as dg

from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.geography.ladas import build_lada_reference, geocoder_descriptions


@dg.asset(group_name="reference", kinds={"python", "sql"}, owners=["team:data"])
def ladas_reference(database: DatabaseResource) -> dg.MaterializeResult:
    """(lada, state_name) pairs from the phonenumbers geocoder for +52, one row per state of a
    multi-state LADA; LADAs whose description names no state are left out."""
    frame = build_lada_reference()
    with database.open() as db:
        db.replace_rows("ladas_reference", frame)
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
