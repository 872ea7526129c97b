"""SMS replies: the keyword folding, the replies applied in received order on both dialects
(opt-out, opt-in lifting an earlier opt-out, the ordering rule, refused numbers), and the
sensor requesting ``opt_out_replies_job`` against a real Dagster instance."""

import unicodedata
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from lead_scoring_assets.cli import main
from lead_scoring_assets.consent import suppressions
from lead_scoring_assets.consent.keywords import (
    OPT_IN,
    OPT_IN_KEYWORDS,
    OPT_OUT,
    OPT_OUT_KEYWORDS,
    classify_reply,
)
from lead_scoring_assets.consent.replies import (
    NO_TIME_OPT_IN,
    apply_replies,
    waiting,
)
from lead_scoring_assets.defs.jobs import opt_out_replies_job
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.defs.sensors import build_sms_replies_sensor

T0 = pd.Timestamp("2026-11-30T12:00:00Z")
NOW = pd.Timestamp("2026-12-01T00:00:00Z")
NUMBER = "+524271185601"
ACCENTED = {"A": "áÁàâ", "E": "éÉè", "I": "íÍ", "O": "óÓö", "U": "úÚü", "N": "ñÑ"}


@st.composite
def typed_like_a_person(draw, keyword: str) -> str:
    """The keyword as a phone may send it: any case, accents on its vowels, punctuation and
    spaces around and between its words."""
    letters = []
    for char in keyword:
        choices = [char, char.lower(), *ACCENTED.get(char, "")]
        letters.append(draw(st.sampled_from(choices)))
    words = "".join(letters).split(" ")
    space = st.sampled_from([" ", "  ", "\t", " . ", "-", ", "])
    text = words[0] + "".join(draw(space) + word for word in words[1:])
    around = st.text(alphabet=" .!¡¿?,;:-\"'()*\n", max_size=4)
    return draw(around) + text + draw(around)


@given(st.data(), st.sampled_from(sorted(OPT_OUT_KEYWORDS | OPT_IN_KEYWORDS)))
def test_keywords_are_read_in_any_case_accent_punctuation_and_spacing(data, keyword):
    text = data.draw(typed_like_a_person(keyword))
    expected = OPT_OUT if keyword in OPT_OUT_KEYWORDS else OPT_IN
    assert classify_reply(text) == expected, text


@pytest.mark.parametrize(
    "body, expected",
    [
        ("Baja", OPT_OUT),
        ("BAJA.", OPT_OUT),
        ("¡¡alto!!", OPT_OUT),
        ("No más", OPT_OUT),
        ("NO   MAS!", OPT_OUT),
        ("nomás", None),
        ("Détener", OPT_OUT),
        ("stop", OPT_OUT),
        ("cancelar ", OPT_OUT),
        ("Alta", OPT_IN),
        ("START!", OPT_IN),
        ("no me des de baja", None),
        ("BAJAS", None),
        ("BAJA ALTA", None),
        ("gracias", None),
        ("", None),
        (None, None),
        ("B A J A", None),
        ("ＢＡＪＡ", OPT_OUT),
    ],
)
def test_the_keyword_table(body, expected):
    assert classify_reply(body) == expected


def test_every_documented_keyword_folds_to_itself():
    for keyword in OPT_OUT_KEYWORDS | OPT_IN_KEYWORDS:
        plain = unicodedata.normalize("NFKD", keyword)
        assert plain == keyword and keyword.upper() == keyword


def _reply(database, reply_id, phone, body, received_at):
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO sms_replies (id, phone_e164, body, received_at) "
                "VALUES (:id, :phone, :body, :at)"
            ),
            {
                "id": reply_id,
                "phone": phone,
                "body": body,
                "at": database.bind_timestamp(received_at),
            },
        )


def _opt_outs(database) -> list[tuple[str, str, pd.Timestamp]]:
    rows = database.read_frame(
        "SELECT phone_e164, source, recorded_at FROM suppressions "
        "WHERE reason = 'opt_out' ORDER BY phone_e164"
    )
    return [(r.phone_e164, r.source, suppressions.as_utc(r.recorded_at)) for r in rows.itertuples()]


def _minutes(n: int) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=n)


def test_replies_become_opt_outs_and_alta_lifts_them(database):
    _reply(database, 1, "044 427 118 5601", "Baja", _minutes(1))
    _reply(database, 2, "55 1234 5678", "gracias", _minutes(2))
    _reply(database, 3, "+52 1 55 8765 4321", "NO MÁS!", _minutes(3))
    _reply(database, 4, "12345", "BAJA", _minutes(4))
    _reply(database, 5, None, "STOP", _minutes(5))
    report = apply_replies(database, now=NOW)
    assert report.metadata() == {
        "replies_read": 5,
        "opt_outs_added": 2,
        "opt_outs_already_in_force": 0,
        "opt_ins_lifted": 0,
        "opt_ins_with_nothing_to_lift": 0,
        "ignored": 1,
        "refused": 2,
        "refused_by_reason": {
            "not a Mexican number: 5 digits, expected 10 (alone or after +52, 52, 0052, 521, "
            "044 or 045)": 1,
            "not a phone number: not text": 1,
        },
    }
    assert _opt_outs(database) == [
        (NUMBER, "reply 1", _minutes(1)),
        ("+525587654321", "reply 3", _minutes(3)),
    ]
    assert database.count("sms_replies") == 5
    assert waiting(database) == (0, None)
    _reply(database, 6, "4271185601", "ALTA", _minutes(10))
    _reply(database, 7, "5587654321", "baja", _minutes(11))
    report = apply_replies(database, now=NOW)
    assert (report.read, report.opt_ins_lifted, report.opt_outs_already_in_force) == (2, 1, 1)
    assert _opt_outs(database) == [("+525587654321", "reply 3", _minutes(3))]


