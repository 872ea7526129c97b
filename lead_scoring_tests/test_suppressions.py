"""The suppression list and its CLI: every phone form is one number, refused lines are
reported by line number without the number, a REPUS import replaces its snapshot, other
reasons add and keep the earliest evidence, a failed import changes nothing; hard bounces."""

import re

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from lead_scoring_assets.cli import main
from lead_scoring_assets.consent import suppressions
from lead_scoring_assets.consent.suppressions import ImportRefused, read_phone_lines
from lead_scoring_assets.defs.assets.hard_bounce_suppressions import hard_bounce_suppressions
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.defs.suppression_import import (
    IMPORT_DIR_ENV,
    SuppressionImportConfig,
    suppressions_import_job,
)

from .test_phones import PREFIXES

NATIONAL = "4271185601"
E164 = "+524271185601"
FORMS = [f"{prefix} 427 118 5601".strip() for prefix in PREFIXES] + [
    "(427) 118-5601",
    "045 (427) 118-5601",
    "0052 427.118.5601",
    "+5214271185601",
]
T1 = pd.Timestamp("2026-11-01T00:00:00Z")
T2 = pd.Timestamp("2026-11-10T00:00:00Z")
T3 = pd.Timestamp("2026-11-20T00:00:00Z")


def _url(database) -> str:
    return database.url.render_as_string(hide_password=False)


def _rows(database, reason=None) -> pd.DataFrame:
    where = "WHERE reason = :reason " if reason else ""
    return database.read_frame(
        f"SELECT phone_e164, reason, source, recorded_at, expires_at FROM suppressions {where}"
        "ORDER BY phone_e164, reason",
        {"reason": reason} if reason else None,
    )


def _numbers(*nationals: str) -> set[str]:
    return {f"+52{n}" for n in nationals}


def _store(database, nationals, reason, source="test", expires_at=None, now=T1):
    return suppressions.store(
        database, _numbers(*nationals), reason, source, suppressions.ImportReport(), expires_at, now
    )


def test_every_phone_form_is_one_number(database, tmp_path, capsys):
    path = tmp_path / "repus.csv"
    path.write_text(
        "nombre,Teléfono\n" + "".join(f'x,"{form}"\n' for form in FORMS), encoding="utf-8"
    )
    assert (
        main(["suppressions", "import", "--reason", "repus", str(path), "--url", _url(database)])
        == 0
    )
    out = capsys.readouterr().out
    assert f"{len(FORMS)} lines, 1 numbers ({len(FORMS) - 1} repeated), 0 lines refused" in out
    assert _rows(database)["phone_e164"].tolist() == [E164]
    for form in FORMS:
        assert main(["suppressions", "check", "--phone", form, "--url", _url(database)]) == 1
        assert "suppressed: repus (file repus.csv)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text, expected",
    [
        ("phone\n5512345678\n", [(2, "5512345678")]),
        ("id,phone_e164\n1,+525512345678\n", [(2, "+525512345678")]),
        ("TELEFONO;nombre\n55 1234 5678;Ana\n", [(2, "55 1234 5678")]),
        ("Número\t\n044 55 1234 5678\t\n", [(2, "044 55 1234 5678")]),
        ("5512345678,Ana\n5587654321,Luis\n", [(1, "5512345678"), (2, "5587654321")]),
        (
            "+52 1 55 1234 5678\n\n(55) 8765-4321\n",
            [(1, "+52 1 55 1234 5678"), (3, "(55) 8765-4321")],
        ),
        ("phone\n\n5512345678\n", [(3, "5512345678")]),
        ("", []),
    ],
)
def test_phone_column_headers_and_plain_lists(text, expected):
    assert list(read_phone_lines(text.splitlines(keepends=True))) == expected


