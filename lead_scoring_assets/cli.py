"""The ``lead-scoring`` command: schema migrations, the one-command demo, score cards, the
API server."""

import argparse
import io
import os
import sys

from lead_scoring_assets.consent.suppressions import REASONS
from lead_scoring_assets.db.database import Database, data_dir, default_database_url, redact

DEMO_AS_OF = "2026-11-24T00:00:00Z"
REFUSED_SHOWN = 20
"""Refused lines an import prints one by one; the rest are counted by reason."""


def _db_upgrade(args: argparse.Namespace) -> int:
    database = Database(args.url or default_database_url())
    database.upgrade(args.revision)
    print(f"{redact(str(database.url))} is at revision {database.current_revision()}")
    database.dispose()
    return 0


def _db_current(args: argparse.Namespace) -> int:
    database = Database(args.url or default_database_url())
    print(database.current_revision() or "no schema")
    database.dispose()
    return 0


class _WithoutRegistryMessages(io.TextIOBase):
    """A stream passing every line on but the model registry's own announcements, which
    ``mlflow.register_model`` prints to stderr whatever the log level."""

    DROPPED = ("Successfully registered model '", "Created version '", "Registered model '")

    def __init__(self, stream) -> None:
        self.stream, self.pending = stream, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if not line.startswith(self.DROPPED):
                self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        if self.pending and not self.pending.startswith(self.DROPPED):
            self.stream.write(self.pending)
            self.pending = ""
        self.stream.flush()


def _demo(args: argparse.Namespace) -> int:
    """Schema, demo data, then the nightly run (full rescoring and retraining), run as Dagster
    jobs on a local instance with a local MLflow store. The console gets each job's steps with
    their times and the summary; the full log, warnings included, stays in the instance (the
    Dagster UI). MLflow's own messages (database setup, "Successfully registered model …")
    are left out: its warnings and errors still show."""
    import contextlib
    import time
    import warnings

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    import dagster as dg

    from lead_scoring_assets.demo_definitions import defs
    from lead_scoring_assets.ml.tracking import default_tracking_uri

    os.environ.setdefault("DAGSTER_HOME", str(data_dir() / "dagster_home"))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.makedirs(os.environ["DAGSTER_HOME"], exist_ok=True)
    instance_yaml = os.path.join(os.environ["DAGSTER_HOME"], "dagster.yaml")
    if not os.path.exists(instance_yaml):
        with open(instance_yaml, "w") as file:
            file.write("telemetry:\n  enabled: false\n")
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    database = Database(default_database_url())
    database.upgrade()
    database.dispose()
    definitions = defs()
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    with dg.DagsterInstance.get() as instance:
        for job_name, run_config in (
            (
                "demo_data_job",
                {
                    "ops": {
                        "generate_demo_data_op": {
                            "config": {
                                "contacts": args.contacts,
                                "seed": args.seed,
                                "as_of": args.as_of,
                                "replace_existing": True,
                            }
                        }
                    }
                },
            ),
            (
                "nightly_retrain_job",
                {"ops": {"staged_lead_scores": {"config": {"as_of": args.as_of}}}},
            ),
        ):
            print(f"{job_name} running ...", flush=True)
            started = time.monotonic()
            with contextlib.redirect_stderr(_WithoutRegistryMessages(sys.stderr)):
                result = definitions.resolve_job_def(job_name).execute_in_process(
                    run_config={**run_config, **quiet}, instance=instance, raise_on_error=False
                )
            for event in result.get_step_success_events():
                seconds = event.event_specific_data.duration_ms / 1000
                print(f"  {event.step_key}: {seconds:.1f} s")
            if not result.success:
                print(
                    f"{job_name} failed (run {result.run_id}); its log: the Dagster UI",
                    file=sys.stderr,
                )
                return 1
            print(
                f"{job_name} succeeded in {time.monotonic() - started:.1f} s (run {result.run_id})",
                flush=True,
            )
    _print_summary(Database(default_database_url()))
    print(
        f"\nOpen the Dagster UI: DAGSTER_HOME={os.environ['DAGSTER_HOME']} "
        ".venv/bin/dg dev  (then http://127.0.0.1:3000)"
    )
    print(
        f"Compare the models: .venv/bin/mlflow ui --backend-store-uri {default_tracking_uri()} "
        "--port 5000  (then http://127.0.0.1:5000)"
    )
    print(
        "Open the dashboard: LEAD_SCORING_ADMIN_KEYS=choose-a-key .venv/bin/lead-scoring serve  "
        "(then http://127.0.0.1:8000/, and type that key)"
    )
    return 0


