"""Synthetic demo data: realistic, deterministic, and full of the spec's edge cases."""

import numpy as np
import pandas as pd
import phonenumbers
import pytest
import sqlalchemy as sa

from lead_scoring_assets.demo.generator import generate_demo_data
from lead_scoring_assets.demo.loader import load_demo_data
from lead_scoring_assets.geography.ladas import build_lada_reference
from lead_scoring_assets.geography.states import normalize_state
from lead_scoring_assets.scoring.config import PLATFORMS
from lead_scoring_assets.scoring.engine import classify_malformed

from .conftest import AS_OF


@pytest.fixture(scope="module")
def demo():
    batches = list(generate_demo_data(20_000, seed=5, as_of=AS_OF, batch_size=7_000))
    return (
        pd.concat([b.contacts for b in batches], ignore_index=True),
        pd.concat([b.validations for b in batches], ignore_index=True),
    )


def test_same_seed_same_rows_other_seed_other_rows(demo):
    contacts, validations = demo
    again = list(generate_demo_data(20_000, seed=5, as_of=AS_OF, batch_size=7_000))
    pd.testing.assert_frame_equal(
        contacts, pd.concat([b.contacts for b in again], ignore_index=True)
    )
    pd.testing.assert_frame_equal(
        validations, pd.concat([b.validations for b in again], ignore_index=True)
    )
    other = next(generate_demo_data(1_000, seed=6, as_of=AS_OF))
    assert other.contacts["phone_e164"].tolist() != contacts["phone_e164"][:1_000].tolist()


def test_ids_are_unique_and_sequential(demo):
    contacts, validations = demo
    assert contacts["id"].tolist() == list(range(1, 20_001))
    assert validations["id"].is_unique


def test_phone_numbers_are_valid_mexican_e164(demo):
    contacts, _ = demo
    sample = contacts["phone_e164"].sample(500, random_state=1)
    assert sample.str.fullmatch(r"\+52\d{10}").all()
    known = contacts.loc[sample.index, "lada"].isin(build_lada_reference()["lada"])
    parsed = [phonenumbers.parse(p) for p in sample[known]]
    assert np.mean([phonenumbers.is_valid_number(p) for p in parsed]) > 0.95
    assert all(p.country_code == 52 for p in parsed)


def test_states_follow_population(demo):
    contacts, _ = demo
    states = contacts["state_name"].map(normalize_state).value_counts(normalize=True)
    assert states.index[0] == "MEXICO"
    assert 0.10 < states["MEXICO"] < 0.16
    assert states["CIUDAD DE MEXICO"] > states["COLIMA"] * 5


def test_lada_matches_state_most_of_the_time(demo):
    contacts, _ = demo
    reference = build_lada_reference()
    pairs = set(zip(reference.lada, reference.state_name))
    match = [(l, normalize_state(s)) in pairs for l, s in zip(contacts.lada, contacts.state_name)]
    assert 0.80 < np.mean(match) < 0.95


def test_edge_cases_are_present(demo):
    contacts, validations = demo
    assert contacts["full_name"].isna().any() and (contacts["address"] == "  ").any()
    assert contacts["created_at"].isna().any()
    assert contacts["state_name"].isin(["CDMX", "Edo. Méx.", "NL"]).any()
    assert (
        ~contacts["lada"].isin(build_lada_reference()["lada"])
        & contacts["lada"].notna()
        & (contacts["lada"] != "  ")
    ).any()
    assert (~contacts["id"].isin(validations["contact_id"])).mean() > 0.05
    reasons = classify_malformed(validations, contacts["id"].to_numpy(), AS_OF).value_counts()
    assert len(reasons) == 7 and reasons.sum() / len(validations) < 0.01
    per_slot = validations.groupby(["contact_id", "platform"])
    assert (per_slot.size() > 1).mean() > 0.2
    assert per_slot["validated_at"].apply(lambda s: s.duplicated().any()).any()
    assert set(PLATFORMS) <= set(validations["platform"])


def test_platform_rates_are_plausible(demo):
    contacts, validations = demo
    owners = validations.groupby("platform")["contact_id"].nunique() / len(contacts)
    assert owners["whatsapp"] > owners["facebook"] > owners["instagram"] > owners["apple"]
    assert 0.75 < owners["whatsapp"] < 0.9
    confidence = validations["confidence_score"].dropna()
    assert 0.7 < confidence[(confidence >= 0) & (confidence <= 1)].mean() < 0.9


def test_loader_marks_its_database_and_replaces_only_its_own_rows(database):
    load_demo_data(database, 200, seed=1, as_of=AS_OF)
    marker = database.read_frame("SELECT seed, contacts FROM demo_data_marker")
    assert marker.values.tolist() == [[1, 200]]
    report = load_demo_data(database, 150, seed=2, as_of=AS_OF, replace_existing=True)
    assert report.contacts == database.count("contacts") == 150
    assert database.read_frame("SELECT seed FROM demo_data_marker")["seed"].tolist() == [2]


@pytest.mark.parametrize("table", ["contacts", "platform_validations"])
def test_loader_refuses_to_delete_the_platforms_rows(database, table):
    """Rows the loader did not write (no marker) are never deleted, even when told to."""
    with database.engine.begin() as connection:
        if table == "contacts":
            connection.execute(
                sa.text(
                    "INSERT INTO contacts (id, phone_e164, full_name) VALUES "
                    "(1, '+523312345678', 'Cliente Real'), (2, '+523312345679', 'Otra Persona')"
                )
            )
        else:
            connection.execute(
                sa.text(
                    "INSERT INTO platform_validations (id, contact_id, platform) "
                    "VALUES (1, 1, 'whatsapp')"
                )
            )
    before = database.count(table)
    with pytest.raises(RuntimeError, match="demo loader did not write"):
        load_demo_data(database, 100, seed=1, as_of=AS_OF, replace_existing=True)
    assert database.count(table) == before
    assert database.count("demo_data_marker") == 0
