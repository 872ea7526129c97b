"""The scoring API on both dialects: every endpoint, keys, masking, keyset paging (also while
scores change), bad input answered with 4xx and a message."""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lead_scoring_assets.api.app import create_app
from lead_scoring_assets.api.auth import ApiKeys
from lead_scoring_assets.api.cursor import CursorSigner
from lead_scoring_assets.api.grants import api_grants
from lead_scoring_assets.api.queries import trend
from lead_scoring_assets.cli import main
from lead_scoring_assets.contacts.phones import mask_phone
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.scoring_queue import ScoringQueue
from lead_scoring_assets.demo.loader import load_demo_data
from lead_scoring_assets.geography.ladas import build_lada_reference
from lead_scoring_assets.geography.states import normalize_state
from lead_scoring_assets.ml.conversion_features import REST_CODE, reason_code
from lead_scoring_assets.scoring.full_rescore import rescore_all

from .api_data import ADMIN_KEY, CURSOR_SECRET, LATER, READ_KEY, app_for, prepare
from .conftest import AS_OF

API = "/api/v1/lead-scoring"
READ = {"X-API-Key": READ_KEY}
ADMIN = {"X-API-Key": ADMIN_KEY}


@pytest.fixture
def scored(demo_database, templates):
    return templates.cached(demo_database, "api_data.prepare", prepare)


@pytest.fixture
def client(scored):
    with TestClient(app_for(scored), raise_server_exceptions=False) as test_client:
        yield test_client


def _rows(database, sql: str, params: dict | None = None) -> list[dict]:
    with database.engine.connect() as connection:
        return [dict(r) for r in connection.execute(sa.text(sql), params or {}).mappings()]


def _best_multi_platform(database) -> dict:
    return _rows(
        database,
        "SELECT s.*, c.phone_e164 AS phone FROM lead_scores s JOIN contacts c "
        "ON c.id = s.contact_id WHERE s.platform_count >= 2 "
        "ORDER BY s.total_score DESC, s.contact_id DESC LIMIT 1",
    )[0]


def _all_phones(database) -> list[str]:
    return [r["phone_e164"] for r in _rows(database, "SELECT phone_e164 FROM contacts")]


def test_score_card_by_id_has_the_stored_score_and_a_masked_phone(scored, client):
    row = _best_multi_platform(scored)
    response = client.get(f"{API}/contacts/{row['contact_id']}", headers=READ)
    assert response.status_code == 200
    card = response.json()
    for column in (
        "total_score",
        "quality_tier",
        "whatsapp_score",
        "instagram_score",
        "facebook_score",
        "google_score",
        "apple_score",
        "platform_count",
        "business_account_count",
        "premium_account_count",
        "calculation_version",
    ):
        assert card[column] == row[column], column
    assert card["confidence_level"] == pytest.approx(float(row["confidence_level"]))
    assert card["score_breakdown"]["total_score"] == row["total_score"]
    assert card["display_weights"] == {
        "whatsapp": 25,
        "instagram": 20,
        "facebook": 20,
        "google": 20,
        "apple": 15,
    }
    assert card["phone"] == mask_phone(row["phone"]) == f"+52 *** *** {row['phone'][-4:]}"
    assert row["phone"] not in response.text and row["phone"][3:] not in response.text
    assert card["ml_score"] is None and card["conversion_score"] is None
    assert card["history"] and card["history"][0]["new_total_score"] == row["total_score"]
    assert card["trend"] in ("improving", "steady", "declining")