def test_a_header_without_a_phone_column_is_refused():
    with pytest.raises(
        ImportRefused,
        match="line 1 looks like a header without a phone "
        "column: name it one of numero, phone, phone_e164, telefono",
    ):
        list(read_phone_lines(["nombre,celular\n", "Ana,5512345678\n"]))


def test_refused_lines_are_reported_by_line_number_without_the_number(database, tmp_path, capsys):
    refused = {3: "55123456", 5: "+1 212 555 0100", 6: "55 1234 567X"}
    lines = ["phone", "5512345678", refused[3], "5587654321", refused[5], refused[6]]
    path = tmp_path / "list.txt"
    path.write_text("\n".join(lines) + "\n")
    assert (
        main(["suppressions", "import", "--reason", "manual", str(path), "--url", _url(database)])
        == 0
    )
    out = capsys.readouterr().out
    assert "5 lines, 2 numbers (0 repeated), 3 lines refused" in out
    assert "added 2, removed 0, kept 0" in out
    assert "line 3 refused: not a Mexican number: 8 digits, expected 10" in out
    assert "line 5 refused: not a Mexican number: country code 1 is not Mexico" in out
    assert "line 6 refused: not a phone number: contains letters" in out
    digits = set(re.findall(r"\d{5,}", out))
    assert not digits & {re.sub(r"\D", "", text) for text in lines}


def test_a_file_with_no_accepted_number_changes_nothing(database, tmp_path):
    _store(database, ["5512345678"], "repus")
    path = tmp_path / "wrong.csv"
    path.write_text("phone\n123\nabc\n")
    with pytest.raises(
        ImportRefused,
        match=r"wrong.csv: no number accepted \(2 lines, 2 "
        r"refused\); nothing changed",
    ):
        suppressions.import_file(database, path, "repus")
    assert _rows(database)["phone_e164"].tolist() == ["+525512345678"]


def test_a_repus_import_replaces_the_previous_snapshot(database):
    _store(database, ["5500000001", "5500000002", "5500000003"], "repus", "file june.csv")
    _store(database, ["5500000001"], "manual")
    report = _store(
        database, ["5500000002", "5500000003", "5500000004"], "repus", "file july.csv", now=T2
    )
    assert (report.added, report.removed, report.kept) == (1, 1, 2)
    repus = _rows(database, "repus")
    assert repus["phone_e164"].tolist() == ["+525500000002", "+525500000003", "+525500000004"]
    assert repus["source"].tolist() == ["file june.csv", "file june.csv", "file july.csv"]
    assert _rows(database, "manual")["phone_e164"].tolist() == ["+525500000001"]


def test_other_reasons_add_and_keep_the_earliest_evidence(database):
    first = _store(
        database, ["5500000001", "5500000002"], "manual", "ticket 1", expires_at=T3, now=T1
    )
    again = _store(
        database,
        ["5500000001", "5500000003"],
        "manual",
        "ticket 2",
        expires_at=T3 + pd.Timedelta(days=30),
        now=T2,
    )
    shorter = _store(database, ["5500000001"], "manual", "ticket 3", expires_at=T2, now=T2)
    assert (first.added, again.added, again.kept, again.removed) == (2, 1, 1, 0)
    assert (shorter.added, shorter.kept) == (0, 1)
    rows = _rows(database).set_index("phone_e164")
    kept = rows.loc["+525500000001"]
    assert kept["source"] == "ticket 1"
    assert suppressions.as_utc(kept["recorded_at"]) == T1
    assert suppressions.as_utc(kept["expires_at"]) == T3 + pd.Timedelta(days=30)
    assert suppressions.as_utc(rows.loc["+525500000002", "expires_at"]) == T3
    never = _store(database, ["5500000002"], "manual", "ticket 4", now=T2)
    assert (never.added, never.kept) == (0, 1)
    assert (
        suppressions.as_utc(
            _rows(database).set_index("phone_e164").loc["+525500000002", "expires_at"]
        )
        is None
    )


