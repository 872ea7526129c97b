"""Suppressed numbers never leave in a campaign export: every phone form, a number re-added
under another contact id, expiry, SMS replies the replies asset has not processed yet, one
snapshot while suppressions are recorded, the counts per reason in the job's metadata."""

import re

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from lead_scoring_assets.campaigns.segment_export import (
    EXPORT_DIR_ENV,
    ForgottenDuringExport,
    Segment,
    export_segment,
    select_segment,
)
from lead_scoring_assets.consent.forget import forget
from lead_scoring_assets.contacts.phones import normalize_phone
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.defs.campaign_export import CampaignExportConfig, campaign_export_job
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.demo.loader import load_demo_data
from lead_scoring_assets.scoring.full_rescore import rescore_all

from .conftest import AS_OF

NOW = pd.Timestamp.now(tz="UTC")


def phone_forms(national: str) -> list[str]:
    """One number in every form the normaliser reads (issue 22)."""
    n = national
    return [
        n,
        f"+52{n}",
        f"52{n}",
        f"0052{n}",
        f"+52 1 {n[:2]} {n[2:6]} {n[6:]}",
        f"521{n}",
        f"044{n}",
        f"045{n}",
        f"{n[:2]}-{n[2:6]}-{n[6:]}",
        f"({n[:3]}) {n[3:6]}.{n[6:]}",
        f" +52 ({n[:2]}) {n[2:6]}-{n[6:]} ",
    ]


@pytest.fixture
def scored(database):
    load_demo_data(database, 400, seed=7, as_of=AS_OF, batch_size=400)
    rescore_all(database, AS_OF)
    return database


@pytest.fixture
def folder(tmp_path, monkeypatch):
    path = tmp_path / "exports"
    monkeypatch.setenv(EXPORT_DIR_ENV, str(path))
    return path


def _execute(database: Database, sql: str, params: dict | list | None = None) -> None:
    with database.engine.begin() as connection:
        connection.execute(sa.text(sql), params or {})


def suppress(
    database: Database, phone: str, reason: str = "manual", recorded=None, expires=None
) -> None:
    _execute(
        database,
        "INSERT INTO suppressions (phone_e164, reason, source, recorded_at, "
        "expires_at) VALUES (:p, :r, 'test', :at, :exp)",
        {
            "p": normalize_phone(phone),
            "r": reason,
            "at": database.bind_timestamp(
                NOW - pd.Timedelta(days=1) if recorded is None else recorded
            ),
            "exp": database.bind_timestamp(expires),
        },
    )


def reply(
    database: Database, reply_id: int, phone: str, body: str, received, processed=None
) -> None:
    _execute(
        database,
        "INSERT INTO sms_replies (id, phone_e164, body, received_at, "
        "processed_at) VALUES (:id, :p, :b, :at, :done)",
        {
            "id": reply_id,
            "p": phone,
            "b": body,
            "at": database.bind_timestamp(received),
            "done": database.bind_timestamp(processed),
        },
    )


def _contacts(database: Database) -> pd.DataFrame:
    """The segment of everyone, best first, its phones canonical."""
    return select_segment(database, Segment())


def _set_phone(database: Database, contact_id: int, phone: str) -> None:
    _execute(
        database,
        "UPDATE contacts SET phone_e164 = :p WHERE id = :id",
        {"p": phone, "id": int(contact_id)},
    )


def _exported(report) -> tuple[pd.DataFrame, str]:
    text = report.path.read_text()
    return pd.read_csv(report.path, dtype={"phone_e164": str}), text


