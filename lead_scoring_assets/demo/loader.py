"""Load generated demo data into the operational database."""

from dataclasses import dataclass

import sqlalchemy as sa

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.demo.generator import generate_demo_data


@dataclass
class DemoLoadReport:
    contacts: int = 0
    validations: int = 0


def load_demo_data(
    database: Database, n_contacts: int, seed: int, as_of, replace_existing: bool = False,
    batch_size: int = 100_000,
) -> DemoLoadReport:
    """Write ``n_contacts`` demo contacts and their validations.

    Refuses to touch a database that already has contacts unless ``replace_existing``, in
    which case contacts and validations are emptied first.
    """
    existing = database.count("contacts")
    if existing and not replace_existing:
        raise RuntimeError(
            f"contacts already holds {existing} rows; set replace_existing to overwrite them"
        )
    with database.engine.begin() as connection:
        for table in ("platform_validations", "contacts"):
            connection.execute(sa.text(f"DELETE FROM {table}"))
    report = DemoLoadReport()
    for batch in generate_demo_data(n_contacts, seed, as_of, batch_size=batch_size):
        database.append_frame("contacts", batch.contacts)
        database.append_frame("platform_validations", batch.validations)
        report.contacts += len(batch.contacts)
        report.validations += len(batch.validations)
    if database.dialect == "postgresql":
        with database.engine.begin() as connection:
            connection.execute(sa.text("ANALYZE contacts"))
            connection.execute(sa.text("ANALYZE platform_validations"))
    return report