def test_an_expired_row_stops_applying_and_is_renewed_as_new(database):
    _store(database, ["5500000001"], "manual", "ticket 1", expires_at=T2, now=T1)
    assert [s.reason for s in suppressions.in_force(database, "5500000001", at=T1)] == ["manual"]
    assert suppressions.in_force(database, "5500000001", at=T3) == []
    counts = suppressions.counts(database, at=T3)
    assert counts.to_dict("records") == [{"reason": "manual", "in_force": 0, "expired": 1}]
    renewed = _store(database, ["5500000001"], "manual", "ticket 2", now=T3)
    assert renewed.added == 1
    [row] = suppressions.in_force(database, "5500000001", at=T3)
    assert (row.source, row.recorded_at, row.expires_at) == ("ticket 2", T3, None)


def test_a_failed_import_changes_nothing(database):
    """The database refuses one insert (a trigger): the repus rows the import had already
    removed are back, nothing was added."""
    _store(database, ["5500000001", "5500000002"], "repus", "file june.csv")
    with database.engine.begin() as connection:
        if database.dialect == "postgresql":
            connection.execute(
                sa.text(
                    "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "IF NEW.phone_e164 = '+525500000009' THEN RAISE EXCEPTION 'refused'; END IF; "
                    "RETURN NEW; END $$"
                )
            )
            connection.execute(
                sa.text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON suppressions "
                    "FOR EACH ROW EXECUTE FUNCTION refuse()"
                )
            )
        else:
            connection.execute(
                sa.text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON suppressions "
                    "WHEN NEW.phone_e164 = '+525500000009' BEGIN SELECT RAISE(ABORT, 'refused'); "
                    "END"
                )
            )
    with pytest.raises(sa.exc.DatabaseError, match="refused"):
        _store(database, ["5500000003", "5500000009"], "repus", "file july.csv", now=T2)
    repus = _rows(database, "repus")
    assert repus["phone_e164"].tolist() == ["+525500000001", "+525500000002"]
    assert set(repus["source"]) == {"file june.csv"}


def test_add_remove_list_and_check_from_the_command_line(database, capsys):
    url = ["--url", _url(database)]
    assert main(["suppressions", "list", *url]) == 0
    assert capsys.readouterr().out == "no suppressions\n"
    assert (
        main(
            [
                "suppressions",
                "add",
                "--phone",
                "044 427 118 5601",
                "--reason",
                "manual",
                "--source",
                "ticket 7",
                *url,
            ]
        )
        == 0
    )
    assert (
        main(["suppressions", "add", "--phone", "+52 1 427 118 5601", "--reason", "manual", *url])
        == 0
    )
    assert main(["suppressions", "add", "--phone", "5512345678", "--reason", "arco", *url]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "+52 *** *** 5601 added as manual",
        "+52 *** *** 5601 already suppressed as manual",
        "+52 *** *** 5678 added as arco",
    ]
    assert main(["suppressions", "list", *url]) == 0
    out = capsys.readouterr().out
    assert re.search(r"arco\s+1\s+0", out) and re.search(r"manual\s+1\s+0", out)
    assert "+52 *** *** 5601  manual      ticket 7" in out
    assert NATIONAL not in out and "5512345678" not in out
    assert main(["suppressions", "list", "--reason", "arco", "--limit", "5", *url]) == 0
    assert "5601" not in capsys.readouterr().out.split("expired", 1)[1]
    assert main(["suppressions", "check", "--phone", NATIONAL, *url]) == 1
    assert "+52 *** *** 5601 suppressed: manual (ticket 7), recorded " in (capsys.readouterr().out)
    assert (
        main(["suppressions", "remove", "--phone", "0052 427 118 5601", "--reason", "manual", *url])
        == 0
    )
    assert main(["suppressions", "remove", "--phone", NATIONAL, "--reason", "manual", *url]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "+52 *** *** 5601: removed manual suppression",
        "+52 *** *** 5601: had no manual suppression",
    ]
    assert main(["suppressions", "check", "--phone", NATIONAL, *url]) == 0
    assert capsys.readouterr().out == "+52 *** *** 5601 is not suppressed\n"


