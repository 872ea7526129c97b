"""The dashboard in a real browser (Playwright driving Debian's Chromium) against the real
server (``lead-scoring serve`` in a subprocess), on both dialects: enter a key, search a phone,
open its card, check the numbers against the database, queue it, read the analytics.

Skipped with the reason where Chromium is missing (``apt-get install chromium``), failed
instead when ``LEAD_SCORING_REQUIRE_BROWSER=1`` (CI). Screenshots go to
``$LEAD_SCORING_SCREENSHOTS`` (the README's come from ``docs/screenshots``, on SQLite), else to
the test's temporary folder.
"""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect, sync_playwright

from lead_scoring_assets.api.i18n import LABELS
from lead_scoring_assets.contacts.phones import mask_phone
from lead_scoring_assets.ml.conversion_features import REST_CODE, reason_code
from lead_scoring_assets.ml.conversion_scores import write_conversion_scores
from lead_scoring_assets.scoring.incremental import score_queued

from .api_data import ADMIN_KEY, BIG_ID, LATER, READ_KEY, add_big_id_contact, prepare
from .conftest import CHROMIUM_ARGS


@pytest.fixture
def server_log(tmp_path) -> Path:
    return tmp_path / "server.log"


@contextmanager
def serving(database, log_path: Path, **env: str):
    """``lead-scoring serve`` on ``database`` in a subprocess (with ``env`` added); yields its
    address."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "LEAD_SCORING_DATABASE_URL": database.url.render_as_string(hide_password=False),
        "LEAD_SCORING_API_KEYS": READ_KEY,
        "LEAD_SCORING_ADMIN_KEYS": ADMIN_KEY,
        **env,
    }
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "lead_scoring_assets.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
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


@pytest.fixture
def server(demo_database, server_log, templates):
    templates.cached(demo_database, "api_data.prepare", prepare)
    with serving(demo_database, server_log) as base:
        yield base


def _row(database, sql: str, params: dict | None = None) -> dict:
    with database.engine.connect() as connection:
        return dict(connection.execute(sa.text(sql), params or {}).mappings().first())


def test_search_a_phone_open_its_card_queue_it_and_read_the_analytics(
    chromium, server, server_log, demo_database, database_url, tmp_path
):
    shots = Path(os.environ.get("LEAD_SCORING_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    save = database_url.startswith("sqlite")
    contact = _row(
        demo_database,
        "SELECT s.*, c.phone_e164 FROM lead_scores s JOIN contacts c "
        "ON c.id = s.contact_id WHERE s.platform_count >= 3 "
        "ORDER BY s.total_score DESC, s.contact_id DESC LIMIT 1",
    )
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
            "data-contact-id", str(contact["contact_id"])
        )
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
            {"PREMIUM": "Premium", "HIGH": "Alto", "MEDIUM": "Medio"}[contact["quality_tier"]]
        )
        for platform, weight in (
            ("whatsapp", 25),
            ("instagram", 20),
            ("facebook", 20),
            ("google", 20),
            ("apple", 15),
        ):
            expect(page.locator(f".bar-row[data-platform='{platform}'] .bar-value")).to_have_text(
                f"{contact[f'{platform}_score']}/{weight}"
            )
        expect(page.locator("#business-accounts")).to_have_text(
            str(contact["business_account_count"])
        )
        expect(page.locator("#bonus tr.sum")).to_contain_text("+")
        expect(page.locator("#version-note")).to_be_hidden()
        expect(page.locator("#card-phone")).to_have_text(mask_phone(phone))
        assert national not in page.content()
        page.click("#calculate")
        expect(page.locator("#calculate-result")).to_contain_text("En cola desde las")
        queued = _row(
            demo_database,
            "SELECT priority FROM scoring_queue WHERE contact_id = :id",
            {"id": contact["contact_id"]},
        )
        assert queued["priority"] == 10
        if save:
            page.screenshot(path=shots / "dashboard_score_card.png", full_page=True)

        page.click("header nav a[href^='/analytics']")
        expect(page.locator("body")).to_have_attribute("data-loaded", "true")
        contacts = demo_database.count("contacts")
        expect(page.locator(".tile[data-figure='contacts'] strong")).to_have_text(f"{contacts:,}")
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
    assert 'GET /api/v1/lead-scoring/lookup?phone=[hidden] HTTP/1.1" 200' in log
    assert national[-7:] not in log


def test_a_card_of_another_calculation_version_says_so(chromium, server, demo_database):
    """A score of an older known version: its breakdown, with a note naming its version; of a
    version the server does not know: its stored scores and the note, no breakdown. No
    error either way."""
    older, unknown = (
        _row(
            demo_database,
            "SELECT * FROM lead_scores WHERE platform_count >= 2 "
            "ORDER BY contact_id LIMIT 1 OFFSET :n",
            {"n": n},
        )
        for n in (0, 1)
    )
    with demo_database.engine.begin() as connection:
        for row, version in ((older, "advanced_v1.0"), (unknown, "advanced_v9.9")):
            connection.execute(
                sa.text("UPDATE lead_scores SET calculation_version = :v WHERE contact_id = :id"),
                {"v": version, "id": row["contact_id"]},
            )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{server}/card?id={older['contact_id']}&lang=en")
        page.fill("#api-key", READ_KEY)
        page.click("#key-form button[type=submit]")
        expect(page.locator("body")).to_have_attribute("data-loaded", "true")
        expect(page.locator("#version-note")).to_have_text(
            "Computed by advanced_v1.0, not the current advanced_v1.1: breakdown read with "
            "advanced_v1.0's configuration. Recomputed at the next rescoring."
        )
        expect(page.locator("#factors-section")).to_be_visible()
        expect(page.locator("#bonus tr.sum")).to_contain_text("+")
        expect(page.locator("#error")).to_be_hidden()

        page.goto(f"{server}/card?id={unknown['contact_id']}&lang=es")
        expect(page.locator("body")).to_have_attribute("data-loaded", "true")
        expect(page.locator("#version-note")).to_contain_text(
            "Calculada con advanced_v9.9, no con la versión actual advanced_v1.1: solo los "
            "valores guardados"
        )
        expect(page.locator("#total-score")).to_have_text(str(unknown["total_score"]))
        expect(page.locator(".bar-row[data-platform='whatsapp'] .bar-value")).to_have_text(
            f"{unknown['whatsapp_score']}/25"
        )
        expect(page.locator(".bar-row[data-platform='whatsapp'] .bar-note")).to_have_text("")
        expect(page.locator("#factors-section")).to_be_hidden()
        expect(page.locator("#bonus-section")).to_be_hidden()
        expect(page.locator("#error")).to_be_hidden()
        browser.close()


def test_the_campaigns_page_shows_predicted_against_measured(chromium, server, demo_database):
    """A demo campaign (with its control group) planned with an expectation and renumbered
    2^60 + 1: its row in "Previsto vs medido" with the expected figures, the measured ones and
    whether they agree; its rows name it exactly and its "Deciles" button opens its deciles."""
    with demo_database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE campaigns SET expected_incremental_conversions = 12.5, "
                "expected_incremental_low = 4.25, expected_incremental_high = 20.75, "
                "expected_profit = 1300, expected_profit_low = 290, expected_profit_high = 2310, "
                "select_rule = 'max_profit', rank_by = 'uplift', id = :big WHERE id = 1"
            ),
            {"big": BIG_ID},
        )
        name = connection.execute(
            sa.text("SELECT name FROM campaigns WHERE id = :big"), {"big": BIG_ID}
        ).scalar_one()
        for table in ("campaign_recipients", "campaign_recipient_features", "campaign_outcomes"):
            connection.execute(
                sa.text(f"UPDATE {table} SET campaign_id = :big WHERE campaign_id = 1"),
                {"big": BIG_ID},
            )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{server}/campaigns")
        page.fill("#api-key", READ_KEY)
        page.click("#key-form button[type=submit]")
        expect(page.locator("body")).to_have_attribute("data-loaded", "true")
        expect(page.locator("#predicted tbody tr")).to_have_count(1)
        cells = page.locator(f"#predicted tbody tr[data-campaign-id='{BIG_ID}'] td")
        expect(cells.nth(1)).to_have_text("12.5 [4.25, 20.75]")
        expect(cells.nth(2)).to_have_text(
            re.compile(r"^[-−]?[\d,.]+ \[[-−]?[\d,.]+, [-−]?[\d,.]+\]$")
        )
        expect(cells.nth(3)).to_have_text(re.compile(r"^(Sí|No)$"))
        expect(cells.nth(4)).to_have_text("$1,300 [$290, $2,310]")
        expect(page.locator("#error")).to_be_hidden()
        page.locator(f"#campaigns tbody tr[data-campaign-id='{BIG_ID}'] button").click()
        expect(page.locator("#deciles-section")).to_be_visible()
        expect(page.locator("#deciles-title")).to_have_text(f"Por decil de probabilidad: {name}")
        expect(page.locator("#error")).to_be_hidden()
        browser.close()


def test_card_reasons_proof_page_and_figures_in_both_languages(
    chromium, server, demo_database, database_url, tmp_path
):
    """The card words its reasons as the contact's facts with the rest, in Spanish and
    English; the proof page lists every campaign with outcomes, latest first, by tier; the
    top-leads tile is the state table's sum; one analytics run shows no trend. Screenshots of
    the Spanish card's reasons and proof page on SQLite."""
    shots = Path(os.environ.get("LEAD_SCORING_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    save = database_url.startswith("sqlite")
    contact = _row(
        demo_database,
        "SELECT * FROM lead_scores WHERE platform_count >= 3 AND whatsapp_score > 0 "
        "ORDER BY total_score DESC, contact_id DESC LIMIT 1",
    )
    write_conversion_scores(demo_database, None, LATER)
    with demo_database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE conversion_scores SET conversion_probability = 0.08, model_version = '1', "
                "method = 'lr', up_feature_1 = :whatsapp, up_effect_1 = 0.5, up_feature_2 = :rest, "
                "up_effect_2 = 0.125, down_feature_1 = :carrier, down_effect_1 = -0.25 "
                "WHERE contact_id = :id"
            ),
            {
                "id": contact["contact_id"],
                "whatsapp": reason_code("whatsapp"),
                "rest": REST_CODE,
                "carrier": reason_code("carrier"),
            },
        )
        connection.execute(
            sa.text("DELETE FROM lead_scoring_analytics_history WHERE run_id = 'run-1'")
        )
    with demo_database.engine.connect() as connection:
        campaigns = (
            connection.execute(
                sa.text(
                    "SELECT id FROM campaigns c WHERE EXISTS (SELECT 1 FROM campaign_outcomes o "
                    "WHERE o.campaign_id = c.id) ORDER BY sent_at DESC, id DESC"
                )
            )
            .scalars()
            .all()
        )
    top = _row(
        demo_database,
        "SELECT count(*) AS n FROM lead_scores WHERE quality_tier IN ('PREMIUM', 'HIGH')",
    )["n"]
    whatsapp = contact["whatsapp_score"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{server}/card?id={contact['contact_id']}&lang=es")
        page.fill("#api-key", READ_KEY)
        page.click("#key-form button[type=submit]")
        for lang, fact, carrier, rest in (
            ("es", f"WhatsApp validado ({whatsapp}/25)", "Operador", "Todo lo demás"),
            ("en", f"Validated on WhatsApp ({whatsapp}/25)", "Carrier", "Everything else"),
        ):
            page.goto(f"{server}/card?id={contact['contact_id']}&lang={lang}")
            expect(page.locator("body")).to_have_attribute("data-loaded", "true")
            expect(page.locator("#conversion-reasons li.raises")).to_have_text(f"▲ {fact} (+0.5)")
            expect(page.locator("#conversion-reasons li.lowers")).to_contain_text(carrier)
            expect(page.locator("#conversion-reasons li.rest")).to_contain_text(rest)
            expect(page.locator("#reasons-note")).to_contain_text(
                {"es": "contacto promedio", "en": "average contact"}[lang]
            )
            expect(page.locator("#error")).to_be_hidden()
            if save and lang == "es":
                page.screenshot(path=shots / "dashboard_reasons.png", full_page=True)

            page.goto(f"{server}/proof?lang={lang}")
            expect(page.locator("body")).to_have_attribute("data-loaded", "true")
            expect(page.locator("h1")).to_have_text(
                {"es": "¿La puntuación paga?", "en": "Does the score pay?"}[lang]
            )
            sections = page.locator(".proof-campaign")
            expect(sections).to_have_count(len(campaigns))
            expect(sections.first).to_have_attribute("data-campaign-id", str(campaigns[0]))
            expect(sections.first.locator(".proof-tiers tbody tr")).not_to_have_count(0)
            expect(sections.first.locator(".proof-tier-chart svg rect")).not_to_have_count(0)
            expect(sections.first.locator(".proof-deciles tbody tr")).to_have_count(10)
            expect(sections.first.locator(".proof-control")).to_have_text(
                re.compile(
                    {"es": "^Frente al grupo de control: ", "en": "^Against the control group: "}[
                        lang
                    ]
                )
            )
            expect(page.locator("#error")).to_be_hidden()
            if save and lang == "es":
                sections.first.screenshot(path=shots / "dashboard_proof.png")

            page.goto(f"{server}/analytics?lang={lang}")
            expect(page.locator("body")).to_have_attribute("data-loaded", "true")
            expect(page.locator(".tile[data-figure='top_leads'] strong")).to_have_text(f"{top:,}")
            states = page.locator("#states tbody tr td:nth-child(3)").all_inner_texts()
            assert sum(int(s.replace(",", "")) for s in states) == top
            expect(page.locator("#history-chart")).to_have_text(
                {
                    "es": "Necesita 2 ejecuciones para mostrar una tendencia.",
                    "en": "Needs 2 runs to show a trend.",
                }[lang]
            )


PHONE, DESKTOP = {"width": 390, "height": 844}, {"width": 1440, "height": 900}
TARGETS = "button, a, select, input:not([type=checkbox]), summary"
"""What a finger taps: each at least 44 × 44 px where it is visible."""
LAYOUT_PROBLEMS = """([targets]) => {
  const width = document.documentElement.clientWidth;
  const visible = (e) => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== "hidden"
    && !e.closest("thead, .visually-hidden, .skip, [hidden]");
  const problems = [];
  if (document.documentElement.scrollWidth > width) {
    problems.push(`page scrolls sideways: ${document.documentElement.scrollWidth} > ${width}`);
  }
  for (const e of document.querySelectorAll("body *")) {
    if (!visible(e) || e.closest("svg")) continue;
    const box = e.getBoundingClientRect();
    if (box.right > width + 1) problems.push(`${e.tagName}#${e.id}.${e.className} ends at ${box.right}`);
  }
  for (const e of document.querySelectorAll(targets)) {
    if (!visible(e)) continue;
    const box = e.getBoundingClientRect();
    if (box.width < 44 || box.height < 44) {
      problems.push(`${e.tagName}#${e.id}.${e.className} "${e.textContent.trim()}" is ${box.width}x${box.height}`);
    }
  }
  for (const bar of document.querySelectorAll(".bar")) {
    if (bar.getBoundingClientRect().width <= 0) problems.push("a platform bar is 0 px wide");
  }
  return problems;
}"""


def _start(page, url: str, key: str) -> None:
    page.goto(url)
    page.fill("#api-key", key)
    page.click("#key-form button[type=submit]")
    expect(page.locator("body")).to_have_attribute("data-loaded", "true")


def _visit(page, url: str) -> None:
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-loaded", "true")


def _other_language_words(lang: str) -> set[str]:
    """The other language's labels that differ from this one's (long enough to be words)."""
    other = LABELS["en" if lang == "es" else "es"]
    return {
        value
        for key, value in other.items()
        if value != LABELS[lang].get(key)
        and len(value) >= 5
        and "{" not in value
        and key not in ("other_lang_name",)
    }


def _add_reasons_and_a_suppression(database, contact: dict) -> None:
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO conversion_scores (contact_id, conversion_probability, "
                "probability_decile, model_version, method, calculated_at, up_feature_1, "
                "up_effect_1, up_feature_2, up_effect_2, down_feature_1, down_effect_1) "
                "VALUES (:id, 0.0421, 9, '2', 'hgb', :at, 1, 0.5, 6, 0.2, 19, -0.25)"
            ),
            {"id": contact["contact_id"], "at": database.bind_timestamp(LATER)},
        )
        connection.execute(
            sa.text(
                "INSERT INTO suppressions (phone_e164, reason, source, recorded_at) "
                "VALUES (:p, 'repus', 'test', :at)"
            ),
            {"p": contact["phone_e164"], "at": database.bind_timestamp(LATER)},
        )


