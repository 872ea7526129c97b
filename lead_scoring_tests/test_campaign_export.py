"""Campaign segment export: filters, order, one row per phone, one snapshot, the export
folder, atomic 0600 files, the job's metadata."""

import hashlib
import itertools
import os
import stat

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from lead_scoring_assets.campaigns import segment_export
from lead_scoring_assets.campaigns.segment_export import (
    EXPORT_DIR_ENV,
    FLOOR_MARGIN,
    Segment,
    SegmentReader,
    UnsafeExportPath,
    _segment_query,
    export_dir,
    export_segment,
    select_segment,
)
from lead_scoring_assets.consent.in_force import read_in_force
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.defs.campaign_export import CampaignExportConfig, campaign_export_job
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.geography.states import normalize_state
from lead_scoring_assets.scoring.full_rescore import rescore_all

from .conftest import AS_OF


@pytest.fixture
def scored(demo_database, templates):
    return templates.cached(demo_database, "rescored", lambda db: rescore_all(db, AS_OF))


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """The export folder, set through LEAD_SCORING_EXPORT_DIR."""
    path = tmp_path / "exports"
    monkeypatch.setenv(EXPORT_DIR_ENV, str(path))
    return path


def _execute(database: Database, sql: str, params: dict | None = None) -> None:
    with database.engine.begin() as connection:
        connection.execute(sa.text(sql), params or {})


def _ordered(frame: pd.DataFrame) -> bool:
    keys = list(zip(-frame.total_score, -frame.confidence_level, frame.contact_id))
    return keys == sorted(keys)


def _read(path) -> pd.DataFrame:
    if str(path).endswith(".parquet"):
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype={"phone_e164": str})


def test_filters_and_order(scored):
    everyone = select_segment(scored, Segment())
    assert len(everyone) == scored.count("contacts") and _ordered(everyone)
    high = select_segment(scored, Segment(min_tier="high", min_confidence=0.8))
    assert len(high) and (high.total_score >= 75).all() and (high.confidence_level >= 0.8).all()
    assert len(high) == ((everyone.total_score >= 75) & (everyone.confidence_level >= 0.8)).sum()
    capital = select_segment(scored, Segment(min_score=30, states=("CDMX", "Edo. Méx.")))
    assert set(capital.state_name.map(normalize_state)) == {"CIUDAD DE MEXICO", "MEXICO"}
    assert (capital.total_score >= 30).all() and _ordered(capital)
    assert select_segment(scored, Segment(states=("Atlantis",))).empty


def test_limit_keeps_the_best_and_batches_add_up(scored):
    whole = select_segment(scored, Segment(states=("Jalisco",)))
    pd.testing.assert_frame_equal(
        whole, select_segment(scored, Segment(states=("Jalisco",)), batch_size=100)
    )
    top = select_segment(scored, Segment(states=("Jalisco",), limit=7), batch_size=3)
    pd.testing.assert_frame_equal(top, whole.head(7))
    assert len(select_segment(scored, Segment(limit=50), batch_size=50)) == 50


def test_unknown_tier_is_a_clear_error(scored):
    with pytest.raises(ValueError, match="unknown tier 'GOLD'"):
        select_segment(scored, Segment(min_tier="GOLD"))


def test_the_phone_comes_from_contacts(scored, folder):
    """A changed number is exported at once, and the change enqueues the contact."""
    contact_id = int(select_segment(scored, Segment(limit=1))["contact_id"].iloc[0])
    _execute(scored, "DELETE FROM scoring_queue")
    _execute(
        scored,
        "UPDATE contacts SET phone_e164 = '+523399990000', full_name = 'NEW OWNER' WHERE id = :id",
        {"id": contact_id},
    )
    report = export_segment(scored, Segment(limit=1), "top.csv")
    row = _read(report.path).iloc[0]
    assert (row.contact_id, row.phone_e164, row.full_name) == (
        contact_id,
        "+523399990000",
        "NEW OWNER",
    )
    queued = scored.read_frame("SELECT contact_id FROM scoring_queue")["contact_id"].tolist()
    assert queued == [contact_id]


