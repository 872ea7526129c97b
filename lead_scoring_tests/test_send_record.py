"""A record of every send: the campaign and its recipients match the file, the control group
(share per decile and overall, stable across reruns and batch sizes, never in the file), the
feature log equals the training set's features, and failures leave neither file nor record."""

import hashlib
import json
import math

import adbc_driver_postgresql.dbapi as adbc
import dagster as dg
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from lead_scoring_assets.campaigns.segment_export import (
    EXPORT_DIR_ENV,
    ForgottenDuringExport,
    Segment,
    export_segment,
)
from lead_scoring_assets.campaigns.send_record import (
    REAL_FEATURES,
    CampaignPlan,
    CampaignRecording,
    CampaignRefused,
    control_quotas,
    draw_control,
)
from lead_scoring_assets.consent.forget import forget
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.defs.campaign_export import CampaignExportConfig, campaign_export_job
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.ml.conversion_features import (
    CATEGORICAL_COLUMNS,
    build_training_set,
    rejected_outcomes,
)
from lead_scoring_assets.ml.conversion_scores import write_conversion_scores
from lead_scoring_assets.ml.features import FEATURE_COLUMNS
from lead_scoring_assets.scoring.engine import utc_timestamp
from lead_scoring_assets.scoring.full_rescore import rescore_all

from .conftest import AS_OF


@pytest.fixture
def scored(demo_database, templates):
    """Demo contacts with lead scores and conversion_scores (the rule's deciles)."""
    return templates.cached(demo_database, "rescored_with_rule_conversion", _rescored)


def _rescored(database):
    rescore_all(database, AS_OF)
    write_conversion_scores(database, None, AS_OF)


def _new_recipients(database) -> int:
    """Recipients rows of campaigns other than the demo's six (whose control groups the
    demo writes)."""
    return int(
        database.read_frame("SELECT count(*) AS n FROM campaign_recipients WHERE campaign_id > 6")[
            "n"
        ].iloc[0]
    )


@pytest.fixture
def folder(tmp_path, monkeypatch):
    path = tmp_path / "exports"
    monkeypatch.setenv(EXPORT_DIR_ENV, str(path))
    return path


def _execute(database, sql: str, params: dict | None = None) -> None:
    with database.engine.begin() as connection:
        connection.execute(sa.text(sql), params or {})


def _record(
    database,
    name: str,
    segment=None,
    share=0.1,
    seed=0,
    campaign_id=None,
    batch_size=500,
    output=None,
    after_batch=None,
):
    segment = segment or Segment(min_score=1)
    recording = CampaignRecording.plan_for(
        database, CampaignPlan(name, campaign_id, control_share=share, control_seed=seed), segment
    )
    report = export_segment(
        database,
        segment,
        output or f"{name}.csv",
        batch_size=batch_size,
        after_batch=after_batch,
        select=recording.select,
        record=recording.record,
    )
    return recording, report


def _resources(database) -> dict:
    return {"database": DatabaseResource(url=database.url.render_as_string(hide_password=False))}


def _recipients(database, campaign_id: int) -> pd.DataFrame:
    return database.read_frame(
        "SELECT * FROM campaign_recipients WHERE campaign_id = :id ORDER BY rank",
        {"id": campaign_id},
    )


def _forget_record(database, campaign_id: int) -> None:
    for table, key in (
        ("campaign_recipient_features", "campaign_id"),
        ("campaign_recipients", "campaign_id"),
        ("campaigns", "id"),
    ):
        _execute(database, f"DELETE FROM {table} WHERE {key} = :id", {"id": campaign_id})


def test_control_quotas_add_up_by_largest_remainder():
    assert control_quotas({10: 10, 9: 10, 8: 10}, 0.05) == {10: 1, 9: 1, 8: 0}
    assert control_quotas({3: 7, 2: 13}, 0.5) == {3: 4, 2: 6}
    assert control_quotas({5: 100}, 0.29) == {5: 29}
    assert control_quotas({1: 3}, 0.0) == {1: 0}
    for counts in ({1: 999, 2: 1, 3: 17}, {d: 100 + 7 * d for d in range(11)}):
        for share in (0.01, 0.05, 0.13, 0.5, 0.99):
            quotas = control_quotas(counts, share)
            assert sum(quotas.values()) == math.floor(share * sum(counts.values()) + 0.5)
            assert all(
                math.floor(share * n) <= quotas[s] <= math.ceil(share * n)
                for s, n in counts.items()
            )