def test_score_card_shows_the_ml_score_and_the_trend_of_the_history(scored, client):
    row = _best_multi_platform(scored)
    contact_id = int(row["contact_id"])
    history = _rows(
        scored,
        "SELECT old_total_score, new_total_score FROM lead_score_history "
        "WHERE contact_id = :id ORDER BY changed_at",
        {"id": contact_id},
    )
    with scored.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO ml_lead_scores VALUES (:id, 57.31, 'MEDIUM', 0.9876, '3', "
                "'ml_random_forest', :at)"
            ),
            {"id": contact_id, "at": scored.bind_timestamp(datetime.now(UTC))},
        )
    card = client.get(f"{API}/contacts/{contact_id}", headers=READ).json()
    assert card["ml_score"]["predicted_score"] == 57.31
    assert card["ml_score"]["model_version"] == "3"
    assert [h["new_total_score"] for h in card["history"]] == [
        h["new_total_score"] for h in reversed(history)
    ]
    delta = history[-1]["new_total_score"] - (
        history[-1]["old_total_score"] or history[-1]["new_total_score"]
    )
    expected = "improving" if delta > 0 else "declining" if delta < 0 else "steady"
    assert card["trend"] == expected


def test_a_score_of_an_unknown_calculation_version_shows_its_stored_values(scored, client):
    """A row of a version whose configuration this server does not know (written by a newer
    deploy, read during a rollback): its stored values, marked as of that version, without a
    breakdown; never a 500."""
    row = _best_multi_platform(scored)
    with scored.engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE lead_scores SET calculation_version = 'advanced_v9.9' "
                "WHERE contact_id = :id"
            ),
            {"id": row["contact_id"]},
        )
    response = client.get(f"{API}/contacts/{row['contact_id']}", headers=READ)
    assert response.status_code == 200, response.text
    card = response.json()
    assert (card["calculation_version"], card["is_current_version"]) == ("advanced_v9.9", False)
    assert card["score_breakdown"] is None
    assert "advanced_v9.9" in card["version_note"] and "stored values" in card["version_note"]
    for column in (
        "total_score",
        "quality_tier",
        "whatsapp_score",
        "apple_score",
        "platform_count",
        "business_account_count",
        "premium_account_count",
    ):
        assert card[column] == row[column], column


def test_trend_over_the_last_30_days():
    now = datetime(2026, 11, 24, tzinfo=UTC)

    def change(days_ago, old, new):
        return {
            "changed_at": now - timedelta(days=days_ago),
            "old_total_score": old,
            "new_total_score": new,
        }

    assert trend([], now) == "steady"
    assert trend([change(0, None, 40)], now) == "steady"
    assert trend([change(0, 40, 55), change(40, None, 40)], now) == "improving"
    assert trend([change(0, 55, 50), change(10, 40, 55), change(60, None, 40)], now) == "improving"
    assert trend([change(0, 55, 30), change(10, 40, 55)], now) == "declining"
    assert trend([change(0, 55, 40), change(10, 40, 55)], now) == "steady"
    assert trend([change(45, 40, 80)], now) == "steady"


def test_lookup_by_phone_in_any_mexican_format(scored, client):
    row = _best_multi_platform(scored)
    national = row["phone"][3:]
    for text in (
        row["phone"],
        national,
        f"{national[:3]} {national[3:6]} {national[6:]}",
        f"({national[:3]}) {national[3:6]}-{national[6:]}",
        f"+52 {national}",
    ):
        response = client.get(f"{API}/lookup", params={"phone": text}, headers=READ)
        assert response.status_code == 200, text
        assert response.json()["contact_id"] == row["contact_id"]


def test_lookup_by_phone_in_the_old_mobile_forms(scored, client):
    row = _best_multi_platform(scored)
    national = row["phone"][3:]
    spaced = f"{national[:3]} {national[3:6]} {national[6:]}"
    for text in (
        f"+52 1 {spaced}",
        f"521{national}",
        f"044 {spaced}",
        f"045-{national}",
        f"0052 1 {spaced}",
    ):
        response = client.get(f"{API}/lookup", params={"phone": text}, headers=READ)
        assert response.status_code == 200, (text, response.text)
        assert response.json()["contact_id"] == row["contact_id"]
        assert response.json()["phone"] == f"+52 *** *** {national[-4:]}"


