"""Benchmark: the scoring API under load on N contacts, PostgreSQL or SQLite, with ``wrk``.

    python -m benchmarks.api --contacts 1000000
    python -m benchmarks.api --contacts 1000000 --url sqlite:////tmp/lead_scoring_bench_api.db

Loads N demo contacts into a scratch database (``--url``: by default the PostgreSQL database
``lead_scoring_bench_api``; a ``sqlite:///`` URL is the embedded default's kind of database, a
file; dropped at the end unless ``--reuse`` without ``--drop``; ``--load-only`` loads and
stops), scores them and runs the analytics twice, starts ``lead-scoring serve``
(``--workers``, default 2: one per core of the 2-core machine, as docs/api/index.md advises)
on a free loopback port, then drives each endpoint with Debian's ``wrk`` (``apt-get install
wrk``) at ``--connections`` concurrent clients for ``--seconds``: contact lookup by phone
(random contacts, mixed formats), the score card (``/contacts/{id}`` of random contacts), the
list page (first pages and later pages with random filters), the analytics, and as the
baseline in the same run the server's smallest static file (the framework and network cost
without the database). Each endpoint runs twice: saturated (each client sends its next
request when the last is answered: the most the server can do, latency is then mostly
queueing) and paced (the clients together offer ``--rate`` requests/s with random pauses: the
latency at that load). Then, for lookup and card, a rate search: paced runs of
``--search-seconds`` bisecting ``--search-steps`` times between 0 and the endpoint's saturated
throughput, for the highest rate at which p95 stays within ``--p95-ms`` (20) with no errors
and no non-2xx answers. ``--json`` writes every figure to a file.
"""

import argparse
import datetime
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from benchmarks.full_rescore import (
    AS_OF,
    database_exists,
    drop_database,
    load_fresh_database,
)
from lead_scoring_assets.analytics.figures import compute_figures
from lead_scoring_assets.analytics.history import append_figures
from lead_scoring_assets.db.database import Database, redact
from lead_scoring_assets.scoring.full_rescore import rescore_all

BENCH_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/lead_scoring_bench_api"
API = "/api/v1/lead-scoring"
KEY = "benchmark-read-key"
TIERS = ("PREMIUM", "HIGH", "MEDIUM", "LOW", "POOR")
ENDPOINTS = ("baseline", "lookup", "card", "list", "analytics")
SEARCHED = {"lookup": "lookup by phone", "card": "score card"}
WRK_SCRIPT = """
local paths = {%(paths)s}
wrk.headers["X-API-Key"] = "%(key)s"
function init(args) math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16)) end
function request() return wrk.format(nil, paths[math.random(#paths)]) end
local mean_delay = %(delay_ms)s
function delay() return -math.log(1 - math.random()) * mean_delay end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %%d, "seconds": %%.3f, "errors": %%d, '
    .. '"non_2xx": %%d, "p50_ms": %%.2f, "p95_ms": %%.2f, "p99_ms": %%.2f}\\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout,
    e.status, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000))
end
"""


def prepare(url: str, contacts: int) -> None:
    load_fresh_database(sa.make_url(url), contacts)
    database = Database(url)
    started = time.perf_counter()
    for run, days in (("bench-1", 0), ("bench-2", 1)):
        as_of = AS_OF if not days else "2026-11-25T00:00:00Z"
        rescore_all(database, as_of, run_id=run)
        append_figures(database, compute_figures(database), run, as_of)
    print(f"two rescorings and analytics runs in {time.perf_counter() - started:.1f} s")
    database.dispose()


def _phone_formats(phone: str) -> list[str]:
    national = phone[3:]
    return [
        phone,
        national,
        f"{national[:3]} {national[3:6]} {national[6:]}",
        f"+52 ({national[:3]}) {national[3:6]}-{national[6:]}",
    ]


def sample_contacts(url: str, count: int, seed: int) -> list[tuple[int, str]]:
    """``count`` random contacts (id, phone) of the database, PostgreSQL or SQLite: random ids
    between the smallest and the largest, those that exist."""
    database = Database(url)
    pick = random.Random(seed)
    with database.engine.connect() as connection:
        low, high = connection.execute(sa.text("SELECT min(id), max(id) FROM contacts")).one()
        if low is None:
            raise RuntimeError("the database has no contacts")
        ids = pick.sample(range(low, high + 1), min(2 * count, high - low + 1))
        rows = connection.execute(
            sa.text(
                "SELECT id, phone_e164 FROM contacts WHERE id IN :ids "
                "AND phone_e164 IS NOT NULL ORDER BY id"
            ).bindparams(sa.bindparam("ids", expanding=True)),
            {"ids": ids},
        ).all()
    database.dispose()
    rows = [tuple(row) for row in rows]
    pick.shuffle(rows)
    return rows[:count]


def lookup_paths(contacts: list[tuple[int, str]], seed: int) -> list[str]:
    pick = random.Random(seed)
    return [
        f"{API}/lookup?" + urllib.parse.urlencode({"phone": pick.choice(_phone_formats(p))})
        for _, p in contacts
    ]


