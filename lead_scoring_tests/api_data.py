"""A scored demo database for the API tests: two rescorings (so there is score history) and
two analytics runs."""

import pandas as pd
import sqlalchemy as sa

from lead_scoring_assets.analytics.figures import compute_figures
from lead_scoring_assets.analytics.history import append_figures
from lead_scoring_assets.api.app import create_app
from lead_scoring_assets.api.auth import ApiKeys
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.scoring.full_rescore import rescore_all

from .conftest import AS_OF

READ_KEY = "read-key-for-tests"
ADMIN_KEY = "admin-key-for-tests"
KEYS = ApiKeys(read=(READ_KEY,), admin=(ADMIN_KEY,))
CURSOR_SECRET = "cursor-secret-for-tests"
LATER = AS_OF + pd.Timedelta(days=20)
BIG_ID = 2**60 + 1
"""A contact id JavaScript cannot hold exactly as a number (2^53 < id)."""


def prepare(database: Database) -> None:
    """Score the demo contacts at ``AS_OF`` and again 20 days later, with an analytics run
    after each."""
    for run, as_of in (("run-1", AS_OF), ("run-2", LATER)):
        rescore_all(database, as_of, run_id=run)
        append_figures(database, compute_figures(database), run, as_of)


def app_for(database: Database):
    return create_app(
        database.url.render_as_string(hide_password=False), keys=KEYS, cursor_secret=CURSOR_SECRET
    )


def _rows(database: Database, sql: str, params: dict | None = None) -> list[dict]:
    with database.engine.connect() as connection:
        return [dict(r) for r in connection.execute(sa.text(sql), params or {}).mappings()]


def add_big_id_contact(database: Database, big_id: int = BIG_ID) -> dict:
    """A copy of the best contact (its profile, validations and score) under ``big_id``, with
    its own phone number; returns its ``lead_scores`` row."""
    best = _rows(
        database,
        "SELECT contact_id FROM lead_scores ORDER BY total_score DESC, contact_id DESC LIMIT 1",
    )[0]["contact_id"]
    contact = _rows(database, "SELECT * FROM contacts WHERE id = :id", {"id": best})[0]
    contact.update(id=big_id, phone_e164="+525599990001")
    next_id = _rows(database, "SELECT max(id) AS n FROM platform_validations")[0]["n"] + 1
    validations = [
        {**v, "id": next_id + i, "contact_id": big_id}
        for i, v in enumerate(
            _rows(
                database, "SELECT * FROM platform_validations WHERE contact_id = :id", {"id": best}
            )
        )
    ]
    score = _rows(database, "SELECT * FROM lead_scores WHERE contact_id = :id", {"id": best})[0]
    score["contact_id"] = big_id
    with database.engine.begin() as connection:
        for table, rows in (
            ("contacts", [contact]),
            ("platform_validations", validations),
            ("lead_scores", [score]),
        ):
            for row in rows:
                connection.execute(
                    sa.text(
                        f"INSERT INTO {table} ({', '.join(row)}) "
                        f"VALUES ({', '.join(':' + k for k in row)})"
                    ),
                    row,
                )
        connection.execute(sa.text("DELETE FROM scoring_queue"))
    return score