def test_bad_input_gets_4xx_with_a_message_never_the_phone(scored, client):
    def error(path, status, **params):
        response = client.get(f"{API}{path}", params=params, headers=READ)
        assert response.status_code == status, (path, params, response.text)
        detail = response.json()["detail"]
        assert isinstance(detail, str) and detail
        return detail

    assert error("/contacts/99999999", 404) == "no contact with this id"
    assert "not a phone number" in error("/lookup", 400, phone="12345678901234567890")
    assert "not a Mexican" in error("/lookup", 400, phone="+1 212 555 0101")
    assert "not a Mexican" in error("/lookup", 400, phone="667 12")
    assert "no contact has this phone number" == error("/lookup", 404, phone="999 000 0000")
    assert (
        "9990000"
        not in client.get(f"{API}/lookup", params={"phone": "999 000 0000"}, headers=READ).text
    )
    assert "query.limit" in error("/contacts", 422, limit=0)
    assert "query.tier" in error("/contacts", 422, tier="GOLD")
    assert "unknown query parameter name(s)" in error("/contacts", 422, teir="HIGH")
    assert "query.cursor" in error("/contacts", 422, cursor="")
    assert "path.contact_id" in error("/contacts/abc", 422)
    assert "path.contact_id" in error(f"/contacts/{2**63}", 422)
    assert "query.phone" in error("/lookup", 422)
    assert "query.phone" in error("/lookup", 422, phone="hello")
    with_phone = error("/lookup", 422, phone="5" * 41)
    assert "5" * 41 not in with_phone
    assert client.get("/api/v1/nothing-here", headers=READ).json() == {"detail": "Not Found"}


def test_a_tampered_cursor_is_refused(scored, client):
    first = client.get(f"{API}/contacts", params={"limit": 5}, headers=READ).json()
    cursor = first["next_cursor"]
    payload, signature = cursor.split(".")
    forged = CursorSigner("another secret").encode(100, 1)
    flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    for bad in (f"{flipped}.{signature}", forged, "garbage", "a.b.c", f"{payload}.", "%%%.###"):
        response = client.get(f"{API}/contacts", params={"cursor": bad}, headers=READ)
        assert response.status_code == 400, bad
        assert "cursor" in response.json()["detail"]
    assert client.get(f"{API}/contacts", params={"cursor": cursor}, headers=READ).status_code == 200


def _walk(client, limit: int, **filters) -> list[dict]:
    items, cursor = [], None
    while True:
        params = {"limit": limit, **filters, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"{API}/contacts", params=params, headers=READ).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_keyset_pages_walk_every_contact_best_first(scored, client):
    expected = _rows(
        scored,
        "SELECT s.contact_id, s.total_score, c.phone_e164 FROM lead_scores "
        "s JOIN contacts c ON c.id = s.contact_id "
        "ORDER BY s.total_score DESC, s.contact_id DESC",
    )
    items = _walk(client, 200)
    assert [i["contact_id"] for i in items] == [r["contact_id"] for r in expected]
    assert [i["phone"] for i in items[:50]] == [mask_phone(r["phone_e164"]) for r in expected[:50]]
    high = _walk(client, 37, tier="HIGH")
    assert high and {i["quality_tier"] for i in high} == {"HIGH"}
    assert len(high) == sum(
        1
        for r in _rows(scored, "SELECT quality_tier FROM lead_scores")
        if r["quality_tier"] == "HIGH"
    )
    assert all(i["total_score"] >= 60 for i in _walk(client, 100, min_score=60))
    cdmx = _walk(client, 50, state="cdmx")
    assert cdmx and {normalize_state(i["state_name"]) for i in cdmx} == {"CIUDAD DE MEXICO"}
    spellings = _rows(scored, "SELECT state_name FROM contacts")
    assert len(cdmx) == sum(
        1 for r in spellings if normalize_state(r["state_name"]) == "CIUDAD DE MEXICO"
    )
    assert _walk(client, 10, state="Atlantis") == []


