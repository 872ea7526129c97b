"""``demo_data_job``: fill the platform tables with synthetic Mexican contacts."""

import time

import dagster as dg
from pydantic import Field

from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.demo.loader import load_demo_data


class DemoDataConfig(dg.Config):
    contacts: int = Field(default=50_000, gt=0, description="Number of contacts to generate.")
    seed: int = Field(default=42, description="Same seed, same rows.")
    as_of: str = Field(
        default="2026-11-24T00:00:00Z", description="ISO-8601 time the data is generated around."
    )
    replace_existing: bool = Field(
        default=False, description="Empty contacts and platform_validations first."
    )


@dg.op(tags={"kind": "demo"})
def generate_demo_data_op(
    context: dg.OpExecutionContext, config: DemoDataConfig, database: DatabaseResource
) -> None:
    """Generate and load the demo contacts and validations."""
    started = time.perf_counter()
    with database.open() as db:
        report = load_demo_data(
            db, config.contacts, config.seed, config.as_of, config.replace_existing
        )
    seconds = round(time.perf_counter() - started, 2)
    context.log.info(f"loaded {report.contacts} contacts, {report.validations} validations in {seconds}s")
    context.log_event(
        dg.AssetMaterialization("contacts", metadata={"dagster/row_count": report.contacts,
                                                      "seed": config.seed, "seconds": seconds})
    )
    context.log_event(
        dg.AssetMaterialization("platform_validations",
                                metadata={"dagster/row_count": report.validations,
                                          "seed": config.seed})
    )


@dg.job(description="Fill contacts and platform_validations with synthetic Mexican demo data.")
def demo_data_job() -> None:
    generate_demo_data_op()