def test_refused_input_exits_2_with_the_reason_and_without_the_number(database, capsys):
    url = ["--url", _url(database)]
    assert main(["suppressions", "check", "--phone", "427118560", *url]) == 2
    assert (
        main(["suppressions", "add", "--phone", "+1 212 555 0100", "--reason", "manual", *url]) == 2
    )
    assert main(["suppressions", "import", "--reason", "repus", "missing.csv", *url]) == 2
    err = capsys.readouterr().err
    assert "lead-scoring suppressions check: not a Mexican number: 9 digits" in err
    assert "lead-scoring suppressions add: not a Mexican number: country code 1" in err
    assert "lead-scoring suppressions import: " in err and "missing.csv" in err
    assert "427118560" not in err and "2125550100" not in err
    assert database.count("suppressions") == 0


CAMPAIGNS_SENT = {
    1: "2026-01-10",
    2: "2026-02-10",
    3: "2026-03-10",
    4: "2025-12-10",
    5: "2026-04-10",
    6: "2026-05-10",
}
"""Campaign 4 was sent first: the last three campaigns go by sent_at, not by id."""
CONTACT_PHONES = {
    1: "+525500000001",
    2: "+525500000001",
    3: "+525500000003",
    4: "+525500000004",
    5: "+525500000005",
    6: "+525500000006",
    7: "+525500000006",
    8: "+525500000008",
    9: "+525500000009",
}
"""Contacts 1 and 2 share a number, as do 6 and 7."""
OUTCOMES = [
    # (campaign, contact, delivered)
    (1, 1, False),
    (2, 2, False),
    (3, 1, False),  # shared number, three bounces together
    (1, 3, False),
    (2, 3, False),
    (3, 3, True),  # delivered in the latest
    (1, 4, False),
    (2, 4, False),
    (3, 4, False),  # ... but campaign 2 was a control draw
    (1, 5, False),
    (3, 5, False),  # only two campaigns
    (4, 8, True),
    (2, 8, False),
    (3, 8, False),
    (5, 8, False),  # last three by sent_at
    (1, 6, False),
    (2, 6, False),
    (3, 6, False),
    (3, 7, True),  # 7 got campaign 3
    (1, 9, False),
    (2, 9, None),
    (3, 9, False),  # no delivered value: no send
]


def _execute(database, sql, rows):
    with database.engine.begin() as connection:
        connection.execute(sa.text(sql), rows)


def _campaign_history(database):
    _execute(
        database,
        "INSERT INTO contacts (id, phone_e164) VALUES (:id, :phone)",
        [{"id": i, "phone": p} for i, p in CONTACT_PHONES.items()],
    )
    _execute(
        database,
        "INSERT INTO campaigns (id, name, sent_at) VALUES (:id, :name, :at)",
        [
            {"id": i, "name": f"c{i}", "at": database.bind_timestamp(pd.Timestamp(d, tz="UTC"))}
            for i, d in CAMPAIGNS_SENT.items()
            if i != 6
        ],
    )
    _execute(
        database,
        "INSERT INTO campaign_outcomes (campaign_id, contact_id, delivered, "
        "converted) VALUES (:campaign, :contact, :delivered, :no)",
        [{"campaign": c, "contact": k, "delivered": d, "no": False} for c, k, d in OUTCOMES],
    )
    _execute(
        database,
        "INSERT INTO campaign_recipients (campaign_id, contact_id, arm) VALUES (2, 4, 'control')",
        {},
    )


def _bounce_run(database):
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [hard_bounce_suppressions],
            instance=instance,
            resources={"database": DatabaseResource(url=_url(database))},
        )
    [event] = result.asset_materializations_for_node("hard_bounce_suppressions")
    return {key: value.value for key, value in event.metadata.items()}