def test_paging_stays_stable_while_scores_change(scored, client):
    """Another connection changes scores between pages: every contact whose score did not
    change is listed exactly once, and the walk never goes back up the order."""
    first = client.get(f"{API}/contacts", params={"limit": 100}, headers=READ).json()
    seen = first["items"]
    boundary = seen[-1]["total_score"]
    movers = [
        r["contact_id"]
        for r in _rows(
            scored,
            "SELECT contact_id FROM lead_scores WHERE total_score < :b - 5 "
            "ORDER BY contact_id LIMIT 20",
            {"b": boundary},
        )
    ]
    fallers = [i["contact_id"] for i in seen[:10]]
    other = sa.create_engine(scored.url)
    with other.begin() as connection:
        connection.execute(
            sa.text("UPDATE lead_scores SET total_score = 100 WHERE contact_id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": movers},
        )
        connection.execute(
            sa.text("UPDATE lead_scores SET total_score = 0 WHERE contact_id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": fallers},
        )
    other.dispose()
    cursor = first["next_cursor"]
    while cursor:
        page = client.get(
            f"{API}/contacts", params={"limit": 100, "cursor": cursor}, headers=READ
        ).json()
        seen += page["items"]
        cursor = page["next_cursor"]
    keys = [(-i["total_score"], -i["contact_id"]) for i in seen]
    assert keys[100:] == sorted(keys[100:]) and keys[:100] == sorted(keys[:100])
    unchanged = _rows(
        scored,
        "SELECT contact_id FROM lead_scores WHERE contact_id NOT IN "
        f"({', '.join(str(i) for i in movers + fallers)})",
    )
    counts = {}
    for item in seen:
        counts[item["contact_id"]] = counts.get(item["contact_id"], 0) + 1
    assert all(counts.get(r["contact_id"]) == 1 for r in unchanged)
    assert not any(m in counts for m in movers)  # raised above the cursor after page one


def test_analytics_reads_the_latest_run_and_its_history(scored, client):
    response = client.get(f"{API}/analytics", headers=READ)
    assert response.status_code == 200
    body = response.json()
    latest = body["latest"]
    assert latest["run_id"] == "run-2"
    assert latest["contacts"] == scored.count("lead_scores")
    assert sum(latest["tier_distribution"].values()) == latest["contacts"]
    assert set(latest["platform_success"]) == {
        "whatsapp",
        "instagram",
        "facebook",
        "google",
        "apple",
    }
    assert sum(s["contacts"] for s in latest["by_state"]) == latest["contacts"]
    assert {"state", "contacts", "top_leads", "average_score", "validation_success_rate"} <= set(
        latest["by_state"][0]
    )
    assert [h["contacts"] for h in body["history"]] == [latest["contacts"]] * 2
    assert body["history"][0]["computed_at"] < body["history"][1]["computed_at"]
    with scored.engine.begin() as connection:  # the API never recomputes: it reads the table
        connection.execute(sa.text("DELETE FROM lead_scores"))
    assert client.get(f"{API}/analytics", headers=READ).json()["latest"] == latest
    with scored.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM lead_scoring_analytics_history"))
    response = client.get(f"{API}/analytics", headers=READ)
    assert response.status_code == 404
    assert "lead_scoring_analytics" in response.json()["detail"]


def test_keys_read_and_admin(scored, client):
    contact = _best_multi_platform(scored)["contact_id"]
    for headers in ({}, {"X-API-Key": ""}, {"X-API-Key": "wrong"}, {"X-API-Key": READ_KEY + "x"}):
        for method, path in (
            ("GET", f"/contacts/{contact}"),
            ("GET", "/contacts"),
            ("GET", "/analytics"),
            ("GET", "/lookup?phone=1"),
            ("POST", f"/contacts/{contact}/rescore"),
        ):
            response = client.request(method, f"{API}{path}", headers=headers)
            assert response.status_code == 401, (headers, path)
            assert "API key" in response.json()["detail"]
    response = client.post(f"{API}/contacts/{contact}/rescore", headers=READ)
    assert response.status_code == 403
    assert "may read but not rescore" in response.json()["detail"]
    assert client.get(f"{API}/contacts/{contact}", headers=ADMIN).status_code == 200