def test_the_draw_depends_on_campaign_contact_and_seed_only():
    ids = np.arange(1, 5_001, dtype="int64") * 37
    strata = (ids % 10 + 1).astype("int64")
    drawn = draw_control(7, ids, strata, 0.05, 0)
    assert drawn.sum() == 250
    shuffled = np.random.default_rng(1).permutation(len(ids))
    assert (draw_control(7, ids[shuffled], strata[shuffled], 0.05, 0) == drawn[shuffled]).all()
    assert (draw_control(8, ids, strata, 0.05, 0) != drawn).any()
    assert (draw_control(7, ids, strata, 0.05, 1) != drawn).any()
    assert not draw_control(7, ids, strata, 0.0, 0).any()


def test_bad_plans_are_refused():
    for share in (1.0, -0.1):
        with pytest.raises(CampaignRefused, match="control_share"):
            CampaignPlan("x", control_share=share)
    with pytest.raises(CampaignRefused, match="empty"):
        CampaignPlan("  ")
    with pytest.raises(CampaignRefused, match="sent_at 'next friday' is not a time"):
        CampaignPlan("x", sent_at="next friday")
    assert CampaignPlan("x", sent_at="2026-12-10 10:00-06:00").sent_at == pd.Timestamp(
        "2026-12-10T16:00:00Z"
    )


def test_recorded_rows_match_the_file_and_control_rows_stay_out(scored, folder):
    recording, report = _record(scored, "Buen Fin", share=0.1)
    exported = pd.read_csv(report.path, dtype={"phone_e164": str})
    recipients = _recipients(scored, recording.campaign_id)
    assert recording.campaign_id == 7  # the demo's campaigns are 1-6
    assert list(recipients["rank"]) == list(range(1, len(recipients) + 1))
    targets = recipients[recipients["arm"] == "target"]
    controls = recipients[recipients["arm"] == "control"]
    assert list(exported["contact_id"]) == list(targets["contact_id"])
    assert not set(controls["contact_id"]) & set(exported["contact_id"])
    assert len(controls) == math.floor(0.1 * len(recipients) + 0.5) > 0
    assert report.rows == len(exported) == recording.target
    whole = pd.DataFrame({"contact_id": recipients["contact_id"]}).merge(
        scored.read_frame(
            "SELECT contact_id, total_score, probability_decile FROM "
            "lead_scores JOIN conversion_scores USING (contact_id)"
        )
    )
    assert list(whole["total_score"]) == list(recipients["total_score"])
    assert list(whole["probability_decile"]) == list(recipients["probability_decile"])
    assert recipients["conversion_probability"].isna().all()
    assert recipients["model_version"].isna().all()
    campaign = scored.read_frame("SELECT * FROM campaigns WHERE id = 7").iloc[0]
    assert (campaign["name"], campaign["status"], campaign["file_name"]) == (
        "Buen Fin",
        "planned",
        "Buen Fin.csv",
    )
    assert campaign["file_sha256"] == hashlib.sha256(report.path.read_bytes()).hexdigest()
    assert (campaign["target_recipients"], campaign["control_recipients"]) == (
        len(targets),
        len(controls),
    )
    assert campaign["control_share"] == 0.1
    assert json.loads(campaign["filters"])["min_score"] == 1
    assert (
        utc_timestamp(campaign["as_of"]) == utc_timestamp(campaign["sent_at"]) == (recording.as_of)
    )
    assert sorted(p.name for p in folder.iterdir()) == ["Buen Fin.csv"]


def test_control_share_holds_per_decile_and_overall(scored, folder):
    recording, _ = _record(scored, "deciles", segment=Segment(), share=0.05)
    recipients = _recipients(scored, recording.campaign_id)
    per_decile = recipients.groupby("probability_decile")["arm"].agg(
        n="size", control=lambda arm: int((arm == "control").sum())
    )
    assert len(per_decile) == 10
    for n, control in per_decile.itertuples(index=False):
        assert math.floor(0.05 * n) <= control <= math.ceil(0.05 * n)
    assert per_decile["control"].sum() == math.floor(0.05 * len(recipients) + 0.5)
    assert recording.by_decile == {
        int(d): (int(n - c), int(c)) for d, (n, c) in per_decile.iterrows()
    }


