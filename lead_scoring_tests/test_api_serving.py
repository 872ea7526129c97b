"""What a request costs the server: one hop to the thread pool (its endpoint), and on
PostgreSQL a plan made for its own contact rather than a generic plan over every partition."""

import anyio.to_thread
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