def test_rescore_enqueues_at_top_priority_and_bumps_a_queued_entry(scored, client):
    contact = int(_best_multi_platform(scored)["contact_id"])
    with scored.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM scoring_queue"))
    response = client.post(f"{API}/contacts/{contact}/rescore", headers=ADMIN)
    assert response.status_code == 202
    assert response.json()["priority"] == 10 and response.json()["version"] == 1
    queue = _rows(scored, "SELECT contact_id, priority, version FROM scoring_queue")
    assert queue == [{"contact_id": contact, "priority": 10, "version": 1}]
    with scored.engine.begin() as connection:  # a leased, lower-priority entry
        connection.execute(sa.text("UPDATE scoring_queue SET priority = 5, leased_by = 'run-x'"))
    again = client.post(f"{API}/contacts/{contact}/rescore", headers=ADMIN).json()
    assert (again["priority"], again["version"]) == (10, 2)
    assert _rows(scored, "SELECT priority, version, leased_by FROM scoring_queue") == [
        {"priority": 10, "version": 2, "leased_by": "run-x"}
    ]
    response = client.post(f"{API}/contacts/99999999/rescore", headers=ADMIN)
    assert response.status_code == 404
    assert scored.count("scoring_queue") == 1


def test_rescore_wakes_an_entry_waiting_for_a_row_due_later(scored, client):
    """An entry waiting (``leased_until`` ahead, no run holding it) is claimable at once after
    a rescore answered 202; one leased by a running run keeps its lease."""
    contact = int(_best_multi_platform(scored)["contact_id"])
    ahead = scored.bind_timestamp(datetime.now(UTC) + timedelta(hours=20))
    with scored.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM scoring_queue"))
        connection.execute(
            sa.text(
                "INSERT INTO scoring_queue (contact_id, priority, created_at, updated_at, "
                "leased_until) VALUES (:id, 5, :at, :at, :ahead)"
            ),
            {"id": contact, "at": scored.bind_timestamp(datetime.now(UTC)), "ahead": ahead},
        )
    assert ScoringQueue(scored).depth().claimable == 0
    assert client.post(f"{API}/contacts/{contact}/rescore", headers=ADMIN).status_code == 202
    assert _rows(scored, "SELECT leased_by, leased_until, version FROM scoring_queue") == [
        {"leased_by": None, "leased_until": None, "version": 2}
    ]
    assert ScoringQueue(scored).depth().claimable == 1
    with scored.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE scoring_queue SET leased_by = 'run-x', leased_until = :ahead"),
            {"ahead": ahead},
        )
    lease = _rows(scored, "SELECT leased_by, leased_until FROM scoring_queue")
    assert client.post(f"{API}/contacts/{contact}/rescore", headers=ADMIN).status_code == 202
    assert _rows(scored, "SELECT leased_by, leased_until FROM scoring_queue") == lease
    assert ScoringQueue(scored).depth().claimable == 0


def test_unscored_contact_and_unexpected_errors_answer_json(scored, client):
    contact = int(_best_multi_platform(scored)["contact_id"])
    with scored.engine.begin() as connection:
        connection.execute(
            sa.text("DELETE FROM lead_scores WHERE contact_id = :id"), {"id": contact}
        )
    response = client.get(f"{API}/contacts/{contact}", headers=READ)
    assert response.status_code == 404
    assert "has not been scored yet" in response.json()["detail"]
    with scored.engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE lead_score_history"))
    response = client.get(f"{API}/contacts/{contact + 1}", headers=READ)
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error; the server log names the error"}