def test_replies_apply_in_received_order_not_id_order(database):
    _reply(database, 1, "4271185601", "ALTA", _minutes(2))
    _reply(database, 2, "4271185601", "BAJA", _minutes(1))
    _reply(database, 3, "5512345678", "BAJA", _minutes(2))
    _reply(database, 4, "5512345678", "START", _minutes(1))
    report = apply_replies(database, now=NOW, batch_size=1)
    assert (report.opt_ins_lifted, report.opt_ins_with_nothing_to_lift) == (1, 1)
    assert _opt_outs(database) == [("+525512345678", "reply 3", _minutes(2))]


def test_an_older_baja_applied_after_a_newer_alta_still_suppresses(database):
    """The ordering rule: a reply acts on the rows as they are when it is applied."""
    _reply(database, 1, "4271185601", "BAJA", _minutes(1))
    apply_replies(database, now=NOW)
    _reply(database, 2, "4271185601", "ALTA", _minutes(10))
    assert apply_replies(database, now=NOW).opt_ins_lifted == 1
    _reply(database, 3, "427 118 5601", "Baja", _minutes(5))
    report = apply_replies(database, now=NOW)
    assert report.opt_outs_added == 1
    assert _opt_outs(database) == [(NUMBER, "reply 3", _minutes(5))]
    _reply(database, 4, "4271185601", "alta", _minutes(20))
    assert apply_replies(database, now=NOW).opt_ins_lifted == 1
    assert _opt_outs(database) == []


def test_alta_lifts_only_an_earlier_opt_out_and_never_other_reasons(database):
    suppressions.store(
        database, {NUMBER}, "repus", "file repus.csv", suppressions.ImportReport(), now=_minutes(0)
    )
    suppressions.store(
        database, {NUMBER}, "opt_out", "call centre", suppressions.ImportReport(), now=_minutes(30)
    )
    _reply(database, 1, "4271185601", "ALTA", _minutes(10))
    _reply(database, 2, "4271185601", "ALTA", None)
    report = apply_replies(database, now=NOW)
    assert (report.opt_ins_lifted, report.opt_ins_with_nothing_to_lift) == (0, 1)
    assert report.refused == {NO_TIME_OPT_IN: 1}
    assert [s.reason for s in suppressions.in_force(database, NUMBER, at=NOW)] == [
        "repus",
        "opt_out",
    ]


def test_an_opt_out_without_received_at_holds_from_its_processing(database):
    suppressions.store(
        database,
        {NUMBER},
        "opt_out",
        "call centre",
        suppressions.ImportReport(),
        expires_at=_minutes(60),
        now=_minutes(0),
    )
    _reply(database, 1, "4271185601", "BAJA", None)
    assert apply_replies(database, now=NOW).opt_outs_added == 1
    [row] = suppressions.in_force(database, NUMBER, at=NOW + pd.Timedelta(days=365))
    assert (row.source, row.recorded_at, row.expires_at) == ("reply 1", NOW, None)


def test_an_expired_opt_out_is_replaced_by_a_new_reply(database):
    suppressions.store(
        database,
        {NUMBER},
        "opt_out",
        "call centre",
        suppressions.ImportReport(),
        expires_at=_minutes(5),
        now=_minutes(0),
    )
    _reply(database, 1, "4271185601", "BAJA", _minutes(10))
    assert apply_replies(database, now=NOW).opt_outs_added == 1
    assert _opt_outs(database) == [(NUMBER, "reply 1", _minutes(10))]


def test_check_honours_an_unprocessed_alta_after_an_opt_out(database, capsys):
    """``check`` reads what an export reads (consent/in_force.py): an ALTA not yet processed
    that follows the stored opt-out lifts it; a BAJA not yet processed suppresses."""
    url = ["--url", database.url.render_as_string(hide_password=False)]
    _reply(database, 1, "044 427 118 5601", "baja", _minutes(1))
    apply_replies(database, now=NOW)
    _reply(database, 2, "4271185601", "Alta", _minutes(2))
    assert main(["suppressions", "check", "--phone", "4271185601", *url]) == 0
    assert capsys.readouterr().out == "+52 *** *** 5601 is not suppressed\n"
    _reply(database, 3, "5512345678", "BAJA", _minutes(3))
    assert main(["suppressions", "check", "--phone", "55 1234 5678", *url]) == 1
    assert capsys.readouterr().out == (
        "+52 *** *** 5678 suppressed: opt-out reply not yet processed\n"
    )


