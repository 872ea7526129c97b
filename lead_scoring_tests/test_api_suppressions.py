"""Suppressed contacts in the API and dashboard, both dialects: the list and the score card
flag them ``do_not_contact`` with the reasons (suppressions in force, unprocessed opt-out
replies, numbers stored in another form, unreadable numbers); ``contactable=true`` leaves them
out of every page."""

import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lead_scoring_assets.contacts.phones import normalize_phone
from lead_scoring_assets.demo.loader import load_demo_data
from lead_scoring_assets.scoring.full_rescore import rescore_all

from .api_data import READ_KEY, app_for
from .conftest import AS_OF

API = "/api/v1/lead-scoring"
READ = {"X-API-Key": READ_KEY}
NOW = pd.Timestamp.now(tz="UTC")


@pytest.fixture
def scored(database):
    load_demo_data(database, 300, seed=9, as_of=AS_OF, batch_size=300)
    rescore_all(database, AS_OF)
    return database


@pytest.fixture
def client(scored):
    with TestClient(app_for(scored), raise_server_exceptions=False) as test_client:
        yield test_client


def _execute(database, sql: str, params: dict) -> None:
    with database.engine.begin() as connection:
        connection.execute(sa.text(sql), params)


def _suppress(database, phone: str, reason: str, expires=None) -> None:
    _execute(
        database,
        "INSERT INTO suppressions (phone_e164, reason, source, recorded_at, "
        "expires_at) VALUES (:p, :r, 'test', :at, :exp)",
        {
            "p": normalize_phone(phone),
            "r": reason,
            "at": database.bind_timestamp(NOW - pd.Timedelta(days=1)),
            "exp": database.bind_timestamp(expires),
        },
    )


def _walk(client, limit: int, **filters) -> list[dict]:
    items, cursor = [], None
    while True:
        params = {"limit": limit, **filters, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"{API}/contacts", params=params, headers=READ).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_the_list_and_the_card_flag_suppressed_contacts(scored, client):
    top = _walk(client, 200)
    with scored.engine.connect() as connection:
        phones = dict(connection.execute(sa.text("SELECT id, phone_e164 FROM contacts")).all())
    ids = [item["contact_id"] for item in top[:6]]
    both, expired, replied, other_form, unreadable, _clear = ids
    _suppress(scored, phones[both], "repus")
    _suppress(scored, phones[both], "opt_out")
    _suppress(scored, phones[expired], "hard_bounce", expires=NOW - pd.Timedelta(hours=1))
    _execute(
        scored,
        "INSERT INTO sms_replies (id, phone_e164, body, received_at) VALUES (1, :p, 'Baja', :at)",
        {
            "p": f"044 {phones[replied][3:]}",
            "at": scored.bind_timestamp(NOW - pd.Timedelta(minutes=1)),
        },
    )
    _execute(
        scored,
        "UPDATE contacts SET phone_e164 = :p WHERE id = :id",
        {"p": f"+52 1 {phones[other_form][3:]}", "id": other_form},
    )
    _suppress(scored, phones[other_form], "manual")
    _execute(scored, "UPDATE contacts SET phone_e164 = '12-34' WHERE id = :id", {"id": unreadable})

    page = client.get(f"{API}/contacts", params={"limit": 10}, headers=READ).json()["items"]
    flags = {i["contact_id"]: (i["do_not_contact"], i["suppression_reasons"]) for i in page}
    assert [flags[i] for i in ids] == [
        (True, ["opt_out", "repus"]),
        (False, []),
        (True, ["opt_out"]),
        (True, ["manual"]),
        (True, ["unreadable_phone"]),
        (False, []),
    ]
    assert all(flags[i] == (False, []) for i in flags if i not in ids)

    assert [_card_flags(client, i) for i in ids] == [flags[i] for i in ids]
    found = client.get(f"{API}/lookup", params={"phone": phones[replied]}, headers=READ).json()
    assert found["suppression_reasons"] == ["opt_out"]

    contactable = _walk(client, 3, contactable="true")
    assert [i["contact_id"] for i in contactable] == [
        i["contact_id"]
        for i in top
        if i["contact_id"] not in (both, replied, other_form, unreadable)
    ]
    assert not any(i["do_not_contact"] for i in contactable)
    assert len(_walk(client, 50, contactable="false")) == len(top)


def _card_flags(client, contact_id: int) -> tuple[bool, list[str]]:
    card = client.get(f"{API}/contacts/{contact_id}", headers=READ).json()
    return card["do_not_contact"], card["suppression_reasons"]


def _reply(database, reply_id: int, phone: str, body: str, minutes_ago: int | None) -> None:
    _execute(
        database,
        "INSERT INTO sms_replies (id, phone_e164, body, received_at) VALUES (:id, :p, :b, :at)",
        {
            "id": reply_id,
            "p": phone,
            "b": body,
            "at": None
            if minutes_ago is None
            else database.bind_timestamp(NOW - pd.Timedelta(minutes=minutes_ago)),
        },
    )


def test_the_card_applies_unprocessed_replies_as_the_list_does(scored, client):
    """An opt-in lifts an opt_out row recorded before it (not one after it, not when its time
    is unknown, never another reason); the latest keyword reply counts; processed replies and
    other people's do not: on the card (one statement) as on the list."""
    with scored.engine.connect() as connection:
        phones = dict(connection.execute(sa.text("SELECT id, phone_e164 FROM contacts")).all())
    ids = [item["contact_id"] for item in _walk(client, 200)[:7]]
    lifted, other_reason, no_time, opt_in_before, latest_out, processed, _clear = ids
    for contact in (lifted, other_reason, no_time, opt_in_before):
        _suppress(scored, phones[contact], "opt_out")
    _suppress(scored, phones[other_reason], "repus")
    _reply(scored, 1, f"+52 1 {phones[lifted][3:6]} {phones[lifted][6:]}", "Alta", 1)
    _reply(scored, 2, phones[other_reason], "ALTA", 1)
    _reply(scored, 3, phones[no_time], "alta", None)
    _reply(scored, 4, phones[opt_in_before], "ALTA", 2 * 24 * 60)
    _reply(scored, 5, f"044{phones[latest_out][3:]}", "alta", 3)
    _reply(scored, 6, phones[latest_out], "no más", 1)
    _reply(scored, 7, phones[processed], "BAJA", 1)
    _execute(scored, "UPDATE sms_replies SET processed_at = received_at WHERE id = 7", {})
    _reply(scored, 8, "+52 1 000", "BAJA", 1)  # no Mexican number: applies to none

    page = client.get(f"{API}/contacts", params={"limit": 10}, headers=READ).json()["items"]
    flags = {i["contact_id"]: (i["do_not_contact"], i["suppression_reasons"]) for i in page}
    expected = [
        (False, []),
        (True, ["repus"]),
        (True, ["opt_out"]),
        (True, ["opt_out"]),
        (True, ["opt_out"]),
        (False, []),
        (False, []),
    ]
    assert [flags[i] for i in ids] == expected
    assert [_card_flags(client, i) for i in ids] == expected
    found = client.get(f"{API}/lookup", params={"phone": phones[lifted]}, headers=READ).json()
    assert (found["contact_id"], found["do_not_contact"]) == (lifted, False)


def test_the_dashboard_says_no_contactar_in_spanish_and_english(client):
    spanish, english = client.get("/").text, client.get("/", params={"lang": "en"}).text
    assert "No contactar" in spanish and "Solo contactables" in spanish
    assert "Do not contact" in english and "Contactable only" in english
    script = client.get("/static/dashboard.js").text
    assert "T.do_not_contact" in script and "reason_${r}" in script