def test_a_rerun_draws_the_same_group_whatever_the_batch_size(scored, folder):
    _record(scored, "again", campaign_id=40, batch_size=64)
    drawn = _recipients(scored, 40)
    _forget_record(scored, 40)
    _record(scored, "again", campaign_id=40, batch_size=5_000, output="again2.csv")
    pd.testing.assert_frame_equal(_recipients(scored, 40), drawn)
    _forget_record(scored, 40)
    _record(scored, "again", campaign_id=40, seed=1, output="again3.csv")
    assert not _recipients(scored, 40)["arm"].equals(drawn["arm"])


def test_a_used_name_or_id_is_refused_before_anything_is_written(scored, folder):
    _record(scored, "Navidad")
    before = {
        t: scored.count(t)
        for t in ("campaigns", "campaign_recipients", "campaign_recipient_features")
    }
    for plan, refusal in (
        (CampaignPlan("Navidad"), "name 'Navidad' is already used"),
        (CampaignPlan("Promo nueva", campaign_id=1), "id 1 is already used"),
    ):
        with pytest.raises(CampaignRefused, match=refusal):
            CampaignRecording.plan_for(scored, plan, Segment())
    with pytest.raises(CampaignRefused, match="name 'Navidad' is already used"):
        campaign_export_job.execute_in_process(
            run_config=dg.RunConfig(
                {
                    "export_campaign_segment": CampaignExportConfig(
                        output_path="other.csv", campaign_name="Navidad"
                    )
                }
            ),
            resources=_resources(scored),
        )
    assert {t: scored.count(t) for t in before} == before
    assert sorted(p.name for p in folder.iterdir()) == ["Navidad.csv"]


def test_a_person_forgotten_during_a_recorded_export_leaves_no_campaign(scored, folder):
    """``forget`` commits on another connection while a recorded export reads: neither the
    file nor the campaign's record is kept."""
    person = scored.read_frame(
        "SELECT c.phone_e164 FROM lead_scores s JOIN contacts c ON c.id = s.contact_id "
        "WHERE s.total_score >= 1 ORDER BY s.total_score DESC, s.contact_id LIMIT 1"
    )["phone_e164"].iloc[0]
    other = Database(scored.url.render_as_string(hide_password=False))
    forgotten = []

    def forget_meanwhile(rows: int) -> None:
        if not forgotten:
            forgotten.append(forget(other, person, folder))

    with pytest.raises(ForgottenDuringExport):
        _record(scored, "forgotten", share=0.0, after_batch=forget_meanwhile)
    other.dispose()
    assert forgotten[0].contacts == 1
    assert list(folder.iterdir()) == []
    assert scored.count("campaigns") == 6
    assert _new_recipients(scored) == scored.count("campaign_recipient_features") == 0


def test_a_failed_record_leaves_no_file(scored, folder):
    """The platform writes a campaign with the planned id while the export reads: the record
    is refused and no file is left; a file put in place meanwhile is left as it was."""

    def platform_takes_the_id(rows: int) -> None:
        if not scored.count("campaigns") > 6:
            _execute(
                scored,
                "INSERT INTO campaigns (id, name, sent_at) VALUES (7, 'x', :t)",
                {"t": scored.bind_timestamp(AS_OF)},
            )

    with pytest.raises(CampaignRefused, match="since the export started"):
        _record(scored, "raced", after_batch=platform_takes_the_id)
    assert list(folder.iterdir()) == []
    assert _new_recipients(scored) == scored.count("campaign_recipient_features") == 0

    def disk_full(rows: int) -> None:
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        _record(scored, "full", after_batch=disk_full)
    assert list(folder.iterdir()) == []

    def someone_writes_the_file(rows: int) -> None:
        (folder / "taken.csv").write_text("theirs")

    with pytest.raises(FileExistsError):
        _record(scored, "taken", after_batch=someone_writes_the_file)
    assert [p.name for p in folder.iterdir()] == ["taken.csv"]
    assert (folder / "taken.csv").read_text() == "theirs"
    assert scored.read_frame("SELECT id FROM campaigns WHERE name = 'taken'").empty
    assert _new_recipients(scored) == 0