def test_each_phone_once_best_score_then_latest_contact(scored, folder):
    everyone = select_segment(scored, Segment()).set_index("contact_id")
    best, second, low = everyone.index[0], everyone.index[1], everyone.index[-1]
    shared = everyone.loc[best, "phone_e164"]
    # `low` shares the best contact's phone: the best score wins
    _execute(
        scored, "UPDATE contacts SET phone_e164 = :p WHERE id = :id", {"p": shared, "id": int(low)}
    )
    # `second` and a copy of its score share a phone with `twin`: same score, later created wins
    twin = int(everyone.index[2])
    _execute(
        scored,
        "UPDATE contacts SET phone_e164 = :p, created_at = :newer WHERE id = :id",
        {
            "p": everyone.loc[second, "phone_e164"],
            "id": twin,
            "newer": scored.bind_timestamp(AS_OF),
        },
    )
    _execute(
        scored,
        "UPDATE contacts SET created_at = :older WHERE id = :id",
        {"older": scored.bind_timestamp(AS_OF - pd.Timedelta(days=900)), "id": int(second)},
    )
    _execute(
        scored,
        "UPDATE lead_scores SET total_score = (SELECT total_score FROM lead_scores "
        "WHERE contact_id = :second) WHERE contact_id = :twin",
        {"second": int(second), "twin": twin},
    )
    report = export_segment(scored, Segment(), "all.parquet", "parquet")
    exported = _read(report.path)
    assert exported["phone_e164"].is_unique
    assert report.duplicates_dropped == 2 and report.rows == len(everyone) - 2
    kept = set(exported["contact_id"])
    assert best in kept and low not in kept
    assert twin in kept and second not in kept


def test_each_phone_once_whatever_its_spelling(scored, folder):
    """Contacts holding one number in different spellings share it: the best keeps it (written
    canonical), whichever spelling it holds, in a limited export too; the others count as
    duplicates."""
    everyone = select_segment(scored, Segment()).set_index("contact_id")
    best, second, low, lower = (int(i) for i in everyone.index[[0, 1, -1, -2]])
    national = everyone.loc[best, "phone_e164"][3:]
    for contact_id, spelling in (
        (best, f"044{national}"),
        (low, f"({national[:3]}) {national[3:6]}.{national[6:]}"),
        (lower, f"52{everyone.loc[second, 'phone_e164'][3:]}"),
    ):
        _execute(
            scored,
            "UPDATE contacts SET phone_e164 = :p WHERE id = :id",
            {"p": spelling, "id": contact_id},
        )
    report = export_segment(scored, Segment(), "all.csv")
    exported = _read(report.path)
    assert report.duplicates_dropped == 2 and report.rows == len(everyone) - 2
    assert not {low, lower} & set(exported.contact_id)
    pd.testing.assert_frame_equal(
        exported.head(2), everyone.reset_index().head(2), check_dtype=False
    )
    top = export_segment(scored, Segment(limit=3), "top.csv")
    pd.testing.assert_frame_equal(_read(top.path), exported.head(3))
    assert top.duplicates_dropped == 2


def test_export_file_is_complete_private_and_hashed(scored, folder):
    report = export_segment(scored, Segment(min_tier="MEDIUM", limit=25), "sub/segment.csv")
    assert report.path == folder.resolve() / "sub" / "segment.csv"
    read = _read(report.path)
    assert report.rows == len(read) == 25 and _ordered(read)
    assert (read["total_score"] >= 50).all()
    assert stat.S_IMODE(report.path.stat().st_mode) == 0o600
    assert report.sha256 == hashlib.sha256(report.path.read_bytes()).hexdigest()
    assert sorted(p.name for p in report.path.parent.iterdir()) == ["segment.csv"]


def test_export_folder_defaults_to_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(EXPORT_DIR_ENV, raising=False)
    monkeypatch.setenv("LEAD_SCORING_DATA_DIR", str(tmp_path / "data"))
    assert export_dir() == tmp_path / "data" / "exports"