def _explain(args: argparse.Namespace) -> int:
    """Print a contact's score card (stored, or recomputed with --recompute), its ML score,
    its conversion probability and its uplift with the top reasons."""
    from lead_scoring_assets.scoring.explain import explain_contact
    from lead_scoring_assets.scoring.score_card import (
        conversion_summary,
        ml_score_summary,
        stored_score,
        uplift_summary,
    )

    database = Database(args.url or default_database_url())
    try:
        stored = stored_score(database, args.contact)
        print(stored.render())
        print(ml_score_summary(database, int(stored.score["contact_id"])))
        print(conversion_summary(database, int(stored.score["contact_id"])))
        print(uplift_summary(database, int(stored.score["contact_id"])))
        if args.recompute:
            again = explain_contact(database, int(stored.score["contact_id"]))
            same = again.breakdown == stored.breakdown
            versions = (stored.score["calculation_version"], again.score["calculation_version"])
            by = (
                ""
                if versions[0] == versions[1]
                else (f" (stored by {versions[0]}, recomputed by {versions[1]})")
            )
            print(
                f"\nrecomputed from the current rows at the same as_of{by}: "
                f"{'identical' if same else 'DIFFERENT'}"
            )
            if not same:
                print(again.render())
    except LookupError as error:
        print(f"lead-scoring explain: {error}", file=sys.stderr)
        return 1
    finally:
        database.dispose()
    return 0


def _suppressions(args: argparse.Namespace) -> int:
    """The suppression list: import, add, remove, list, check. Exit codes: 0 done (``check``:
    not suppressed), 1 ``check``: suppressed, 2 refused input (nothing changed)."""
    from pathlib import Path

    import pandas as pd

    from lead_scoring_assets.consent import suppressions
    from lead_scoring_assets.consent.in_force import read_in_force
    from lead_scoring_assets.contacts.phones import PhoneRejected, mask_phone, normalize_phone

    database = Database(args.url or default_database_url())
    try:
        if args.suppressions_command == "import":
            expires = pd.Timestamp(args.expires_at) if args.expires_at else None
            report = suppressions.import_file(
                database, Path(args.file), args.reason, args.source, expires
            )
            print(
                f"{args.reason} import of {Path(args.file).name}: {report.lines} lines, "
                f"{report.numbers} numbers ({report.duplicates} repeated), "
                f"{len(report.refused)} lines refused"
            )
            print(f"added {report.added}, removed {report.removed}, kept {report.kept}")
            for line, reason in report.refused[:REFUSED_SHOWN]:
                print(f"  line {line} refused: {reason}")
            if len(report.refused) > REFUSED_SHOWN:
                print(f"  ... and {len(report.refused) - REFUSED_SHOWN} more refused lines")
            for reason, count in (
                report.refused_by_reason().items() if len(report.refused) > REFUSED_SHOWN else ()
            ):
                print(f"  {count} refused: {reason}")
        elif args.suppressions_command == "add":
            added = suppressions.add(database, args.phone, args.reason, args.source)
            print(
                f"{mask_phone(normalize_phone(args.phone))} "
                f"{'added as' if added else 'already suppressed as'} {args.reason}"
            )
        elif args.suppressions_command == "remove":
            removed = suppressions.remove(database, args.phone, args.reason)
            print(
                f"{mask_phone(normalize_phone(args.phone))}: "
                f"{'removed' if removed else 'had no'} {args.reason} suppression"
            )
        elif args.suppressions_command == "list":
            counts = suppressions.counts(database)
            print(counts.to_string(index=False) if len(counts) else "no suppressions")
            for row in suppressions.latest(database, args.reason, args.limit):
                print(
                    f"{mask_phone(row.phone_e164)}  {row.reason:<11} {row.source}  "
                    f"recorded {row.recorded_at:%Y-%m-%d %H:%M}  expires "
                    f"{'never' if row.expires_at is None else row.expires_at.isoformat()}"
                )
        else:
            phone = normalize_phone(args.phone)
            with database.engine.connect() as connection:
                state = read_in_force(connection, database)
            rows = [
                row
                for row in suppressions.in_force(database, phone)
                if not (row.reason == "opt_out" and phone in state.lifted)
            ]
            for row in rows:
                print(
                    f"{mask_phone(phone)} suppressed: {row.reason} ({row.source}), recorded "
                    f"{row.recorded_at.isoformat()}, expires "
                    f"{'never' if row.expires_at is None else row.expires_at.isoformat()}"
                )
            pending = phone in state.reply_opt_outs
            if pending:
                print(f"{mask_phone(phone)} suppressed: opt-out reply not yet processed")
            if not rows and not pending:
                print(f"{mask_phone(phone)} is not suppressed")
            return 1 if rows or pending else 0
    except (PhoneRejected, suppressions.ImportRefused, ValueError, OSError) as error:
        print(f"lead-scoring suppressions {args.suppressions_command}: {error}", file=sys.stderr)
        return 2
    finally:
        database.dispose()
    return 0