def test_every_page_fits_a_phone_and_a_desktop_in_both_languages_with_no_axe_violation(
    chromium, server, demo_database, database_url, tmp_path
):
    """Contacts, a card (with conversion reasons and a suppression), analytics and campaigns at
    390 × 844 and 1440 × 900, in Spanish and English: nothing wider than the screen, targets
    of 44 px, bars drawn, every label translated (none missing, none of the other language),
    no serious or critical axe-core violation, no console error (a CSP refusal is one)."""
    shots = Path(os.environ.get("LEAD_SCORING_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    contact = _row(
        demo_database,
        "SELECT s.contact_id, c.phone_e164 FROM lead_scores s JOIN contacts c "
        "ON c.id = s.contact_id WHERE s.platform_count >= 3 "
        "ORDER BY s.total_score DESC, s.contact_id DESC LIMIT 1",
    )
    _add_reasons_and_a_suppression(demo_database, contact)
    pages = {
        "contacts": "/",
        "card": f"/card?id={contact['contact_id']}",
        "analytics": "/analytics",
        "campaigns": "/campaigns",
        "proof": "/proof",
    }
    axe, console = Axe(), []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        for size_name, size in (("390", PHONE), ("1440", DESKTOP)):
            page = browser.new_page(viewport=size)
            page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
            _start(page, f"{server}/", READ_KEY)
            for lang in ("es", "en"):
                foreign = _other_language_words(lang)
                for name, path in pages.items():
                    _visit(page, f"{server}{path}{'&' if '?' in path else '?'}lang={lang}")
                    where = f"{name} {lang} at {size_name} px"
                    assert page.evaluate(LAYOUT_PROBLEMS, [TARGETS]) == [], where
                    assert page.locator("body").get_attribute("data-missing") is None, where
                    text = page.inner_text("body")
                    assert not [w for w in foreign if re.search(rf"\b{re.escape(w)}\b", text)], (
                        where
                    )
                    serious = [
                        v
                        for v in axe.run(page).response["violations"]
                        if v["impact"] in ("serious", "critical")
                    ]
                    assert serious == [], (
                        where,
                        [(v["id"], [n["target"] for n in v["nodes"]]) for v in serious],
                    )
                    if lang == "es" and database_url.startswith("sqlite"):
                        page.screenshot(
                            path=shots / f"dashboard_{name}_{size_name}.png",
                            full_page=name != "contacts",
                        )  # 50 cards: one screen
            page.close()
        browser.close()
    assert console == []


def test_an_id_above_2_to_the_53_opens_links_and_rescores_that_contact(
    chromium, server, demo_database
):
    """The contact 2^60 + 1 heads the list; its "Ver" link, card and "Calcular" name it
    exactly; the card says it is pending, warns while the queue stands still, and shows the
    new score when a scoring run has processed it."""
    add_big_id_contact(demo_database)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=PHONE)
        _start(page, f"{server}/?lang=en", ADMIN_KEY)
        page.click("#export")  # this server has no Dagster webserver configured
        expect(page.locator("#error-message")).to_have_text(
            "The service is not available: try again later."
        )
        first = page.locator("#contacts tbody tr").first
        expect(first).to_have_attribute("data-contact-id", str(BIG_ID))
        first.locator("a.open").click()
        expect(page.locator("body")).to_have_attribute("data-loaded", "true")
        assert page.url.endswith(f"/card?id={BIG_ID}&lang=en")
        expect(page.locator("#error")).to_be_hidden()
        expect(page.locator("#card-contact")).to_have_text(f"#{BIG_ID}")
        with demo_database.engine.begin() as connection:
            connection.execute(sa.text("DELETE FROM scoring_queue"))
        page.click("#calculate")
        expect(page.locator("#calculate-result")).to_contain_text("Queued since")
        queued = _row(demo_database, "SELECT contact_id FROM scoring_queue")
        assert queued["contact_id"] == BIG_ID
        with demo_database.engine.begin() as connection:
            connection.execute(
                sa.text("UPDATE scoring_queue SET updated_at = :at"),
                {
                    "at": demo_database.bind_timestamp(
                        pd.Timestamp.now(tz="UTC") - pd.Timedelta(minutes=7)
                    )
                },
            )
        expect(page.locator("#queue-warning")).to_contain_text("The queue is not being processed")
        assert score_queued(demo_database, LATER + pd.Timedelta(days=1), owner="test").claimed == 1
        expect(page.locator("body")).to_have_attribute("data-rescore", "done")
        expect(page.locator("#queue-warning")).to_be_hidden()
        score = _row(
            demo_database,
            "SELECT total_score FROM lead_scores WHERE contact_id = :id",
            {"id": BIG_ID},
        )["total_score"]
        expect(page.locator("#calculate-result")).to_contain_text(f"New score: {score}/100")
        expect(page.locator("#total-score")).to_have_text(str(score))
        browser.close()