def test_conversion_scores_appear_with_their_reasons(scored):
    best = _best_multi_platform(scored)
    contact = int(best["contact_id"])
    with scored.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO conversion_scores (contact_id, conversion_probability, "
                "probability_decile, model_version, method, calculated_at, up_feature_1, "
                "up_effect_1, up_feature_2, up_effect_2, down_feature_1, down_effect_1) "
                "VALUES (:id, 0.0421, 9, '2', 'hgb', :at, :whatsapp, 0.5, :rest, 0.125, "
                ":recency, -0.25)"
            ),
            {
                "id": contact,
                "at": scored.bind_timestamp(AS_OF),
                "whatsapp": reason_code("whatsapp"),
                "rest": REST_CODE,
                "recency": reason_code("recency"),
            },
        )
    with TestClient(app_for(scored)) as test_client:
        card = test_client.get(f"{API}/contacts/{contact}", headers=READ).json()
        other = test_client.get(f"{API}/contacts/{contact + 1}", headers=READ).json()
    conversion = card["conversion_score"]
    assert conversion["conversion_probability"] == pytest.approx(0.0421, rel=1e-6)
    assert (
        conversion["probability_decile"],
        conversion["model_version"],
        conversion["method"],
    ) == (9, "2", "hgb")
    reasons = conversion["reasons"]
    whatsapp = card["whatsapp_score"]
    assert reasons["raises"] == [
        {
            "feature": "whatsapp",
            "words": f"Validated on WhatsApp ({whatsapp}/25)",
            "text": {
                "es": f"WhatsApp validado ({whatsapp}/25)",
                "en": f"Validated on WhatsApp ({whatsapp}/25)",
            },
            "effect": 0.5,
        }
    ]
    assert [r["feature"] for r in reasons["lowers"]] == ["recency"]
    assert reasons["lowers"][0]["text"]["es"].startswith("Validado ")
    assert reasons["rest"]["effect"] == 0.125
    logit = np.log(0.0421 / 0.9579) - 0.375
    assert reasons["average_probability"] == pytest.approx(1 / (1 + np.exp(-logit)), abs=1e-6)
    assert other["conversion_score"] is None


def test_uplift_appears_with_its_reasons_and_is_null_without_a_champion(scored):
    contact = int(_best_multi_platform(scored)["contact_id"])
    with TestClient(app_for(scored)) as test_client:
        before = test_client.get(f"{API}/contacts/{contact}", headers=READ).json()
        page = test_client.get("/card", params={"id": contact, "lang": "es"}).text
    assert before["uplift_score"] is None
    assert 'id="uplift-score"' in page and "Efecto del mensaje (uplift)" in page
    with scored.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO uplift_scores (contact_id, uplift, uplift_decile, model_version, "
                "method, calculated_at, up_feature_1, up_effect_1, up_feature_2, up_effect_2, "
                "down_feature_1, down_effect_1) "
                "VALUES (:id, 0.0231, 10, '4', 'x_learner', :at, :recency, 0.012, :rest, 0.001, "
                ":carrier, -0.004)"
            ),
            {
                "id": contact,
                "at": scored.bind_timestamp(AS_OF),
                "recency": reason_code("recency"),
                "rest": REST_CODE,
                "carrier": reason_code("carrier"),
            },
        )
    with TestClient(app_for(scored)) as test_client:
        card = test_client.get(f"{API}/contacts/{contact}", headers=READ).json()
    uplift = card["uplift_score"]
    assert uplift["uplift"] == pytest.approx(0.0231, rel=1e-6)
    assert (uplift["uplift_decile"], uplift["model_version"], uplift["method"]) == (
        10,
        "4",
        "x_learner",
    )
    reasons = uplift["reasons"]
    assert [r["feature"] for r in reasons["raises"]] == ["recency"]
    assert reasons["raises"][0]["text"]["es"].startswith("Validado ")
    assert reasons["raises"][0]["effect"] == pytest.approx(0.012)
    assert [r["feature"] for r in reasons["lowers"]] == ["carrier"]
    assert reasons["lowers"][0]["text"]["es"].startswith("Operador")
    assert reasons["rest"]["effect"] == pytest.approx(0.001)