def _tick(sensor, instance, url):
    with dg.build_sensor_context(
        instance=instance, resources={"database": DatabaseResource(url=url)}
    ) as context:
        return sensor(context)


def test_the_sensor_requests_a_run_that_turns_a_baja_into_a_suppression(database, definitions):
    url = database.url.render_as_string(hide_password=False)
    sensor = definitions.resolve_sensor_def("sms_replies_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 30
    assert sensor.job_name == "opt_out_replies_job"
    with dg.instance_for_test() as instance:
        skipped = _tick(build_sms_replies_sensor(), instance, url)
        assert isinstance(skipped, dg.SkipReason)
        assert skipped.skip_message == "no unprocessed replies"
        _reply(database, 41, "044 427 118 5601", "BAJA", _minutes(1))
        _reply(database, 42, "5512345678", "hola", _minutes(2))
        request = _tick(build_sms_replies_sensor(), instance, url)
        assert request.run_key.startswith("sms-replies-42-")
        assert request.tags["lead_scoring/replies_waiting"] == "2"
        run = definitions.resolve_job_def(opt_out_replies_job.name).execute_in_process(
            instance=instance,
            tags={**request.tags, "dagster/run_key": request.run_key},
            resources={"database": DatabaseResource(url=url)},
        )
        assert run.success
        [event] = run.asset_materializations_for_node("opt_out_replies")
        metadata = {key: value.value for key, value in event.metadata.items()}
        assert (metadata["replies_read"], metadata["opt_outs_added"], metadata["ignored"]) == (
            2,
            1,
            1,
        )
        assert [s.source for s in suppressions.in_force(database, NUMBER)] == ["reply 41"]
        assert isinstance(_tick(build_sms_replies_sensor(), instance, url), dg.SkipReason)
        logged = " ".join(
            str(record.dagster_event or record.user_message)
            for record in instance.all_logs(run.run_id)
        )
        assert "4271185601" not in logged and "5512345678" not in logged


def test_the_sensor_waits_for_a_run_in_flight_and_retries_after_a_failed_one(database, definitions):
    """A run still going is not doubled; once it failed, the next tick asks for a new run under
    a new key (Dagster never launches a run key twice), so the replies never stay stuck."""
    url = database.url.render_as_string(hide_password=False)
    job = definitions.resolve_job_def(opt_out_replies_job.name)
    _reply(database, 41, "044 427 118 5601", "BAJA", _minutes(1))
    with dg.instance_for_test() as instance:
        first = _tick(build_sms_replies_sensor(), instance, url)
        running = instance.create_run_for_job(
            job, status=dg.DagsterRunStatus.STARTED, tags={"dagster/run_key": first.run_key}
        )
        waiting_for = _tick(build_sms_replies_sensor(), instance, url)
        assert isinstance(waiting_for, dg.SkipReason)
        assert running.run_id in waiting_for.skip_message
        instance.report_run_failed(running)
        again = _tick(build_sms_replies_sensor(), instance, url)
        assert isinstance(again, dg.RunRequest)
        assert again.run_key != first.run_key


def test_check_counts_an_opt_out_reply_not_yet_processed(database, capsys):
    url = ["--url", database.url.render_as_string(hide_password=False)]
    _reply(database, 1, "+52 1 427 118 5601", "Baja", _minutes(1))
    assert main(["suppressions", "check", "--phone", "4271185601", *url]) == 1
    assert capsys.readouterr().out == (
        "+52 *** *** 5601 suppressed: opt-out reply not yet processed\n"
    )
    apply_replies(database, now=NOW)
    assert main(["suppressions", "check", "--phone", "4271185601", *url]) == 1
    assert capsys.readouterr().out.startswith(
        "+52 *** *** 5601 suppressed: opt_out (reply 1), recorded 2026-11-30T12:01:00+00:00"
    )


def test_two_runs_at_once_apply_each_reply_once(database):
    """Two appliers (a run still going when the next is launched) take turns per batch: no
    reply is read twice, no opt-out inserted twice."""
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO sms_replies (id, phone_e164, body, received_at) "
                "VALUES (:id, :phone, 'BAJA', :at)"
            ),
            [
                {"id": i, "phone": f"55{i % 400:08d}", "at": database.bind_timestamp(_minutes(i))}
                for i in range(1, 1_201)
            ],
        )
    with ThreadPoolExecutor(2) as pool:
        reports = list(
            pool.map(lambda _: apply_replies(database, now=NOW, batch_size=50), range(2))
        )
    assert sum(r.read for r in reports) == 1_200
    assert sum(r.opt_outs_added for r in reports) == 400
    assert sum(r.opt_outs_already_in_force for r in reports) == 800
    assert database.count("suppressions") == 400 and waiting(database) == (0, None)
