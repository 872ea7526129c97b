"""Blocking audits of staged rows, before anything is published. The full rescoring's and the
LADA reference's are checks of their staged assets: a failed audit discards the staged rows
(and releases the scoring lock), so the publishing step never runs. ``contact_features`` and
``ml_lead_scores`` audit their staged rows inside their own step (``staged_audit``)."""

from collections.abc import Callable, Iterator

import dagster as dg

from lead_scoring_assets.db.audit import AuditFailed, Violations
from lead_scoring_assets.db.staged_table import StagedTable
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.scoring.checks import MINIMUM_LADAS, lada_coverage
from lead_scoring_assets.scoring.full_rescore import audit_rescore


@dg.asset_check(asset="staged_lead_scores", blocking=True)
def staged_lead_scores_pass_audit(
    context: dg.AssetCheckExecutionContext, database: DatabaseResource
) -> dg.AssetCheckResult:
    """On the staged scores: every total in 0–100, platform scores within their cap, the tier
    the score's tier, confidence in [0, 1], one row per contact the run read (contacts
    inserted or deleted while it ran are the queue's work). The run's lease is kept alive
    while it counts; failing discards the staged rows."""
    with database.open() as db:
        violations = audit_rescore(db, context.run.run_id)
    return audit_result(violations)


@dg.asset_check(asset="staged_ladas_reference", blocking=True)
def staged_ladas_reference_covers_mexico(
    context: dg.AssetCheckExecutionContext, database: DatabaseResource
) -> dg.AssetCheckResult:
    """On the staged reference: all 32 states present, and at least ``MINIMUM_LADAS`` LADAs.
    Failing discards the staged reference."""
    with database.open() as db:
        staged = StagedTable(db, "ladas_reference", run_id=context.run.run_id)
        coverage = lada_coverage(db, staged.staged)
        passed = not coverage.missing_states and coverage.ladas >= MINIMUM_LADAS
        if not passed:
            staged.discard()
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "ladas": coverage.ladas,
            "minimum_ladas": MINIMUM_LADAS,
            "missing_states": dg.MetadataValue.json(list(coverage.missing_states)),
        },
    )


def staged_audit(
    check_name: str, table: str, run: Callable[[], object]
) -> Iterator[dg.AssetCheckResult]:
    """For an asset that builds, audits and publishes ``table`` in its own step: call ``run``
    (which raises ``AuditFailed`` instead of publishing), yield the audit's check result, and
    fail the step after reporting a failed audit, or an audit that did not run (the report
    has no ``violations``: failed with severity ERROR, "not evaluated"). Returns what ``run``
    returned."""
    try:
        report = run()
    except AuditFailed as failed:
        yield audit_result(failed.violations, check_name)
        raise dg.Failure(description=f"{failed}; the previous {table} stand") from None
    if report.violations is None:
        yield dg.AssetCheckResult(
            check_name=check_name,
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"not evaluated: the audit of the staged {table} rows did not run",
            metadata={"evaluated": False},
        )
        raise dg.Failure(description=f"the {table} rows were not audited")
    yield audit_result(report.violations, check_name)
    return report


def audit_result(violations: Violations, check_name: str | None = None) -> dg.AssetCheckResult:
    """An audit's rule counts as a check result (for the checks an asset runs on its staged
    rows before publishing them)."""
    counts = vars(violations)
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=not violations.failed,
        metadata={name: dg.MetadataValue.int(count) for name, count in counts.items()},
        description=violations.describe(),
    )