def card_paths(contacts: list[tuple[int, str]]) -> list[str]:
    return [f"{API}/contacts/{contact_id}" for contact_id, _ in contacts]


def _get(base: str, path: str) -> dict:
    request = urllib.request.Request(base + path, headers={"X-API-Key": KEY})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def list_paths(base: str, seed: int) -> list[str]:
    """First pages with random filters, and the pages after them (through their cursors)."""
    pick = random.Random(seed)
    paths = []
    for _ in range(60):
        params = {"limit": 50}
        if pick.random() < 0.5:
            params["tier"] = pick.choice(TIERS)
        if pick.random() < 0.3:
            params["state"] = pick.choice(["CDMX", "Jalisco", "Nuevo León", "Edo. Méx."])
        if pick.random() < 0.2:
            params["min_score"] = pick.choice([20, 40, 60])
        path = f"{API}/contacts?{urllib.parse.urlencode(params)}"
        paths.append(path)
        for _ in range(pick.randint(1, 4)):
            cursor = _get(base, path)["next_cursor"]
            if cursor is None:
                break
            path = f"{API}/contacts?{urllib.parse.urlencode({**params, 'cursor': cursor})}"
            paths.append(path)
    return paths


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(url: str, port: int, workers: int) -> subprocess.Popen:
    env = {**os.environ, "LEAD_SCORING_DATABASE_URL": url, "LEAD_SCORING_API_KEYS": KEY}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lead_scoring_assets.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=2).close()
            return server
        except (urllib.error.URLError, ConnectionError):
            if server.poll() is not None:
                raise RuntimeError(f"the server exited with code {server.returncode}") from None
            time.sleep(0.5)
    server.terminate()
    raise RuntimeError("the server did not answer within 60 s")


