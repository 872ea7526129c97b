"""The dashboard in a real browser (Playwright driving Debian's Chromium) against the real
server (``lead-scoring serve`` in a subprocess), on both dialects: enter a key, search a phone,
open its card, check the numbers against the database, queue it, read the analytics.

Skipped with the reason where Chromium is missing (``apt-get install chromium``), failed
instead when ``LEAD_SCORING_REQUIRE_BROWSER=1`` (CI). Screenshots go to
``$LEAD_SCORING_SCREENSHOTS`` (the README's come from ``docs/screenshots``, on SQLite), else to
the test's temporary folder.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect, sync_playwright

from lead_scoring_assets.contacts.phones import mask_phone
from lead_scoring_assets.ml.conversion_features import REST_CODE, reason_code
from lead_scoring_assets.ml.conversion_scores import write_conversion_scores

from .api_data import ADMIN_KEY, LATER, READ_KEY, prepare

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("LEAD_SCORING_REQUIRE_BROWSER") == "1":
            pytest.fail(message + " and LEAD_SCORING_REQUIRE_BROWSER=1")
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture
def server_log(tmp_path) -> Path:
    return tmp_path / "server.log"


@pytest.fixture
def server(demo_database, server_log):
    prepare(demo_database)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ,
           "LEAD_SCORING_DATABASE_URL": demo_database.url.render_as_string(hide_password=False),
           "LEAD_SCORING_API_KEYS": READ_KEY, "LEAD_SCORING_ADMIN_KEYS": ADMIN_KEY}
    log = server_log.open("w")
    process = subprocess.Popen([sys.executable, "-m", "lead_scoring_assets.cli", "serve",
                                "--port", str(port)], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/openapi.json", timeout=2).close()
            break
        except (urllib.error.URLError, ConnectionError):
            assert process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not answer within 60 s"
            time.sleep(0.3)
    yield base
    process.terminate()
    process.wait(timeout=30)
    log.close()


def _row(database, sql: str, params: dict | None = None) -> dict:
    with database.engine.connect() as connection:
        return dict(connection.execute(sa.text(sql), params or {}).mappings().first())


def test_search_a_phone_open_its_card_queue_it_and_read_the_analytics(
        chromium, server, server_log, demo_database, database_url, tmp_path):
    shots = Path(os.environ.get("LEAD_SCORING_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    save = database_url.startswith("sqlite")
    contact = _row(demo_database,
                   "SELECT s.*, c.phone_e164 FROM lead_scores s JOIN contacts c "
                   "ON c.id = s.contact_id WHERE s.platform_count >= 3 "
                   "ORDER BY s.total_score DESC, s.contact_id DESC LIMIT 1")
    phone = contact["phone_e164"]
    requested = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("request", lambda request: requested.append(request.url))

        page.goto(f"{server}/")
        page.fill("#api-key", ADMIN_KEY)
        page.click("#key-form button[type=submit]")
        expect(page.locator("body")).to_have_attribute("data-loaded", "true")
        expect(page.locator("#contacts tbody tr")).to_have_count(50)
        expect(page.locator("#contacts tbody tr").first).to_have_attribute(
            "data-contact-id", str(contact["contact_id"]))
        if save:
            page.screenshot(path=shots / "dashboard_contacts.png")

        national = phone[3:]
        page.fill("#phone", f"{national[:3]} {national[3:6]} {national[6:]}")
        page.click("#phone-search button")
        row = page.locator(f"#contacts tbody tr[data-contact-id='{contact['contact_id']}']")
        expect(page.locator("#contacts tbody tr")).to_have_count(1)
        expect(row).to_contain_text(mask_phone(phone))
        row.locator("a.open").click()

        expect(page.locator("body")).to_have_attribute("data-loaded", "true")
        assert page.url.endswith(f"/card?id={contact['contact_id']}&lang=es")
        expect(page.locator("#total-score")).to_have_text(str(contact["total_score"]))
        expect(page.locator("#tier")).to_contain_text(
            {"PREMIUM": "Premium", "HIGH": "Alto", "MEDIUM": "Medio"}[contact["quality_tier"]])
        for platform, weight in (("whatsapp", 25), ("instagram", 20), ("facebook", 20),
                                 ("google", 20), ("apple", 15)):
            expect(page.locator(f".bar-row[data-platform='{platform}'] .bar-value")).to_have_text(
                f"{contact[f'{platform}_score']}/{weight}")
        expect(page.locator("#business-accounts")).to_have_text(
            str(contact["business_account_count"]))
        expect(page.locator("#bonus tr.sum")).to_contain_text("+")
        expect(page.locator("#version-note")).to_be_hidden()
        expect(page.locator("#card-phone")).to_have_text(mask_phone(phone))
        assert national not in page.content()
        page.click("#calculate")
        expect(page.locator("#calculate-result")).to_have_text(
            "En cola para recalcular (prioridad 10)")
        queued = _row(demo_database, "SELECT priority FROM scoring_queue WHERE contact_id = :id",
                      {"id": contact["contact_id"]})
        assert queued["priority"] == 10
        if save:
            page.screenshot(path=shots / "dashboard_score_card.png", full_page=True)

        page.click("header nav a[href^='/analytics']")
        expect(page.locator("body")).to_have_attribute("data-loaded", "true")
        contacts = demo_database.count("contacts")
        expect(page.locator(".tile[data-figure='contacts'] strong")).to_have_text(
            f"{contacts:,}")
        expect(page.locator("#tier-chart svg path")).not_to_have_count(0)
        expect(page.locator("#score-chart svg rect")).to_have_count(6)
        expect(page.locator("#platform-chart svg rect")).to_have_count(5)
        expect(page.locator("#history-chart svg circle")).to_have_count(2)
        expect(page.locator("#states tbody tr")).not_to_have_count(0)
        if save:
            page.screenshot(path=shots / "dashboard_analytics.png", full_page=True)

        page.click("#lang-switch")
        expect(page.locator("body")).to_have_attribute("data-loaded", "true")
        expect(page.locator("h2").first).to_have_text("Tier distribution")
        browser.close()
    assert all(url.startswith(server) for url in requested), "a request left the server"
    log = server_log.read_text()
    assert "GET /api/v1/lead-scoring/lookup?phone=[hidden] HTTP/1.1\" 200" in log
    assert national[-7:] not in log


def test_a_card_of_another_calculation_version_says_so(chromium, server, demo_database):
    """A score of an older known version: its breakdown, with a note naming its version; of a
    version the server does not know: its stored scores and the note, no breakdown. No
    error either way."""
    older, unknown = (_row(demo_database,
                           "SELECT * FROM lead_scores WHERE platform_count >= 2 "
                           "ORDER BY contact_id LIMIT 1 OFFSET :n", {"n": n}) for n in (0, 1))
    with demo_database.engine.begin() as connection:
        for row, version in ((older, "advanced_v1.0"), (unknown, "advanced_v9.9")):
            connection.execute(sa.text("UPDATE lead_scores SET calculation_version = :v "
                                       "WHERE contact_id = :id"),
                               {"v": version, "id": row["contact_id"]})
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{server}/card?id={older['contact_id']}&lang=en")
        page.fill("#api-key", READ_KEY)
        page.click("#key-form button[type=submit]")
        expect(page.locator("body")).to_have_attribute("data-loaded", "true")
        expect(page.locator("#version-note")).to_have_text(
            "Computed by advanced_v1.0, not the current advanced_v1.1: breakdown read with "
            "advanced_v1.0's configuration. Recomputed at the next rescoring.")
        expect(page.locator("#factors-section")).to_be_visible()
        expect(page.locator("#bonus tr.sum")).to_contain_text("+")
        expect(page.locator("#error")).to_be_hidden()

        page.goto(f"{server}/card?id={unknown['contact_id']}&lang=es")
        expect(page.locator("body")).to_have_attribute("data-loaded", "true")
        expect(page.locator("#version-note")).to_contain_text(
            "Calculada con advanced_v9.9, no con la versión actual advanced_v1.1: solo los "
            "valores guardados")
        expect(page.locator("#total-score")).to_have_text(str(unknown["total_score"]))
        expect(page.locator(".bar-row[data-platform='whatsapp'] .bar-value")).to_have_text(
            f"{unknown['whatsapp_score']}/25")
        expect(page.locator(".bar-row[data-platform='whatsapp'] .bar-note")).to_have_text("")
        expect(page.locator("#factors-section")).to_be_hidden()
        expect(page.locator("#bonus-section")).to_be_hidden()
        expect(page.locator("#error")).to_be_hidden()
        browser.close()


def test_the_campaigns_page_shows_predicted_against_measured(chromium, server, demo_database):
    """A demo campaign (no control group) planned with an expectation: its row in "Previsto
    vs medido" with the expected figures and nothing measured yet."""
    with demo_database.engine.begin() as connection:
        connection.execute(sa.text(
            "UPDATE campaigns SET expected_incremental_conversions = 12.5, "
            "expected_incremental_low = 4.25, expected_incremental_high = 20.75, "
            "expected_profit = 1300, expected_profit_low = 290, expected_profit_high = 2310, "
            "select_rule = 'max_profit', rank_by = 'uplift' WHERE id = 1"))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{server}/campaigns")
        page.fill("#api-key", READ_KEY)
        page.click("#key-form button[type=submit]")
        expect(page.locator("body")).to_have_attribute("data-loaded", "true")
        expect(page.locator("#predicted tbody tr")).to_have_count(1)
        cells = page.locator("#predicted tbody tr[data-campaign-id='1'] td")
        expect(cells.nth(1)).to_have_text("12.5 [4.25, 20.75]")
        expect(cells.nth(2)).to_have_text("Sin medición todavía")
        expect(cells.nth(3)).to_have_text("—")
        expect(cells.nth(4)).to_have_text("$1,300 [$290, $2,310]")
        expect(page.locator("#error")).to_be_hidden()
        browser.close()


