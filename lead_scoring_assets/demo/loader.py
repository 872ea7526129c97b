"""Load generated demo data into the operational database.

The loader marks the database it fills (one row in ``demo_data_marker``) and deletes rows
only from a database that carries its mark: the platform's own contacts are never touched.
"""

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.demo.generator import demo_campaigns, generate_demo_data

MARKER_TABLE = "demo_data_marker"


@dataclass
class DemoLoadReport:
    contacts: int = 0
    validations: int = 0
    campaigns: int = 0
    outcomes: int = 0


def load_demo_data(
    database: Database,
    n_contacts: int,
    seed: int,
    as_of,
    replace_existing: bool = False,
    batch_size: int = 100_000,
) -> DemoLoadReport:
    """Write ``n_contacts`` demo contacts, their validations and the demo campaigns'
    outcomes and control recipients.

    Refuses to touch a database that already has contacts unless ``replace_existing``, in
    which case contacts (with their recorded changes) and validations are emptied first; and
    refuses to empty any table of a database the loader did not fill (no row in
    ``demo_data_marker``).
    """
    existing = database.count("contacts")
    if existing and not replace_existing:
        raise RuntimeError(
            f"contacts already holds {existing} rows; set replace_existing to overwrite them"
        )
    with database.engine.begin() as connection:
        marked = connection.execute(sa.text(f"SELECT count(*) FROM {MARKER_TABLE}")).scalar()
        validations = connection.execute(
            sa.text("SELECT count(*) FROM platform_validations")
        ).scalar()
        if not marked and (existing or validations):
            raise RuntimeError(
                f"refusing to delete {existing} contacts and {validations} validation rows that "
                f"the demo loader did not write (no row in {MARKER_TABLE}): this looks like "
                "the platform's data. Load the demo into its own empty database "
                "(LEAD_SCORING_DATABASE_URL)."
            )
        connection.execute(sa.text(f"DELETE FROM {MARKER_TABLE}"))
        connection.execute(
            sa.text(
                f"INSERT INTO {MARKER_TABLE} (id, seed, contacts, loaded_at) "
                "VALUES (1, :seed, :contacts, :now)"
            ),
            {
                "seed": seed,
                "contacts": n_contacts,
                "now": database.bind_timestamp(pd.Timestamp.now(tz="UTC")),
            },
        )
        for table in (
            "campaign_recipient_features",
            "campaign_recipients",
            "campaign_outcomes",
            "campaigns",
            "platform_validations",
            "contacts",
            "contact_changes",
        ):
            connection.execute(sa.text(f"DELETE FROM {table}"))
    report = DemoLoadReport()
    campaigns = demo_campaigns(as_of)
    database.append_frame("campaigns", campaigns)
    report.campaigns = len(campaigns)
    for batch in generate_demo_data(n_contacts, seed, as_of, batch_size=batch_size):
        database.append_frame("contacts", batch.contacts)
        database.append_frame("platform_validations", batch.validations)
        report.contacts += len(batch.contacts)
        database.append_frame("campaign_outcomes", batch.outcomes)
        database.append_frame("campaign_recipients", batch.recipients)
        report.validations += len(batch.validations)
        report.outcomes += len(batch.outcomes)
    if database.dialect == "postgresql":
        with database.engine.begin() as connection:
            connection.execute(sa.text("ANALYZE contacts"))
            connection.execute(sa.text("ANALYZE platform_validations"))
            connection.execute(sa.text("ANALYZE campaign_outcomes"))
    return report
