"""A scored demo database for the API tests: two rescorings (so there is score history) and
two analytics runs."""

import pandas as pd

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


def prepare(database: Database) -> None:
    """Score the demo contacts at ``AS_OF`` and again 20 days later, with an analytics run
    after each."""
    for run, as_of in (("run-1", AS_OF), ("run-2", LATER)):
        rescore_all(database, as_of, run_id=run)
        append_figures(database, compute_figures(database), run, as_of)


def app_for(database: Database):
    return create_app(database.url.render_as_string(hide_password=False), keys=KEYS,
                      cursor_secret=CURSOR_SECRET)
