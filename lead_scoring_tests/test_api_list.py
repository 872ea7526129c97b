"""The list a marketer acts on, both dialects: ids exact as strings (2^60 + 1), sorting by
score, conversion probability or uplift with keyset pages, the total per filter, canonical
state names; and the rescore status the card polls (queued, scored, stalled queue)."""

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lead_scoring_assets.demo.loader import load_demo_data
from lead_scoring_assets.geography.states import normalize_state
from lead_scoring_assets.scoring.full_rescore import rescore_all
from lead_scoring_assets.scoring.incremental import score_queued

from .api_data import ADMIN_KEY, BIG_ID, READ_KEY, add_big_id_contact, app_for
from .conftest import AS_OF

API = "/api/v1/lead-scoring"
READ = {"X-API-Key": READ_KEY}
ADMIN = {"X-API-Key": ADMIN_KEY}


def _execute(database, sql: str, params: dict | None = None) -> None:
    with database.engine.begin() as connection:
        connection.execute(sa.text(sql), params or {})


def _rows(database, sql: str, params: dict | None = None) -> list[dict]:
    with database.engine.connect() as connection:
        return [dict(r) for r in connection.execute(sa.text(sql), params or {}).mappings()]


@pytest.fixture
def scored(database):
    load_demo_data(database, 300, seed=9, as_of=AS_OF, batch_size=300)
    rescore_all(database, AS_OF)
    add_big_id_contact(database)
    ids = [
        r["contact_id"]
        for r in _rows(database, "SELECT contact_id FROM lead_scores ORDER BY contact_id")
    ]
    with database.engine.begin() as connection:
        for i, contact in enumerate(ids[::2]):  # every other contact has a probability
            connection.execute(
                sa.text(
                    "INSERT INTO conversion_scores (contact_id, conversion_probability, "
                    "probability_decile, model_version, method, calculated_at) "
                    "VALUES (:id, :p, :d, '1', 'hgb', :at)"
                ),
                {
                    "id": contact,
                    "p": round(((i * 37) % 101) / 1000, 3),
                    "d": 1 + i % 10,
                    "at": database.bind_timestamp(AS_OF),
                },
            )
    return database


@pytest.fixture
def client(scored):
    with TestClient(app_for(scored), raise_server_exceptions=False) as test_client:
        yield test_client


def _walk(client, limit: int, **filters) -> tuple[list[dict], int]:
    items, cursor, total = [], None, None
    while True:
        params = {"limit": limit, **filters, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"{API}/contacts", params=params, headers=READ).json()
        if cursor is None:
            total = page["total"]
        else:
            assert page["total"] is None
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items, total


def test_ids_travel_exactly_as_strings(client):
    first = client.get(f"{API}/contacts", params={"limit": 1}, headers=READ)
    assert f'"contact_id_str":"{BIG_ID}"' in first.text
    card = client.get(f"{API}/contacts/{BIG_ID}", headers=READ).json()
    assert (card["contact_id"], card["contact_id_str"]) == (BIG_ID, str(BIG_ID))
    entry = client.post(f"{API}/contacts/{BIG_ID}/rescore", headers=ADMIN).json()
    assert entry["contact_id_str"] == str(BIG_ID)
    status = client.get(f"{API}/contacts/{BIG_ID}/rescore", headers=READ).json()
    assert status["contact_id_str"] == str(BIG_ID) and status["queued"]
    assert client.get(f"{API}/contacts/{BIG_ID - 1}", headers=READ).status_code == 404


def _add_uplift(database, every: int = 3) -> dict[int, float]:
    """An uplift (some negative, some tied) for every ``every``-th scored contact."""
    ids = [r["contact_id"] for r in _rows(database, "SELECT contact_id FROM lead_scores")]
    uplifts = {c: round(((i * 13) % 21 - 8) / 100, 2) for i, c in enumerate(sorted(ids)[::every])}
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO uplift_scores (contact_id, uplift, uplift_decile, model_version, "
                "method, calculated_at) VALUES (:id, :u, 1, '1', 't_learner', :at)"
            ),
            [{"id": c, "u": u, "at": database.bind_timestamp(AS_OF)} for c, u in uplifts.items()],
        )
    return uplifts


