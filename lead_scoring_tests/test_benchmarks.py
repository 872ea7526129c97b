"""The benchmark machinery: fresh processes, the full-scale load in arrival order, and the
reader-latency and forget benchmarks' documented commands, the API benchmark's rate search
and its small run on SQLite and PostgreSQL."""

import json
import re
import subprocess
import sys

import psycopg
import pytest
import sqlalchemy as sa

from benchmarks.fresh_process import run_in_fresh_process
from benchmarks.full_rescore import database_exists
from benchmarks.full_scale import (
    Server,
    load_in_arrival_order,
    rewritten_bytes,
    row_groups,
)
from lead_scoring_assets.db.database import Database


def _benchmark(module: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m benchmarks.<module> args`` in a fresh process, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def failing_step() -> dict:
    raise ValueError("the step broke")


def test_a_failing_step_raises_instead_of_waiting_forever():
    with pytest.raises(RuntimeError, match="failing_step failed"):
        run_in_fresh_process(failing_step)


def test_row_groups_cut_between_rows_only():
    stream = [b"1\ta\n2\tb", b"\n3\tc\n4", b"\td\n5\te\n"]
    assert list(row_groups(stream, 2)) == [
        (2, b"1\ta\n2\tb\n"),
        (2, b"3\tc\n4\td\n"),
        (1, b"5\te\n"),
    ]
    assert list(row_groups([b"1\n2\n"], 2)) == [(2, b"1\n2\n")]


def test_rewritten_bytes_count_new_files_and_growth():
    assert rewritten_bytes({1: 100, 2: 50}, {2: 80, 3: 40}) == 30 + 40


def test_validations_load_in_arrival_order(postgres_url):
    loaded = load_in_arrival_order(postgres_url, 3_000, batch_size=1_000, rows_per_commit=2_500)
    database = Database(postgres_url)
    rows = database.read_frame(
        "SELECT id, contact_id, validated_at, ctid::text AS ctid FROM platform_validations"
    )
    queued = database.count("scoring_queue")
    database.dispose()
    assert loaded["contacts"] == 3_000 and len(rows) == loaded["validations"] > 9_000
    assert sorted(rows["id"]) == list(range(1, len(rows) + 1))
    by_id = rows.sort_values("id")
    stamps = by_id["validated_at"].dropna()
    assert stamps.is_monotonic_increasing
    undated = by_id["validated_at"].isna().to_numpy()
    assert undated.any() and not undated[: len(stamps)].any()
    assert not by_id["contact_id"].dropna().is_monotonic_increasing
    block_order = by_id["ctid"].map(lambda t: tuple(int(x) for x in t.strip("()").split(",")))
    assert block_order.is_monotonic_increasing
    assert queued == 3_000
    indexes = database_indexes(postgres_url)
    assert {"platform_validations_pkey", "ix_platform_validations_current"} <= indexes
    with psycopg.connect(
        sa.make_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)
    ) as connection:
        assert connection.execute("SELECT to_regclass('full_scale_arrivals')").fetchone() == (None,)


def database_indexes(url: str) -> set[str]:
    database = Database(url)
    names = set(
        database.read_frame(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'platform_validations'"
        )["indexname"]
    )
    triggers = database.read_frame(
        "SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'platform_validations'::regclass "
        "AND NOT tgisinternal"
    )["tgenabled"]
    database.dispose()
    assert len(triggers) and (triggers == "O").all()
    return names