def test_suppressed_numbers_never_appear_in_any_phone_form(scored, folder):
    """The contact's row holds the number in one form, the suppression was given in another
    (stored as E.164): the number is out; a number re-added under another contact id (in yet
    another form) is out too, never kept as the 'other' contact of a shared number; an
    unreadable number is left out and counted; a readable non-canonical one is exported as
    E.164."""
    everyone = _contacts(scored)
    forms_count = len(phone_forms("5512345678"))
    targets = everyone.iloc[:forms_count]
    suppressed = []
    for i, row in enumerate(targets.itertuples()):
        forms = phone_forms(row.phone_e164[3:])
        _set_phone(scored, row.contact_id, forms[i])
        suppress(scored, forms[(i + 1) % forms_count])
        suppressed.append(row.phone_e164)
    readded = everyone.iloc[forms_count + 3]
    _set_phone(scored, readded.contact_id, phone_forms(suppressed[0][3:])[6])  # 044 form
    unreadable, renamed = everyone.iloc[forms_count + 5], everyone.iloc[forms_count + 6]
    _set_phone(scored, unreadable.contact_id, "12-34")
    _set_phone(scored, renamed.contact_id, phone_forms(renamed.phone_e164[3:])[9])

    report = export_segment(scored, Segment(), "all.csv")
    exported, text = _exported(report)
    for phone in suppressed:
        assert phone[3:] not in text
    assert not set(exported.contact_id) & {
        *targets.contact_id,
        readded.contact_id,
        unreadable.contact_id,
    }
    assert renamed.phone_e164 in set(exported.phone_e164)
    assert exported.phone_e164.map(normalize_phone).eq(exported.phone_e164).all()
    assert exported.phone_e164.is_unique
    assert report.left_out["suppressed_manual"] == forms_count + 1
    assert report.left_out["suppressed_contacts"] == forms_count + 1
    assert report.left_out["unreadable_phone"] == 1
    assert report.left_out["suppressed_opt_out"] == 0
    assert report.rows == len(everyone) - forms_count - 2


def test_expired_suppressions_do_not_apply_and_each_reason_counts(scored, folder):
    everyone = _contacts(scored)
    both, expired, later = everyone.iloc[0], everyone.iloc[1], everyone.iloc[2]
    suppress(scored, both.phone_e164, "repus")
    suppress(scored, both.phone_e164, "hard_bounce")
    suppress(scored, expired.phone_e164, "hard_bounce", expires=NOW - pd.Timedelta(hours=1))
    suppress(scored, later.phone_e164, "arco", expires=NOW + pd.Timedelta(days=30))
    report = export_segment(scored, Segment(), "all.csv")
    kept = set(_exported(report)[0].contact_id)
    assert expired.contact_id in kept
    assert not {both.contact_id, later.contact_id} & kept
    assert {k: v for k, v in report.left_out.items() if v} == {
        "suppressed_repus": 1,
        "suppressed_hard_bounce": 1,
        "suppressed_arco": 1,
        "suppressed_contacts": 2,
    }


def test_unprocessed_replies_hold_before_the_replies_asset_runs(scored, folder):
    """A BAJA one minute before the export holds though no asset processed it; an unprocessed
    ALTA lifts an opt-out recorded before it, not one recorded after it, never another reason;
    a processed reply is already in the table (or not) and is not read again."""
    rows = _contacts(scored).iloc[:7]
    baja, lifted, not_lifted, repus, processed, flipped, sentence = (
        r.phone_e164 for r in rows.itertuples()
    )
    minute_ago = NOW - pd.Timedelta(minutes=1)
    reply(scored, 1, phone_forms(baja[3:])[4], "  baja. ", minute_ago)
    suppress(scored, lifted, "opt_out", recorded=NOW - pd.Timedelta(days=3))
    reply(scored, 2, lifted, "Alta", NOW - pd.Timedelta(days=2))
    suppress(scored, not_lifted, "opt_out", recorded=NOW - pd.Timedelta(hours=1))
    reply(scored, 3, not_lifted, "ALTA", NOW - pd.Timedelta(hours=2))
    suppress(scored, repus, "repus")
    reply(scored, 4, repus, "START", minute_ago)
    reply(scored, 5, processed, "STOP", minute_ago, processed=minute_ago)
    reply(scored, 6, flipped, "Cancelar", NOW - pd.Timedelta(hours=3))
    reply(scored, 7, phone_forms(flipped[3:])[0], "alta", NOW - pd.Timedelta(hours=2))
    reply(scored, 8, sentence, "no me des de baja", minute_ago)
    reply(scored, 9, "not a number", "BAJA", minute_ago)
    report = export_segment(scored, Segment(), "all.csv")
    kept = set(_exported(report)[0].phone_e164)
    assert baja not in kept and not_lifted not in kept and repus not in kept
    assert {lifted, processed, flipped, sentence} <= kept
    assert report.left_out["suppressed_opt_out"] == 2
    assert report.left_out["suppressed_repus"] == 1