def test_errors_show_where_the_user_looks_in_spanish_and_clear_on_success(
    chromium, server, demo_database
):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=PHONE)
        page.goto(f"{server}/")
        page.fill("#api-key", "a-wrong-key")
        page.click("#key-form button[type=submit]")
        error = page.locator("#error")
        expect(error).to_contain_text("La clave de API no es válida")
        assert error.bounding_box()["y"] < PHONE["height"] / 2
        page.fill("#api-key", READ_KEY)
        page.click("#key-form button[type=submit]")
        expect(page.locator("body")).to_have_attribute("data-loaded", "true")
        expect(error).to_be_hidden()

        page.fill("#phone", "667 12")
        page.click("#phone-search button")
        expect(page.locator("#error-message")).to_have_text(
            "Ese número no es un teléfono mexicano válido."
        )
        expect(page.locator("#empty")).to_be_hidden()
        expect(page.locator("#error-detail")).to_be_hidden()
        page.click("#error summary")
        expect(page.locator("#error-detail")).to_contain_text("400")
        expect(page.locator("#error-detail")).not_to_contain_text("667")
        page.fill("#phone", "999 000 0000")
        page.click("#phone-search button")
        expect(page.locator("#empty")).to_be_visible()
        expect(error).to_be_hidden()

        page.goto(f"{server}/card?id=abc")
        expect(page.locator("#error-message")).to_have_text(
            "La solicitud no es válida: revise los filtros."
        )
        page.goto(f"{server}/card?id=123456789")
        expect(page.locator("#error-message")).to_contain_text("No se encontró")
        assert "123456789" not in page.inner_text("#error-detail")
        browser.close()