def test_table_sizes_count_indexes_and_partitions(postgres_url):
    with psycopg.connect(
        sa.make_url(postgres_url)
        .set(drivername="postgresql")
        .render_as_string(hide_password=False),
        autocommit=True,
    ) as connection:
        connection.execute("CREATE TABLE plain (id bigint PRIMARY KEY)")
        connection.execute("CREATE TABLE split (id bigint PRIMARY KEY) PARTITION BY HASH (id)")
        for remainder in range(2):
            connection.execute(
                f"CREATE TABLE split_{remainder} PARTITION OF split FOR VALUES "
                f"WITH (modulus 2, remainder {remainder})"
            )
        connection.execute("INSERT INTO plain SELECT generate_series(1, 10000)")
        connection.execute("INSERT INTO split SELECT generate_series(1, 10000)")
        expected = dict(
            connection.execute(
                "SELECT 'plain', pg_total_relation_size('plain') UNION ALL SELECT 'split', "
                "pg_total_relation_size('split_0') + pg_total_relation_size('split_1')"
            ).fetchall()
        )
    server = Server(postgres_url)
    sizes = {t["table"]: t for t in server.table_sizes()}
    server.close()
    assert set(sizes) == {"plain", "split"}
    for name in ("plain", "split"):
        assert sizes[name]["rows"] == 10_000
        assert sizes[name]["bytes"] == expected[name] > 10_000 * 8


