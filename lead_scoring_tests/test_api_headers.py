"""Security headers on every response (pages, static files, the JSON API and its errors), and
error texts that never echo what the caller sent, both dialects."""

import re

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lead_scoring_assets.demo.loader import load_demo_data
from lead_scoring_assets.scoring.full_rescore import rescore_all

from .api_data import ADMIN_KEY, READ_KEY, app_for
from .conftest import AS_OF

API = "/api/v1/lead-scoring"
READ = {"X-API-Key": READ_KEY}


@pytest.fixture
def scored(database):
    load_demo_data(database, 200, seed=3, as_of=AS_OF, batch_size=200)
    rescore_all(database, AS_OF)
    return database


@pytest.fixture
def client(scored):
    with TestClient(app_for(scored), raise_server_exceptions=False) as test_client:
        yield test_client


def _contact_id(database) -> int:
    with database.engine.connect() as connection:
        return connection.execute(sa.text("SELECT min(contact_id) FROM lead_scores")).scalar()


def test_every_response_carries_the_security_headers(scored, client):
    contact = _contact_id(scored)
    responses = {
        "page": client.get("/"),
        "card page": client.get("/card", params={"id": contact}),
        "script": client.get("/static/dashboard.js"),
        "css": client.get("/static/dashboard.css"),
        "schema": client.get("/openapi.json"),
        "card": client.get(f"{API}/contacts/{contact}", headers=READ),
        "list": client.get(f"{API}/contacts", headers=READ),
        "no key": client.get(f"{API}/contacts"),
        "not found": client.get(f"{API}/contacts/1234567", headers=READ),
        "invalid": client.get(f"{API}/contacts", params={"limit": 0}, headers=READ),
        "no route": client.get("/nothing-here"),
        "rescore": client.post(
            f"{API}/contacts/{contact}/rescore", headers={"X-API-Key": ADMIN_KEY}
        ),
    }
    with scored.engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE lead_score_history"))
    responses["server error"] = client.get(f"{API}/contacts/{contact}", headers=READ)
    assert responses["server error"].status_code == 500
    for name, response in responses.items():
        headers = response.headers
        policy = {
            d.split()[0]: d.split()[1:]
            for d in headers["content-security-policy"].split(";")
            if d.strip()
        }
        assert policy["default-src"] == ["'self'"], name
        assert policy["script-src"] == ["'self'"], name
        assert policy["style-src"] == ["'self'"], name
        assert policy["frame-ancestors"] == ["'none'"], name
        assert policy["object-src"] == ["'none'"], name
        assert headers["x-frame-options"] == "DENY", name
        assert headers["x-content-type-options"] == "nosniff", name
        assert headers["referrer-policy"] == "no-referrer", name
        if name not in ("script", "css"):
            assert headers["cache-control"] == "no-store", name


def test_pages_hold_no_inline_script_or_style(client):
    for path in ("/", "/card", "/analytics", "/campaigns"):
        html = client.get(path, params={"lang": "en"}).text
        scripts = re.findall(r"<script([^>]*)>", html)
        assert all('src="/static/' in s or 'type="application/json"' in s for s in scripts)
        assert not re.search(r"\sstyle=|\son[a-z]+=|<style", html), path
    script = client.get("/static/dashboard.js").text
    assert not re.search(r"style: `", script) and "innerHTML" not in script


def test_errors_never_echo_what_was_sent(client):
    sent = {
        f"{API}/contacts?4271185601=1": (422, "4271185601"),
        f"{API}/contacts?limit=98765": (422, "98765"),
        f"{API}/contacts?tier=GOLD777": (422, "GOLD777"),
        f"{API}/contacts/55512345678": (404, "55512345678"),
        f"{API}/contacts/abc98765": (422, "abc98765"),
        f"{API}/campaigns/77712345": (404, "77712345"),
        f"{API}/lookup?phone=667%20123%2045": (400, "667 123 45"),
    }
    for path, (status, value) in sent.items():
        response = client.get(path, headers=READ)
        assert response.status_code == status, (path, response.text)
        assert response.json()["detail"], path
        assert value not in response.text and value.replace(" ", "") not in response.text, path
    unknown = client.get(f"{API}/contacts?4271185601=1", headers=READ).json()["detail"]
    assert unknown == (
        "unknown query parameter name(s); known: contactable, cursor, limit, "
        "min_score, sort, state, tier, total"
    )