def _serve(args: argparse.Namespace) -> int:
    """The API and dashboard with uvicorn; keys and the cursor secret from the environment."""
    import secrets

    import uvicorn

    from lead_scoring_assets.api.auth import ApiKeys
    from lead_scoring_assets.api.cursor import CURSOR_SECRET_ENV
    from lead_scoring_assets.db.database import DATABASE_URL_ENV

    try:
        ApiKeys.from_env()
    except ValueError as error:
        print(f"lead-scoring serve: {error}", file=sys.stderr)
        return 1
    if args.url:
        os.environ[DATABASE_URL_ENV] = args.url
    os.environ.setdefault(CURSOR_SECRET_ENV, secrets.token_hex(32))
    print(
        f"serving {redact(default_database_url())} on http://{args.host}:{args.port}/ "
        f"({args.workers} worker{'s' if args.workers > 1 else ''})"
    )
    uvicorn.run(
        "lead_scoring_assets.api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
    )
    return 0


def _forget(args: argparse.Namespace) -> int:
    """The ARCO cancellation of one number: its rows deleted, its arco suppression recorded,
    the export files still holding it listed (masked in every line printed)."""
    from lead_scoring_assets.consent.forget import ForgetBusy, forget
    from lead_scoring_assets.contacts.phones import PhoneRejected
    from lead_scoring_assets.db.writer_lock import LockBusy

    database = Database(args.url or default_database_url())
    try:
        report = forget(database, args.phone)
    except (PhoneRejected, ForgetBusy, LockBusy) as error:
        print(f"lead-scoring forget: {error}", file=sys.stderr)
        return 1
    finally:
        database.dispose()
    print("\n".join(report.lines()))
    return 0