def run_wrk(
    base: str,
    paths: list[str],
    connections: int,
    seconds: int,
    threads: int,
    rate: float | None = None,
) -> dict:
    """``connections`` clients for ``seconds``: each sends its next request as soon as the
    last is answered, or, with ``rate`` (requests/s over all clients), after a random pause
    (exponential, mean ``connections / rate``: Poisson arrivals). At low rates fewer clients
    pace it, so that the mean pause stays within half a second: ``wrk`` counts a client
    pausing longer than its 5 s timeout as a timeout error."""
    if rate:
        connections = max(threads, min(connections, math.ceil(rate / 2)))
    delay_ms = 1000 * connections / rate if rate else 0
    script = WRK_SCRIPT % {
        "paths": ", ".join(json.dumps(p) for p in paths),
        "key": KEY,
        "delay_ms": delay_ms,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        output = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{seconds}s",
                "--timeout",
                "5s",
                "-s",
                handle.name,
                base,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        Path(handle.name).unlink()
    result = json.loads(output.split("RESULT ", 1)[1])
    result["per_second"] = result["requests"] / result["seconds"]
    return result


def passes(result: dict, p95_ms: float) -> bool:
    """Within the latency target, some requests answered and every one with a 2xx."""
    return (
        result["requests"] > 0
        and result["p95_ms"] <= p95_ms
        and result["errors"] == 0
        and result["non_2xx"] == 0
    )


def search_rate(
    measure: Callable[[float], dict], ceiling: float, steps: int, p95_ms: float
) -> dict:
    """Bisect ``steps`` times over offered rates between 0 and ``ceiling`` (the saturated
    throughput: no higher rate can be served) with ``measure(rate)`` (a paced run). The
    answer is the passing run with the highest achieved rate (``per_second``: the clients
    wait for each answer, so they achieve a little less than they offer), or None."""
    low, high = 0.0, ceiling
    tried = []
    for _ in range(steps):
        rate = (low + high) / 2
        result = {"offered": round(rate, 1), **measure(rate)}
        result["passed"] = passes(result, p95_ms)
        tried.append(result)
        if result["passed"]:
            low = rate
        else:
            high = rate
    passed = [r for r in tried if r["passed"]]
    best = max(passed, key=lambda r: r["per_second"]) if passed else None
    return {"p95_target_ms": p95_ms, "ceiling": round(ceiling, 1), "steps": tried, "best": best}


def _commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument(
        "--url", default=BENCH_URL, help="the scratch database, postgresql+psycopg:// or sqlite:///"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="server worker processes (one per core)"
    )
    parser.add_argument("--connections", type=int, default=32, help="concurrent clients")
    parser.add_argument("--seconds", type=int, default=20, help="per endpoint")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--rate", type=float, default=600, help="offered requests/s of the paced runs"
    )
    parser.add_argument(
        "--endpoints",
        default=",".join(ENDPOINTS),
        help=f"comma-separated, of {', '.join(ENDPOINTS)}",
    )
    parser.add_argument("--p95-ms", type=float, default=20.0, help="the rate search's target")
    parser.add_argument(
        "--search-steps", type=int, default=5, help="bisections of the rate search (0: none)"
    )
    parser.add_argument("--search-seconds", type=int, default=10, help="per rate tried")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the loaded database if there is one, and keep it",
    )
    parser.add_argument(
        "--drop", action="store_true", help="drop the database at the end, even with --reuse"
    )
    parser.add_argument(
        "--load-only",
        action="store_true",
        help="load and score the database, keep it and stop (then run with --reuse)",
    )
    args = parser.parse_args()
    chosen = [name.strip() for name in args.endpoints.split(",") if name.strip()]
    if unknown := set(chosen) - set(ENDPOINTS):
        parser.error(f"unknown endpoints: {', '.join(sorted(unknown))}")
    if args.load_only:
        prepare(args.url, args.contacts)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")
    started_at = datetime.datetime.now(datetime.UTC)
    load_before = _load()
    print(
        f"{started_at:%Y-%m-%d %H:%M} UTC, commit {_commit()}, load average {load_before}; "
        f"database {redact(args.url)}, {args.contacts:,} contacts; {args.workers} server "
        f"workers, {args.connections} clients, {args.seconds} s per endpoint"
    )
    if args.reuse and database_exists(args.url):
        print("reusing the loaded database")
    else:
        prepare(args.url, args.contacts)
    database = Database(args.url)
    contacts = database.count("contacts")
    database.dispose()
    port = free_port()
    server = start_server(args.url, port, args.workers)
    base = f"http://127.0.0.1:{port}"
    searches = {}
    try:
        sample = sample_contacts(args.url, 2_000, seed=7)
        every = {
            "baseline": ("baseline: static file", lambda: ["/static/dashboard.css"]),
            "lookup": ("lookup by phone", lambda: lookup_paths(sample, seed=7)),
            "card": ("score card", lambda: card_paths(sample)),
            "list": ("list page", lambda: list_paths(base, seed=7)),
            "analytics": ("analytics", lambda: [f"{API}/analytics"]),
        }
        endpoints = {every[key][0]: every[key][1]() for key in ENDPOINTS if key in chosen}
        for paths in endpoints.values():  # warm up: state spellings, plans, pools
            run_wrk(base, paths, args.connections, min(2, args.seconds), args.threads)
        results = {}
        for name, paths in endpoints.items():
            results[f"{name}, saturated"] = run_wrk(
                base, paths, args.connections, args.seconds, args.threads
            )
            results[f"{name}, paced"] = run_wrk(
                base, paths, args.connections, args.seconds, args.threads, args.rate
            )
            # each search right after its endpoint's runs: a slow endpoint's requests still
            # queued in the server (the list's, at 10M) would otherwise be measured with it
            if name in SEARCHED.values() and args.search_steps > 0:
                searches[name] = search_rate(
                    lambda rate, paths=paths: run_wrk(
                        base, paths, args.connections, args.search_seconds, args.threads, rate
                    ),
                    results[f"{name}, saturated"]["per_second"],
                    args.search_steps,
                    args.p95_ms,
                )
    finally:
        server.terminate()
        server.wait(timeout=30)
        if args.drop or not args.reuse:
            drop_database(sa.make_url(args.url))
    load_after = _load()
    baseline = results.get("baseline: static file, saturated")
    for name, r in results.items():
        versus = (
            f"({r['per_second'] / baseline['per_second']:.2f}x the baseline's throughput)  "
            if baseline
            else ""
        )
        print(
            f"{name:<33} p50 {r['p50_ms']:6.2f} ms  p95 {r['p95_ms']:6.2f} ms  "
            f"p99 {r['p99_ms']:6.2f} ms  {r['per_second']:7,.0f} req/s {versus}"
            f"{r['requests']:,} requests, {r['errors']} errors, {r['non_2xx']} non-2xx"
        )
    for name, search in searches.items():
        for r in search["steps"]:
            print(
                f"{name} rate search: offered {r['offered']:7,.0f}/s -> {r['per_second']:7,.0f} "
                f"req/s  p50 {r['p50_ms']:6.2f} ms  p95 {r['p95_ms']:6.2f} ms  p99 "
                f"{r['p99_ms']:6.2f} ms  {r['errors']} errors, {r['non_2xx']} non-2xx  "
                f"{'pass' if r['passed'] else 'FAIL'}"
            )
    for name, search in searches.items():
        best = search["best"]
        if best is None:
            print(
                f"HIGHEST RATE {name}: none of {len(search['steps'])} rates tried kept "
                f"p95 <= {args.p95_ms:g} ms"
            )
        else:
            print(
                f"HIGHEST RATE {name}: {best['per_second']:,.0f} req/s (offered "
                f"{best['offered']:,.0f}/s) with p95 {best['p95_ms']:.2f} ms <= "
                f"{args.p95_ms:g} ms (p50 {best['p50_ms']:.2f}, p99 {best['p99_ms']:.2f}); "
                f"saturated {search['ceiling']:,.0f} req/s"
            )
    print(f"load average before {load_before}, after {load_after}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "started_at": started_at.isoformat(timespec="seconds"),
                    "commit": _commit(),
                    "database": redact(args.url),
                    "dialect": sa.make_url(args.url).get_backend_name(),
                    "contacts": contacts,
                    "workers": args.workers,
                    "connections": args.connections,
                    "seconds": args.seconds,
                    "paced_rate": args.rate,
                    "load_average_before": load_before,
                    "load_average_after": load_after,
                    "results": results,
                    "rate_search": searches,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
