"""The demo's definitions: the production code location plus ``demo_data_job``.

``demo_data_job`` fills the platform tables with synthetic Mexican contacts. It lives outside
``defs/``, so the production code location (``lead_scoring_assets.definitions``) never
defines it; ``lead-scoring demo`` and the tests load these definitions instead.
"""

import time

import dagster as dg
from pydantic import Field

from lead_scoring_assets.definitions import defs as production_defs
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.demo.loader import load_demo_data


class DemoDataConfig(dg.Config):
    contacts: int = Field(default=50_000, gt=0, description="Number of contacts to generate.")
    seed: int = Field(default=42, description="Same seed, same rows.")
    as_of: str = Field(
        default="2026-11-24T00:00:00Z", description="ISO-8601 time the data is generated around."
    )
    replace_existing: bool = Field(
        default=False,
        description="Empty contacts and platform_validations first (only in a "
        "database the demo loader filled: one holding its demo_data_marker row).",
    )


@dg.op(tags={"kind": "demo"})
def generate_demo_data_op(
    context: dg.OpExecutionContext, config: DemoDataConfig, database: DatabaseResource
) -> None:
    """Generate and load the demo contacts, validations and campaign outcomes."""
    started = time.perf_counter()
    with database.open() as db:
        report = load_demo_data(
            db, config.contacts, config.seed, config.as_of, config.replace_existing
        )
    seconds = round(time.perf_counter() - started, 2)
    context.log.info(
        f"loaded {report.contacts} contacts, {report.validations} validations, "
        f"{report.outcomes} outcomes of {report.campaigns} campaigns in {seconds}s"
    )
    context.log_event(
        dg.AssetMaterialization(
            "contacts",
            metadata={
                "dagster/row_count": report.contacts,
                "seed": config.seed,
                "seconds": seconds,
            },
        )
    )
    context.log_event(
        dg.AssetMaterialization(
            "platform_validations",
            metadata={"dagster/row_count": report.validations, "seed": config.seed},
        )
    )


@dg.job(description="Fill contacts and platform_validations with synthetic Mexican demo data.")
def demo_data_job() -> None:
    generate_demo_data_op()


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(production_defs(), dg.Definitions(jobs=[demo_data_job]))