def test_the_feature_log_equals_the_training_sets_features(scored, folder):
    """Every recipient's logged features, both arms, are what build_training_set computes for
    the same contact at the same time (REAL columns compared after the same float32 cast)."""
    recording, _ = _record(scored, "features", share=0.2, batch_size=700)
    recipients = _recipients(scored, recording.campaign_id)
    logged = scored.read_frame(
        "SELECT * FROM campaign_recipient_features WHERE campaign_id = :id ORDER BY contact_id",
        {"id": recording.campaign_id},
    )
    assert list(logged["contact_id"]) == sorted(recipients["contact_id"])
    assert set(logged["feature_set"]) == {"conversion_v1"}
    # every recipient a delivered target and the log set aside, only to have the training set
    # compute their features itself (it uses a logged vector as logged, never a control's)
    _execute(
        scored,
        "DELETE FROM campaign_recipient_features WHERE campaign_id = :id",
        {"id": recording.campaign_id},
    )
    _execute(
        scored,
        "UPDATE campaign_recipients SET arm = 'target' WHERE campaign_id = :id",
        {"id": recording.campaign_id},
    )
    _execute(
        scored,
        "INSERT INTO campaign_outcomes (campaign_id, contact_id, delivered, "
        "converted) SELECT campaign_id, contact_id, :yes, :no FROM "
        "campaign_recipients WHERE campaign_id = :id",
        {"yes": True, "no": False, "id": recording.campaign_id},
    )
    training = build_training_set(
        scored, as_of=recording.as_of + pd.Timedelta(days=31), chunk_size=777
    ).rows
    expected = training[training["campaign_id"] == recording.campaign_id].sort_values(
        "contact_id", ignore_index=True
    )
    assert len(expected) == len(logged) > 500
    for column in FEATURE_COLUMNS:
        want = expected[column].to_numpy()
        got = logged[column].to_numpy()
        if column in REAL_FEATURES:
            want, got = want.astype("float32"), got.astype("float32")
        else:
            want, got = want.astype("int64"), got.astype("int64")
        assert (want == got).all(), column
    for column in CATEGORICAL_COLUMNS:
        assert list(expected[column]) == list(logged[column]), column


def test_training_ignores_control_rows(scored, folder):
    """Control recipients (not delivered, converted observed) are accepted outcomes and take
    no part in the conversion training set: it holds delivered messages only."""
    recording, _ = _record(scored, "controls", share=0.3)
    recipients = _recipients(scored, recording.campaign_id)
    _execute(
        scored,
        "INSERT INTO campaign_outcomes (campaign_id, contact_id, delivered, "
        "converted) SELECT campaign_id, contact_id, arm = 'target', "
        "rank % 3 = 0 FROM campaign_recipients WHERE campaign_id = :id",
        {"id": recording.campaign_id},
    )
    controls = set(recipients.loc[recipients["arm"] == "control", "contact_id"])
    rejected = scored.read_frame(
        "SELECT contact_id FROM rejected_campaign_outcomes WHERE campaign_id = :id",
        {"id": recording.campaign_id},
    )
    assert rejected.empty and rejected_outcomes(scored).get("converted_without_delivery", 0) == 0
    rows = build_training_set(scored, as_of=recording.as_of + pd.Timedelta(days=31)).rows
    mine = rows[rows["campaign_id"] == recording.campaign_id]
    assert len(mine) == recording.target and not set(mine["contact_id"]) & controls