def test_the_reader_latency_command_runs_as_documented(postgres_url):
    """The README's reader-latency command (small: 2,000 contacts, short windows) loads,
    reads quietly, exports and publishes side by side, prints every window and drops its
    database."""
    result = _benchmark(
        "benchmarks.reader_latency",
        "--contacts",
        "2000",
        "--seconds",
        "1",
        "--export-seconds",
        "3",
        "--url",
        postgres_url,
        "--drop",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for window in (
        "quiet (1 s)",
        "export running, publish waiting for it",
        "lead_scores published after the export",
        "whole window",
    ):
        assert window in result.stdout
    assert "export: 2,000 rows" in result.stdout
    assert not database_exists(postgres_url)


def test_the_forget_benchmark_runs_as_documented(postgres_url):
    """The forget benchmark (small: 2,000 contacts, 2 numbers, one stored in the old form)
    forgets each number, times it, masks it and drops its database."""
    result = _benchmark(
        "benchmarks.forget",
        "--contacts",
        "2000",
        "--samples",
        "2",
        "--url",
        postgres_url,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    forgotten = [line for line in result.stdout.splitlines() if line.startswith("forget +52 ***")]
    assert len(forgotten) == 2 and all(
        "1 contact(s)" in line and "(1 file)" in line for line in forgotten
    )
    assert "export scan: median" in result.stdout
    assert not re.search(r"\d{10}", "\n".join(forgotten).replace(" ", ""))
    assert not database_exists(postgres_url)


def test_the_export_benchmark_times_a_limited_export_against_the_one_pass_ranking(
    postgres_url,
):
    """The export benchmark's documented command (docs/benchmarks.md), small: 3,000
    contacts, the best 500 as CSV, timed against PostgreSQL's COPY of the one-pass ranking in
    the same run; the database dropped."""
    result = _benchmark(
        "benchmarks.export", "--contacts", "3000", "--limit", "500", "--url", postgres_url
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"export csv +500 rows: +[\d.]+ s .*peak RSS", result.stdout)
    assert re.search(r"COPY TO STDOUT\) [\d.]+ s; the last export / baseline [\d.]+", result.stdout)
    assert not database_exists(postgres_url)


def test_the_suppressed_export_benchmark_runs_and_drops_its_database(postgres_url):
    """The suppressed-export benchmark (small: 2,000 contacts, one pair) records its
    suppressions, leaves out the matching contacts, prints the pair's ratio and drops its
    database."""
    result = _benchmark(
        "benchmarks.suppressed_export",
        "--contacts",
        "2000",
        "--pairs",
        "1",
        "--url",
        postgres_url,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2,000 suppressions, 1,000 of them contacts' numbers" in result.stdout
    assert re.search(
        r"pair 1: with suppressions .*\(1,000 rows, 1,000 left out\), "
        r"without .*\(2,000 rows\): [\d.]+x",
        result.stdout,
    )
    assert "median ratio with / without suppressions" in result.stdout
    assert not database_exists(postgres_url)


def test_the_profit_export_benchmark_runs_and_drops_its_database(postgres_url):
    """The profit-export benchmark (small: 2,000 contacts, one pair): max_profit writes the
    contacts above break-even, the score export as many, and the database is dropped."""
    result = _benchmark(
        "benchmarks.profit_export",
        "--contacts",
        "2000",
        "--pairs",
        "1",
        "--url",
        postgres_url,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2,000 uplift scores" in result.stdout
    rows = re.search(
        r"pair 1: max_profit .*\(([\d,]+) rows, ([\d,]+) below break-even, "
        r"peak RSS [\d,]+ MB\), total_score .*\(([\d,]+) rows",
        result.stdout,
    )
    selected, below, same = (int(g.replace(",", "")) for g in rows.groups())
    assert selected == same and selected + below <= 2_000 and 0.4 < selected / 2_000 < 0.7
    assert "median ratio max_profit / total_score" in result.stdout
    assert not database_exists(postgres_url)


def test_the_uplift_benchmark_runs_as_documented(postgres_url):
    """The uplift benchmark (small: 40,000 contacts, the latest four demo campaigns) trains
    every candidate and both baselines, scores every contact with each, times
    campaign_results, and drops its database."""
    result = _benchmark(
        "benchmarks.uplift",
        "--contacts",
        "40000",
        "--url",
        postgres_url,
        "--drop",
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(re.findall(r"^campaign \d+: ", result.stdout, re.MULTILINE)) == 4
    for name in ("two_model", "x_learner", "transformed_outcome"):
        assert re.search(
            rf"uplift_scores with {name}: 40,000 contacts in [\d.]+ s .* audit "
            "passed",
            result.stdout,
        ), result.stdout
    assert "conversion_probability (baseline): Qini" in result.stdout
    assert re.search(
        r"^campaign_results: 4 campaigns, [\d,]+ recipients in [\d.]+ s \(target 30 s\)",
        result.stdout,
        re.MULTILINE,
    ), result.stdout
    assert not database_exists(postgres_url)


def test_the_rate_search_bisects_to_the_highest_passing_rate():
    """Between 0 and the ceiling, each pass moves up and each miss down: with the p95 crossing
    20 ms at 430 requests/s, five bisections of 0–1,000 end within 1,000 / 32 of it; a run
    with an error or a non-2xx answer does not pass, however fast, nor one that answered
    nothing (its p95 reads 0)."""
    from benchmarks.api import search_rate

    def measure(rate: float) -> dict:
        return {
            "per_second": rate * 0.95,
            "requests": round(rate * 0.95 * 10),
            "p50_ms": 2.0,
            "p95_ms": 5.0 if rate <= 430 else 40.0,
            "p99_ms": 60.0,
            "errors": 0,
            "non_2xx": 0,
        }

    search = search_rate(measure, 1_000, 5, 20.0)
    assert [round(r["offered"]) for r in search["steps"]] == [500, 250, 375, 438, 406]
    assert search["best"]["offered"] == 406.2 and search["best"]["per_second"] == 406.25 * 0.95
    assert 430 - 1_000 / 32 <= search["best"]["offered"] <= 430

    def erroring(rate: float) -> dict:
        return {**measure(rate), "non_2xx": 1}

    assert search_rate(erroring, 1_000, 3, 20.0)["best"] is None

    def unanswered(rate: float) -> dict:
        return {**measure(rate), "requests": 0, "per_second": 0.0, "p95_ms": 0.0}

    assert search_rate(unanswered, 1_000, 3, 20.0)["best"] is None


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_the_api_benchmark_runs_lookup_and_card_with_a_rate_search(database_url, wrk, tmp_path):
    """The API benchmarks at tiny size on SQLite and on PostgreSQL: loaded with
    ``--load-only``, the reader's CPU per card and lookup (40 contacts, two rounds), then the
    server under ``wrk`` (``--reuse --drop``: 2,000 contacts, 1 s runs, two bisections):
    lookup by phone and the score card answer every request with a 2xx (the
    card's ids and the lookup's phones come from the database), the rate search tries two
    rates for each and prints its answer, the JSON holds the same, no full phone number is
    printed, and the database is dropped."""
    loaded = _benchmark(
        "benchmarks.api", "--contacts", "2000", "--url", database_url, "--load-only"
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    reader_figures = tmp_path / "reader.json"
    reader = _benchmark(
        "benchmarks.api_reader",
        *("--url", database_url, "--cards", "40", "--rounds", "2", "--json", str(reader_figures)),
    )
    assert reader.returncode == 0, reader.stderr[-3000:]
    for name in ("score card", "lookup by phone"):
        assert 0 < json.loads(reader_figures.read_text())[name]["best_us"] < 1e6
        assert f"{name} " in reader.stdout
    figures = tmp_path / "api.json"
    result = _benchmark(
        "benchmarks.api",
        "--contacts",
        "2000",
        "--url",
        database_url,
        "--reuse",
        "--drop",
        "--endpoints",
        "lookup,card",
        "--seconds",
        "1",
        "--search-seconds",
        "1",
        "--search-steps",
        "2",
        "--json",
        str(figures),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(figures.read_text())
    assert report["contacts"] == 2000 and report["workers"] == 2
    assert report["dialect"] == sa.make_url(database_url).get_backend_name()
    for name in ("lookup by phone", "score card"):
        for run in ("saturated", "paced"):
            figures_of_run = report["results"][f"{name}, {run}"]
            assert figures_of_run["requests"] > 0
            assert figures_of_run["errors"] == 0 and figures_of_run["non_2xx"] == 0
        search = report["rate_search"][name]
        assert len(search["steps"]) == 2
        assert search["ceiling"] == round(report["results"][f"{name}, saturated"]["per_second"], 1)
        passing = [step for step in search["steps"] if step["passed"]]
        assert all(step["p95_ms"] <= 20 for step in passing)
        assert search["best"] == (max(passing, key=lambda s: s["per_second"]) if passing else None)
        assert f"HIGHEST RATE {name}: " in result.stdout
    assert not re.search(r"\d{10}", result.stdout.replace(" ", ""))
    assert not database_exists(database_url)


def test_the_list_sorting_benchmark_runs_and_drops_its_database(postgres_url):
    """The list-sorting benchmark, small (3,000 contacts, one call per case), times every
    sort and filter with its plans and drops its database."""
    result = _benchmark(
        "benchmarks.list_sorting",
        "--contacts",
        "3000",
        "--repeat",
        "1",
        "--url",
        postgres_url,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for case in (
        "sort=score",
        "sort=conversion",
        "sort=uplift",
        "sort=conversion tier=HIGH",
        "sort=uplift state=Jalisco",
    ):
        assert re.search(rf"^{case}: first page [\d.]+ ms", result.stdout, re.MULTILINE), (
            result.stdout
        )
    assert "uplift_scores: 3,000 rows" in result.stdout
    assert not database_exists(postgres_url)


def test_the_incremental_stages_benchmark_runs_and_drops_its_database(postgres_url):
    """The incremental-stages benchmark (small: 2,000 contacts, batches of 200, two rounds)
    loads and rescores the contacts, scores the same batch twice, prints each round's stages
    and drops its database."""
    result = _benchmark(
        "benchmarks.incremental_stages",
        "--contacts",
        "2000",
        "--batch",
        "200",
        "--rounds",
        "2",
        "--url",
        postgres_url,
        "--drop",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rounds = re.findall(
        r"round (\d): 200 claimed, 200 scored, [1-9][\d,]* history rows in [\d.]+ s \(claim [\d.]+, "
        r"read [\d.]+, score [\d.]+, .*, queue [\d.]+, commit [\d.]+, other -?[\d.]+\); "
        r"load average [\d.]+",
        result.stdout,
    )
    assert rounds == ["0", "1"], result.stdout
    assert not database_exists(postgres_url)
