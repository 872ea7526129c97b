"""Benchmark: the scoring API under load on N contacts in PostgreSQL, with Debian's ``wrk``.

    python -m benchmarks.api --contacts 1000000

Loads N demo contacts into a scratch database (``lead_scoring_bench_api``, dropped at the end
unless ``--reuse``), scores them and runs the analytics twice, starts ``lead-scoring serve`` on
a free loopback port, then drives each endpoint with ``wrk`` (``apt-get install wrk``) at
``--connections`` concurrent clients for ``--seconds``: contact lookup by phone (random
contacts, mixed formats), the list page (first pages and later pages with random filters),
the analytics, and as the baseline in the same run the server's smallest static file (the
framework and network cost without the database). Each endpoint runs twice: saturated (each
client sends its next request when the last is answered: the most the server can do, latency
is then mostly queueing) and paced (the clients together offer ``--rate`` requests/s with
random pauses: the latency at that load).
"""

import argparse
import json
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
from pathlib import Path

import psycopg
import sqlalchemy as sa

from benchmarks.full_rescore import (
    AS_OF,
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


def lookup_paths(url: str, count: int, seed: int) -> list[str]:
    database = Database(url)
    with database.engine.connect() as connection:
        connection.execute(sa.text("SELECT setseed(:seed)"), {"seed": seed / 1000})
        phones = (
            connection.execute(
                sa.text(
                    "SELECT phone_e164 FROM contacts TABLESAMPLE BERNOULLI (1) ORDER BY random() "
                    "LIMIT :n"
                ),
                {"n": count},
            )
            .scalars()
            .all()
        )
    database.dispose()
    pick = random.Random(seed)
    return [
        f"{API}/lookup?" + urllib.parse.urlencode({"phone": pick.choice(_phone_formats(p))})
        for p in phones
    ]


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
    (exponential, mean ``connections / rate``: Poisson arrivals)."""
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


def database_exists(url: str) -> bool:
    admin = sa.make_url(url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False)) as conn:
        return (
            conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (sa.make_url(url).database,)
            ).fetchone()
            is not None
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--url", default=BENCH_URL)
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--connections", type=int, default=32, help="concurrent clients")
    parser.add_argument("--seconds", type=int, default=20, help="per endpoint")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--rate", type=float, default=600, help="offered requests/s of the paced runs"
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the loaded database if there is one, and keep it",
    )
    parser.add_argument(
        "--load-only",
        action="store_true",
        help="load and score the database, keep it and stop (then run with --reuse)",
    )
    args = parser.parse_args()
    if args.load_only:
        prepare(args.url, args.contacts)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")
    print(
        f"database {redact(args.url)}, {args.contacts:,} contacts; {args.workers} server "
        f"workers, {args.connections} clients, {args.seconds} s per endpoint"
    )
    if args.reuse and database_exists(args.url):
        print("reusing the loaded database")
    else:
        prepare(args.url, args.contacts)
    port = free_port()
    server = start_server(args.url, port, args.workers)
    base = f"http://127.0.0.1:{port}"
    try:
        endpoints = {
            "baseline: static file": ["/static/dashboard.css"],
            "lookup by phone": lookup_paths(args.url, 2_000, seed=7),
            "list page": list_paths(base, seed=7),
            "analytics": [f"{API}/analytics"],
        }
        for paths in endpoints.values():  # warm up: state spellings, plans, pools
            run_wrk(base, paths, args.connections, 2, args.threads)
        results = {}
        for name, paths in endpoints.items():
            results[f"{name}, saturated"] = run_wrk(
                base, paths, args.connections, args.seconds, args.threads
            )
            results[f"{name}, paced"] = run_wrk(
                base, paths, args.connections, args.seconds, args.threads, args.rate
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
        if not args.reuse:
            drop_database(sa.make_url(args.url))
    baseline = results["baseline: static file, saturated"]
    for name, r in results.items():
        print(
            f"{name:<33} p50 {r['p50_ms']:6.2f} ms  p95 {r['p95_ms']:6.2f} ms  "
            f"p99 {r['p99_ms']:6.2f} ms  {r['per_second']:7,.0f} req/s "
            f"({r['per_second'] / baseline['per_second']:.2f}x the baseline's throughput)  "
            f"{r['requests']:,} requests, {r['errors']} errors, {r['non_2xx']} non-2xx"
        )


if __name__ == "__main__":
    main()