def _print_summary(database: Database) -> None:
    tiers = database.read_frame(
        "SELECT quality_tier, count(*) AS contacts, round(avg(total_score), 1) AS mean_score "
        "FROM lead_scores GROUP BY quality_tier ORDER BY min(total_score) DESC"
    )
    malformed = database.read_frame(
        "SELECT reason, count(*) AS rows FROM malformed_validations GROUP BY reason ORDER BY reason"
    )
    print(f"\nlead_scores on {redact(str(database.url))}:")
    print(tiers.to_string(index=False))
    print("\nmalformed validation rows kept in malformed_validations:")
    print(malformed.to_string(index=False))
    ml = database.read_frame(
        "SELECT method, model_version, count(*) AS contacts, "
        "round(avg(predicted_score), 2) AS mean_predicted, round(avg(confidence), 4) AS "
        "mean_confidence FROM ml_lead_scores GROUP BY method, model_version"
    )
    print("\nml_lead_scores (champion model, or the rule-based fallback):")
    print(ml.to_string(index=False))
    conversion = database.read_frame(
        "SELECT method, model_version, count(*) AS contacts, "
        "round(avg(conversion_probability), 4) AS mean_probability FROM conversion_scores "
        "GROUP BY method, model_version"
    )
    print("\nconversion_scores (the lead_conversion champion, or the rule score's rank):")
    print(conversion.to_string(index=False))
    uplift = database.read_frame(
        "SELECT method, model_version, count(*) AS contacts, avg(uplift) AS mean_uplift "
        "FROM uplift_scores GROUP BY method, model_version"
    )
    print("\nuplift_scores (the lead_uplift champion; no rows without one):")
    print(
        uplift.round(4).to_string(index=False)
        if len(uplift)
        else "no rows: no uplift champion (the uplift_model materialisation says why)"
    )
    database.dispose()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lead-scoring", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="schema migrations").add_subparsers(
        dest="db_command", required=True
    )
    upgrade = db.add_parser("upgrade", help="create or upgrade the schema")
    upgrade.add_argument("--revision", default="head")
    current = db.add_parser("current", help="print the schema revision")
    for sub, handler in ((upgrade, _db_upgrade), (current, _db_current)):
        sub.add_argument(
            "--url",
            help="SQLAlchemy URL (default: $LEAD_SCORING_DATABASE_URL or the embedded SQLite file)",
        )
        sub.set_defaults(handler=handler)

    explain = commands.add_parser("explain", help="print a contact's score card")
    explain.add_argument(
        "contact",
        help="contact id, or phone number: 10 digits alone or after "
        "+52, 52, 0052, +52 1, 521, 044 or 045",
    )
    explain.add_argument(
        "--recompute",
        action="store_true",
        help="also recompute it from the current rows and compare",
    )
    explain.add_argument(
        "--url",
        help="SQLAlchemy URL (default: $LEAD_SCORING_DATABASE_URL or the embedded SQLite file)",
    )
    explain.set_defaults(handler=_explain)

    suppress = commands.add_parser(
        "suppressions",
        help="numbers never to message: import, add, remove, list, check "
        "(exit codes: 0 done or not suppressed, 1 suppressed, 2 refused input)",
    )
    actions = suppress.add_subparsers(dest="suppressions_command", required=True)
    reasons = {"choices": REASONS, "required": True}
    importer = actions.add_parser(
        "import",
        help="numbers of a CSV (column phone, phone_e164, "
        "telefono or número, or no header) or one per line; a repus "
        "import replaces the previous REPUS snapshot",
    )
    importer.add_argument("file")
    importer.add_argument("--reason", **reasons)
    importer.add_argument("--source", help="where the list came from (default: file NAME)")
    importer.add_argument(
        "--expires-at",
        help="ISO-8601 time the rows stop applying (UTC without an offset; default: never)",
    )
    adder = actions.add_parser("add", help="suppress one number")
    adder.add_argument("--source", default="cli", help="where the request came from")
    remover = actions.add_parser("remove", help="lift one number's suppression for a reason")
    for sub in (adder, remover):
        sub.add_argument("--phone", required=True)
        sub.add_argument("--reason", **reasons)
    lister = actions.add_parser("list", help="counts per reason and the latest rows, masked")
    lister.add_argument("--reason", choices=REASONS)
    lister.add_argument("--limit", type=int, default=20)
    checker = actions.add_parser(
        "check", help="every suppression in force for a number: exit 1 if suppressed, 0 if not"
    )
    checker.add_argument("--phone", required=True)
    for sub in (importer, adder, remover, lister, checker):
        sub.add_argument(
            "--url",
            help="SQLAlchemy URL (default: $LEAD_SCORING_DATABASE_URL or the embedded SQLite file)",
        )
    suppress.set_defaults(handler=_suppressions)

    serve = commands.add_parser(
        "serve",
        help="the scoring API and dashboard (needs "
        "LEAD_SCORING_API_KEYS or LEAD_SCORING_ADMIN_KEYS)",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--url",
        help="SQLAlchemy URL (default: $LEAD_SCORING_DATABASE_URL or the embedded SQLite file)",
    )
    serve.set_defaults(handler=_serve)

    forget = commands.add_parser(
        "forget",
        help="ARCO cancellation: delete a person's rows, "
        "suppress the number, list the export files holding it",
    )
    forget.add_argument("--phone", required=True, help="the number, in any Mexican format")
    forget.add_argument(
        "--url",
        help="SQLAlchemy URL (default: $LEAD_SCORING_DATABASE_URL or the embedded SQLite file)",
    )
    forget.set_defaults(handler=_forget)

    demo = commands.add_parser("demo", help="demo data + full rescoring on the embedded default")
    demo.add_argument("--contacts", type=int, default=50_000)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--as-of", default=DEMO_AS_OF)
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
