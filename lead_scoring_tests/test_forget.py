"""The right to be forgotten: a number planted everywhere (two contacts in two forms, the
nightly Dagster run over them with a real MLflow store, queue, dead letters, a campaign,
replies, export files), forgotten, then looked for in every table, the Dagster instance and
the MLflow store; unknown and bad numbers; the scoring lock; the CLI and the admin API."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lead_scoring_assets import cli
from lead_scoring_assets.api.app import create_app
from lead_scoring_assets.api.auth import ApiKeys
from lead_scoring_assets.consent.forget import ForgetBusy, covered_tables, forget
from lead_scoring_assets.contacts.phones import PhoneRejected, mask_phone
from lead_scoring_assets.db.staged_table import StagedTable
from lead_scoring_assets.db.writer_lock import LockBusy
from lead_scoring_assets.defs.resources import DatabaseResource, MlflowResource
from lead_scoring_assets.demo.loader import load_demo_data
from lead_scoring_assets.scoring.full_rescore import publish_rescore, stage_rescore

from .conftest import AS_OF, digit_runs
from .test_personal_data import phone_leaks

VICTIM = 7
TWIN = 10**12
"""A second contact of the same person, the number stored in an old national form."""


def _old_form(phone: str) -> str:
    """``+52XXXXXXXXXX`` as ``044 XXX XXX XXXX``."""
    national = phone[-10:]
    return f"044 {national[:3]} {national[3:6]}-{national[6:]}"


def _nightly(database_url: str, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    from lead_scoring_assets.definitions import defs

    resources = {
        "database": DatabaseResource(url=database_url),
        "mlflow": MlflowResource(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"),
    }
    job = defs().resolve_job_def("nightly_retrain_job")
    result = job.execute_in_process(
        run_config={
            "ops": {
                "staged_lead_scores": {"config": {"as_of": AS_OF.isoformat()}},
                "lead_scoring_model": {"config": {"candidates": ["linear_baseline"]}},
            }
        },
        instance=instance,
        resources=resources,
    )
    assert result.success


def _plant(database, phone: str, folder: Path) -> None:
    """Before the nightly run: a twin contact with its validation, a campaign of the
    platform's with recipients, outcomes and feature log, replies, tables added later,
    export files."""
    params = {
        "twin": TWIN,
        "victim": VICTIM,
        "old": _old_form(phone),
        "phone": phone,
        "spaced": f"+52 1 {phone[3:6]} {phone[6:9]} {phone[9:]}",
        "at": database.bind_timestamp(AS_OF - pd.Timedelta(days=3)),
        "yes": True,
    }
    with database.engine.begin() as connection:
        for sql in (
            (
                "INSERT INTO contacts (id, phone_e164, full_name, created_at) "
                "VALUES (:twin, :old, 'Doble', :at)"
            ),
            (
                "INSERT INTO platform_validations (id, contact_id, platform, is_valid, "
                "confidence_score, validated_at) VALUES (:twin, :twin, 'apple', :yes, 0.9, :at)"
            ),
            "INSERT INTO campaigns (id, name, sent_at) VALUES (900, 'plataforma', :at)",
            (
                "INSERT INTO campaign_recipients (campaign_id, contact_id, arm) VALUES "
                "(900, :victim, 'target'), (900, :twin, 'control'), (900, 1, 'target')"
            ),
            (
                "INSERT INTO campaign_outcomes (campaign_id, contact_id, delivered, converted) "
                "VALUES (900, :victim, :yes, :yes), (900, 1, :yes, :yes)"
            ),
            (
                "INSERT INTO campaign_recipient_features (campaign_id, contact_id, feature_set, "
                "state, carrier) VALUES (900, :victim, 'conversion_v1', 'JALISCO', 'TELCEL')"
            ),
            (
                "INSERT INTO sms_replies (id, phone_e164, body, received_at) VALUES "
                "(1, :phone, 'BAJA', :at), (2, :spaced, 'hola', :at), (3, '+525555555555', 'x', :at)"
            ),
            "CREATE TABLE added_later (contact_id BIGINT, note TEXT)",
            "INSERT INTO added_later VALUES (:victim, 'x'), (:twin, 'y'), (1, 'z')",
            "CREATE TABLE replies_archive (phone_e164 TEXT, body TEXT)",
            "INSERT INTO replies_archive VALUES (:old, 'x'), ('+525555555555', 'y')",
        ):
            connection.execute(sa.text(sql), params)
    (folder / "sub").mkdir(parents=True)
    pd.DataFrame({"telefono": [_old_form(phone), "+525555555555"]}).to_csv(
        folder / "campana.csv", index=False
    )
    pq.write_table(
        pa.table({"phone": [int(phone[1:]), 525555555555]}), folder / "sub" / "campana.parquet"
    )
    pd.DataFrame({"telefono": ["+525555555555"]}).to_csv(folder / "otra.csv", index=False)


def _queue_and_dead_letter(database) -> None:
    """After the nightly run: a new validation queues the victim; a dead letter."""
    at = database.bind_timestamp(AS_OF)
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO platform_validations (id, contact_id, platform, is_valid, "
                "confidence_score, validated_at) VALUES (:id, :victim, 'apple', :yes, 0.9, :at)"
            ),
            {"id": TWIN + 1, "victim": VICTIM, "yes": True, "at": at},
        )
        connection.execute(
            sa.text(
                "INSERT INTO scoring_dead_letters (contact_id, attempts, last_error, "
                "first_enqueued_at, failed_at) VALUES (:twin, 3, 'x', :at, :at)"
            ),
            {"twin": TWIN, "at": at},
        )
    assert (
        database.read_frame(f"SELECT count(*) AS n FROM scoring_queue WHERE contact_id = {VICTIM}")[
            "n"
        ][0]
        == 1
    )


def _tables(database) -> list[str]:
    with database.engine.connect() as connection:
        return sa.inspect(connection).get_table_names()


def _leaks(database, phone: str, ids: set[int]) -> dict[str, str]:
    """Per table (partitions included; ``suppressions`` is the kept evidence), where the
    number (any form, in any column) or one of the contact ``ids`` still is."""
    found = {}
    for table in _tables(database):
        if table == "suppressions":
            continue
        frame = database.read_frame(f'SELECT * FROM "{table}"')
        texts = [frame[c].astype(str).str.cat(sep=" ") for c in frame.columns]
        if phone_leaks(texts, [phone]):
            found[table] = "number"
        for column in frame.columns:
            is_contact = column == "contact_id" or (table == "contacts" and column == "id")
            if is_contact and set(frame[column].dropna().astype("int64")) & ids:
                found[table] = column
    return found


def test_forget_removes_the_person_everywhere(database, database_url, tmp_path):
    load_demo_data(database, 1_000, seed=11, as_of=AS_OF, batch_size=1_000)
    phone = database.read_frame(f"SELECT phone_e164 FROM contacts WHERE id = {VICTIM}")[
        "phone_e164"
    ][0]
    folder = tmp_path / "exports"
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        _plant(database, phone, folder)
        _nightly(database_url, tmp_path, instance)
        _queue_and_dead_letter(database)
        planted = _leaks(database, phone, {VICTIM, TWIN})
        assert {
            "contacts",
            "platform_validations",
            "lead_scores",
            "lead_score_history",
            "contact_features",
            "ml_lead_scores",
            "conversion_scores",
            "scoring_queue",
            "scoring_dead_letters",
            "campaign_recipients",
            "campaign_outcomes",
            "campaign_recipient_features",
            "sms_replies",
            "added_later",
            "replies_archive",
        } <= set(planted), planted

        report = forget(database, f" +52 ({phone[3:6]}) {phone[6:9]}.{phone[9:]} ", folder)

        events = [
            dg.serialize_value(event)
            for run in instance.get_runs()
            for event in instance.all_logs(run.run_id)
        ]
        stored = [
            path.read_bytes().decode("utf-8", "replace")
            for path in Path(instance.root_directory).rglob("*")
            if path.is_file()
        ]
    assert report.contacts == 2 and report.masked_phone == mask_phone(phone)
    assert report.deleted["contacts"] == 2 and report.deleted["added_later"] == 2
    assert report.deleted["sms_replies"] == 2 and report.deleted["replies_archive"] == 1
    assert report.deleted["campaign_recipients"] == 2
    assert report.files == [folder / "campana.csv", folder / "sub" / "campana.parquet"]
    assert _leaks(database, phone, {VICTIM, TWIN}) == {}
    assert database.read_frame("SELECT * FROM added_later")["contact_id"].tolist() == [1]
    assert database.read_frame("SELECT contact_id FROM campaign_outcomes WHERE campaign_id = 900")[
        "contact_id"
    ].tolist() == [1]
    counts = database.read_frame(
        "SELECT target_recipients, control_recipients FROM campaigns WHERE id = 900"
    )
    assert counts.values.tolist() == [[2, 1]], "the platform campaign's counts survive"
    arco = database.read_frame("SELECT phone_e164, reason, source, expires_at FROM suppressions")
    assert arco["phone_e164"].tolist() == [phone] and arco["reason"].tolist() == ["arco"]
    assert arco["source"][0].startswith("arco 20") and arco["expires_at"].isna().all()
    assert database.count("writer_locks") == 0
    assert not phone_leaks(events + stored, [phone])
    national = phone[-10:].encode()
    assert not any(national in run for run in digit_runs(tmp_path / "mlartifacts"))
    assert national not in (tmp_path / "mlflow.db").read_bytes()


def test_every_table_with_a_contact_or_phone_column_is_covered(database):
    with database.engine.connect() as connection:
        covered = covered_tables(connection)
        inspector = sa.inspect(connection)
        for table in _tables(database):
            columns = {c["name"] for c in inspector.get_columns(table)}
            parent = (
                table
                if database.dialect != "postgresql"
                else connection.execute(
                    sa.text("SELECT CAST(pg_partition_root(CAST(:t AS regclass)) AS text)"),
                    {"t": table},
                ).scalar()
            )
            if "contact_id" in columns:
                assert {table, parent} & set(covered.by_contact), table
            if "phone_e164" in columns and table not in ("contacts", "suppressions"):
                assert table in covered.by_phone, table
    assert covered.by_contact[0] == "platform_validations"
    assert covered.by_contact[-1] == "scoring_queue"
    assert {
        "lead_scores",
        "lead_score_history",
        "campaign_recipient_features",
        "scoring_dead_letters",
        "sms_replies",
    } <= set(covered.by_contact + covered.by_phone)


def test_unknown_number_is_still_suppressed_and_an_arco_row_is_kept(database, tmp_path):
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    pd.DataFrame({"a": range(3)}).to_parquet(tmp_path / "other.parquet")
    first = forget(
        database, "4271185601", tmp_path, now=pd.Timestamp("2026-12-01T00:00:00Z").to_pydatetime()
    )
    assert first.contacts == 0 and sum(first.deleted.values()) == 0
    assert first.suppression_added
    assert first.files == [tmp_path / "broken.parquet"], "unreadable: listed to be looked at"
    again = forget(database, "+52 1 427 118 5601", tmp_path / "none")
    assert not again.suppression_added
    arco = database.read_frame("SELECT phone_e164, source FROM suppressions")
    assert arco.values.tolist() == [["+524271185601", "arco 2026-12-01"]]


@pytest.mark.parametrize("text", ["", "12345", "+1 212 555 0100", "427-118-56O1"])
def test_bad_numbers_are_refused_with_the_reason(database, tmp_path, text):
    with pytest.raises(PhoneRejected, match="not a") as refused:
        forget(database, text, tmp_path)
    assert "2125550100" not in str(refused.value) and database.count("suppressions") == 0


def test_a_staged_full_rescoring_keeps_forget_out_until_it_published(postgres_demo, tmp_path):
    """A full rescoring staged, not yet published, holds the scoring lock: forget refuses
    with nothing deleted (its staged rows would bring the person back); once it published,
    forget removes the person from the live scores."""
    database = postgres_demo
    stage_rescore(database, AS_OF, run_id="nightly")
    phone = database.read_frame(f"SELECT phone_e164 FROM contacts WHERE id = {VICTIM}")[
        "phone_e164"
    ][0]
    with pytest.raises(LockBusy):
        forget(database, phone, tmp_path)
    assert database.count("suppressions") == 0
    assert (
        database.read_frame(f"SELECT count(*) AS n FROM contacts WHERE id = {VICTIM}")["n"][0] == 1
    )
    publish_rescore(database, "nightly")
    report = forget(database, phone, tmp_path)
    assert report.deleted["lead_scores"] == 1
    assert _leaks(database, phone, {VICTIM}) == {}


def test_a_staging_of_an_ml_table_keeps_forget_out(postgres_demo, tmp_path):
    """PostgreSQL: while a run stages contact_features (it may have read the person already),
    forget refuses with nothing deleted; once the staging is over it goes through."""
    database = postgres_demo
    phone = database.read_frame(f"SELECT phone_e164 FROM contacts WHERE id = {VICTIM}")[
        "phone_e164"
    ][0]
    with (
        StagedTable(database, "contact_features", run_id="features").stage(),
        pytest.raises(ForgetBusy, match="contact_features is being rebuilt"),
    ):
        forget(database, phone, tmp_path)
    assert database.count("suppressions") == 0 and database.count("writer_locks") == 0
    assert forget(database, phone, tmp_path).contacts == 1


def test_cli_prints_a_masked_summary(database_url, database, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LEAD_SCORING_EXPORT_DIR", str(tmp_path / "exports"))
    assert cli.main(["forget", "--phone", "427 118 5601", "--url", database_url]) == 0
    out = capsys.readouterr().out
    assert "+52 *** *** 5601" in out and "4271185601" not in out.replace(" ", "")
    assert cli.main(["forget", "--phone", "4271", "--url", database_url]) == 1
    assert "not a Mexican number" in capsys.readouterr().err


def test_admin_api_forgets_without_echoing_the_number(
    database, database_url, tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("LEAD_SCORING_EXPORT_DIR", str(tmp_path))
    pd.DataFrame({"t": ["4271185601"]}).to_csv(tmp_path / "lista.csv", index=False)
    app = create_app(database_url, ApiKeys(read=("r",), admin=("a",)), "secret")
    with TestClient(app) as client:
        body = {"phone": "+52 427 118 5601"}
        assert (
            client.post(
                "/api/v1/lead-scoring/forget", json=body, headers={"X-API-Key": "r"}
            ).status_code
            == 403
        )
        refused = client.post(
            "/api/v1/lead-scoring/forget", json={"phone": "42711"}, headers={"X-API-Key": "a"}
        )
        done = client.post("/api/v1/lead-scoring/forget", json=body, headers={"X-API-Key": "a"})
    assert refused.status_code == 400 and "42711" not in refused.text
    assert done.status_code == 200, done.text
    result = done.json()
    assert result["masked_phone"] == "+52 *** *** 5601" and result["files"] == ["lista.csv"]
    assert result["suppression_added"] and result["deleted"]["contacts"] == 0
    assert not phone_leaks([done.text, caplog.text], ["+524271185601"])
    assert database.count("suppressions") == 1


def test_the_documented_commands_print_the_documented_summary(tmp_path):
    """docs/arco.md: its first commands run (on a database in tmp_path) and print what it
    shows."""
    doc = (Path(__file__).parents[1] / "docs" / "arco.md").read_text()
    commands = doc.split("```bash\n", 1)[1].split("```", 1)[0]
    shown = doc.split("masked number:\n\n```\n", 1)[1].split("```", 1)[0]
    url = f"sqlite:///{tmp_path / 'arco.db'}"
    script = commands.replace("sqlite:///data/arco-example.db", url).replace(
        ".venv/bin/lead-scoring", f"{sys.executable} -m lead_scoring_assets.cli"
    )
    result = subprocess.run(
        ["bash", "-ec", script], capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.endswith(shown)


def test_campaign_counts_survive_the_forget(database, tmp_path):
    """A platform campaign without recipients rows is counted from its outcomes (all target
    arm) before the person's row goes; a campaign already counted keeps its counts."""
    at = database.bind_timestamp(AS_OF)
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO contacts (id, phone_e164, created_at) VALUES "
                "(1, '+524271185601', :at), (2, '+524271185602', :at)"
            ),
            {"at": at},
        )
        connection.execute(
            sa.text(
                "INSERT INTO campaigns (id, name, sent_at, target_recipients, control_recipients) "
                "VALUES (901, 'plataforma', :at, NULL, NULL), (902, 'planeada', :at, 50, 3)"
            ),
            {"at": at},
        )
        connection.execute(
            sa.text(
                "INSERT INTO campaign_outcomes (campaign_id, contact_id, delivered, converted) "
                "VALUES (901, 1, :yes, :no), (901, 2, :yes, :yes), (902, 1, :yes, :no)"
            ),
            {"yes": True, "no": False},
        )
    report = forget(database, "4271185601", tmp_path)
    assert report.campaigns_counted == [901] and report.deleted["campaign_outcomes"] == 2
    counts = database.read_frame(
        "SELECT id, target_recipients, control_recipients FROM campaigns ORDER BY id"
    )
    assert counts.values.tolist() == [[901, 2, 0], [902, 50, 3]]