@pytest.mark.parametrize("sort", ["score", "conversion", "uplift"])
def test_every_sort_walks_every_contact_once_in_order_with_the_total(scored, client, sort):
    probabilities = {
        r["contact_id"]: r["conversion_probability"]
        for r in _rows(scored, "SELECT contact_id, conversion_probability FROM conversion_scores")
    }
    uplifts = _add_uplift(scored)
    expected = _rows(
        scored, "SELECT contact_id, total_score FROM lead_scores WHERE total_score >= 30"
    )
    key = {
        "score": lambda r: (r["total_score"], r["contact_id"]),
        "conversion": lambda r: (probabilities.get(r["contact_id"], -2), r["contact_id"]),
        "uplift": lambda r: (uplifts.get(r["contact_id"], -2), r["contact_id"]),
    }[sort]
    items, total = _walk(client, 7, sort=sort, min_score=30)
    assert total == len(expected)
    assert [i["contact_id"] for i in items] == [
        r["contact_id"] for r in sorted(expected, key=key, reverse=True)
    ]
    for item in items:
        expected_probability = probabilities.get(item["contact_id"])
        assert item["conversion_probability"] == (
            None if expected_probability is None else pytest.approx(expected_probability)
        )
        expected_uplift = uplifts.get(item["contact_id"])
        assert item["uplift"] == (
            None if expected_uplift is None else pytest.approx(expected_uplift)
        )


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("sort", ["conversion", "uplift"])
def test_the_sorts_by_probability_and_uplift_follow_an_index(scored, client, sort):
    """PostgreSQL (whose plans these are): each statement of a walk by probability or uplift
    (first page, later pages, the contacts without a value) can be read in order down an
    index: with sorting disabled, the plan has no Sort (a plan that needs one would still use
    it)."""
    _add_uplift(scored)
    statements = []

    def keep(connection, cursor, statement, parameters, context, executemany):
        if "ORDER BY" in statement and "FROM lead_scores s" in statement:
            statements.append((statement, parameters))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", keep)
    try:
        _walk(client, 40, sort=sort, min_score=30)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", keep)
    assert len(statements) >= 3
    table = {"conversion": "conversion_scores", "uplift": "uplift_scores"}[sort]
    with scored.engine.connect() as connection:
        connection.exec_driver_sql("SET enable_sort = off")
        connection.exec_driver_sql("SET enable_seqscan = off")
        for statement, parameters in statements:
            plan = connection.exec_driver_sql(
                f"EXPLAIN (FORMAT JSON) {statement}", parameters
            ).scalar_one()
            nodes = list(_nodes(plan[0]["Plan"]))
            assert not [n for n in nodes if "Sort" in n["Node Type"]], statement
            if "IS NOT NULL" in statement:
                assert any(
                    n["Node Type"] in ("Index Scan", "Index Only Scan")
                    and n["Relation Name"].startswith(table)
                    for n in nodes
                ), statement


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def test_the_total_follows_every_filter(scored, client):
    state = _rows(scored, "SELECT state_name FROM contacts WHERE state_name IS NOT NULL LIMIT 1")[
        0
    ]["state_name"]
    canonical = normalize_state(state)
    spellings = [
        r["state_name"]
        for r in _rows(
            scored, "SELECT DISTINCT state_name FROM contacts WHERE state_name IS NOT NULL"
        )
        if normalize_state(r["state_name"]) == canonical
    ]
    in_state = [
        r
        for r in _rows(
            scored,
            "SELECT c.state_name, s.quality_tier FROM lead_scores "
            "s JOIN contacts c ON c.id = s.contact_id",
        )
        if r["state_name"] in spellings
    ]
    page = client.get(
        f"{API}/contacts", params={"state": canonical.lower(), "limit": 2}, headers=READ
    ).json()
    assert page["total"] == len(in_state)
    assert {i["state"] for i in page["items"]} == {canonical}
    high = client.get(f"{API}/contacts", params={"tier": "HIGH", "limit": 1}, headers=READ).json()
    assert (
        high["total"]
        == _rows(scored, "SELECT count(*) AS n FROM lead_scores WHERE quality_tier = 'HIGH'")[0][
            "n"
        ]
    )
    nowhere = client.get(f"{API}/contacts", params={"state": "Atlantis"}, headers=READ).json()
    assert nowhere == {"items": [], "total": 0, "next_cursor": None}


