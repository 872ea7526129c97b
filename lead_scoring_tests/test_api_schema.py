"""Property-based run of the API's OpenAPI schema (schemathesis): generated requests, valid
and invalid, against every operation on both dialects; no 500, and every response as the
schema documents it (status code, content type, body, headers)."""

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
)

from .api_data import ADMIN_KEY, app_for, prepare


def test_generated_requests_never_fail_the_server(demo_database, templates):
    templates.cached(demo_database, "api_data.prepare", prepare)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app_for(demo_database))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 14
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=25,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def run(case):
                # Left out: "every schema-valid request succeeds" (a string the schema allows
                # may still be no Mexican phone number: 400 with a message), and "every
                # invalid request is refused", which counts as invalid what its client cannot
                # send (a null query value is dropped; the key header it removes is ours,
                # always sent), so the request that arrives is valid. Refusals of bad input
                # are tested one by one in test_api.py.
                # The export answers 503 here, as documented: no Dagster webserver is
                # configured (test_dashboard_export.py runs it against a real one); it still
                # must never answer 500.
                unavailable = [not_a_server_error] if "/exports" in case.operation.path else []
                response = case.call_and_validate(
                    headers={"X-API-Key": ADMIN_KEY},
                    excluded_checks=[
                        positive_data_acceptance,
                        negative_data_rejection,
                        *unavailable,
                    ],
                )
                assert response.status_code != 500

            run()
