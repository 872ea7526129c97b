"""The Alembic schema on both dialects: tables, columns, indexes, malformed rows accepted."""

import pandas as pd
import sqlalchemy as sa

from lead_scoring_assets.cli import main
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.tables import (
    CONTACT_COLUMNS,
    ML_SCORE_COLUMNS,
    SCORE_COLUMNS,
    VALIDATION_COLUMNS,
)
from lead_scoring_assets.ml.features import FEATURE_COLUMNS


def test_upgrade_creates_the_spec_tables(database_url):
    database = Database(database_url)
    assert database.current_revision() is None
    database.upgrade()
    inspector = sa.inspect(database.engine)
    columns = {t: [c["name"] for c in inspector.get_columns(t)] for t in inspector.get_table_names()}
    assert columns["contacts"] == list(CONTACT_COLUMNS)
    assert columns["platform_validations"] == list(VALIDATION_COLUMNS)
    assert columns["ladas_reference"] == ["lada", "state_name"]
    assert columns["lead_scores"] == list(SCORE_COLUMNS)
    assert "reason" in columns["malformed_validations"]
    assert columns["contact_features"] == [
        "contact_id", *FEATURE_COLUMNS, "feature_set_version", "as_of"]
    assert columns["ml_lead_scores"] == list(ML_SCORE_COLUMNS)
    assert any(
        ix["column_names"][:2] == ["contact_id", "platform"]
        for ix in inspector.get_indexes("platform_validations")
    )
    database.dispose()


def test_downgrade_and_upgrade_again(database_url):
    database = Database(database_url)
    database.upgrade()
    database.downgrade("base")
    assert "contacts" not in sa.inspect(database.engine).get_table_names()
    database.upgrade()
    assert database.current_revision() == "0008"
    database.dispose()


def test_platform_tables_accept_explicit_ids_and_malformed_rows(database_url):
    database = Database(database_url)
    database.upgrade()
    database.append_frame("contacts", pd.DataFrame({
        "id": [900_001], "phone_e164": ["+523312345678"], "full_name": [None], "address": [None],
        "state_name": ["  "], "municipality": [None], "lada": ["33"], "operator": [None],
        "created_at": pd.Series([pd.NaT], dtype="datetime64[us, UTC]"),
        "last_platform_validation": pd.Series([pd.NaT], dtype="datetime64[us, UTC]"),
    }))
    database.append_frame("platform_validations", pd.DataFrame({
        "id": [5, 6, 7], "contact_id": pd.array([900_001, 424242, None], dtype="Int64"),
        "platform": ["tiktok", "whatsapp", None], "is_valid": pd.array([None, True, False],
                                                                        dtype="boolean"),
        "is_business": pd.array([None, None, None], dtype="boolean"),
        "is_premium": pd.array([None, None, None], dtype="boolean"),
        "confidence_score": [1.7, None, -3.0], "validation_method": [None, "api", None],
        "response_time_ms": pd.array([None, 5, None], dtype="Int32"),
        "validated_at": pd.to_datetime([None, "2026-01-01", None], utc=True).as_unit("us"),
    }))
    assert database.count("platform_validations") == 3
    assert database.read_frame("SELECT id FROM contacts")["id"].tolist() == [900_001]
    database.dispose()


def test_cli_db_upgrade(sqlite_url, capsys):
    assert main(["db", "upgrade", "--url", sqlite_url]) == 0
    assert "revision 0008" in capsys.readouterr().out
    assert main(["db", "current", "--url", sqlite_url]) == 0
    assert capsys.readouterr().out.strip() == "0008"


def test_0008_per_state_analytics_column_and_rank_index(database_url):
    database = Database(database_url)
    database.upgrade()

    def schema() -> tuple[list[str], dict[str, list[str]]]:
        inspector = sa.inspect(database.engine)
        columns = [c["name"] for c in inspector.get_columns("lead_scoring_analytics_history")]
        return columns, {ix["name"]: ix["column_names"]
                         for ix in inspector.get_indexes("lead_scores")}

    columns, indexes = schema()
    assert columns[-1] == "by_state"
    assert indexes["ix_lead_scores_rank"] == ["total_score", "contact_id"]
    assert "ix_lead_scores_total_score" not in indexes
    database.downgrade("0005")
    columns, indexes = schema()
    assert "by_state" not in columns and indexes["ix_lead_scores_total_score"] == ["total_score"]
    database.upgrade()
    assert schema()[1]["ix_lead_scores_rank"] == ["total_score", "contact_id"]
    database.dispose()