@contextmanager
def driver_statements(engine: sa.Engine) -> Iterator[list[str]]:
    """Every statement the engine's connections hand to the driver, through SQLAlchemy or a
    cursor of their own: sqlite3's trace callback (parameters written in), psycopg's
    cursor class."""
    seen: list[str] = []
    checked_out = []

    class Recording(psycopg.Cursor):
        def execute(self, query, params=None, **options):
            seen.append(str(query))
            return super().execute(query, params, **options)

    def record(dbapi_connection, _record, _proxy):
        checked_out.append(dbapi_connection)
        if engine.dialect.name == "sqlite":
            dbapi_connection.set_trace_callback(seen.append)
        else:
            dbapi_connection.cursor_factory = Recording

    sa.event.listen(engine, "checkout", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "checkout", record)
        for dbapi_connection in checked_out:
            if engine.dialect.name == "sqlite":
                dbapi_connection.set_trace_callback(None)
            else:
                dbapi_connection.cursor_factory = psycopg.Cursor


def test_a_card_is_read_in_one_statement_keyed_by_id(scored):
    """The card's row with its ML, conversion and uplift scores, its last changes and what
    decides its suppression reasons (its suppressions rows, the unprocessed replies that may be
    from its number) in one round trip on both dialects; by phone, the id is looked up first,
    so that the card's statement is always keyed by id (planned for one partition)."""
    row = _best_multi_platform(scored)
    reader = app_for(scored).state.reader
    with driver_statements(reader.engine) as statements:
        card = reader.score_card(int(row["contact_id"]))
        found = reader.score_card_by_phone(row["phone"][3:])
    assert card["contact_id"] == found["contact_id"] == row["contact_id"]
    assert card["uplift_score"] is None and card["history"]
    assert len(statements) == 3, statements
    card_statements = [s for s in statements if "lead_scores" in s]
    assert len(card_statements) == 2
    key = re.escape(str(row["contact_id"]))
    assert all(
        re.search(rf"c\.id = (%\(key\)s|{key}) ORDER BY c\.id LIMIT 1\s*$", s)
        for s in card_statements
    ), card_statements


def test_no_response_carries_a_full_phone_number(scored, client):
    phones = _all_phones(scored)
    bodies = [
        client.get(f"{API}/contacts", params={"limit": 200}, headers=READ).text,
        client.get(f"{API}/analytics", headers=READ).text,
    ]
    for phone in phones[:50]:
        bodies.append(client.get(f"{API}/lookup", params={"phone": phone}, headers=READ).text)
    text = "\n".join(bodies)
    assert not [p for p in phones if p in text or p[3:] in text]
    assert text.count("+52 *** *** ") >= 250


def test_dashboard_pages_are_served_offline_in_spanish_and_english(client):
    spanish = client.get("/")
    assert spanish.status_code == 200 and 'lang="es"' in spanish.text
    assert "Buscar por teléfono" in spanish.text
    english = client.get("/analytics", params={"lang": "en"})
    assert "Tier distribution" in english.text and 'lang="en"' in english.text
    assert "Calcular" in client.get("/card", params={"id": 1}).text
    for asset in ("/static/dashboard.js", "/static/dashboard.css"):
        response = client.get(asset)
        assert response.status_code == 200
        for page in (spanish, english, response):
            external = set(
                re.findall(r"https?://[^\s\"'`)]+|(?:src|href)=\"//[^\"]*", page.text)
            ) - {"http://www.w3.org/2000/svg"}
            assert external == set(), asset
    assert client.get("/docs").status_code == 404  # Swagger UI would load from a CDN
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {
        f"{API}/contacts/{{contact_id}}",
        f"{API}/lookup",
        f"{API}/contacts",
        f"{API}/contacts/total",
        f"{API}/analytics",
        f"{API}/contacts/{{contact_id}}/rescore",
        f"{API}/forget",
        f"{API}/campaigns",
        f"{API}/campaigns/{{campaign_id}}",
        f"{API}/proof",
        f"{API}/key",
        f"{API}/exports",
        f"{API}/exports/{{run_id}}",
    }