def test_campaign_export_job_records_the_campaign(scored, folder):
    resources = _resources(scored)
    plain = campaign_export_job.execute_in_process(
        run_config=dg.RunConfig(
            {"export_campaign_segment": CampaignExportConfig(output_path="plain.csv", limit=100)}
        ),
        resources=resources,
    )
    assert plain.success and scored.count("campaigns") == 6
    _execute(
        scored,
        "INSERT INTO suppressions (phone_e164, reason, source, recorded_at) "
        "SELECT phone_e164, 'repus', 'test', created_at FROM contacts "
        "WHERE id IN (SELECT contact_id FROM lead_scores WHERE total_score >= 1 "
        "ORDER BY contact_id LIMIT 7)",
    )
    result = campaign_export_job.execute_in_process(
        run_config=dg.RunConfig(
            {
                "export_campaign_segment": CampaignExportConfig(
                    output_path="dia.csv",
                    min_score=1,
                    campaign_name="Día de Muertos",
                    sent_at="2026-12-10T16:00:00Z",
                    cost_per_message=0.35,
                    value_per_conversion=120,
                    control_share=0.1,
                    control_seed=3,
                )
            }
        ),
        resources=resources,
    )
    assert result.success
    output = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT)
    metadata = {k: v.value for k, v in output.step_output_data.metadata.items()}
    campaign = scored.read_frame("SELECT * FROM campaigns WHERE name = 'Día de Muertos'").iloc[0]
    assert metadata["campaign_id"] == campaign["id"] == 7
    assert (
        metadata["target_recipients"]
        == campaign["target_recipients"]
        == metadata["dagster/row_count"]
    )
    assert metadata["control_recipients"] == campaign["control_recipients"] > 0
    assert metadata["suppressed_contacts"] == campaign["suppressed"] == 7
    assert "| decile | target | control |" in metadata["recipients_by_decile"]
    assert utc_timestamp(campaign["sent_at"]) == pd.Timestamp("2026-12-10T16:00:00Z")
    assert (campaign["cost_per_message"], campaign["value_per_conversion"]) == (0.35, 120)
    exported = pd.read_csv(folder / "dia.csv", dtype={"phone_e164": str})
    text = repr(metadata) + "".join(str(e) for e in result.all_events)
    assert not [p for p in exported["phone_e164"] if p[3:] in text]
    with pytest.raises(ValueError, match="need a campaign_name"):
        campaign_export_job.execute_in_process(
            run_config=dg.RunConfig(
                {
                    "export_campaign_segment": CampaignExportConfig(
                        output_path="x.csv", campaign_id=9
                    )
                }
            ),
            resources=resources,
        )


def test_model_version_is_recorded_where_a_probability_was_read(scored, folder):
    _execute(
        scored,
        "UPDATE conversion_scores SET conversion_probability = 0.25, "
        "model_version = '12', method = 'hgb' WHERE probability_decile >= 5",
    )
    recording, _ = _record(scored, "versioned", segment=Segment())
    recipients = _recipients(scored, recording.campaign_id)
    modelled = recipients["probability_decile"] >= 5
    assert (recipients.loc[modelled, "model_version"] == "12").all()
    assert (recipients.loc[modelled, "conversion_probability"] == np.float32(0.25)).all()
    assert recipients.loc[~modelled, "model_version"].isna().all()


def test_the_platform_still_writes_campaigns_with_three_columns(database):
    """Every column 0015 added to campaigns is nullable: a frame of (id, name, sent_at)
    appends on both dialects (PostgreSQL's ADBC path took every column of the table)."""
    database.append_frame(
        "campaigns",
        pd.DataFrame(
            {
                "id": [1],
                "name": ["Promo"],
                "sent_at": pd.Series([AS_OF], dtype="datetime64[us, UTC]"),
            }
        ),
    )
    row = database.read_frame("SELECT * FROM campaigns").iloc[0]
    assert (row["id"], row["name"]) == (1, "Promo") and pd.isna(row["status"])


def test_a_commit_that_fails_after_the_rename_removes_the_file(postgres_demo, folder):
    """PostgreSQL: a deferred constraint trigger refuses the campaign at commit, after the
    file was renamed into place; the file goes, nothing is recorded."""
    rescore_all(postgres_demo, AS_OF)
    _execute(
        postgres_demo,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$",
    )
    _execute(
        postgres_demo,
        "CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON "
        "campaigns DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
        "EXECUTE FUNCTION refuse()",
    )
    with pytest.raises(adbc.Error, match="refused at commit"):
        _record(postgres_demo, "late")
    assert list(folder.iterdir()) == []
    assert postgres_demo.count("campaigns") == 6
    assert _new_recipients(postgres_demo) == 0