def test_hard_bounces_are_suppressed_until_delivered_again(database):
    _campaign_history(database)
    suppressions.store(
        database,
        {"+525500000003"},
        "hard_bounce",
        "file bounces.csv",
        suppressions.ImportReport(),
        now=T1,
    )
    assert _bounce_run(database) == {"added": 2, "lifted": 0, "in_force": 3}
    rows = _rows(database, "hard_bounce")
    assert list(zip(rows["phone_e164"], rows["source"])) == [
        ("+525500000001", "campaigns 1, 2, 3"),
        ("+525500000003", "file bounces.csv"),
        ("+525500000008", "campaigns 2, 3, 5"),
    ]
    assert _bounce_run(database) == {"added": 0, "lifted": 0, "in_force": 3}
    _execute(
        database,
        "INSERT INTO campaigns (id, name, sent_at) VALUES (6, 'c6', :at)",
        {"at": database.bind_timestamp(pd.Timestamp(CAMPAIGNS_SENT[6], tz="UTC"))},
    )
    _execute(
        database,
        "INSERT INTO campaign_outcomes (campaign_id, contact_id, delivered, "
        "converted) VALUES (6, 2, :yes, :no), (6, 8, :no, :no)",
        {"yes": True, "no": False},
    )
    assert _bounce_run(database) == {"added": 0, "lifted": 1, "in_force": 2}
    rows = _rows(database, "hard_bounce")
    assert list(zip(rows["phone_e164"], rows["source"])) == [
        ("+525500000003", "file bounces.csv"),
        ("+525500000008", "campaigns 2, 3, 5"),
    ]


def test_the_nightly_job_updates_the_hard_bounces(definitions):
    job = definitions.resolve_job_def("nightly_retrain_job")
    assert dg.AssetKey("hard_bounce_suppressions") in job.asset_layer.executable_asset_keys
    graph = definitions.resolve_asset_graph()
    assert {
        key.to_user_string()
        for key in graph.get(dg.AssetKey("hard_bounce_suppressions")).parent_keys
    } == {"campaign_outcomes", "contacts"}
    assert graph.get(dg.AssetKey("opt_out_replies")).group_name == "consent"


def test_the_import_job_records_a_file_of_the_import_folder(database, tmp_path, monkeypatch):
    """suppressions_import_job: the file is read from the import folder, its counts and refused
    line numbers are in the metadata without a number; a path out of the folder is refused."""
    monkeypatch.setenv(IMPORT_DIR_ENV, str(tmp_path))
    (tmp_path / "repus.csv").write_text("telefono\n044 427 118 5601\n12345\n+52 55 1234 5678\n")
    resources = {"database": DatabaseResource(url=_url(database))}

    def run(file: str):
        return suppressions_import_job.execute_in_process(
            run_config=dg.RunConfig(
                {"import_suppressions": SuppressionImportConfig(file=file, reason="repus")}
            ),
            resources=resources,
            raise_on_error=False,
        )

    result = run("repus.csv")
    assert result.success
    [output] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT]
    metadata = {k: v.value for k, v in output.step_output_data.metadata.items()}
    assert (metadata["added"], metadata["refused_lines"], metadata["first_refused"][0]["line"]) == (
        2,
        1,
        3,
    )
    assert set(_rows(database, "repus")["phone_e164"]) == _numbers("4271185601", "5512345678")
    text = repr(metadata) + "".join(str(e) for e in result.all_events)
    assert "4271185601" not in text and "5512345678" not in text
    (tmp_path.parent / "outside.csv").write_text("4271185602\n")
    for escape in ("../outside.csv", str(tmp_path.parent / "outside.csv")):
        outside = run(escape)
        assert not outside.success
        error = outside.failure_data_for_node("import_suppressions").error
        assert "inside the import folder" in error.cause.message
    assert database.count("suppressions") == 2