def test_keyboard_alone_filters_sorts_saves_the_filters_in_the_address_and_opens_a_card(
    chromium, server, demo_database
):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=DESKTOP)
        page.goto(f"{server}/")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip"
        page.focus("#api-key")
        page.keyboard.type(READ_KEY)
        page.keyboard.press("Enter")
        expect(page.locator("body")).to_have_attribute("data-loaded", "true")
        expect(page.locator("#export-box")).to_be_hidden()  # a read key
        page.focus("#min-score")
        page.keyboard.type("40")
        page.keyboard.press("Tab")  # the sort
        assert page.evaluate("document.activeElement.id") == "sort"
        page.keyboard.press("ArrowDown")  # conversion probability
        page.focus("#min-score")
        asked = []
        page.on("request", lambda request: asked.append(request.url))
        page.keyboard.press("Enter")
        expect(page.locator("#total")).to_contain_text("contactos con estos filtros")
        assert "min_score=40" in page.url and "sort=conversion" in page.url
        expected = _row(
            demo_database, "SELECT count(*) AS n FROM lead_scores WHERE total_score >= 40"
        )["n"]
        expect(page.locator("#total")).to_have_text(f"{expected:,} contactos con estos filtros")
        # the page without its total, the total on its own (seconds at 10M contacts)
        assert [
            u for u in asked if "/contacts?" in u and "total=false" in u and "min_score=40" in u
        ]
        assert [u for u in asked if "/contacts/total?min_score=40" in u and "sort" not in u]
        scores = page.locator("#contacts tbody td.score strong").all_inner_texts()
        assert scores and all(int(s) >= 40 for s in scores)

        page.reload()
        expect(page.locator("body")).to_have_attribute("data-loaded", "true")
        expect(page.locator("#min-score")).to_have_value("40")
        expect(page.locator("#sort")).to_have_value("conversion")
        expect(page.locator("#total")).to_have_text(f"{expected:,} contactos con estos filtros")

        for _ in range(40):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.classList.contains('open')"):
                break
        target = page.evaluate("document.activeElement.getAttribute('href')")
        assert target.startswith("/card?id=")
        page.keyboard.press("Enter")
        expect(page.locator("body")).to_have_attribute("data-loaded", "true")
        assert page.url.endswith(target)
        browser.close()