def test_the_total_on_its_own_is_the_first_pages_and_a_page_may_skip_it(scored, client):
    """The dashboard asks for the page without its total (at once) and for the total on its
    own (every matching contact read: seconds at 10M): both answer what a first page with its
    total answers, for every filter, contactable included."""
    for filters in (
        {},
        {"tier": "HIGH"},
        {"tier": "POOR", "min_score": 5},
        {"min_score": 40, "contactable": "true"},
        {"state": "Jalisco", "contactable": "true"},
        {"state": "Atlantis"},
    ):
        counted = client.get(f"{API}/contacts", params=filters, headers=READ).json()
        alone = client.get(f"{API}/contacts/total", params=filters, headers=READ)
        assert alone.status_code == 200, alone.text
        assert alone.json() == {"total": counted["total"]}, filters
        quick = client.get(
            f"{API}/contacts", params={**filters, "total": "false"}, headers=READ
        ).json()
        assert quick["total"] is None
        assert quick["items"] == counted["items"] and quick["next_cursor"] == counted["next_cursor"]
    refused = client.get(f"{API}/contacts/total", params={"limit": 5}, headers=READ)
    assert refused.status_code == 422


def test_a_cursor_of_another_sort_is_refused(client):
    cursor = client.get(f"{API}/contacts", params={"limit": 3}, headers=READ).json()["next_cursor"]
    response = client.get(
        f"{API}/contacts", params={"cursor": cursor, "sort": "conversion"}, headers=READ
    )
    assert response.status_code == 400 and "another sort" in response.json()["detail"]


def test_the_rescore_status_says_queued_then_scored_and_a_stalled_queue(scored, client):
    contact = BIG_ID
    status = client.get(f"{API}/contacts/{contact}/rescore", headers=READ).json()
    assert not status["queued"] and not status["stalled"]
    assert status["next_entry_waiting_since"] is None
    client.post(f"{API}/contacts/{contact}/rescore", headers=ADMIN)
    status = client.get(f"{API}/contacts/{contact}/rescore", headers=READ).json()
    assert status["queued"] and status["priority"] == 10 and not status["stalled"]
    old = datetime.now(UTC) - timedelta(minutes=6)
    _execute(
        scored, "UPDATE scoring_queue SET updated_at = :at", {"at": scored.bind_timestamp(old)}
    )
    status = client.get(f"{API}/contacts/{contact}/rescore", headers=READ).json()
    assert status["stalled"]
    assert abs(pd.Timestamp(status["next_entry_waiting_since"]) - old) < timedelta(seconds=1)
    report = score_queued(scored, AS_OF + pd.Timedelta(days=1), owner="test-run")
    assert report.claimed == 1
    status = client.get(f"{API}/contacts/{contact}/rescore", headers=READ).json()
    assert not status["queued"] and not status["stalled"]
    card = client.get(f"{API}/contacts/{contact}", headers=READ).json()
    assert pd.Timestamp(card["last_calculated_at"]) == AS_OF + pd.Timedelta(days=1)
    assert client.get(f"{API}/contacts/{BIG_ID - 1}/rescore", headers=READ).status_code == 404
