"""The score card and `lead-scoring explain`."""

import pytest
import sqlalchemy as sa

from lead_scoring_assets.cli import main
from lead_scoring_assets.contacts.phones import mask_phone
from lead_scoring_assets.scoring.full_rescore import rescore_all
from lead_scoring_assets.scoring.score_card import stored_score

from .conftest import AS_OF


@pytest.fixture
def scored(demo_database, templates):
    templates.cached(demo_database, "rescored", lambda db: rescore_all(db, AS_OF))
    row = demo_database.read_frame(
        "SELECT s.contact_id, c.phone_e164, s.total_score, s.quality_tier FROM lead_scores s "
        "JOIN contacts c ON c.id = s.contact_id WHERE s.platform_count >= 2 "
        "ORDER BY s.total_score DESC LIMIT 1"
    ).iloc[0]
    return demo_database, row


def test_score_card_shows_every_part_and_hides_the_phone(scored):
    database, row = scored
    card = stored_score(database, str(row.contact_id)).render()
    assert f"score {row.total_score}/100  {row.quality_tier}" in card
    for text in (
        "whatsapp",
        "/25",
        "apple",
        "/15",
        "#",
        "profile_completeness",
        "quality multiplier",
        "synergy",
        "platform_count",
        "confidence",
        "as of 2026-11-24T00:00:00+00:00",
        "advanced_v1",
    ):
        assert text in card
    assert row.phone_e164 not in card
    assert mask_phone(row.phone_e164) in card


def test_lookup_by_phone_in_any_mexican_format(scored):
    database, row = scored
    national = row.phone_e164[3:]
    spaced = f"{national[:3]} {national[3:6]} {national[6:]}"
    for key in (row.phone_e164, national, spaced):
        assert stored_score(database, key).score["contact_id"] == row.contact_id


def test_explain_finds_a_contact_by_the_old_mobile_form(scored, database_url, capsys):
    database, row = scored
    national = row.phone_e164[3:]
    old_form = f"+52 1 {national[:3]} {national[3:6]} {national[6:]}"
    for key in (old_form, f"044 {national}"):
        assert stored_score(database, key).score["contact_id"] == row.contact_id
    assert main(["explain", old_form, "--url", database_url]) == 0
    out = capsys.readouterr().out
    assert f"contact {row.contact_id}  {mask_phone(row.phone_e164)}" in out
    assert national not in out


def test_explain_refuses_what_is_no_id_nor_phone_without_repeating_it(scored, database_url, capsys):
    assert main(["explain", "+1 212 555 0101", "--url", database_url]) == 1
    err = capsys.readouterr().err
    assert "country code 1 is not Mexico (+52)" in err and "5550101" not in err


def test_unknown_and_unscored_contacts_say_so(scored):
    database, row = scored
    with pytest.raises(LookupError, match="no contact matches"):
        stored_score(database, "123456")
    with database.engine.begin() as connection:
        connection.execute(
            sa.text("DELETE FROM lead_scores WHERE contact_id = :id"), {"id": int(row.contact_id)}
        )
    with pytest.raises(LookupError, match="has not been scored yet"):
        stored_score(database, str(row.contact_id))


def test_cli_explain(scored, database_url, capsys):
    database, row = scored
    assert main(["explain", str(row.contact_id), "--recompute", "--url", database_url]) == 0
    out = capsys.readouterr().out
    assert f"{row.total_score}/100" in out
    assert "recomputed from the current rows at the same as_of: identical" in out
    assert "ML score: none yet (run nightly_retrain_job)" in out
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO ml_lead_scores VALUES (:id, 57.31, 'MEDIUM', 0.9876, '3', "
                "'ml_random_forest', :at)"
            ),
            {"id": int(row.contact_id), "at": database.bind_timestamp(AS_OF)},
        )
    assert main(["explain", str(row.contact_id), "--url", database_url]) == 0
    assert (
        "ML score 57.31/100  MEDIUM  confidence 0.9876  (ml_random_forest, model v3, "
        "as of 2026-11-24"
    ) in capsys.readouterr().out
    assert main(["explain", "+52 1 999 000 0000", "--url", database_url]) == 1
    assert "no contact matches" in capsys.readouterr().err


def _set_version(database, contact_id, version: str) -> None:
    with database.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE lead_scores SET calculation_version = :version WHERE contact_id = :id"),
            {"version": version, "id": int(contact_id)},
        )


def test_explain_shows_a_score_of_another_version(scored, database_url, capsys):
    """A stored row of an older known version: its breakdown with that version's
    configuration, marked; of an unknown version: its stored values, marked, no breakdown.
    Exit code 0, never a traceback."""
    database, row = scored
    contact = str(row.contact_id)
    _set_version(database, row.contact_id, "advanced_v1.0")
    assert main(["explain", contact, "--recompute", "--url", database_url]) == 0
    out = capsys.readouterr().out
    assert f"score {row.total_score}/100  {row.quality_tier}" in out
    assert "computed by advanced_v1.0" in out and "quality multiplier" in out
    assert (
        "recomputed from the current rows at the same as_of (stored by advanced_v1.0, "
        "recomputed by advanced_v1.1): identical"
    ) in out
    _set_version(database, row.contact_id, "advanced_v9.9")
    assert main(["explain", contact, "--url", database_url]) == 0
    out = capsys.readouterr().out
    assert f"score {row.total_score}/100  {row.quality_tier}" in out
    assert "computed by advanced_v9.9" in out and "stored values only" in out
    assert "quality multiplier" not in out and "/25" in out
    assert mask_phone(row.phone_e164) in out and row.phone_e164 not in out
