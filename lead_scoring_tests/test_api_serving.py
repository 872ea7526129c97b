"""What a request costs the server: one hop to the thread pool (its endpoint), and on
PostgreSQL a plan made for its own contact rather than a generic plan over every partition."""

import inspect

from fastapi.routing import APIRoute

from lead_scoring_assets.api.routes import router
from lead_scoring_assets.scoring.full_rescore import rescore_all

from .api_data import app_for
from .conftest import AS_OF


def _calls(dependant):
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _runs_on_the_event_loop(call) -> bool:
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(type(call).__call__)


def test_a_request_hops_to_the_thread_pool_only_for_its_endpoint():
    """FastAPI runs each plain ``def`` dependency in the thread pool: the key check, the
    parameter check and the reader are ``async def`` (they never wait), so that a card crosses
    to a worker thread once, not four times (a quarter of a worker's time at 400 cards/s)."""
    routes = [r for r in router.routes if isinstance(r, APIRoute)]
    calls = [d.dependency for d in router.dependencies] + [
        call for route in routes for call in _calls(route.dependant)
    ]
    in_thread_pool = sorted(
        {getattr(c, "__name__", type(c).__name__) for c in calls if not _runs_on_the_event_loop(c)}
    )
    assert len(routes) >= 10 and len(calls) >= 10
    assert not in_thread_pool, in_thread_pool


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