def test_card_reasons_proof_page_and_figures_in_both_languages(
        chromium, server, demo_database, database_url, tmp_path):
    """The card words its reasons as the contact's facts with the rest, in Spanish and
    English; the proof page lists every campaign with outcomes, latest first, by tier; the
    top-leads tile is the state table's sum; one analytics run shows no trend. Screenshots of
    the Spanish card's reasons and proof page on SQLite."""
    shots = Path(os.environ.get("LEAD_SCORING_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    save = database_url.startswith("sqlite")
    contact = _row(demo_database,
                   "SELECT * FROM lead_scores WHERE platform_count >= 3 AND whatsapp_score > 0 "
                   "ORDER BY total_score DESC, contact_id DESC LIMIT 1")
    write_conversion_scores(demo_database, None, LATER)
    with demo_database.engine.begin() as connection:
        connection.execute(sa.text(
            "UPDATE conversion_scores SET conversion_probability = 0.08, model_version = '1', "
            "method = 'lr', up_feature_1 = :whatsapp, up_effect_1 = 0.5, up_feature_2 = :rest, "
            "up_effect_2 = 0.125, down_feature_1 = :carrier, down_effect_1 = -0.25 "
            "WHERE contact_id = :id"),
            {"id": contact["contact_id"], "whatsapp": reason_code("whatsapp"),
             "rest": REST_CODE, "carrier": reason_code("carrier")})
        connection.execute(sa.text(
            "DELETE FROM lead_scoring_analytics_history WHERE run_id = 'run-1'"))
    with demo_database.engine.connect() as connection:
        campaigns = connection.execute(sa.text(
            "SELECT id FROM campaigns c WHERE EXISTS (SELECT 1 FROM campaign_outcomes o "
            "WHERE o.campaign_id = c.id) ORDER BY sent_at DESC, id DESC")).scalars().all()
    top = _row(demo_database, "SELECT count(*) AS n FROM lead_scores "
                              "WHERE quality_tier IN ('PREMIUM', 'HIGH')")["n"]
    whatsapp = contact["whatsapp_score"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{server}/card?id={contact['contact_id']}&lang=es")
        page.fill("#api-key", READ_KEY)
        page.click("#key-form button[type=submit]")
        for lang, fact, carrier, rest in (
                ("es", f"WhatsApp validado ({whatsapp}/25)", "Operador", "Todo lo demás"),
                ("en", f"Validated on WhatsApp ({whatsapp}/25)", "Carrier", "Everything else")):
            page.goto(f"{server}/card?id={contact['contact_id']}&lang={lang}")
            expect(page.locator("body")).to_have_attribute("data-loaded", "true")
            expect(page.locator("#conversion-reasons li.raises")).to_have_text(
                f"▲ {fact} (+0.5)")
            expect(page.locator("#conversion-reasons li.lowers")).to_contain_text(carrier)
            expect(page.locator("#conversion-reasons li.rest")).to_contain_text(rest)
            expect(page.locator("#reasons-note")).to_contain_text(
                {"es": "contacto promedio", "en": "average contact"}[lang])
            expect(page.locator("#error")).to_be_hidden()
            if save and lang == "es":
                page.screenshot(path=shots / "dashboard_reasons.png", full_page=True)

            page.goto(f"{server}/proof?lang={lang}")
            expect(page.locator("body")).to_have_attribute("data-loaded", "true")
            expect(page.locator("h1")).to_have_text(
                {"es": "¿La puntuación paga?", "en": "Does the score pay?"}[lang])
            sections = page.locator(".proof-campaign")
            expect(sections).to_have_count(len(campaigns))
            expect(sections.first).to_have_attribute("data-campaign-id", str(campaigns[0]))
            expect(sections.first.locator(".proof-tiers tbody tr")).not_to_have_count(0)
            expect(sections.first.locator(".proof-tier-chart svg rect")).not_to_have_count(0)
            expect(sections.first.locator(".proof-deciles tbody tr")).to_have_count(10)
            expect(sections.first.locator(".proof-control")).to_have_text(
                {"es": "Sin grupo de control: solo conversiones",
                 "en": "No control group: conversions only"}[lang])
            expect(page.locator("#error")).to_be_hidden()
            if save and lang == "es":
                sections.first.screenshot(path=shots / "dashboard_proof.png")

            page.goto(f"{server}/analytics?lang={lang}")
            expect(page.locator("body")).to_have_attribute("data-loaded", "true")
            expect(page.locator(".tile[data-figure='top_leads'] strong")).to_have_text(f"{top:,}")
            states = page.locator("#states tbody tr td:nth-child(3)").all_inner_texts()
            assert sum(int(s.replace(",", "")) for s in states) == top
            expect(page.locator("#history-chart")).to_have_text(
                {"es": "Necesita 2 ejecuciones para mostrar una tendencia.",
                 "en": "Needs 2 runs to show a trend."}[lang])
        browser.close()