def test_paths_outside_the_export_folder_are_refused(scored, folder, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    folder.mkdir()
    (folder / "link").symlink_to(outside, target_is_directory=True)
    (folder / "file_link.csv").symlink_to(outside / "stolen.csv")
    for path in (
        "../escape.csv",
        str(outside / "abs.csv"),
        "link/escape.csv",
        "file_link.csv",
        "a/../../escape.csv",
        "",
    ):
        with pytest.raises(UnsafeExportPath, match="export folder"):
            export_segment(scored, Segment(limit=3), path)
    assert list(outside.iterdir()) == []


def test_an_existing_file_is_kept_unless_overwrite(scored, folder):
    first = export_segment(scored, Segment(limit=3), "list.csv")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_segment(scored, Segment(limit=5), "list.csv")
    assert _read(first.path).shape[0] == 3
    again = export_segment(scored, Segment(limit=5), "list.csv", overwrite=True)
    assert _read(again.path).shape[0] == 5
    assert stat.S_IMODE(again.path.stat().st_mode) == 0o600


def test_a_failed_export_leaves_no_file(scored, folder):
    def fail(rows: int) -> None:
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        export_segment(scored, Segment(), "big.csv", batch_size=100, after_batch=fail)
    assert list(folder.iterdir()) == []


def test_snapshot_sees_one_state_of_the_database(scored, database_url):
    """Every query in ``Database.snapshot()`` sees the database as of its first read, however
    much another connection commits meanwhile; on PostgreSQL it is REPEATABLE READ, read-only."""
    writer = Database(database_url)
    with scored.snapshot() as connection:
        before = connection.execute(sa.text("SELECT count(*) FROM lead_scores")).scalar()
        _execute(writer, "DELETE FROM lead_scores WHERE contact_id <= 10")
        after = connection.execute(sa.text("SELECT count(*) FROM lead_scores")).scalar()
        if scored.dialect == "postgresql":
            settings = connection.execute(
                sa.text(
                    "SELECT current_setting('transaction_isolation'), "
                    "current_setting('transaction_read_only')"
                )
            ).one()
            assert tuple(settings) == ("repeatable read", "on")
    writer.dispose()
    assert before == after == scored.count("lead_scores") + 10


@pytest.mark.parametrize("limited", [False, True], ids=["whole", "read_down"])
def test_export_reads_one_snapshot_while_scores_change(
    scored, folder, database_url, limited, monkeypatch
):
    """A second connection moves exported contacts down and waiting contacts up between the
    reader's fetches: the file still holds each contact once, exactly the segment as it was
    when the export started; also when a limited export reads down the scores in several
    passes (a margin of 0.02), the scores moving across its floors between them."""
    segment = Segment(min_score=1)
    at_start = select_segment(scored, segment)
    if limited:
        monkeypatch.setattr(segment_export, "FLOOR_MARGIN", 0.02)
        segment = Segment(min_score=1, limit=len(at_start) * 3 // 5)
        at_start = at_start.head(segment.limit)
    writer = Database(database_url)
    order = at_start["contact_id"].tolist()
    changes = []

    def move_scores(rows_fetched: int) -> None:
        exported, waiting = order[:rows_fetched][:5], order[rows_fetched:][-5:]
        with writer.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "UPDATE lead_scores SET total_score = 1, confidence_level = 0 "
                    "WHERE contact_id IN :ids"
                ).bindparams(sa.bindparam("ids", expanding=True)),
                {"ids": exported},
            )
            connection.execute(
                sa.text(
                    "UPDATE lead_scores SET total_score = 100, confidence_level = 1 "
                    "WHERE contact_id IN :ids"
                ).bindparams(sa.bindparam("ids", expanding=True)),
                {"ids": waiting},
            )
            connection.execute(
                sa.text("DELETE FROM lead_scores WHERE contact_id = :id"),
                {"id": order[-1 - len(changes)]},
            )
        changes.append(rows_fetched)

    report = export_segment(scored, segment, "snapshot.csv", batch_size=50, after_batch=move_scores)
    writer.dispose()
    exported = _read(report.path)
    batches = -(-len(at_start) // 50)
    passes = limited and database_url.startswith("postgresql")
    assert (len(changes) > batches if passes else len(changes) == batches) and batches > 10
    moved = select_segment(scored, segment)
    assert set(moved["contact_id"]) != set(at_start["contact_id"]) or not moved.equals(at_start)
    assert exported["contact_id"].is_unique
    pd.testing.assert_frame_equal(exported, at_start, check_dtype=False)


def test_campaign_export_job_reports_the_file_not_the_phones(scored, database_url, folder):
    result = campaign_export_job.execute_in_process(
        run_config=dg.RunConfig(
            {
                "export_campaign_segment": CampaignExportConfig(
                    min_tier="LOW", states=["NL"], output_path="nl.csv"
                )
            }
        ),
        resources={"database": DatabaseResource(url=database_url)},
    )
    assert result.success
    count = result.output_for_node("export_campaign_segment")
    exported = _read(folder / "nl.csv")
    assert count == len(exported) > 0
    output = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT)
    metadata = {k: v.value for k, v in output.step_output_data.metadata.items()}
    assert metadata["file"] == "nl.csv" and metadata["dagster/row_count"] == count
    assert metadata["sha256"] == hashlib.sha256((folder / "nl.csv").read_bytes()).hexdigest()
    text = repr(metadata) + "".join(str(e) for e in result.all_events)
    assert not [p for p in exported["phone_e164"] if p[3:] in text]
    with pytest.raises(UnsafeExportPath, match="export folder"):
        campaign_export_job.execute_in_process(
            run_config=dg.RunConfig(
                {
                    "export_campaign_segment": CampaignExportConfig(
                        output_path=os.path.join("..", "nl.csv")
                    )
                }
            ),
            resources={"database": DatabaseResource(url=database_url)},
        )