def test_a_suppression_recorded_while_the_export_runs_does_not_change_the_file(
    scored, folder, database_url
):
    """Another connection records a suppression (and an opt-out reply) of a contact not yet
    written, after the export's snapshot was taken: the file is the segment as of the
    snapshot, the report names it; the next export leaves the contact out."""
    everyone = _contacts(scored)
    last, other = everyone.iloc[-1], everyone.iloc[-2]
    writer = Database(database_url)
    recorded = []

    def record_meanwhile(rows: int) -> None:
        if not recorded:
            suppress(writer, last.phone_e164, "opt_out", recorded=pd.Timestamp.now(tz="UTC"))
            reply(writer, 1, other.phone_e164, "BAJA", pd.Timestamp.now(tz="UTC"))
            recorded.append(pd.Timestamp.now(tz="UTC"))

    before = pd.Timestamp.now(tz="UTC")
    report = export_segment(
        scored, Segment(), "during.csv", batch_size=50, after_batch=record_meanwhile
    )
    writer.dispose()
    exported, _ = _exported(report)
    assert recorded and len(exported) == len(everyone)
    assert {last.contact_id, other.contact_id} <= set(exported.contact_id)
    assert before <= pd.Timestamp(report.snapshot_at) <= recorded[0]
    if scored.dialect == "postgresql":
        assert re.fullmatch(r"\d+:\d+:[\d,]*", report.snapshot)
    after = export_segment(scored, Segment(), "after.csv")
    assert {last.contact_id, other.contact_id}.isdisjoint(_exported(after)[0].contact_id)
    assert after.left_out["suppressed_opt_out"] == 2


def test_a_person_forgotten_while_the_export_runs_is_never_in_a_file(scored, folder, database_url):
    """``forget`` commits on another connection after the export's snapshot, for a number the
    snapshot still holds: the export refuses to put the file in place (the person's ARCO
    request wins), leaves no file behind, and says why without the number."""
    everyone = _contacts(scored)
    person = everyone.iloc[-1]
    other = Database(database_url)
    forgotten = []

    def forget_meanwhile(rows: int) -> None:
        if not forgotten:
            forgotten.append(forget(other, person.phone_e164, folder))

    with pytest.raises(ForgottenDuringExport) as refused:
        export_segment(scored, Segment(), "during.csv", batch_size=50, after_batch=forget_meanwhile)
    other.dispose()
    assert forgotten and forgotten[0].contacts
    assert person.phone_e164[3:] not in str(refused.value)
    assert not folder.exists() or list(folder.rglob("*")) == []
    again = export_segment(scored, Segment(), "after.csv")
    assert person.contact_id not in set(_exported(again)[0].contact_id)


def test_campaign_export_job_reports_who_was_left_out_and_the_snapshot(
    scored, database_url, folder
):
    everyone = _contacts(scored)
    suppress(scored, everyone.iloc[0].phone_e164, "repus")
    suppress(scored, everyone.iloc[0].phone_e164, "opt_out")
    suppress(scored, everyone.iloc[1].phone_e164, "arco")
    result = campaign_export_job.execute_in_process(
        run_config=dg.RunConfig(
            {"export_campaign_segment": CampaignExportConfig(output_path="job.csv")}
        ),
        resources={"database": DatabaseResource(url=database_url)},
    )
    assert result.success
    output = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT)
    metadata = {k: v.value for k, v in output.step_output_data.metadata.items()}
    assert (
        metadata["suppressed_repus"],
        metadata["suppressed_opt_out"],
        metadata["suppressed_arco"],
        metadata["suppressed_contacts"],
    ) == (1, 1, 1, 2)
    assert metadata["dagster/row_count"] == len(everyone) - 2
    assert pd.Timestamp(metadata["suppression_snapshot_at"]) <= pd.Timestamp.now(tz="UTC")
    assert ("suppression_snapshot" in metadata) == (scored.dialect == "postgresql")
    text = repr(metadata) + "".join(str(e) for e in result.all_events)
    assert not [p for p in everyone.phone_e164 if p[3:] in text]
