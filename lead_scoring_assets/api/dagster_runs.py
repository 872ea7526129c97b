"""Launch ``campaign_export_job`` and follow its run through Dagster's GraphQL API.

The webserver's ``/graphql`` is the API ``dagster-graphql``'s client calls; this module sends
the same ``launchRun`` mutation and ``runOrError`` query over plain HTTP, so the API process
imports no Dagster. ``LEAD_SCORING_DAGSTER_URL`` names the webserver as the API server reaches
it; ``LEAD_SCORING_DAGSTER_UI_URL`` (default: the same) as the user's browser does.
"""

import json
import logging
import os
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime

DAGSTER_URL_ENV = "LEAD_SCORING_DAGSTER_URL"
DAGSTER_UI_URL_ENV = "LEAD_SCORING_DAGSTER_UI_URL"
LOCATION = "lead_scoring_assets.definitions"
JOB = "campaign_export_job"
OP = "export_campaign_segment"
TIMEOUT_SECONDS = 10
log = logging.getLogger(__name__)
RANK_BY = {"score": "total_score", "conversion": "conversion_probability"}
LAUNCH = """mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on Error { message }
  }
}"""
STATUS = """query Status($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status }
    ... on Error { message }
  }
}"""


class DagsterUnavailable(RuntimeError):
    """No Dagster webserver is configured, it did not answer, or it refused the request."""


class RunNotFound(LookupError):
    """Dagster knows no run with this id."""


def export_config(tier: str | None, state: str | None, min_score: int | None, sort: str) -> dict:
    """``campaign_export_job``'s run config for the dashboard's filters: the tier as the
    minimum tier, the state, the minimum score, ranked like the list; a new file under
    ``dashboard/`` in the export folder."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    config = {
        "min_tier": tier,
        "min_score": min_score,
        "states": [state] if state else [],
        "rank_by": RANK_BY[sort],
        "output_path": f"dashboard/segment-{stamp}-{uuid.uuid4().hex[:8]}.csv",
    }
    return {"ops": {OP: {"config": {k: v for k, v in config.items() if v is not None}}}}


class DagsterRuns:
    def __init__(self, url: str | None = None, ui_url: str | None = None):
        self.url = (url or os.environ.get(DAGSTER_URL_ENV) or "").rstrip("/")
        self.ui_url = (ui_url or os.environ.get(DAGSTER_UI_URL_ENV) or self.url).rstrip("/")

    def _call(self, query: str, variables: dict) -> dict:
        if not self.url:
            raise DagsterUnavailable(f"no Dagster webserver configured: set {DAGSTER_URL_ENV}")
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                body = json.load(response)
        except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as error:
            raise DagsterUnavailable(
                f"the Dagster webserver did not answer ({type(error).__name__})"
            ) from None
        if body.get("errors"):
            log.warning("Dagster GraphQL errors: %s", [e.get("message") for e in body["errors"]])
            raise DagsterUnavailable("Dagster refused the request; the server log has its answer")
        return body["data"]

    def run_url(self, run_id: str) -> str:
        return f"{self.ui_url}/runs/{run_id}"

    def launch_export(self, run_config: dict, tags: dict[str, str]) -> dict:
        """Launch the job; its run id, status and address in the Dagster UI."""
        result = self._call(
            LAUNCH,
            {
                "params": {
                    "selector": {
                        "repositoryLocationName": LOCATION,
                        "repositoryName": "__repository__",
                        "jobName": JOB,
                    },
                    "runConfigData": run_config,
                    "executionMetadata": {
                        "tags": [{"key": k, "value": v} for k, v in tags.items()]
                    },
                }
            },
        )["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            log.warning(
                "Dagster did not launch %s: %s %s",
                JOB,
                result["__typename"],
                result.get("message", ""),
            )
            raise DagsterUnavailable(f"Dagster did not launch {JOB}: {result['__typename']}")
        run = result["run"]
        return {
            "run_id": run["runId"],
            "status": run["status"],
            "dagster_url": self.run_url(run["runId"]),
        }

    def status(self, run_id: str) -> dict:
        """The run's status (QUEUED, STARTING, STARTED, SUCCESS, FAILURE, CANCELED …)."""
        result = self._call(STATUS, {"runId": run_id})["runOrError"]
        if result["__typename"] == "RunNotFoundError":
            raise RunNotFound("no Dagster run with this id")
        if result["__typename"] != "Run":
            raise DagsterUnavailable(
                f"Dagster did not answer the run's status: {result['__typename']}"
            )
        return {
            "run_id": result["runId"],
            "status": result["status"],
            "dagster_url": self.run_url(result["runId"]),
        }