def _one_pass(database: Database, segment: Segment) -> tuple[pd.DataFrame, int]:
    """The segment by the one-pass query (every contact ranked within its number), and the
    contacts it drops as duplicates: the reference a limited export walking down must equal."""
    reader = SegmentReader(database, segment)
    with database.snapshot() as connection:
        queries = _segment_query(
            database,
            segment,
            reader._states(connection),
            read_in_force(connection, database),
            reader._renamed(connection),
        )
        rows = connection.execute(queries.rows, queries.params).all()
    names = segment.schema().names
    frame = pa.Table.from_pylist(
        [dict(zip(names, row[:-1])) for row in rows], schema=segment.schema()
    ).to_pandas()
    return frame, sum(row[-1] for row in rows) - len(rows)


def test_a_limited_export_reads_down_the_scores_and_equals_the_one_pass_ranking(
    scored, database_url, monkeypatch
):
    """PostgreSQL ranks only the contacts above a floor of the scores, in passes, instead of
    every contact of the segment (issue 26): the file and the duplicates dropped are those of
    the one-pass ranking, also for numbers held by contacts scored below the floor (in other
    spellings too) and when a first pass falls short (a state filter; a margin cut to 0.02
    makes every segment take several passes)."""
    everyone = select_segment(scored, Segment()).set_index("contact_id")
    top, low = everyone.index[:6], everyone.index[::-1][:6]
    for i, (best, worst) in enumerate(zip(top, low)):
        national = everyone.loc[best, "phone_e164"][3:]
        spelling = f"044{national}" if i % 2 else everyone.loc[best, "phone_e164"]
        _execute(
            scored,
            "UPDATE contacts SET phone_e164 = :p WHERE id = :id",
            {"p": spelling, "id": int(worst)},
        )
    statements = []
    sa.event.listen(
        scored.engine,
        "before_cursor_execute",
        lambda conn, cursor, sql, params, context, many: statements.append((sql, params)),
    )
    state = everyone.loc[top[0], "state_name"]
    segments = [
        Segment(limit=1),
        Segment(limit=5),
        Segment(limit=40),
        Segment(limit=len(everyone) // 2, min_score=10),
        Segment(limit=3, states=(state,)),
        Segment(limit=int((everyone.state_name == state).sum()) // 2, states=(state,)),
        Segment(limit=len(everyone)),
    ]
    for margin, segment in itertools.product((FLOOR_MARGIN, 0.02), segments):
        monkeypatch.setattr(segment_export, "FLOOR_MARGIN", margin)
        statements.clear()
        reader = SegmentReader(scored, segment, batch_size=7)
        read = pa.Table.from_batches(list(reader), schema=segment.schema()).to_pandas()
        expected, duplicates = _one_pass(scored, segment)
        pd.testing.assert_frame_equal(read, expected)
        assert (reader.rows, reader.duplicates_dropped) == (len(expected), duplicates), segment
        floors = [p["floor"] for sql, p in statements if isinstance(p, dict) and "floor" in p]
        if not database_url.startswith("postgresql"):
            assert not floors
        elif margin < 1 or segment.states:
            assert len(floors) > 1, "a first pass falling short: the walk goes on"
        elif segment.limit < len(everyone) // 4:
            assert floors and floors[0] > segment.min_total(), segment
        elif segment.limit >= len(everyone) // 2:
            assert floors == [segment.min_total()], "over half the scores: no floor, one pass"
    assert duplicates == 6
