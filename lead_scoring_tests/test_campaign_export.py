"""Campaign segment export: filtering, ordering, limit, formats, the job."""

import dagster as dg
import pandas as pd
import pytest

from lead_scoring_assets.campaigns.segment_export import Segment, export_segment, select_segment
from lead_scoring_assets.defs.campaign_export import CampaignExportConfig, campaign_export_job
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.geography.states import normalize_state
from lead_scoring_assets.scoring.full_rescore import rescore_all

from .conftest import AS_OF


@pytest.fixture
def scored(demo_database):
    rescore_all(demo_database, AS_OF)
    return demo_database


def _ordered(frame: pd.DataFrame) -> bool:
    keys = list(zip(-frame.total_score, -frame.confidence_level, frame.contact_id))
    return keys == sorted(keys)


def test_filters_and_order(scored):
    everyone = select_segment(scored, Segment())
    assert len(everyone) == scored.count("contacts") and _ordered(everyone)
    high = select_segment(scored, Segment(min_tier="high", min_confidence=0.8))
    assert len(high) and (high.total_score >= 75).all() and (high.confidence_level >= 0.8).all()
    assert len(high) == ((everyone.total_score >= 75) & (everyone.confidence_level >= 0.8)).sum()
    capital = select_segment(scored, Segment(min_score=30, states=("CDMX", "Edo. Méx.")))
    assert set(capital.state_name.map(normalize_state)) == {"CIUDAD DE MEXICO", "MEXICO"}
    assert (capital.total_score >= 30).all() and _ordered(capital)


def test_limit_keeps_the_best_and_pages_add_up(scored):
    whole = select_segment(scored, Segment(states=("Jalisco",)))
    paged = select_segment(scored, Segment(states=("Jalisco",)), page_size=100)
    pd.testing.assert_frame_equal(whole, paged)
    top = select_segment(scored, Segment(states=("Jalisco",), limit=7), page_size=3)
    pd.testing.assert_frame_equal(top, whole.head(7))
    exact = select_segment(scored, Segment(limit=50), page_size=50)
    assert len(exact) == 50


def test_unknown_tier_is_a_clear_error(scored):
    with pytest.raises(ValueError, match="unknown tier 'GOLD'"):
        select_segment(scored, Segment(min_tier="GOLD"))


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_export_writes_the_file(scored, tmp_path, file_format):
    path = tmp_path / "out" / f"segment.{file_format}"
    count = export_segment(scored, Segment(min_tier="MEDIUM", limit=25), path, file_format)
    read = pd.read_csv(path) if file_format == "csv" else pd.read_parquet(path)
    assert count == len(read) == 25
    assert read["total_score"].is_monotonic_decreasing and (read["total_score"] >= 50).all()


def test_campaign_export_job_reports_the_count(scored, database_url, tmp_path):
    path = tmp_path / "premium.csv"
    result = campaign_export_job.execute_in_process(
        run_config=dg.RunConfig({"export_campaign_segment": CampaignExportConfig(
            min_tier="LOW", states=["NL"], output_path=str(path))}),
        resources={"database": DatabaseResource(url=database_url)},
    )
    assert result.success
    count = result.output_for_node("export_campaign_segment")
    assert count == len(pd.read_csv(path)) > 0
