"""``suppressions_import_job``: import a list of numbers not to message (PROFECO's REPUS, a
client's own list) from a file in the import folder, as ``lead-scoring suppressions import``
does. Its metadata has counts and refused line numbers, never a number."""

import os
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field

from lead_scoring_assets.campaigns.segment_export import export_path
from lead_scoring_assets.consent import suppressions
from lead_scoring_assets.db.database import data_dir
from lead_scoring_assets.defs.resources import DatabaseResource

IMPORT_DIR_ENV = "LEAD_SCORING_IMPORT_DIR"
REFUSED_SHOWN = 20


def import_dir() -> Path:
    """``LEAD_SCORING_IMPORT_DIR``, or ``imports`` in the data folder."""
    return Path(os.environ.get(IMPORT_DIR_ENV) or data_dir() / "imports")


class SuppressionImportConfig(dg.Config):
    file: str = Field(
        description=f"File name relative to the import folder (${IMPORT_DIR_ENV}, "
        "default data/imports): a CSV with a phone column, or one number per line."
    )
    reason: str = Field(
        description="repus (replaces the previous REPUS snapshot), opt_out, "
        "hard_bounce, arco or manual."
    )
    source: str | None = Field(default=None, description="Default: 'file <name>'.")
    expires_at: str | None = Field(default=None, description="ISO-8601; default never.")


@dg.op
def import_suppressions(
    context: dg.OpExecutionContext, config: SuppressionImportConfig, database: DatabaseResource
) -> dg.Output[int]:
    """Normalise every number of the file and record it for ``reason`` in one transaction."""
    path = export_path(config.file, import_dir(), field="file", label="import", env=IMPORT_DIR_ENV)
    expires = pd.Timestamp(config.expires_at) if config.expires_at else None
    with database.open() as db:
        report = suppressions.import_file(db, path, config.reason, config.source, expires)
    context.log.info(
        f"{config.reason} import of {path.name}: added {report.added}, removed "
        f"{report.removed}, kept {report.kept}, {len(report.refused)} lines refused"
    )
    return dg.Output(
        report.added,
        metadata={
            "file": config.file,
            "reason": config.reason,
            "lines": report.lines,
            "numbers": report.numbers,
            "repeated": report.duplicates,
            "added": report.added,
            "removed": report.removed,
            "kept": report.kept,
            "refused_lines": len(report.refused),
            "refused_by_reason": dg.MetadataValue.json(report.refused_by_reason()),
            "first_refused": dg.MetadataValue.json(
                [
                    {"line": line, "reason": reason}
                    for line, reason in report.refused[:REFUSED_SHOWN]
                ]
            ),
        },
    )


@dg.job(description="Import a suppression list (REPUS, a client's list) from the import folder.")
def suppressions_import_job() -> None:
    import_suppressions()