def test_serve_refuses_to_start_without_keys(monkeypatch, capsys):
    monkeypatch.delenv("LEAD_SCORING_API_KEYS", raising=False)
    monkeypatch.delenv("LEAD_SCORING_ADMIN_KEYS", raising=False)
    assert main(["serve", "--port", "1"]) == 1
    assert "LEAD_SCORING_API_KEYS" in capsys.readouterr().err


def test_cursor_round_trip():
    signer = CursorSigner(CURSOR_SECRET)
    assert signer.decode(signer.encode(87, 123456)) == (87, 123456, "score")
    assert signer.decode(signer.encode(0.25, 2**60 + 1, "conversion")) == (
        0.25,
        2**60 + 1,
        "conversion",
    )


@pytest.mark.postgres
def test_the_documented_grants_suffice_and_survive_a_full_rescoring(postgres_url):
    """A read-only role plus the queue upsert serves every endpoint, also after a full
    rescoring swapped in a new lead_scores table, and cannot write the scores."""
    owner = Database(postgres_url)
    owner.upgrade()
    owner.replace_rows("ladas_reference", build_lada_reference())
    load_demo_data(owner, 500, seed=3, as_of=AS_OF)
    prepare(owner)
    role = f"api_{owner.url.database[-12:]}"
    with owner.engine.begin() as connection:
        connection.execute(sa.text(f'CREATE ROLE "{role}" LOGIN'))
        for statement in api_grants(f'"{role}"', "CURRENT_USER", f'"{owner.url.database}"'):
            connection.execute(sa.text(statement))
    as_role = owner.url.set(username=role).render_as_string(hide_password=False)
    try:
        contact = int(_best_multi_platform(owner)["contact_id"])
        rescore_all(owner, LATER + timedelta(days=1), run_id="run-3")  # swaps lead_scores
        app = create_app(
            as_role, keys=ApiKeys((READ_KEY,), (ADMIN_KEY,)), cursor_secret=CURSOR_SECRET
        )
        with TestClient(app) as api:
            assert api.get(f"{API}/contacts/{contact}", headers=READ).status_code == 200
            assert api.get(f"{API}/contacts", headers=READ).status_code == 200
            assert (
                api.get(f"{API}/contacts", params={"contactable": "true"}, headers=READ).status_code
                == 200
            )
            assert api.get(f"{API}/analytics", headers=READ).status_code == 200
            assert api.get(f"{API}/campaigns", headers=READ).json()["items"]
            for _ in range(2):
                assert (
                    api.post(f"{API}/contacts/{contact}/rescore", headers=ADMIN).status_code == 202
                )
            phone = _rows(owner, "SELECT phone_e164 FROM contacts WHERE id = :id", {"id": contact})[
                0
            ]["phone_e164"]
            refused = api.post(f"{API}/forget", json={"phone": phone}, headers=ADMIN)
            assert refused.status_code == 503
            assert "may not delete" in refused.json()["detail"]
            assert phone[3:] not in refused.text
        assert owner.count("suppressions") == 0
        assert (
            _rows(owner, "SELECT count(*) AS n FROM contacts WHERE id = :id", {"id": contact})[0][
                "n"
            ]
            == 1
        )
        reader = sa.create_engine(as_role)
        with (
            pytest.raises(sa.exc.ProgrammingError, match="permission denied"),
            reader.begin() as connection,
        ):
            connection.execute(sa.text("UPDATE lead_scores SET total_score = 100"))
        reader.dispose()
    finally:
        with owner.engine.begin() as connection:
            connection.execute(sa.text(f'DROP OWNED BY "{role}"'))
            connection.execute(sa.text(f'DROP ROLE "{role}"'))
        owner.dispose()


def test_a_database_error_never_carries_the_looked_up_phone(scored):
    phone = _best_multi_platform(scored)["phone"]
    with scored.engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE ml_lead_scores"))
    reader = app_for(scored).state.reader
    with pytest.raises(sa.exc.DBAPIError) as raised:
        reader.score_card_by_phone(phone)
    assert "ml_lead_scores" in str(raised.value)
    assert phone not in str(raised.value) and phone[3:] not in str(raised.value)
    reader.engine.dispose()
