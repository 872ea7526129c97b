"""What a request costs the server: one hop to the thread pool (its endpoint), and on
PostgreSQL a plan made for its own contact rather than a generic plan over every partition,
and a row read without the cursor's description."""

import anyio.to_thread
import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lead_scoring_assets.scoring.full_rescore import rescore_all

from .api_data import READ_KEY, app_for, prepare
from .conftest import AS_OF

API = "/api/v1/lead-scoring"


@pytest.fixture
def scored(demo_database, templates):
    return templates.cached(demo_database, "api_data.prepare", prepare)


def test_a_request_crosses_to_the_thread_pool_once(scored, monkeypatch):
    """FastAPI runs a plain ``def`` endpoint in the thread pool, then its response validation
    in a second hop, and each plain ``def`` dependency in another: four hops a card, a quarter
    of a server worker's time at 400 cards/s. Each reading request now crosses once."""
    hops = []
    run_sync = anyio.to_thread.run_sync

    async def counted(function, *args, **kwargs):
        hops.append(getattr(function, "__name__", type(function).__name__))
        return await run_sync(function, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    with scored.engine.connect() as connection:
        contact_id, phone = connection.execute(
            sa.text(
                "SELECT c.id, c.phone_e164 FROM contacts c JOIN lead_scores s "
                "ON s.contact_id = c.id ORDER BY c.id LIMIT 1"
            )
        ).one()
    requests = [
        f"{API}/contacts/{contact_id}",
        f"{API}/lookup?phone={phone[3:]}",
        f"{API}/contacts?limit=5",
        f"{API}/contacts/total?tier=HIGH",
        f"{API}/analytics",
        f"{API}/campaigns",
        f"{API}/proof",
        f"{API}/contacts/{contact_id}/rescore",
    ]
    with TestClient(app_for(scored)) as client:
        for path in requests:
            hops.clear()
            response = client.get(path, headers={"X-API-Key": READ_KEY})
            assert response.status_code == 200, (path, response.text)
            assert len(hops) == 1, (path, hops)


def test_cards_on_postgresql_are_planned_for_their_contact(postgres_demo):
    """psycopg prepares a statement run five times on a connection, and PostgreSQL then
    switches to a generic plan, which opens every partition of the card's five partitioned
    tables (3.6 ms a card against 1.2 ms planned for its contact, at 100k contacts): the API's
    connections plan each statement for its parameters."""
    rescore_all(postgres_demo, AS_OF)
    reader = app_for(postgres_demo).state.reader
    with postgres_demo.engine.connect() as connection:
        ids = [r[0] for r in connection.exec_driver_sql("SELECT id FROM contacts ORDER BY id")]
    cards = [reader.score_card(contact_id) for contact_id in ids[:15]]
    with reader.engine.connect() as connection:
        generic, custom = connection.exec_driver_sql(
            "SELECT coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0) "
            "FROM pg_prepared_statements"
        ).one()
    assert [c["contact_id"] for c in cards] == ids[:15]
    assert custom >= 5 and generic == 0, (custom, generic)


def test_a_card_is_read_without_the_cursors_description(postgres_demo, monkeypatch):
    """SQLAlchemy's result reads the cursor's description, which psycopg builds anew on each
    call, an object per column (77 for a card): 0.18 ms of a card's 0.65 ms of the reader's
    CPU at 100k contacts. The card and the lookup's id are read by position instead."""
    rescore_all(postgres_demo, AS_OF)
    reader = app_for(postgres_demo).state.reader
    with postgres_demo.engine.connect() as connection:
        contact_id, phone = connection.exec_driver_sql(
            "SELECT id, phone_e164 FROM contacts ORDER BY id LIMIT 1"
        ).one()
    described = []
    description = psycopg.Cursor.description

    def counted(cursor):
        described.append(cursor)
        return description.__get__(cursor)

    monkeypatch.setattr(psycopg.Cursor, "description", property(counted))
    cards = [reader.score_card(contact_id), reader.score_card_by_phone(phone)]
    assert [c["contact_id"] for c in cards] == [contact_id, contact_id]
    assert cards[0]["score_breakdown"] == cards[1]["score_breakdown"] is not None
    assert described == []


def test_a_card_after_its_connection_is_lost_fails_once(postgres_demo):
    """A pooled connection closed by the server (a restart, an administrator) fails the one
    card that finds it, with SQLAlchemy's error, and is not handed out again."""
    rescore_all(postgres_demo, AS_OF)
    reader = app_for(postgres_demo).state.reader
    with postgres_demo.engine.connect() as connection:
        contact_id = connection.exec_driver_sql("SELECT min(id) FROM contacts").scalar()
    reader.score_card(contact_id)
    with postgres_demo.engine.connect() as admin:
        ended = admin.exec_driver_sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).scalar()
    assert ended >= 1
    with pytest.raises(sa.exc.OperationalError):
        reader.score_card(contact_id)
    assert reader.score_card(contact_id)["contact_id"] == contact_id
